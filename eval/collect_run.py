"""Files of one run of eval/gpu_run.sh, as returned from the GPU machine, into the run's folder under eval/runs.

Each call's returned files copied into FETCHED/call1, call2, ... ; then

    python eval/collect_run.py NAME FETCHED [--dest eval/runs/multitask-small-NAME]

writes what the earlier runs keep: ``NAME_1.log`` ... as ``train_1.log`` ... (``NAME_p.log`` as ``pretrain.log``),
the other ``NAME_*`` files without the prefix, and the prediction files of ``NAME_predictions.tgz`` gzipped
(``test_hint_predictions.floor.jsonl.gz`` ...), readable by eval/bootstrap_vs_baseline.py and
eval/experiments/seen_unseen.py as they are. A later call's file wins over an earlier one of the same name. Files already in
the destination are replaced only with ``--force``.
"""
from __future__ import annotations

import argparse
import gzip
import re
import shutil
import sys
import tarfile
from pathlib import Path


def planned(name: str, fetched: Path) -> dict[str, tuple[Path, str | None]]:
    """{destination file name: (source file, member of the archive or None)}, later calls first-come last."""
    calls = sorted((p for p in fetched.iterdir() if p.is_dir() and re.fullmatch(r"call\d+", p.name)),
                   key=lambda p: int(p.name[4:]))
    if not calls:
        raise SystemExit(f"collect_run: {fetched} has no call1, call2, ... folders (one per call)")
    out: dict[str, tuple[Path, str | None]] = {}
    prefix = f"{name}_"

    def put(target: str, src: Path, member: str | None = None) -> None:
        if target in out and out[target][0].parent != src.parent:  # e.g. stage 3 called twice: say so
            print(f"collect_run: {target} from {src.parent.name} replaces the one from {out[target][0].parent.name}",
                  file=sys.stderr)
        out[target] = (src, member)

    for call in calls:
        for f in sorted(call.iterdir()):
            if not f.is_file() or not f.name.startswith(prefix):
                continue  # the machine's reply.txt and the like
            rest = f.name[len(prefix):]
            if rest == "predictions.tgz":
                with tarfile.open(f) as tar:
                    for m in tar.getmembers():
                        base = Path(m.name).name
                        if m.isfile() and base.endswith(".jsonl"):
                            put(base.removeprefix(prefix) + ".gz", f, m.name)
                        elif m.isfile():
                            print(f"collect_run: {f.name} holds {m.name}, not a prediction file: left out",
                                  file=sys.stderr)
            elif re.fullmatch(r"\d+\.log", rest):
                put(f"train_{rest}", f)
            elif rest == "p.log":
                put("pretrain.log", f)
            else:
                put(rest, f)
    return out


def collect(name: str, fetched: Path, dest: Path, force: bool = False) -> list[Path]:
    plan = planned(name, fetched)
    if not plan:
        raise SystemExit(f"collect_run: no {name}_* files under {fetched}/call*")
    clash = sorted(n for n in plan if (dest / n).exists())
    if clash and not force:
        raise SystemExit(f"collect_run: {dest} already holds {', '.join(clash)} (--force replaces them)")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for target, (src, member) in sorted(plan.items()):
        path = dest / target
        tmp = path.with_name(path.name + ".part")
        if member is None:
            shutil.copyfile(src, tmp)
        else:
            with tarfile.open(src) as tar, tar.extractfile(member) as fin, open(tmp, "wb") as raw, \
                    gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fout:
                shutil.copyfileobj(fin, fout)  # mtime 0, no name: the same predictions gzip to the same bytes
        tmp.chmod(0o644)
        tmp.replace(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="the run's NAME, as given to eval/gpu_run.sh")
    ap.add_argument("fetched", type=Path, help="folder holding call1, call2, ... (each a call's returned files)")
    ap.add_argument("--dest", type=Path, help="default: eval/runs/multitask-small-NAME")
    ap.add_argument("--force", action="store_true", help="replace files the destination already holds")
    args = ap.parse_args(argv)
    dest = args.dest or Path("eval/runs") / f"multitask-small-{args.name}"
    for p in collect(args.name, args.fetched, dest, args.force):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
