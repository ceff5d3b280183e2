"""Score saved test predictions again with today's code (CPU, no model).

A run's ``test_predictions.jsonl`` (or ``.jsonl.gz``) holds each test record's answer and
scored items; this scores them against the config's test records exactly as ``instructie
eval --gold G --predictions P`` does (the gold is what ``instructie test --gold-out`` writes),
so a change in how answers become predictions (e.g. duplicates of a mention kept once) can
be measured on runs whose models are gone.

    INSTRUCTIE_DATA=.devdata python eval/rescore.py --config configs/multitask-small.yaml \\
        --predictions eval/runs/X/test_predictions.jsonl.gz [...] --json out.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from instructie.config import load_config  # noqa: E402
from instructie.data.sources import load_sources  # noqa: E402
from instructie.evaluation.evaluate import evaluate_files, scored_records  # noqa: E402
from instructie.core.io import write_json, write_jsonl  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--predictions", nargs="+", required=True)
    ap.add_argument("--json", help="write {predictions file: summary and dropped counts} here")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.set)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        gold = Path(tmp) / "gold.jsonl"
        write_jsonl(gold, (r.to_dict() for r in scored_records(load_sources(cfg.data.test))))
        for p in a.predictions:
            rep = evaluate_files(str(gold), p)  # .jsonl or .jsonl.gz
            out[p] = {"summary": rep["summary"], "missing_predictions": rep["missing_predictions"],
                      "dropped": {s["dataset"]: s.get("dropped", {}) for s in rep["scores"]}}
            print(f"== {p}\n{rep['table']}")
    if a.json:
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
