"""Paired bootstrap: a run's saved test predictions against the best no-model baseline (CPU, no model).

Per dataset and main task: the headline metric of the predictions file and of every baseline built from
the config's training split (``instructie.baselines``, as ``eval/baselines.py`` builds them), scored on
the same test records drawn with replacement ``--resamples`` times (fixed seed). Prints, against the
baseline that scores best on the whole split, the difference, its 95% interval and the share of draws in
which the model is ahead: whether "beats the baseline" is a margin the test split's size can tell from
chance.

    INSTRUCTIE_DATA=.devdata python eval/bootstrap_vs_baseline.py --config configs/multitask-small.yaml \\
        --predictions eval/runs/X/test_hint_predictions.floor.jsonl.gz --json out.json
"""
from __future__ import annotations

import argparse
import gzip
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from instructie.baselines import build_baselines, splits_from_config  # noqa: E402
from instructie.config import load_config  # noqa: E402
from instructie.data import load_sources  # noqa: E402
from instructie.evaluate import HEADLINE, match_predictions, scored_records  # noqa: E402
from instructie.io import SkipCounter, write_json  # noqa: E402
from instructie.records import MAIN_TASKS  # noqa: E402
from instructie.scoring import AUTO_SPANS, score_task  # noqa: E402


def headline(golds, preds, task: str, dataset: str) -> float:
    ts = score_task(golds, preds, task, dataset, spans=AUTO_SPANS.get(task, "offsets"))
    return ts.values()[HEADLINE[task]]


def bootstrap(golds, model, base, task: str, dataset: str, resamples: int, seed: int) -> dict:
    """Model minus baseline on ``resamples`` draws of the records (the same draw for both)."""
    rng = random.Random(seed)
    n, diffs = len(golds), []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        g = [golds[i] for i in idx]
        diffs.append(headline(g, [model[i] for i in idx], task, dataset)
                     - headline(g, [base[i] for i in idx], task, dataset))
    diffs.sort()
    return {"difference_low": diffs[int(0.025 * resamples)], "difference_high": diffs[int(0.975 * resamples) - 1],
            "model_ahead_share": sum(d > 0 for d in diffs) / resamples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--predictions", required=True, help="a run's test predictions (.jsonl or .jsonl.gz)")
    ap.add_argument("--datasets", nargs="*", help="only these datasets (default: every one with a baseline)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)

    cfg = load_config(a.config, a.set)
    golds = scored_records(load_sources(cfg.data.test))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(a.predictions)
        if path.suffix == ".gz":
            plain = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            path = plain
        matched = match_predictions([(g, g.to_dict()) for g in golds], str(path), SkipCounter(False))
    if matched.missing:
        print(f"{a.predictions}: {matched.missing} test record(s) have no prediction (scored as empty)")
    train = [r for tr, _ in splits_from_config(a.config, a.set).values() for r in tr]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, g in enumerate(matched.golds):
        if g.task in MAIN_TASKS:
            groups.setdefault((g.dataset, g.task), []).append(i)
    baselines = build_baselines(train, targets=set(groups))

    out = {"config": a.config, "sets": a.set, "predictions": a.predictions, "resamples": a.resamples,
           "seed": a.seed, "results": []}
    print(f"| dataset | task | metric | model | best baseline | difference (95% interval) | model ahead in |")
    print("|---|---|---|---|---|---|---|")
    for (ds, task), idx in sorted(groups.items()):
        if (a.datasets and ds not in a.datasets) or not baselines.get((ds, task)):
            continue
        g = [matched.golds[i] for i in idx]
        model = [matched.preds[i] for i in idx]
        scored = {name: [fn(x) for x in g] for name, fn in baselines[ds, task].items()}
        full = {name: headline(g, p, task, ds) for name, p in scored.items()}
        best = max(full, key=lambda k: (full[k], k))
        m = headline(g, model, task, ds)
        b = bootstrap(g, model, scored[best], task, ds, a.resamples, a.seed)
        row = {"dataset": ds, "task": task, "metric": HEADLINE[task], "records": len(g), "model": m,
               "baseline": best, "baseline_value": full[best], "difference": m - full[best], **b}
        out["results"].append(row)
        print(f"| {ds} | {task} | {HEADLINE[task]} | {m:.4f} | {full[best]:.4f} ({best}) | "
              f"{m - full[best]:+.4f} ({b['difference_low']:+.4f} to {b['difference_high']:+.4f}) | "
              f"{b['model_ahead_share']:.1%} of {a.resamples} draws |")
    if a.json:
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
