"""Gold targets scored against themselves, through the CLI: convert -> eval.

Every dataset and task (main and auxiliary) must score 1.0: the renderer, parser,
grounding and scorers agree. Writes eval/self_consistency.md.

    python eval/self_consistency.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from instructie.cli.main import main as cli

HERE = Path(__file__).parent


def runs(d: Path):
    yield "duie", ["--input", f"{d}/duie/duie_dev.json", "--schema", f"{d}/duie/duie_schema.json",
                   "--tasks", "RE,EP,EPR"]
    yield "fewrel", ["--input", f"{d}/fewrel/val_wiki.json", "--pid2name", f"{d}/fewrel/pid2name.json"]
    # the labeled rows (the 5,000 test rows carry no labels to score)
    yield "fin_negative", ["--input", f"{d}/fin_negative/Train_Data.csv"]
    yield "ie_instructions", ["--input", f"{d}/ie_instructions", "--split", "test",
                              "--tasks", "NER,ES,ET,EE,EET,EEA"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    a = ap.parse_args()
    d = Path(a.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in runs(d):
            conv = f"{tmp}/{name}.jsonl"
            assert cli(["convert", "--dataset", name, "-o", conv, *args]) == 0
            rep = f"{tmp}/{name}.report.json"
            assert cli(["eval", "--gold", conv, "--predictions", conv, "--field", "target", "--json", rep]) == 0
            for s in json.loads(Path(rep).read_text())["scores"]:
                for metric, v in sorted(s["metrics"].items()):
                    if metric.endswith("_f1") or metric in ("accuracy", "macro_f1", "competition"):
                        rows.append((s["dataset"], s["task"], s["records"], metric, v))
    lines = ["# Self-consistency: gold targets scored against themselves", "",
             "Command: `python eval/self_consistency.py` (runs `instructie convert` then "
             "`instructie eval --field target` on each shared dataset).", "",
             "| dataset | task | records | metric | value |", "|---|---|---|---|---|"]
    lines += [f"| {ds} | {t} | {n} | {m} | {v:.4f} |" for ds, t, n, m, v in rows]
    bad = [r for r in rows if abs(r[4] - 1.0) > 1e-9]
    lines += ["", f"All {len(rows)} values are 1.0." if not bad else f"NOT 1.0: {bad}"]
    (HERE / "self_consistency.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
