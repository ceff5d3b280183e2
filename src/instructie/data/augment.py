"""Mention replacement: teach copying instead of memorising names.

A random-init model trained on CoNLL learns the training names by heart (train loss
~0.05, test F1 flat). Replacing annotated mentions, in the text and in the answer
alike, by other training mentions of the same type -- or by unseen strings built from
the characters of that type's mentions -- makes the name itself useless as a cue:
only the context and the input say what to copy.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Iterable

from ..core.records import Event, Record, Relation

MentionPool = dict[tuple[str, str], list[str]]  # (dataset, label) -> surface strings


def build_pool(records: Iterable[Record]) -> MentionPool:
    pool: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in records:
        for e in r.entities:
            if e.label and r.task != "NEG":
                pool[(r.dataset, e.label)].add(e.text)
        for rel in r.relations:
            for ent in (rel.head, rel.tail):
                if ent.label and ent.label not in ("head", "tail"):
                    pool[(r.dataset, ent.label)].add(ent.text)
    return {k: sorted(v) for k, v in pool.items() if len(v) >= 5}


def _novel(examples: list[str], rng: random.Random) -> str:
    """A string that looks like the type's mentions but is (almost surely) unseen:
    characters of one mention re-drawn from the characters of all of them."""
    proto = rng.choice(examples)
    chars = [c for s in rng.sample(examples, min(20, len(examples))) for c in s if not c.isspace()]
    out = [c if c.isspace() or not chars else rng.choice(chars) for c in proto]
    if proto[:1].isupper() and out:
        out[0] = out[0].upper()
    return "".join(out)


def replace_mentions(record: Record, pool: MentionPool, rng: random.Random, p: float, novel: float = 0.3) -> Record:
    """The record with each annotated surface string swapped (probability ``p``) for a
    same-type mention from ``pool`` (or, with probability ``novel``, an unseen one).
    Every occurrence at an annotated offset changes; other offsets are shifted. Records
    whose spans overlap a replaced span partially are returned unchanged."""
    if p <= 0 or record.task in ("NEG", "RC"):
        return record
    spans: dict[tuple[int, int], str] = {}  # annotated offsets -> label
    for e in record.entities:
        if e.start is not None and e.label:
            spans[(e.start, e.end)] = e.label
    for rel in record.relations:
        for ent in (rel.head, rel.tail):
            if ent.start is not None and ent.label:
                spans.setdefault((ent.start, ent.end), ent.label)
    if not spans:
        return record
    new_text_of: dict[str, str] = {}
    for (s, e), label in spans.items():
        surface = record.text[s:e]
        if surface in new_text_of or rng.random() >= p:
            continue
        choices = pool.get((record.dataset, label))
        if not choices:
            continue
        new = _novel(choices, rng) if rng.random() < novel else rng.choice(choices)
        if new and new != surface:
            new_text_of[surface] = new
    edits = sorted((s, e, new_text_of[record.text[s:e]]) for (s, e) in spans if record.text[s:e] in new_text_of)
    for (a, b, _), (c, d, _) in zip(edits, edits[1:]):
        if c < b:  # overlapping annotations: keep the record as it is
            return record
    all_offsets = [(x.start, x.end) for x in record.spans() if x.start is not None]
    for s, e in all_offsets:  # a span cutting into an edit cannot be mapped
        for a, b, _ in edits:
            if (s, e) != (a, b) and s < b and a < e:
                return record
    pieces, shift_at, pos, delta = [], [], 0, 0
    for a, b, new in edits:
        pieces += [record.text[pos:a], new]
        shift_at.append((a, b, delta, delta + len(new) - (b - a)))
        delta += len(new) - (b - a)
        pos = b
    pieces.append(record.text[pos:])
    text = "".join(pieces)

    def move(x):
        if x.start is None:
            return x
        d = 0
        for a, b, before, after in shift_at:
            if (x.start, x.end) == (a, b):
                return replace(x, text=text[a + before : b + after], start=a + before, end=b + after)
            if b <= x.start:
                d = after
        return replace(x, text=text[x.start + d : x.end + d], start=x.start + d, end=x.end + d)

    return replace(
        record,
        text=text,
        entities=[move(e) for e in record.entities],
        relations=[Relation(move(r.head), r.label, move(r.tail), tuple(move(a) for a in r.slots))
                   for r in record.relations],
        events=[Event(ev.type, move(ev.trigger), tuple(move(a) for a in ev.arguments)) for ev in record.events],
    )
