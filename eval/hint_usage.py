"""How a model trained with memory hints used them (CPU, no model: reads its predictions).

Each test record's prompt carried the memory's hint (memory.py: what the training data says
about the text, i.e. the no-model baseline's answer). This splits a run's predicted items
into those the hint offered and those it did not, and the hint's items into those the model
kept and those it dropped, with the precision of each part against gold. Items are compared
as text keys -- (span, label), (trigger, type), (head, relation, tail) -- not offsets, so the
numbers are close to, not equal to, the scorer's. RC: the hint's first label against the answer.

    INSTRUCTIE_DATA=.devdata python eval/hint_usage.py --config configs/multitask-small.yaml \
        --predictions runs/X/test_predictions.jsonl [--set KEY=VALUE ...] [--json out.json]

The memory is rebuilt from the config's training data, as training builds the model's
memory.json (pass the run's --set overrides so the training data is the same).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from instructie.config import load_config
from instructie.data.sources import load_sources
from instructie.hints.memory import training_memory
from instructie.evaluation.evaluate import scored_records
from instructie.core.io import iter_jsonl, write_json
from instructie.core.records import Record


def item_keys(record: Record) -> set[tuple]:
    """A gold record's or a prediction row's items as text keys, the memory's form."""
    if record.task == "EE":
        return {(ev.trigger.text, ev.type) for ev in record.events}
    return {x.key() for x in (record.entities if record.task == "NER" else record.relations)}


def precision(tp: int, n: int) -> float | None:
    return round(tp / n, 4) if n else None


def usage(records, rows: dict, memory) -> dict:
    """Per dataset: counts and precisions of kept / dropped hint items and of items the hint lacked."""
    counts: dict[str, Counter] = {}
    for r in records:
        row = rows.get((r.id, r.task))
        if row is None or r.task not in ("NER", "EE", "RE", "RC"):
            continue
        c = counts.setdefault(r.dataset, Counter())
        c["records"] += 1
        hint = memory.items(r)
        if r.task == "RC":  # the hint's first label (pair, else tail, else head memory) vs the answer
            g = r.relations[0].label if r.relations else None
            h = hint[0][1] if hint else None
            p = row["labels"][0] if row["labels"] else None
            c["hinted"] += h is not None
            c["hint_right"] += h is not None and h == g
            c["followed"] += h is not None and p == h
            c["followed_right"] += h is not None and p == h == g
            c["overrode"] += h is not None and p != h
            c["overrode_right"] += h is not None and p != h and p == g
            c["right"] += p == g
            continue
        answered = Record.from_dict({**row, "id": r.id, "dataset": r.dataset, "task": r.task, "text": r.text})
        g, p, h = item_keys(r), item_keys(answered), set(hint)
        for name, items in (("gold", g), ("predicted", p), ("hint", h), ("kept", p & h), ("dropped", h - p),
                            ("not_hinted", p - h)):
            c[name] += len(items)
            c[name + "_right"] += len(items & g)
    out = {}
    for ds, c in counts.items():
        if "gold" in c:
            f1 = lambda tp, n: round(2 * tp / (n + c["gold"]), 4) if n + c["gold"] else None  # noqa: E731
            out[ds] = {"records": c["records"], "gold": c["gold"],
                       "hint_items": c["hint"], "hint_precision": precision(c["hint_right"], c["hint"]),
                       "hint_f1": f1(c["hint_right"], c["hint"]),
                       "predicted_items": c["predicted"], "predicted_f1": f1(c["predicted_right"], c["predicted"]),
                       "kept": c["kept"], "kept_precision": precision(c["kept_right"], c["kept"]),
                       "dropped": c["dropped"], "dropped_precision": precision(c["dropped_right"], c["dropped"]),
                       "not_hinted": c["not_hinted"],
                       "not_hinted_precision": precision(c["not_hinted_right"], c["not_hinted"])}
        else:
            out[ds] = {"records": c["records"], "hinted": c["hinted"],
                       "hint_accuracy": precision(c["hint_right"], c["hinted"]),
                       "followed": c["followed"], "followed_accuracy": precision(c["followed_right"], c["followed"]),
                       "overrode": c["overrode"], "overrode_accuracy": precision(c["overrode_right"], c["overrode"]),
                       "accuracy": precision(c["right"], c["records"])}
    return out


def read_rows(path: Path) -> dict:
    return {(x["id"], x["task"]): x for _, x in iter_jsonl(path) if x}  # .jsonl or .jsonl.gz


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--predictions", required=True, help="test_predictions.jsonl (or .jsonl.gz) of a run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--json", help="write the report here")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.set)
    _, memory = training_memory(load_sources(cfg.data.train), cfg.hints)
    if memory is None:
        raise SystemExit(f"{a.config}: data.memory_hints is off, so the prompts carried no hint")
    rows = read_rows(Path(a.predictions))
    report = usage(scored_records(load_sources(cfg.data.test)), rows, memory)
    for ds, v in report.items():
        print(ds, json.dumps(v))
    if a.json:
        write_json(a.json, {"config": a.config, "overrides": a.set, "predictions": a.predictions,
                            "datasets": report})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
