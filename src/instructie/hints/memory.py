"""Training-data memory: what the training split already says about a text, as a hint line.

A random-init model sees each training name a few times; a dictionary of the training
spans remembers all of them (it is the NER baseline). With ``hints.memory`` the
prompt carries the memory's findings for the text::

    Text: EU rejects German call to boycott British lamb .
    Memory: EU | organization; German | miscellaneous; British | miscellaneous
    Answer:

and the model learns when to trust them (context, type, boundaries) and what to add.
The hint is what the no-model baselines would answer (``baselines.py``), per task, from the
training records of the record's own dataset, as the baselines are built -- pooling the
datasets put CoNLL's spans with CoNLL's types into CrossNER's hints (hint precision on the
CrossNER AI test split 0.48 pooled, 0.76 per dataset). A record of a dataset the memory has
no records of for its task (a user's text in ``Extractor``) gets the pooled memory's answer:

* NER, EE: dictionary matches (training spans / triggers with their most frequent
  label among the options; longest first, no overlaps).
* RE: training triples whose head and tail both occur in the text.
* RC: the most frequent training relation of the same (head, tail) pair, of the tail,
  of the head, each where known: ``pair | mother; tail | child``.
* NEG and the auxiliary tasks get no hint.

Training hints must be as imperfect as test hints, or the model learns to copy them
blindly: with ``folds = k`` a training record's hint comes from a memory of the other
``k - 1`` folds (runs of consecutive records of each dataset), so its own spans are found
only when a record elsewhere has them too -- as for a test sentence. Names put in by
mention replacement (augment.py) are left out of the hint: they come from the other
folds' records, so the memory would nearly always know them, unlike a test sentence's names. Evaluation and extraction use
the memory of the whole training data, saved as ``memory.json`` in the model directory.
"""
from __future__ import annotations

import json
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..data.dictionary import SpanDictionary, first_allowed, ranked
from ..core.io import InputError, atomic_write
from ..core.records import Record
from ..prompts.targets import render_items

HINT_TASKS = ("NER", "RE", "EE", "RC")
HINT_PREFIX = "Memory: "
FORMAT = 2  # 1: pooled tables only (read as such)


@dataclass
class Memory:
    """Counts from training records, pooled and per named dataset (``datasets``: the same
    tables); ``items`` answers a record as the baselines would."""
    spans: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))     # NER text -> labels
    triggers: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # EE trigger -> types
    triples: dict[tuple[str, str, str], int] = field(default_factory=Counter)          # RE (head, rel, tail)
    pairs: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))  # RC
    max_items: int = 16
    datasets: dict[str, "Memory"] = field(default_factory=dict)

    def __post_init__(self):
        self._built = False

    # -------------------------------------------------------------- building
    @classmethod
    def from_records(cls, records: Iterable[Record], max_items: int = 16) -> "Memory":
        m = cls(max_items=max_items)
        for r in records:
            m.add(r)
        return m

    def add(self, r: Record) -> None:
        self._add(r)
        if r.dataset and r.task in HINT_TASKS:
            if r.dataset not in self.datasets:
                self.datasets[r.dataset] = Memory(max_items=self.max_items)
            self.datasets[r.dataset]._add(r)

    def _add(self, r: Record) -> None:
        if r.task == "NER":
            for e in r.entities:
                self.spans[e.text][e.label] += 1
        elif r.task == "EE":
            for ev in r.events:
                self.triggers[ev.trigger.text][ev.type] += 1
        elif r.task == "RE":
            for rel in r.relations:
                self.triples[rel.head.text, rel.label, rel.tail.text] += 1
        elif r.task == "RC":
            for rel in r.relations:
                self.pairs[rel.head.text, rel.tail.text][rel.label] += 1
        self._built = False

    def _build(self) -> None:
        self._spans = SpanDictionary(self.spans)
        self._triggers = SpanDictionary(self.triggers)
        by_head: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for (h, lab, t), n in self.triples.items():
            if h and t:
                by_head[h].append((lab, t, n))
        self._by_head = {h: sorted(rows, key=lambda x: (-x[2], x[0], x[1])) for h, rows in by_head.items()}
        self._heads = SpanDictionary({h: Counter({"": 1}) for h in self._by_head})
        rc: list[dict[object, Counter]] = [defaultdict(Counter) for _ in range(3)]
        for (h, t), c in self.pairs.items():
            rc[0][h, t].update(c)
            rc[1][t].update(c)
            rc[2][h].update(c)
        self._rc = [{k: ranked(c) for k, c in table.items()} for table in rc]
        self._built = True

    def __len__(self) -> int:
        return len(self.spans) + len(self.triggers) + len(self.triples) + len(self.pairs)

    def _knows(self, task: str) -> bool:
        return bool({"NER": self.spans, "EE": self.triggers, "RE": self.triples, "RC": self.pairs}.get(task))

    def source_for(self, record: Record) -> "Memory":
        """The tables that answer ``record``: its dataset's, where they hold its task, else the pooled."""
        own = self.datasets.get(record.dataset) if record.dataset else None
        return own if own is not None and own._knows(record.task) else self

    # -------------------------------------------------------------- answering
    def items(self, record: Record, options: Sequence[str] | None = None,
              exclude: frozenset[str] = frozenset()) -> list[tuple[str, ...]]:
        """The memory's answer for ``record`` restricted to ``options`` (default: the
        record's), as answer items: (span, label), (head, relation, tail) or (level, relation).
        Items naming a string in ``exclude`` are left out."""
        m = self.source_for(record)
        if m is not self:
            return m.items(record, options, exclude)
        if not self._built:
            self._build()
        opts = list(record.options if options is None else options)
        text, task = record.text, record.task
        if task in ("NER", "EE"):
            d = self._spans if task == "NER" else self._triggers
            return [(text[s:e], lab) for s, e, lab in d.match(text, record.language, opts)
                    if text[s:e] not in exclude][: self.max_items]
        if task == "RE":
            allowed = set(opts)
            found = {text[s:e] for s, e in self._heads.candidates(text, word_boundaries=record.language != "zh")}
            out = []
            for h in sorted(found, key=lambda h: (text.find(h), -len(h), h)):  # same order in every process
                if h in exclude:
                    continue
                for lab, t, _ in self._by_head[h]:
                    if (not allowed or lab in allowed) and t in text and t not in exclude:
                        out.append((h, lab, t))
            return out[: self.max_items]
        if task == "RC" and record.relations:
            h, t = record.relations[0].head.text, record.relations[0].tail.text
            out = []
            for level, key, table in zip(("pair", "tail", "head"), ((h, t), t, h), self._rc):
                lab = first_allowed(table[key], opts) if key in table else None
                if lab:
                    out.append((level, lab))
            return out
        return []

    def hint(self, record: Record, options: Sequence[str] | None = None,
             exclude: frozenset[str] = frozenset(), fits: Callable[[str], bool] | None = None) -> str | None:
        """The prompt line (``Memory: ...``; the empty answer ``None`` when nothing is known),
        or None for tasks that take no hint. ``fits``: items are dropped from the end until
        the line passes it (the extractor's token budget)."""
        if record.task not in HINT_TASKS:
            return None
        items = self.items(record, options, exclude)
        while True:
            line = HINT_PREFIX + render_items(items)
            if not items or fits is None or fits(line):
                return line
            items = items[:-1]

    # -------------------------------------------------------------- files
    def _tables_json(self) -> dict:
        return {
            "spans": [[s, lab, n] for s, c in sorted(self.spans.items()) for lab, n in sorted(c.items())],
            "triggers": [[s, lab, n] for s, c in sorted(self.triggers.items()) for lab, n in sorted(c.items())],
            "triples": [[h, lab, t, n] for (h, lab, t), n in sorted(self.triples.items())],
            "pairs": [[h, t, lab, n] for (h, t), c in sorted(self.pairs.items()) for lab, n in sorted(c.items())],
        }

    def _read_tables(self, d: dict) -> None:
        for s, lab, n in d["spans"]:
            self.spans[s][lab] += n
        for s, lab, n in d["triggers"]:
            self.triggers[s][lab] += n
        for h, lab, t, n in d["triples"]:
            self.triples[h, lab, t] += n
        for h, t, lab, n in d["pairs"]:
            self.pairs[h, t][lab] += n

    def to_json(self) -> dict:
        return {"format": FORMAT, "max_items": self.max_items, **self._tables_json(),
                "datasets": {name: m._tables_json() for name, m in sorted(self.datasets.items())}}

    def save(self, path: str | Path) -> None:
        with atomic_write(path, "w") as f:
            json.dump(self.to_json(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | Path) -> "Memory":
        p = Path(path)
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(d, dict):
                raise ValueError("expected a JSON object")
            if d.get("format") not in (1, FORMAT):
                raise ValueError(f"format {d.get('format')!r}, expected {FORMAT}")
            m = cls(max_items=int(d.get("max_items", 16)))
            m._read_tables(d)
            for name, tables in (d.get("datasets") or {}).items():
                m.datasets[name] = sub = cls(max_items=m.max_items)
                sub._read_tables(tables)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(p, None, f"not a readable instructie memory file ({e})") from None
        return m


def _base_id(record_id: str) -> str:
    return record_id.split("@", 1)[0]  # EEA copies of one record share its fold


def fold_of(record_id: str, folds: int) -> int:
    """The fold of a record id the folded memory was not built with: a stable hash."""
    return zlib.crc32(_base_id(record_id).encode("utf-8")) % folds


class FoldedMemory:
    """Training hints: each record answered by the memory of the other folds.

    Folds are runs of consecutive records of one dataset (in file order), not single
    records: CoNLL's sentences come in documents that repeat their names, and a fold that
    took every fifth sentence would find a sentence's names in its neighbours -- hints far
    better than a test document gets (dictionary F1 0.76 vs 0.58). Runs are at most
    ``block`` records and at most a ``folds``-th of their dataset, so a 100-record dataset
    is spread over every fold too (else its names would never be hinted in training and
    always at test time)."""

    def __init__(self, records: Sequence[Record], folds: int, max_items: int = 16, block: int = 256):
        if folds < 2:
            raise ValueError("folds must be at least 2")
        self.folds = folds
        by_dataset: dict[str, list[str]] = defaultdict(list)
        seen: set[str] = set()
        for r in records:
            b = _base_id(r.id)
            if b not in seen:
                seen.add(b)
                by_dataset[r.dataset].append(b)
        self.fold: dict[str, int] = {}
        for ids in by_dataset.values():
            run = max(1, min(block, -(-len(ids) // folds)))
            for i, b in enumerate(ids):
                self.fold[b] = (i // run) % folds
        self.parts = [Memory(max_items=max_items) for _ in range(folds)]
        for r in records:
            k = self.fold[_base_id(r.id)]
            for j, m in enumerate(self.parts):
                if j != k:
                    m.add(r)

    def fold_of(self, record: Record) -> int:
        k = self.fold.get(_base_id(record.id))
        return fold_of(record.id, self.folds) if k is None else k

    def hint(self, record: Record, options: Sequence[str] | None = None,
             exclude: frozenset[str] = frozenset()) -> str | None:
        return self.parts[self.fold_of(record)].hint(record, options, exclude)


def training_memory(sources, hints):
    """(hints for training instances, memory of all training records) when ``hints.memory`` (a
    ``config.HintsConfig``) is on, else (None, None)."""
    if not hints.memory:
        return None, None
    records = [r for s in sources for r in s.records]
    return (FoldedMemory(records, hints.folds, hints.max_items),
            Memory.from_records(records, hints.max_items))
