"""No-model baselines on the full shared data: built from train splits, scored on test splits.

Splits come from ``instructie.evaluation.baselines.shared_splits`` (the records
configs/multitask-small.yaml trains and tests on), or with ``--config`` from any training
config's ``data.train`` / ``data.test`` lists (``splits_from_config``), so models and
baselines are scored on exactly the same test records. Writes BASELINES.md and
baselines.json into ``--out``.

    python eval/baselines.py [--data DIR | --config CONFIG.yaml] [--out eval]    # DIR: $INSTRUCTIE_DATA or ../shared/data
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from instructie.evaluation.baselines import FIN_HOLDOUT, score_baselines, shared_splits, splits_from_config, table_rows
from instructie.evaluation.scoring import HEADLINE
from instructie.core.records import MAIN_TASKS
from instructie.evaluation.scoring import Report, TaskScore

HERE = Path(__file__).parent

SPLIT_NOTES = {
    "CoNLL2003": "ie_instructions train / test",
    "CrossNER_AI": "ie_instructions train / test (train: 100 sentences)",
    "CrossNER_literature": "ie_instructions train / test (train: 100 sentences)",
    "DuEE": "ie_instructions train / test (both parts of DuEE's published dev set)",
    "duie": "duie_train.json / duie_dev.json",
    "fewrel": "val_wiki.json, unseen_relations=5, part=seen; instance_split train / test (per relation 80/20, seed 0)",
    "fin_negative": f"Train_Data.csv (the only labeled file), adapter option holdout={FIN_HOLDOUT}: a row is "
                    "test iff crc32(id) % 10000 < 2000; part=train vs part=heldout",
}


def _report(scores_json: list[dict]) -> Report:
    """Rebuild enough of a Report from its JSON for ``table_rows``."""
    from instructie.evaluation.scoring import Counts

    rep = Report()
    for s in scores_json:
        ts = TaskScore(s["dataset"], s["task"], s["records"])
        vals = s["metrics"]
        for k in vals:
            if k.endswith("_tp"):
                m = k[:-3]
                ts.metrics[m] = Counts(vals[f"{m}_tp"], vals[f"{m}_fp"], vals[f"{m}_fn"])
        ts.extra = {k: v for k, v in vals.items()
                    if k in ("accuracy", "macro_f1", "competition", "competition_f1_sentiment", "competition_f1_entity")}
        rep.scores.append(ts)
    return rep


def md_table(head: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("INSTRUCTIE_DATA") or str(HERE.parent.parent / "shared" / "data"),
                    help="the shared data folder (default: $INSTRUCTIE_DATA, else ../shared/data beside the repository)")
    ap.add_argument("--config", help="take train/test records from this training config instead")
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--limit", type=int, default=None,
                    help="score only the first N test records per split (as `instructie test --limit N`)")
    a = ap.parse_args(argv)
    if not a.config and not Path(a.data).is_dir():
        print(f"baselines: error: {a.data}: no such data folder (--data or INSTRUCTIE_DATA)", file=sys.stderr)
        return 2
    t0 = time.time()
    splits = splits_from_config(a.config) if a.config else shared_splits(a.data)
    if a.limit:
        splits = {n: (tr, [r for r in te if r.task in MAIN_TASKS][: a.limit]) for n, (tr, te) in splits.items()}
    train = [r for tr, _ in splits.values() for r in tr]
    test = [r for _, te in splits.values() for r in te]
    res = score_baselines(test, train)
    secs = time.time() - t0

    leaks = {}
    for name, (tr, te) in splits.items():
        seen = {r.text for r in tr}
        leaks[name] = sum(r.text in seen for r in te)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = shlex.join(["python", "eval/baselines.py", *(sys.argv[1:] if argv is None else argv)])
    payload = {"command": cmd, "data": str(a.config or a.data),
               "splits": {n: {"train": len(tr), "test": len(te), "test_texts_in_train": leaks[n],
                              "how": SPLIT_NOTES.get(n, "")} for n, (tr, te) in splits.items()},
               "summary": res["summary"], "scores": res["scores"], "skipped": res["skipped"]}
    (out / "baselines.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    rows = [r for name, sj in res["scores"].items() for r in table_rows(name, _report(sj))]
    groups: dict[tuple[str, str], list[tuple]] = {}
    for r in rows:
        groups.setdefault((r[0], r[1]), []).append(r)
    def metric(name, ds, key):
        for sj in res["scores"].get(name, []):
            if sj["dataset"] == ds:
                return sj["metrics"].get(key, float("nan"))
        return float("nan")
    conll = metric("dictionary", "CoNLL2003", "entity_f1")
    duie_f1, duie_p = metric("train_triples", "duie", "triple_f1"), metric("train_triples", "duie", "triple_precision")
    md = [
        "# No-model baselines",
        "",
        "```",
        cmd,
        "```",
        "",
        "Built from each dataset's **training split only** (`instructie.evaluation.baselines.build_baselines`), "
        "scored on its test split with the package's scorers (`instructie.evaluation.scoring.score_all`, the same "
        "as model predictions). " + (
            f"Splits: the train and test lists of `{a.config}` (`instructie.evaluation.baselines.splits_from_config`). "
            if a.config else
            "Splits: `instructie.evaluation.baselines.shared_splits(data_dir)`; reuse it so a model is scored on exactly "
            "these test records (they are the records configs/multitask-small.yaml trains and tests on). ")
        + "Generated by the command above "
        "(seconds on a CPU); do not edit by hand.",
        "",
        "## Headline (the metric `instructie.evaluation.evaluate.HEADLINE` names)",
        "",
    ]
    head_rows = []
    for name, summ in res["summary"].items():
        for key, v in summ.items():
            ds, task, metric = key.split("/")
            if metric == HEADLINE.get(task):
                head_rows.append((ds, task, metric, name, f"{v:.4f}"))
    md.append(md_table(("dataset", "task", "metric", "baseline", "value"), sorted(head_rows)))
    md += ["", "## Splits", ""]
    md.append(md_table(("dataset", "train records", "test records", "test texts also in train", "split"),
                       [(n, len(tr), len(te), leaks[n], SPLIT_NOTES.get(n, "")) for n, (tr, te) in splits.items()]))
    md += ["", "## Scores per dataset", "",
           "P / R / F1 are micro over the metric's items; `support` = gold items; accuracy, macro_f1 and "
           "the competition score are single values (column F1/value).", ""]
    for (ds, task), rs in sorted(groups.items()):
        md += [f"### {ds} ({task})", ""]
        md.append(md_table(("baseline", "metric", "P", "R", "F1/value", "support"),
                           [(r[2], r[3], r[4], r[5], r[6], r[7]) for r in sorted(rs, key=lambda r: r[2])]))
        md.append("")
    md += [
        "## What each baseline does",
        "",
        "- **dictionary** (NER): every training span with its most frequent type; over the text, longest "
        "match first (ties leftmost), non-overlapping; English matches only on word boundaries (\"US\" "
        "is not found in \"USA\"), Chinese anywhere; only types among the record's options.",
        "- **conll_dictionary** (CrossNER, zero-shot comparison): the same dictionary built from CoNLL2003's "
        "training split only. Its types (person, organization, location, miscellaneous) are CrossNER types "
        "too, but CrossNER splits them finer (country, researcher, university, conference, writer, ...), so "
        "CoNLL's most frequent type for a name is often not CrossNER's.",
        "- **train_triples** (DuIE): every training triple (with its most frequent slot set) whose head and "
        "tail both occur in the text.",
        "- **trigger_dictionary** (DuEE): the dictionary over training triggers and their most frequent event "
        "type; no arguments, so the argument metrics are 0.",
        "- **majority** (FewRel): the most frequent training relation (all seen relations have 560 training "
        "instances, so the tie goes to the alphabetically first: accuracy = 1/11). **pair_memory**: the most "
        "frequent relation of the same (head, tail) text pair in training, else majority. **entity_memory**: "
        "pair, then tail text alone, then head text alone, then majority.",
        "- **all_candidates** (fin_negative): every candidate is a key entity. **longest_candidate**: the "
        "longest candidate of every text with candidates. **non_nested_candidates**: every candidate not "
        "contained in a longer candidate. All three call every text with candidates negative.",
        "",
        "## Notes",
        "",
        "- fin_negative has one labeled file, so its test part is carved from it (see Splits); "
        f"{leaks.get('fin_negative', 0)} test texts also occur verbatim in its train part (the competition "
        "data repeats texts).",
        "- FewRel: only the 11 seen relations (val_wiki's 16 minus the 5 held out as unseen). The unseen "
        "relations (the config's `fewrel_unseen` test set) have no training data, so no baseline here "
        "applies to them; chance with their 5 options is 0.2 accuracy.",
        "- \"test texts also in train\": test records whose text occurs verbatim in the train split "
        "(CoNLL2003 repeats short lines such as \"Scorers :\" or a bare country name; FewRel reuses sentences with another head/tail pair).",
        f"- CoNLL2003 `dictionary` scores {conll:.2f} F1 here; t5-training-facts.md reports 0.59 for the same "
        "idea measured elsewhere (its exact matching rules are not recorded). DuIE `train_triples` here: "
        f"F1 {duie_f1:.2f}, precision {duie_p:.2f} (that note: 0.15, 0.67).",
    ]
    if res["skipped"]:
        md += ["", "No baseline: " + "; ".join(f"{k} ({v})" for k, v in res["skipped"].items())]
    (out / "BASELINES.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(res["table"])
    print(f"\nwrote {out / 'BASELINES.md'} and {out / 'baselines.json'} ({secs:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
