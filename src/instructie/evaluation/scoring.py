"""Scorers: gold ``Record``s against ``Prediction``s, micro P/R/F1 with per-label rows.

Input: ``golds[i]`` (a Record, its ``task`` decides the scorer) and ``preds[i]`` (a
``Prediction``: the model's items for that record, normally ``Prediction.from_grounded``).

Semantics shared by every scorer:

* Items are compared per record as **multisets**: a prediction repeated counts once as
  TP and then as FP -- except a located mention or event repeated exactly, which
  ``Prediction`` keeps once (``without_duplicates``). Empty gold and empty prediction contribute nothing (no "None =
  None" true positive).
* **Span keys.** Where a gold and a predicted span both have offsets they match on
  offsets (+ label); otherwise (either side unlocated, e.g. a DuIE object not in its
  sentence, or an unsupported prediction) on text (+ label). A located prediction never
  matches a located gold by text alone. ``spans="text"`` matches on text throughout.
* P = tp/(tp+fp), R = tp/(tp+fn), F1 = 2PR/(P+R); each is **0.0 when its denominator is
  0** (no support, no predictions), as seqeval's ``zero_division=0``. ``support`` (= tp+fn)
  says when a 0 means "nothing to find".

Metrics per task (name: key):

* NER, ET ``entity``: (span, type).  ES ``span``: span.
* RE, EPR ``triple``: (head text, relation, tail text, slot set) — DuIE's rule, a
  complex object counts only with all its slots; ``triple_no_slots``: the plain triple.
  EP ``pair``: (head text, tail text). Relations score on text, as DuIE does.
* EE ``trigger_id`` (trigger span), ``trigger_cls`` (+ type), ``arg_id`` (type, argument
  span), ``arg_cls`` (type, role, argument span). EET: the trigger metrics. EEA: the
  argument metrics without the type (one prompted event per record).
* RC ``label`` (per-label P/R/F1) + ``accuracy`` (records whose answer is exactly the
  gold label; no answer is wrong) and ``macro_f1`` (over gold ∪ predicted labels).
* NEG ``entity`` (chosen key entities, text), ``negative`` (document-level: any key
  entity), + ``competition`` from ``evaluation.competition.competition_score`` if
  that exists.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..core.records import Entity, Event, Record, Relation

if TYPE_CHECKING:
    from ..prompts.offsets import Grounded
    from ..prompts.targets import ParseResult

# An item to match: (label for per-label rows, offset key or None, text key).
Item = tuple[str, Any, tuple]


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, o: "Counts") -> "Counts":
        self.tp, self.fp, self.fn = self.tp + o.tp, self.fp + o.fp, self.fn + o.fn
        return self

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "tp": self.tp, "fp": self.fp, "fn": self.fn, "support": self.support}


@dataclass
class Prediction:
    """What the model produced for one gold record (items carry offsets where found)."""
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # RC relation / NEG key entities
    dropped: Counter = field(default_factory=Counter)  # parser drops, reason -> count
    n_unsupported: int = 0  # items whose spans are not in the text (included above)
    n_truncated: int = 0  # prompts for this record cut to the model's max source length

    @classmethod
    def from_grounded(cls, g: Grounded, dropped: Counter | None = None) -> "Prediction":
        """From ``offsets.Grounded``: supported *and* unsupported items (the latter
        unlocated, so they score as false positives unless gold is unlocated too)."""
        extra = [u.item for u in g.unsupported]
        return cls([*g.entities, *(x for x in extra if isinstance(x, Entity))],
                   [*g.relations, *(x for x in extra if isinstance(x, Relation))],
                   [*g.events, *(x for x in extra if isinstance(x, Event))],
                   list(g.labels), Counter(dropped or {}), len(g.unsupported)).without_duplicates()

    @classmethod
    def from_parse(cls, r: ParseResult) -> "Prediction":
        """From ``targets.ParseResult`` without grounding: everything scores on text."""
        return cls(list(r.entities), list(r.relations), list(r.events), list(r.labels),
                   Counter(r.dropped)).without_duplicates()

    def without_duplicates(self) -> "Prediction":
        """Identical located entities and events kept once (counted as dropped "duplicate").

        A repeated answer item stands for a repeated mention and grounding gives it the next
        occurrence of its text; one repeated more often than its text occurs (a generation
        loop: "Sgorlon | person" four times) is located on a mention it already has. Gold
        never lists a mention twice, so the copies could only count as false positives twice
        over. Unlocated (unsupported) items stay as they are: each is a claim of its own."""
        out = []
        for items in (self.entities, self.events):
            seen, kept = set(), []
            for x in items:
                located = (x.start is not None) if isinstance(x, Entity) else (
                    x.trigger.start is not None and all(a.start is not None for a in x.arguments))
                if not located:
                    kept.append(x)
                    continue
                # an event's arguments are a set: the same event written with them reordered is a repeat
                key = x if isinstance(x, Entity) else (x.type, x.trigger, tuple(sorted(
                    x.arguments, key=lambda a: (a.role, a.start, a.end, a.text))))
                if key in seen:
                    self.dropped["duplicate"] += 1
                    continue
                seen.add(key)
                kept.append(x)
            out.append(kept)
        self.entities, self.events = out
        return self


# ---------------------------------------------------------------- matching
def _match(gold: list[Item], pred: list[Item]) -> dict[str, Counts]:
    """Per-label counts for one record: offsets where both sides have them, else text."""
    out: dict[str, Counts] = defaultdict(Counts)
    for lab, _, _ in gold:
        out[lab].fn += 1
    for lab, _, _ in pred:
        out[lab].fp += 1

    def hit(lab: str, n: int) -> None:
        c = out[lab]
        c.tp, c.fp, c.fn = c.tp + n, c.fp - n, c.fn - n

    # Stage 1: located vs located, on offsets. Leftovers keep their text keys.
    go, po = defaultdict(list), defaultdict(list)
    gn, pn = Counter(), Counter()  # (label, text key) of unlocated items
    for it, by_off, unloc in ((gold, go, gn), (pred, po, pn)):
        for lab, off, txt in it:
            if off is None:
                unloc[lab, txt] += 1
            else:
                by_off[lab, off].append(txt)
    gl, pl = Counter(), Counter()  # located leftovers
    for k in go.keys() | po.keys():
        g, p = go.get(k, []), po.get(k, [])
        n = min(len(g), len(p))
        if n:
            hit(k[0], n)
        gl.update((k[0], t) for t in g[n:])
        pl.update((k[0], t) for t in p[n:])
    # Stage 2, on text, where at least one side is unlocated. Located leftovers can
    # only pair with unlocated items, so match those first (maximum matching).
    for a, b in ((gn, pl), (gl, pn), (gn, pn)):
        m = a & b
        for (lab, _), n in m.items():
            hit(lab, n)
        a.subtract(m)
        b.subtract(m)
    return out


def _span(x) -> tuple[int, int] | None:
    return None if x.start is None or x.end is None else (x.start, x.end)


def _off(span, *key) -> tuple | None:
    return None if span is None else (*key, span)


# Item builders: (gold Record or Prediction) -> items. Gold and prediction share them.
def _entities(x, typed: bool = True) -> list[Item]:
    return [(e.label if typed else "", _off(_span(e), e.label if typed else ""),
             (e.label if typed else "", e.text)) for e in x.entities]


def _triples(x, slots: bool = True) -> list[Item]:
    def sl(r):
        return tuple(sorted((a.role, a.text) for a in r.slots)) if slots else ()
    return [(r.label, None, (r.head.text, r.label, r.tail.text, sl(r))) for r in x.relations]


def _pairs(x) -> list[Item]:
    # a pair in two relations is one pair (EP asks which pairs are related)
    return [("", None, p) for p in dict.fromkeys((r.head.text, r.tail.text) for r in x.relations)]


def _triggers(x, typed: bool) -> list[Item]:
    out = []
    for e in x.events:
        t = e.type if typed else ""
        out.append((t, _off(_span(e.trigger), t), (t, e.trigger.text)))
    return out


def _args(x, role: bool, typed: bool = True) -> list[Item]:
    out = []
    for e in x.events:
        t = e.type if typed else ""
        for a in e.arguments:
            r = a.role if role else ""
            out.append((r if role else t, _off(_span(a), t, r), (t, r, a.text)))
    return out


def _labels(x) -> list[Item]:
    got = x.labels if isinstance(x, Prediction) else [r.label for r in x.relations]
    return [(lab, None, (lab,)) for lab in got]


def _neg_entities(x) -> list[Item]:
    got = x.labels if isinstance(x, Prediction) else [e.text for e in x.entities]
    return [("", None, (t,)) for t in got]


def _negative(x) -> list[Item]:
    has = bool(x.labels) if isinstance(x, Prediction) else bool(x.entities)
    return [("", None, ("negative",))] if has else []


METRICS: dict[str, dict[str, Callable[[Any], list[Item]]]] = {
    "NER": {"entity": _entities},
    "ET": {"entity": _entities},
    "ES": {"span": lambda x: _entities(x, typed=False)},
    "RE": {"triple": _triples, "triple_no_slots": lambda x: _triples(x, slots=False)},
    "EPR": {"triple": _triples, "triple_no_slots": lambda x: _triples(x, slots=False)},
    "EP": {"pair": _pairs},
    "EE": {"trigger_id": lambda x: _triggers(x, False), "trigger_cls": lambda x: _triggers(x, True),
           "arg_id": lambda x: _args(x, False), "arg_cls": lambda x: _args(x, True)},
    "EET": {"trigger_id": lambda x: _triggers(x, False), "trigger_cls": lambda x: _triggers(x, True)},
    "EEA": {"arg_id": lambda x: _args(x, False, False), "arg_cls": lambda x: _args(x, True, False)},
    "RC": {"label": _labels},
    "NEG": {"entity": _neg_entities, "negative": _negative},
}


# ---------------------------------------------------------------- scoring
@dataclass
class TaskScore:
    dataset: str
    task: str
    n_records: int = 0
    metrics: dict[str, Counts] = field(default_factory=dict)  # metric -> micro counts
    per_label: dict[str, dict[str, Counts]] = field(default_factory=dict)  # metric -> label -> counts
    extra: dict[str, float] = field(default_factory=dict)  # accuracy, macro_f1, competition
    dropped: Counter = field(default_factory=Counter)
    n_unsupported: int = 0
    n_truncated: int = 0  # prompts cut to max_source_length (their end -- hint, 'Answer:' -- unseen)

    def values(self) -> dict[str, float]:
        """Flat {metric: value}: ``entity_f1``, ``entity_precision``, ``entity_tp``, ..."""
        out: dict[str, float] = {}
        for m, c in self.metrics.items():
            out.update({f"{m}_{k}": v for k, v in c.as_dict().items()})
        out.update(self.extra)
        return out

    def labels(self) -> dict[str, dict[str, dict[str, float]]]:
        """{metric: {label: {precision, recall, f1, tp, fp, fn, support}}}"""
        return {m: {lab: c.as_dict() for lab, c in sorted(d.items())} for m, d in self.per_label.items()}

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "task": self.task, "records": self.n_records,
                "metrics": self.values(), "per_label": self.labels(),
                "dropped": dict(self.dropped), "unsupported": self.n_unsupported,
                "truncated_prompts": self.n_truncated}


def score_task(golds: Sequence[Record], preds: Sequence[Prediction], task: str | None = None,
               dataset: str = "", *, spans: str = "offsets") -> TaskScore:
    """Score records of one task (``task`` defaults to the golds' own).

    ``spans="offsets"`` (default): spans match on offsets where both sides have them;
    ``"text"``: always on text (multiset), as DuIE/DuEE's official scripts do, so a
    correct string never loses to an ambiguous grounding.
    """
    if spans not in ("offsets", "text"):
        raise ValueError(f"spans must be 'offsets' or 'text', not {spans!r}")
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold records but {len(preds)} predictions")
    task = task or (golds[0].task if golds else "NER")
    if task not in METRICS:
        raise ValueError(f"no scorer for task {task!r}")
    ts = TaskScore(dataset or (golds[0].dataset if golds else ""), task, len(golds))
    for m in METRICS[task]:
        ts.metrics[m], ts.per_label[m] = Counts(), defaultdict(Counts)
    exact = 0
    for g, p in zip(golds, preds):
        ts.dropped.update(p.dropped)
        ts.n_unsupported += p.n_unsupported
        ts.n_truncated += p.n_truncated
        for m, items in METRICS[task].items():
            gi, pi = items(g), items(p)
            if spans == "text":
                gi, pi = [(a, None, c) for a, _, c in gi], [(a, None, c) for a, _, c in pi]
            for lab, c in _match(gi, pi).items():
                ts.metrics[m] += c
                ts.per_label[m][lab] += c
        if task == "RC":
            gl = Counter(_labels(g))  # a record without a gold label is never "correct"
            exact += bool(gl) and gl == Counter(_labels(p))
    for m in ts.per_label:  # per-label rows only where labels mean something
        ts.per_label[m] = {lab: c for lab, c in ts.per_label[m].items() if lab}
    if task == "RC":
        ts.extra["accuracy"] = exact / len(golds) if golds else 0.0
        rows = ts.per_label["label"].values()
        ts.extra["macro_f1"] = sum(c.f1 for c in rows) / len(rows) if rows else 0.0
    if task == "NEG":
        cs = _competition(golds, preds)
        ts.extra.update({"competition": cs["score"], "competition_f1_sentiment": cs["f1_sentiment"],
                         "competition_f1_entity": cs["f1_entity"]})
    return ts


def _competition(golds: Sequence[Record], preds: Sequence[Prediction]) -> dict:
    """The BDCI 2019 score (definition and source: competition.py)."""
    from .competition import competition_score
    return competition_score(*_competition_maps(golds, preds))


def competition_counts(golds: Sequence[Record], preds: Sequence[Prediction]) -> tuple[int, ...]:
    """The sums the BDCI 2019 score is made of (``competition.competition_counts``)."""
    from .competition import competition_counts as counts
    return counts(*_competition_maps(golds, preds))


def _competition_maps(golds: Sequence[Record], preds: Sequence[Prediction]) -> tuple[dict, dict]:
    """Gold and predicted (negative flag, key entities) per text, in the competition's format.
    A text is negative iff it has a key entity, for gold and prediction alike."""
    def as_map(items):
        return {k: (int(bool(keys)), set(keys)) for k, keys in items}

    gold = as_map((f"{i}:{g.id}", [e.text for e in g.entities]) for i, g in enumerate(golds))
    pred = as_map((f"{i}:{g.id}", list(p.labels)) for i, (g, p) in enumerate(zip(golds, preds)))
    return gold, pred


# ---------------------------------------------------------------- report
@dataclass
class Report:
    scores: list[TaskScore] = field(default_factory=list)

    def get(self, dataset: str, task: str) -> TaskScore:
        for s in self.scores:
            if (s.dataset, s.task) == (dataset, task):
                return s
        raise KeyError((dataset, task))

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self.scores]

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2)


# Span matching per task for spans="auto": entity tasks on offsets (and seqeval agrees);
# event tasks on text, as DuEE's official script does, so that a trigger written twice in
# a sentence is not lost to an ambiguous grounding of gold or prediction.
AUTO_SPANS = {"EE": "text", "EET": "text", "EEA": "text"}


def score_all(golds: Sequence[Record], preds: Sequence[Prediction], *, spans: str = "auto") -> Report:
    """Group aligned (gold, prediction) pairs by (dataset, task) and score each group."""
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold records but {len(preds)} predictions")
    groups: dict[tuple[str, str], tuple[list, list]] = {}
    for g, p in zip(golds, preds):
        gs, ps = groups.setdefault((g.dataset, g.task), ([], []))
        gs.append(g)
        ps.append(p)
    return Report([score_task(gs, ps, task, ds, spans=AUTO_SPANS.get(task, "offsets") if spans == "auto" else spans)
                   for (ds, task), (gs, ps) in sorted(groups.items())])


def _width(s: str) -> int:
    """Terminal columns: CJK labels (DuIE, DuEE) take two each."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def format_table(report: Report) -> str:
    """Aligned text table: one micro row per metric (label ``*``), then its labels."""
    head = ("dataset", "task", "metric", "label", "P", "R", "F1", "support")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for s in report.scores:
        for m, c in s.metrics.items():
            for lab, cc in [("*", c), *sorted(s.per_label.get(m, {}).items())]:
                rows.append((s.dataset, s.task, m, lab, f"{cc.precision:.4f}", f"{cc.recall:.4f}",
                             f"{cc.f1:.4f}", str(cc.support)))
        bits = [f"records={s.n_records}", f"unsupported={s.n_unsupported}"]
        if s.n_truncated:
            bits.append(f"truncated_prompts={s.n_truncated}")
        bits += [f"{k}={v:.4f}" for k, v in s.extra.items()]
        if s.dropped:
            bits.append("dropped: " + ", ".join(f"{k}={v}" for k, v in sorted(s.dropped.items())))
        notes.append(f"{s.dataset} {s.task}: " + "; ".join(bits))
    widths = [max(_width(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def fmt(r: tuple[str, ...]) -> str:
        cells = []
        for i, (v, w) in enumerate(zip(r, widths)):
            pad = " " * (w - _width(v))
            cells.append(pad + v if i >= 4 else v + pad)  # numbers right-aligned
        return "  ".join(cells)
    lines = [fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)]
    return "\n".join(line.rstrip() for line in lines) + ("\n\n" + "\n".join(notes) if notes else "")


# ---------------------------------------------------------------- seqeval (token level)
def to_bio(text: str, entities: Iterable[Entity]) -> tuple[list[str], int]:
    """IOB2 tags over whitespace tokens, and how many entities could not be tagged
    (no offsets, boundaries inside a token, or overlapping an earlier entity)."""
    toks = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    first = {s: i for i, (s, _) in enumerate(toks)}
    last = {e: i for i, (_, e) in enumerate(toks)}
    tags, bad = ["O"] * len(toks), 0
    for e in entities:
        i, j = first.get(e.start), last.get(e.end)
        if i is None or j is None or j < i or any(t != "O" for t in tags[i:j + 1]):
            bad += 1
            continue
        tags[i:j + 1] = [f"B-{e.label}"] + [f"I-{e.label}"] * (j - i)
    return tags, bad


def ner_seqeval(golds: Sequence[Record], preds: Sequence[Prediction]) -> dict[str, Any]:
    """CoNLL-style entity P/R/F1 by seqeval (strict, IOB2) over whitespace tokens.

    Agrees with ``score_task(..., "NER")`` when every span is token-aligned, located and
    non-overlapping; entities that cannot be tagged are left out and counted in
    ``untaggable_gold`` / ``untaggable_pred`` (seqeval cannot see them).
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    y_true, y_pred, bad_g, bad_p = [], [], 0, 0
    for g, p in zip(golds, preds, strict=True):
        t, bg = to_bio(g.text, g.entities)
        q, bp = to_bio(g.text, p.entities)
        bad_g, bad_p = bad_g + bg, bad_p + bp
        if t:
            y_true.append(t)
            y_pred.append(q)
    kw = dict(mode="strict", scheme=IOB2, zero_division=0)
    rep = classification_report(y_true, y_pred, output_dict=True, **kw) if y_true else {}
    return {"precision": float(precision_score(y_true, y_pred, **kw)) if y_true else 0.0,
            "recall": float(recall_score(y_true, y_pred, **kw)) if y_true else 0.0,
            "f1": float(f1_score(y_true, y_pred, **kw)) if y_true else 0.0,
            "per_label": {k: {m: float(v[m]) for m in ("precision", "recall", "f1-score", "support")}
                          for k, v in rep.items() if "avg" not in k},
            "untaggable_gold": bad_g, "untaggable_pred": bad_p}


# The one number per task that summaries and plots show.
HEADLINE = {"NER": "entity_f1", "ET": "entity_f1", "ES": "span_f1", "RE": "triple_f1", "EPR": "triple_f1",
            "EP": "pair_f1", "EE": "trigger_cls_f1", "EET": "trigger_cls_f1", "EEA": "arg_cls_f1",
            "RC": "accuracy", "NEG": "competition"}


def summarize(report: Report) -> dict[str, float]:
    """{"dataset/task/metric": value} for the headline metrics (and EE arguments)."""
    out = {}
    for s in report.scores:
        vals = s.values()
        keys = [HEADLINE.get(s.task, "")] + (["arg_cls_f1"] if s.task == "EE" else [])
        for k in keys:
            if k in vals:
                out[f"{s.dataset}/{s.task}/{k}"] = round(float(vals[k]), 4)
    return out
