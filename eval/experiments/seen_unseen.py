"""Does a model copy names it never saw, or recall the ones it memorised? (CPU, no model.)

Splits each NER test set's gold entities and a run's predicted entities by whether the mention's text
occurs as an entity of the same dataset's training split (the config's ``data.train``, as training reads
it), and scores each part: recall of the gold mentions that were seen / unseen in training, precision of
the predicted ones. A dictionary knows only seen names; copying shows in the unseen part (mention
replacement exists to move it). Items are (text, type) per record, so a repeated mention counts
once. "Unseen" is per dataset: a name another dataset's training split holds (multi-task training, mention
replacement's pool) counts as unseen here (on the shared data: 16 of CoNLL2003's 2,598 unseen test
mentions, 56 of CrossNER AI's 1,378, 127 of CrossNER literature's 1,904). Several prediction files
(``--predictions NAME=PATH ...``) give side-by-side columns.

    INSTRUCTIE_DATA=.devdata python eval/experiments/seen_unseen.py --config configs/multitask-small.yaml \\
        --predictions s10b=eval/runs/multitask-small-s10b/test_hint_predictions.floor.jsonl.gz --json out.json
"""
from __future__ import annotations

import argparse
import sys


from instructie.evaluation.baselines import splits_from_config
from instructie.evaluation.evaluate import match_predictions
from instructie.core.io import ConfigError, InputError, SkipCounter, write_json


def seen_unseen(golds, preds, train_names: dict[str, set[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """{dataset: {"seen"|"unseen": {gold, recalled, recall, predicted, correct, precision}}} over the NER
    records; ``train_names``: dataset -> the entity texts of its training split."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for g, p in zip(golds, preds):
        if g.task != "NER":
            continue
        names = train_names.get(g.dataset, set())
        gold = {e.key() for e in g.entities}
        pred = {e.key() for e in p.entities}
        by = counts.setdefault(g.dataset, {k: dict(gold=0, recalled=0, predicted=0, correct=0)
                                           for k in ("seen", "unseen")})
        for text, label in gold:
            c = by["seen" if text in names else "unseen"]
            c["gold"] += 1
            c["recalled"] += (text, label) in pred
        for text, label in pred:
            c = by["seen" if text in names else "unseen"]
            c["predicted"] += 1
            c["correct"] += (text, label) in gold
    return {ds: {part: {**c, "recall": c["recalled"] / c["gold"] if c["gold"] else 0.0,
                        "precision": c["correct"] / c["predicted"] if c["predicted"] else 0.0}
                 for part, c in by.items()} for ds, by in sorted(counts.items())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--predictions", nargs="+", required=True, metavar="NAME=PATH",
                    help="a run's test predictions (.jsonl or .jsonl.gz), each named")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    runs = []
    for item in a.predictions:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            ap.error(f"--predictions takes NAME=PATH, got {item!r}")
        runs.append((name, path))
    try:
        splits = splits_from_config(a.config, a.set)
        train_names = {ds: {e.text for r in tr for e in r.entities} for ds, (tr, _) in splits.items()}
        golds = [r for _, te in splits.values() for r in te if r.task == "NER"]
        if not golds:
            print(f"seen_unseen: error: the test sets of {a.config} hold no NER records", file=sys.stderr)
            return 2
        results = {}
        for name, path in runs:
            m = match_predictions([(g, g.to_dict()) for g in golds], path, SkipCounter(False))
            if m.missing:
                print(f"{path}: {m.missing} NER test record(s) have no prediction (scored as empty)")
            results[name] = seen_unseen(m.golds, m.preds, train_names)
    except (InputError, ConfigError) as e:
        print(f"seen_unseen: error: {e}", file=sys.stderr)
        return 2
    print(table(results))
    if a.json:
        write_json(a.json, {"config": a.config, "sets": a.set, "predictions": dict(runs), "results": results})
    return 0


def table(results: dict) -> str:
    names = list(results)
    lines = ["| dataset | mentions | gold | " + " | ".join(f"{n}: recall | {n}: predicted | {n}: precision"
                                                      for n in names) + " |",
             "|---|---|---|" + "---|" * (3 * len(names))]
    first = results[names[0]]
    for ds in first:
        for part in ("seen", "unseen"):
            cells = []
            for n in names:
                c = results[n].get(ds, {}).get(part)
                cells += [f"{c['recall']:.4f}", str(c["predicted"]), f"{c['precision']:.4f}"] if c else ["—"] * 3
            lines.append(f"| {ds} | {part} in training | {first[ds][part]['gold']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
