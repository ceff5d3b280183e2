"""Paired bootstrap: a run's saved test predictions against the best no-model baseline (CPU, no model).

Per dataset and main task: the headline metric of the predictions file and of every baseline built from
the config's training split (``instructie.evaluation.baselines``, as ``eval/baselines.py`` builds them), scored on
the same test records drawn with replacement ``--resamples`` times (fixed seed;
``instructie.evaluation.significance``). Prints, against the baseline that scores best on the whole split, the
difference, its 95% interval and the share of draws in which the model is ahead: whether "beats the
baseline" is a margin the test split's size can tell from chance. (``instructie eval --baseline-train
... --bootstrap N`` does the same from converted files.)

    INSTRUCTIE_DATA=.devdata python eval/bootstrap_vs_baseline.py --config configs/multitask-small.yaml \\
        --predictions eval/runs/X/test_hint_predictions.floor.jsonl.gz --json out.json

With ``--against OTHER_PREDICTIONS`` the comparison is with another run's saved predictions on the same
test records instead of a baseline (an ablation: is one training's difference from another larger than
the test split can tell from chance?); no training data is read then.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from instructie.evaluation.baselines import build_baselines, splits_from_config
from instructie.config import load_config
from instructie.data.sources import load_sources
from instructie.evaluation.evaluate import match_predictions, scored_records
from instructie.core.io import ConfigError, InputError, SkipCounter, write_json
from instructie.evaluation.significance import against_best_baseline, against_other_run, margin_table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--predictions", required=True, help="a run's test predictions (.jsonl or .jsonl.gz)")
    ap.add_argument("--against", help="another run's test predictions on the same config's test records: compare "
                    "with them instead of the baselines")
    ap.add_argument("--name", default="model", help="what --predictions is called in the table")
    ap.add_argument("--against-name", help="what --against is called in the table (default: its folder's name)")
    ap.add_argument("--allow-missing", action="store_true", help="with --against: score a test record a file has "
                    "no answer for as empty (default: an error, the runs must answer the same records)")
    ap.add_argument("--datasets", nargs="*", help="only these datasets (default: every one with a baseline; with "
                    "--against every one)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    if a.resamples < 1:
        ap.error(f"--resamples is a number of draws (at least 1), got {a.resamples}")
    try:
        return run(a)
    except (InputError, ConfigError) as e:
        print(f"bootstrap_vs_baseline: error: {e}", file=sys.stderr)
        return 2


def run(a) -> int:
    cfg = load_config(a.config, a.set)
    golds = [g for g in scored_records(load_sources(cfg.data.test)) if not a.datasets or g.dataset in a.datasets]
    pairs = [(g, g.to_dict()) for g in golds]
    files = {a.predictions: match_predictions(pairs, a.predictions, SkipCounter(False))}
    if a.against:
        files[a.against] = match_predictions(pairs, a.against, SkipCounter(False))
    missing = {path: m.missing for path, m in files.items()}
    if a.against and any(missing.values()) and not a.allow_missing:
        # a record one file lacks would score as empty on that side only: a gap in a file, not in a model
        print("bootstrap_vs_baseline: error: " + "; ".join(f"{path}: {n} test record(s) have no prediction"
                                                        for path, n in missing.items() if n)
              + ": both runs must answer the same test records (the same config and test caps); --allow-missing "
              "scores a missing answer as empty", file=sys.stderr)
        return 2
    for path, n in missing.items():
        if n:
            print(f"{path}: {n} test record(s) have no prediction (scored as empty)")
    preds = files[a.predictions].preds
    other_name = None
    if a.against:
        other_name = a.against_name or Path(a.against).resolve().parent.name
        rows = against_other_run(golds, preds, files[a.against].preds, other_name, resamples=a.resamples,
                                 seed=a.seed)
        table = margin_table(rows, a.name, "other run")
    else:
        train = [r for tr, _ in splits_from_config(a.config, a.set).values() for r in tr]
        baselines = build_baselines(train, targets={(g.dataset, g.task) for g in golds})
        rows = against_best_baseline(golds, preds, baselines, resamples=a.resamples, seed=a.seed)
        if not rows:
            have = sorted({ds for ds, _ in baselines})
            print(f"bootstrap_vs_baseline: error: no test records of {', '.join(a.datasets or ['any dataset'])} have "
                  f"a baseline; datasets with one: {', '.join(have) or 'none'}", file=sys.stderr)
            return 2
        table = margin_table(rows, a.name)
    if not rows:
        print(f"bootstrap_vs_baseline: error: no test records of {', '.join(a.datasets or ['any dataset'])}",
              file=sys.stderr)
        return 2
    print(table)
    if a.json:
        write_json(a.json, {"config": a.config, "sets": a.set, "predictions": a.predictions, "name": a.name,
                            "against": a.against, "against_name": other_name, "missing": missing,
                            "resamples": a.resamples, "seed": a.seed, "results": [r.to_json() for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
