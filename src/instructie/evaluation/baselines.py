"""No-model baselines, built from training records only and scored with the same scorers.

What a model has to beat. Every baseline reads only what the model's prompt gives it:
the text, the language, the options, and for RC the head and tail entities (the
gold record's relation label is the answer and is never read). Nothing is learned
from test records.

Baselines per task (names as they appear in reports):

* NER ``dictionary``: every training span (its text) with its most frequent type
  (ties: alphabetical). Over a text, every occurrence of a dictionary span is a
  candidate; candidates are taken **longest first** (ties: leftmost), skipping any
  that overlap one already taken, and returned in text order. For space-delimited
  languages a match must sit on word boundaries (no letter/digit on both sides of
  either edge: "US" is not found inside "USA"); for ``language == "zh"`` anywhere.
  Only types among the record's options are predicted (a span whose types are all
  outside them is not a candidate), as a model is asked only for those.
  ``conll_dictionary``: the same, built from CoNLL2003's training split, for the
  CrossNER datasets (the zero-shot comparison; see ``TRANSFER``).
* RE ``train_triples``: every training triple (head, relation, tail; with its most
  frequent slot set) whose head and tail both occur in the text. Offsets by
  ``offsets.ground``; a slot value not in the text makes the item unsupported
  (still predicted, it scores as the scorers decide).
* RC ``majority``: the most frequent training relation among the options.
  ``pair_memory``: the most frequent training relation of the same (head text,
  tail text) pair, else ``majority``. ``entity_memory``: backs off further, pair,
  then the tail text alone, then the head text alone (most frequent relation seen
  with it in training), then ``majority``.
* EE ``trigger_dictionary``: the NER dictionary over training triggers and their
  event types; events without arguments.
* NEG ``all_candidates``: every candidate is a key entity (the text is negative
  whenever it has one). ``longest_candidate``: the longest candidate (ties: first
  listed) for every text that has candidates. ``non_nested_candidates``: every
  candidate that is not part of a longer candidate ("小资钱包" is dropped when
  "????小资钱包" is a candidate too), the competition's well-known first rule.

API::

    build_baselines(train_records, targets=None) -> {(dataset, task): {name: fn(Record) -> Prediction}}
    score_baselines(golds, train) -> {"scores", "summary", "table", "skipped"}
    score_built_baselines(golds, built) -> the same, from build_baselines output
    answer_once(built) -> the same baselines, each answering a record once however often asked
    shared_splits(data_dir) -> {name: (train_records, test_records)}
    splits_from_config(config_path) -> the same, from a training config's train/test lists

``shared_splits`` is where the baseline evaluation (eval/baselines.py) picks its train
and test records; it reads the data as configs/multitask-small.yaml does (same records,
ids and texts), so model runs and baselines score exactly the same test records.
"""
from __future__ import annotations

import fnmatch
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .gold import read_gold
from .scoring import summarize
from ..core.io import SkipCounter
from ..prompts.offsets import ground
from ..core.records import MAIN_TASKS, Argument, Entity, Event, Record, Relation
from .scoring import Prediction, score_all
from ..prompts.targets import ParseResult
from ..data.dictionary import SpanDictionary, first_allowed, ranked

Baseline = Callable[[Record], Prediction]

# Cross-dataset baselines: (target dataset pattern, task, source dataset, baseline name).
# The source's training records build a baseline for every target dataset matching the
# pattern (CrossNER is evaluated zero-shot after training on CoNLL2003).
TRANSFER: tuple[tuple[str, str, str, str], ...] = (("CrossNER*", "NER", "CoNLL2003", "conll_dictionary"),)

# Names of the baselines each main task gets from its own training records.
NAMES = {"NER": ("dictionary",), "RE": ("train_triples",), "RC": ("majority", "pair_memory", "entity_memory"),
         "EE": ("trigger_dictionary",), "NEG": ("all_candidates", "longest_candidate", "non_nested_candidates")}


# ---------------------------------------------------------------- baselines
def ner_dictionary(train: Sequence[Record]) -> Baseline:
    d = SpanDictionary.from_pairs((e.text, e.label) for r in train for e in r.entities)

    def predict(rec: Record) -> Prediction:
        return Prediction(entities=[Entity(lab, rec.text[s:e], s, e)
                                    for s, e, lab in d.match(rec.text, rec.language, rec.options)])
    predict.size = len(d)  # type: ignore[attr-defined]
    return predict


def trigger_dictionary(train: Sequence[Record]) -> Baseline:
    d = SpanDictionary.from_pairs((ev.trigger.text, ev.type) for r in train for ev in r.events)

    def predict(rec: Record) -> Prediction:
        return Prediction(events=[Event(lab, Entity(lab, rec.text[s:e], s, e), ())
                                  for s, e, lab in d.match(rec.text, rec.language, rec.options)])
    predict.size = len(d)  # type: ignore[attr-defined]
    return predict


def train_triples(train: Sequence[Record]) -> Baseline:
    # (head, relation, tail) -> slot sets seen with it; keep the most frequent one.
    variants: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for r in train:
        for rel in r.relations:
            slots = tuple((a.role, a.text) for a in rel.slots)
            variants[rel.head.text, rel.label, rel.tail.text][slots] += 1
    by_head: dict[str, list[tuple[str, str, tuple]]] = defaultdict(list)
    for (h, lab, t), c in sorted(variants.items()):
        slots = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        by_head[h].append((lab, t, slots))

    def predict(rec: Record) -> Prediction:
        allowed = set(rec.options)
        rels = []
        for h, rows in by_head.items():
            if h and h in rec.text:
                for lab, t, slots in rows:
                    if t and t in rec.text and (not allowed or lab in allowed):
                        rels.append(Relation(Entity("", h), lab, Entity("", t),
                                             tuple(Argument(role, v) for role, v in slots)))
        return Prediction.from_grounded(ground(ParseResult(relations=rels), rec.text, rec.task))
    predict.size = sum(map(len, by_head.values()))  # type: ignore[attr-defined]
    return predict


def _pair(rec: Record) -> tuple[str, str] | None:
    """The RC prompt's (head text, tail text): inputs, not the label."""
    if not rec.relations:
        return None
    r = rec.relations[0]
    return r.head.text, r.tail.text


def rc_majority(train: Sequence[Record]) -> Baseline:
    labels = ranked(Counter(rel.label for r in train for rel in r.relations))

    def predict(rec: Record) -> Prediction:
        lab = first_allowed(labels, rec.options)
        return Prediction(labels=[lab] if lab else [])
    return predict


def _memory(train: Sequence[Record], keys: Sequence[Callable[[str, str], object]]) -> Baseline:
    """The most frequent training relation for the first key (of head, tail text) seen
    in training with an allowed relation; else ``majority``."""
    majority = rc_majority(train)
    tables: list[dict] = []
    for key in keys:
        counts: dict = defaultdict(Counter)
        for r in train:
            for rel in r.relations:
                counts[key(rel.head.text, rel.tail.text)][rel.label] += 1
        tables.append({k: ranked(c) for k, c in counts.items()})

    def predict(rec: Record) -> Prediction:
        pair = _pair(rec)
        if pair is not None:
            for key, table in zip(keys, tables):
                k = key(*pair)
                lab = first_allowed(table[k], rec.options) if k in table else None
                if lab:
                    return Prediction(labels=[lab])
        return majority(rec)
    predict.size = len(tables[0])  # type: ignore[attr-defined]
    return predict


def rc_pair_memory(train: Sequence[Record]) -> Baseline:
    return _memory(train, [lambda h, t: (h, t)])


def rc_entity_memory(train: Sequence[Record]) -> Baseline:
    return _memory(train, [lambda h, t: (h, t), lambda h, t: t, lambda h, t: h])


def neg_all_candidates(train: Sequence[Record]) -> Baseline:
    def predict(rec: Record) -> Prediction:
        return Prediction(labels=list(rec.options))
    return predict


def neg_longest_candidate(train: Sequence[Record]) -> Baseline:
    def predict(rec: Record) -> Prediction:
        if not rec.options:
            return Prediction()
        return Prediction(labels=[max(rec.options, key=len)])  # max keeps the first of equals
    return predict


def neg_non_nested_candidates(train: Sequence[Record]) -> Baseline:
    def predict(rec: Record) -> Prediction:
        return Prediction(labels=[c for c in rec.options if not any(c != o and c in o for o in rec.options)])
    return predict


BUILDERS: dict[str, dict[str, Callable[[Sequence[Record]], Baseline]]] = {
    "NER": {"dictionary": ner_dictionary},
    "RE": {"train_triples": train_triples},
    "RC": {"majority": rc_majority, "pair_memory": rc_pair_memory, "entity_memory": rc_entity_memory},
    "EE": {"trigger_dictionary": trigger_dictionary},
    "NEG": {"all_candidates": neg_all_candidates, "longest_candidate": neg_longest_candidate,
            "non_nested_candidates": neg_non_nested_candidates},
}


def build_baselines(train_records: Sequence[Record], targets: Iterable[tuple[str, str]] | None = None,
                    transfer: Sequence[tuple[str, str, str, str]] = TRANSFER) -> dict[tuple[str, str], dict[str, Baseline]]:
    """{(dataset, task): {name: record -> Prediction}} from training records only.

    Every (dataset, task) of the training records gets its task's baselines
    (auxiliary-task records are ignored). ``transfer`` adds cross-dataset baselines
    (see ``TRANSFER``) for each matching dataset among the training records and
    ``targets`` (the (dataset, task) groups to be scored), whether or not that
    dataset has training records of its own.
    """
    by_key: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in train_records:
        if r.task in MAIN_TASKS:
            by_key[r.dataset, r.task].append(r)
    out: dict[tuple[str, str], dict[str, Baseline]] = {}
    for (ds, task), recs in sorted(by_key.items()):
        out[ds, task] = {name: build(recs) for name, build in BUILDERS[task].items()}
    keys = set(by_key) | set(targets or ())
    for pattern, task, source, name in transfer:
        if (source, task) not in by_key:
            continue
        built = None
        for ds, t in sorted(keys):
            if t == task and ds != source and fnmatch.fnmatchcase(ds, pattern):
                built = built or BUILDERS[task][NAMES[task][0]](by_key[source, task])
                out.setdefault((ds, t), {})[name] = built
    return out


def answer_once(base: dict[tuple[str, str], dict[str, Baseline]]) -> dict[tuple[str, str], dict[str, Baseline]]:
    """``base`` with each baseline remembering its answer per record object, for a caller that asks
    about the same records twice (the baseline table, then a bootstrap against the best baseline):
    a dictionary matcher over a full test split is the slow part of both."""
    def remembered(fn: Baseline) -> Baseline:
        seen: dict[int, tuple[Record, Prediction]] = {}  # id -> (record kept alive so its id stays its own, answer)

        def answer(rec: Record) -> Prediction:
            hit = seen.get(id(rec))
            if hit is None or hit[0] is not rec:
                hit = seen[id(rec)] = (rec, fn(rec))
            return hit[1]
        return answer
    return {key: {name: remembered(fn) for name, fn in fns.items()} for key, fns in base.items()}


def load_train(train: Sequence[str | Path | Record]) -> list[Record]:
    """Training Records as given, or read from converted JSONL files."""
    out: list[Record] = []
    for t in train:
        if isinstance(t, Record):
            out.append(t)
        else:
            out += [rec for rec, _ in read_gold(str(t), SkipCounter(False))]
    return out


def score_baselines(golds: Sequence[Record], train: Sequence[str | Path | Record]) -> dict:
    """Score every applicable baseline on ``golds``.

    ``train``: training Records, or paths of converted JSONL files (``instructie
    convert`` output). Training data is matched to gold by (dataset, task). Returns
    ``{"scores": {name: Report.to_json()}, "summary": {name: summarize(report)},
    "table": str, "skipped": {"dataset/task": why}}``; a baseline's report covers every
    gold group that has it (``dictionary``: each NER dataset with training data).
    """
    return score_built_baselines(golds, build_baselines(load_train(train), targets={(g.dataset, g.task) for g in golds}))


def score_built_baselines(golds: Sequence[Record], base: dict[tuple[str, str], dict[str, Baseline]]) -> dict:
    """``score_baselines`` with the baselines already built (``build_baselines``), for a caller that
    uses them again (a bootstrap against the best one)."""
    keys = {(g.dataset, g.task) for g in golds}
    names = sorted({n for k, fns in base.items() if k in keys for n in fns})
    scores, summary, reports = {}, {}, {}
    for name in names:
        gs = [g for g in golds if name in base.get((g.dataset, g.task), {})]
        preds = [base[g.dataset, g.task][name](g) for g in gs]
        rep = score_all(gs, preds)
        reports[name] = rep
        scores[name], summary[name] = rep.to_json(), summarize(rep)
    skipped = {}
    for ds, task in sorted({(g.dataset, g.task) for g in golds}):
        if task not in MAIN_TASKS:
            skipped[f"{ds}/{task}"] = "auxiliary task: no baseline"
        elif not base.get((ds, task)):
            skipped[f"{ds}/{task}"] = "no training records of this dataset and task"
    return {"scores": scores, "summary": summary, "table": baseline_table(reports, skipped), "skipped": skipped}


# ---------------------------------------------------------------- tables
# Rows shown per task: (metric key prefix or extra key, shown as).
TABLE_METRICS = {
    "NER": ["entity"], "RE": ["triple", "triple_no_slots"],
    "EE": ["trigger_id", "trigger_cls", "arg_id", "arg_cls"],
    "RC": ["accuracy", "macro_f1"], "NEG": ["competition", "negative", "entity"],
}


def table_rows(name: str, rep) -> list[tuple[str, ...]]:
    """(dataset, task, baseline, metric, P, R, F1/value, support, records) per metric."""
    rows = []
    for s in rep.scores:
        vals = s.values()
        for m in TABLE_METRICS.get(s.task, list(s.metrics)):
            if m in s.extra:
                rows.append((s.dataset, s.task, name, m, "", "", f"{s.extra[m]:.4f}", "", str(s.n_records)))
            elif m in s.metrics:
                c = s.metrics[m]
                rows.append((s.dataset, s.task, name, m, f"{c.precision:.4f}", f"{c.recall:.4f}",
                             f"{c.f1:.4f}", str(c.support), str(s.n_records)))
        if s.task == "NEG":  # the competition's two parts
            for k in ("competition_f1_sentiment", "competition_f1_entity"):
                if k in vals:
                    rows.append((s.dataset, s.task, name, k, "", "", f"{vals[k]:.4f}", "", str(s.n_records)))
    return rows


HEAD = ("dataset", "task", "baseline", "metric", "P", "R", "F1/value", "support", "records")


def baseline_table(reports: dict, skipped: dict[str, str] | None = None) -> str:
    from .scoring import _width

    rows = sorted((r for name, rep in reports.items() for r in table_rows(name, rep)),
                  key=lambda r: (r[0], r[1], r[2]))
    if not rows:
        body = "(no baseline applies: no training records match the gold datasets and tasks)"
    else:
        widths = [max(_width(r[i]) for r in [HEAD, *rows]) for i in range(len(HEAD))]

        def fmt(r):
            return "  ".join((" " * (w - _width(v)) + v) if i >= 4 else (v + " " * (w - _width(v)))
                             for i, (v, w) in enumerate(zip(r, widths))).rstrip()
        body = "\n".join([fmt(HEAD), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)])
    if skipped:
        body += "\n" + "\n".join(f"no baseline for {k}: {v}" for k, v in skipped.items())
    return body


# ---------------------------------------------------------------- shared splits
IE_DATASETS = ("CoNLL2003", "CrossNER_AI", "CrossNER_literature", "DuEE")
FIN_HOLDOUT = 0.2  # fin_negative: the adapter's ``holdout`` (rows chosen by a hash of the id)
FIN_MAX_CHARS = 200  # as configs/multitask-small.yaml reads it (the texts only; NEG baselines ignore them)


def shared_splits(data_dir: str | Path, *, skip_invalid: bool = False, fewrel_unseen: int = 5,
                  fin_holdout: float = FIN_HOLDOUT, fin_max_chars: int = FIN_MAX_CHARS,
                  ) -> dict[str, tuple[list[Record], list[Record]]]:
    """{name: (train records, test records)} of the shared data, for baselines and models alike.

    Read as configs/multitask-small.yaml reads them (same adapter calls, so the same
    record ids and texts):

    * CoNLL2003, CrossNER_AI, CrossNER_literature, DuEE: ``ie_instructions`` splits
      train / test (DuEE's are parts of the published dev set, see SOURCES.md).
    * duie: train = duie_train.json, test = duie_dev.json, schema duie_schema.json.
    * fewrel: val_wiki.json with pid2name.json, ``unseen_relations=5`` (``fewrel_unseen``),
      ``part="seen"``, ``instance_split`` train vs test (the adapter's seeded 80/20 per
      relation, seed 0).
    * fin_negative: Train_Data.csv, the only labeled file, split by the adapter's
      ``holdout=0.2`` (a hash of the row id): ``part="train"`` vs ``part="heldout"``.

    Names are the records' ``dataset``. Datasets whose files are missing are left out.
    For a training config's own train/test lists use ``splits_from_config``.
    """
    from instructie.data_adapters import get_adapter

    d = Path(data_dir)
    out: dict[str, tuple[list[Record], list[Record]]] = {}

    def read(name, path, **kw):
        split = kw.pop("split", "")
        return list(get_adapter(name)(str(path), split=split, on_error=SkipCounter(skip_invalid), **kw))

    ie = d / "ie_instructions"
    if ie.is_dir():
        for ds in IE_DATASETS:
            tr = read("ie_instructions", ie, split="train", datasets=[ds])
            te = read("ie_instructions", ie, split="test", datasets=[ds])
            if tr or te:
                out[ds] = (tr, te)
    duie = d / "duie"
    if (duie / "duie_train.json").is_file() and (duie / "duie_dev.json").is_file():
        schema = str(duie / "duie_schema.json")
        out["duie"] = (read("duie", duie / "duie_train.json", schema=schema),
                       read("duie", duie / "duie_dev.json", schema=schema))
    fr = d / "fewrel"
    if (fr / "val_wiki.json").is_file():
        opts = dict(pid2name=str(fr / "pid2name.json"), unseen_relations=fewrel_unseen, part="seen")
        out["fewrel"] = (read("fewrel", fr / "val_wiki.json", instance_split="train", **opts),
                         read("fewrel", fr / "val_wiki.json", instance_split="test", **opts))
    fin = d / "fin_negative" / "Train_Data.csv"
    if fin.is_file():
        opts = dict(holdout=fin_holdout, max_chars=fin_max_chars)
        out["fin_negative"] = (read("fin_negative", fin, part="train", **opts),
                               read("fin_negative", fin, part="heldout", **opts))
    return out


def splits_from_config(config: str | Path, overrides: Sequence[str] = (), *, skip_invalid: bool = False,
                       ) -> dict[str, tuple[list[Record], list[Record]]]:
    """{dataset: (train records, test records)} from a training config's ``data.train`` and
    ``data.test`` lists (adapter options, ``name`` renames and ``max_records`` caps applied
    exactly as training and its final test do), so baselines score the model's test set."""
    from ..config import load_config
    from ..data.sources import load_records

    cfg = load_config(config, list(overrides))
    out: dict[str, tuple[list[Record], list[Record]]] = {}
    for part, entries in ((0, cfg.data.train), (1, cfg.data.test)):
        for ds in entries:
            for r in load_records(ds, skip_invalid=skip_invalid):
                out.setdefault(r.dataset, ([], []))[part].append(r)
    return out
