"""Ground parsed spans in the source text: character offsets for generated mentions.

``targets.parse`` reads strings only; ``ground`` gives every span ``start``/``end``
(end exclusive) in the text it was extracted from, with ``span.text == text[start:end]``.

Rules (all deterministic):

* **Entities, in output order.** The k-th item with text X takes the next occurrence
  of X after the previous one assigned to X, so repeated mentions get distinct
  offsets. Among those, an occurrence not overlapping a span already assigned to
  another entity is preferred ("York" after "New York" is the standalone one; this
  assumes flat entities). When the occurrences run out, the first one is reused.
* **Relations.** Head and tail are chosen jointly: the pair of occurrences that do not
  overlap and have the smallest character gap (ties: earliest head, then tail), so a
  repeated name is paired with its nearest partner. Slots: the occurrence nearest to
  the chosen head/tail.
* **Events.** The trigger takes an occurrence not yet used by an earlier event's
  trigger with the same text: the one nearest to its nearest argument, then to all
  of them (ties: earliest); each argument takes the occurrence nearest to the
  trigger. (On DuEE, grounding gold strings this way gives back the annotated
  trigger offsets for 97.5 % of events; the rest are true ambiguities.) With no
  trigger text (EEA answers), the trigger is the prompt's ``event`` when given, else
  arguments are placed like entities.

Matching is exact; only if that fails, a whitespace-insensitive match (any run of
white space in the span matches any run in the text) is tried and the span's text
becomes the source's ``text[start:end]`` (counted in ``n_loose``). No case folding:
case is part of the copied mention, and folding would inflate string-level scores.

**Whole words first.** In space-delimited text a span is a run of whole words. Each
occurrence of X is ranked by its edges, and only the best-ranked occurrences are used:

1. edges at white space (or the text's ends), punctuation between allowed ("Paris." and
   "(Paris)" are the word Paris);
2. edges where punctuation joins another word ("KDP" in "KDP-controlled", "Obama" in
   "Obama's");
3. inside a word: glued to a letter or digit ("German" in "Germany", "p" in "compute").

So "Armenia" is the standalone word, not the start of "Armenian" earlier in the sentence.
A span placed inside a word (X occurs nowhere else) is counted in ``n_inside_word``.
Scripts written without spaces (Chinese, Japanese, Thai, ...) have no word edges: there
every occurrence ranks first.

An item with any span not found is *unsupported*: it is returned apart in
``Grounded.unsupported`` (its found parts located, the rest ``None``), never silently
dropped. Scorers should still count it (``Prediction.from_grounded``): it can then
only match a gold span that has no offsets either.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Union

from ..core.records import Argument, Entity, Event, Record, Relation, find_all
from .targets import ParseResult

Span = tuple[int, int]
Item = Union[Entity, Relation, Event]


@dataclass
class Unsupported:
    item: Item
    missing: tuple[str, ...]  # "span" | "head" | "tail" | "trigger" | "slot:ROLE" | "argument:ROLE"


@dataclass
class Grounded:
    """Items whose every span was found, in output order; the rest in ``unsupported``."""
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # RC / NEG answers, copied as is
    unsupported: list[Unsupported] = field(default_factory=list)
    n_loose: int = 0  # spans found only by the whitespace-insensitive match
    n_inside_word: int = 0  # spans placed inside a word: their text occurs nowhere else
    # every item in the order given, each as (kind, its index among the given items of its kind, the item
    # as located, the parts not found): lets a caller carry per-item values (confidences) through grounding
    placed: list[tuple[str, int, Item, tuple[str, ...]]] = field(default_factory=list)

    @property
    def n_unsupported(self) -> int:
        return len(self.unsupported)


def _gap(a: Span, b: Span) -> int:
    return max(0, b[0] - a[1], a[0] - b[1])


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


# Letters and digits of scripts written without spaces between words: no word edges there.
_UNSPACED = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\ua4cf\uf900-\ufaff"
                       "\uff00-\uffef\U00020000-\U0003ffff]")


def _wordy(ch: str) -> bool:
    return ch.isalnum() and not _UNSPACED.match(ch)


def _edge(text: str, inner: int, outer: int, step: int) -> int:
    """Rank (see the module docstring) of a span edge between ``text[inner]`` (the span's last character on
    this side) and ``text[outer]`` (the first outside it; ``step`` -1 at the start, +1 at the end)."""
    if not 0 <= outer < len(text):
        return 0
    a, b = text[inner], text[outer]
    if b.isspace() or _UNSPACED.match(a) or _UNSPACED.match(b):
        return 0
    if _wordy(a) and _wordy(b):
        return 2
    i = outer
    while 0 <= i < len(text) and not (text[i].isspace() or _wordy(text[i]) or _UNSPACED.match(text[i])):
        i += step
    return 1 if 0 <= i < len(text) and _wordy(text[i]) else 0


class _Finder:
    def __init__(self, text: str):
        self.text, self.n_loose, self.n_inside_word = text, 0, 0
        self._cache: dict[str, list[Span]] = {}

    def rank(self, s: Span) -> int:
        """0: whole words; 1: joined to another word by punctuation; 2: inside a word."""
        if s[1] <= s[0]:
            return 0
        return max(_edge(self.text, s[0], s[0] - 1, -1), _edge(self.text, s[1] - 1, s[1], 1))

    def find(self, needle: str) -> list[Span]:
        """The best-ranked occurrences of ``needle``."""
        if needle not in self._cache:
            occ = [(i, i + len(needle)) for i in find_all(self.text, needle)]
            if not occ and needle.strip():
                pat = r"\s+".join(re.escape(p) for p in needle.split())
                occ = [(m.start(), m.end()) for m in re.finditer(pat, self.text)]
            ranks = [self.rank(s) for s in occ]
            self._cache[needle] = [s for s, r in zip(occ, ranks) if r == min(ranks)]
        return self._cache[needle]

    def at(self, x: Entity | Argument, s: Span | None):
        """``x`` with offsets ``s`` and the source's surface text there."""
        if s is None:
            return x
        surface = self.text[s[0]:s[1]]
        self.n_loose += surface != x.text
        self.n_inside_word += self.rank(s) == 2
        return replace(x, text=surface, start=s[0], end=s[1])


def nearest(cands: list[Span], anchors: list[Span]) -> Span | None:
    """The candidate closest to any anchor (not overlapping one if possible; ties: earliest)."""
    if not cands:
        return None
    if not anchors:
        return cands[0]
    return min(cands, key=lambda c: (any(_overlaps(c, a) for a in anchors),
                                     min(_gap(c, a) for a in anchors), c[0]))


def closest_pair(hs: list[Span], ts: list[Span]) -> tuple[Span | None, Span | None]:
    """The non-overlapping (head, tail) occurrence pair with the smallest gap (ties: earliest)."""
    if not hs or not ts:
        return (hs[0] if hs else None), (ts[0] if ts else None)
    return min(((h, t) for h in hs for t in ts),
               key=lambda p: (_overlaps(*p), _gap(*p), p[0][0], p[1][0]))


class _Cursor:
    """Per-text cursor for entity-like spans: next occurrence, distinct, non-overlapping."""

    def __init__(self, finder: _Finder):
        self.f, self.last, self.taken, self.pos = finder, {}, [], 0

    def place(self, text: str) -> Span | None:
        occ = self.f.find(text)
        if not occ:
            return None
        after = [s for s in occ if s[0] > self.last.get(text, -1)]
        free = [s for s in after if not any(_overlaps(s, t) for t in self.taken)]
        # Answers list mentions in text order, so prefer an occurrence at or after the
        # previous item ("poem" listed after "Michael Wigglesworth" is not the "poem"
        # inside "poems" earlier in the sentence).
        ahead = [s for s in free if s[0] >= self.pos]
        span = (ahead or free or after or occ)[0]  # out of occurrences: reuse the first
        self.pos = span[0]
        self.last[text] = max(span[0], self.last.get(text, -1))
        self.taken.append(span)
        return span


def ground(result: ParseResult, text: str, task: str = "", *, event: Event | None = None) -> Grounded:
    """Locate every span of ``result`` in ``text``.

    ``event``: for EEA, the event the prompt named (its trigger offsets are kept when
    set); the answer's arguments are attached to it and placed near its trigger.
    ``task`` is informational today (EEA needs only ``event``); pass ``record.task``.
    """
    f = _Finder(text)
    out = Grounded(labels=list(result.labels))

    cur = _Cursor(f)
    for k, e in enumerate(result.entities):
        s = cur.place(e.text)
        if s is None:
            out.unsupported.append(Unsupported(e, ("span",)))
            out.placed.append(("entity", k, e, ("span",)))
        else:
            out.entities.append(f.at(e, s))
            out.placed.append(("entity", k, out.entities[-1], ()))

    for k, r in enumerate(result.relations):
        h, t = closest_pair(f.find(r.head.text), f.find(r.tail.text))
        anchors = [x for x in (h, t) if x]
        slots = [(a, nearest(f.find(a.text), anchors)) for a in r.slots]
        rel = replace(r, head=f.at(r.head, h), tail=f.at(r.tail, t),
                      slots=tuple(f.at(a, s) for a, s in slots))
        missing = tuple(n for n, s in (("head", h), ("tail", t)) if s is None)
        missing += tuple(f"slot:{a.role}" for a, s in slots if s is None)
        (out.unsupported.append(Unsupported(rel, missing)) if missing else out.relations.append(rel))
        out.placed.append(("relation", k, rel, missing))

    used: dict[str, set[Span]] = {}
    for k, ev in enumerate(result.events):
        if not ev.trigger.text and event is not None:
            ev = replace(ev, type=event.type, trigger=event.trigger)
        trig, missing = _trigger_span(f, ev, used), ()
        if ev.trigger.text and trig is None:
            missing = ("trigger",)
        if trig is not None:
            anchor = [trig]
            args = [(a, nearest(f.find(a.text), anchor)) for a in ev.arguments]
        else:  # no trigger to be near: place like entities
            acur = _Cursor(f)
            args = [(a, acur.place(a.text)) for a in ev.arguments]
        missing += tuple(f"argument:{a.role}" for a, s in args if s is None)
        new = replace(ev, trigger=f.at(ev.trigger, trig) if trig else ev.trigger,
                      arguments=tuple(f.at(a, s) for a, s in args))
        (out.unsupported.append(Unsupported(new, missing)) if missing else out.events.append(new))
        out.placed.append(("event", k, new, missing))

    out.n_loose, out.n_inside_word = f.n_loose, f.n_inside_word
    return out


def ground_for(record: Record, result: ParseResult) -> Grounded:
    """``ground`` with what the record's prompt gave: its text, task, and for EEA its event."""
    ev = record.events[0] if record.task == "EEA" and record.events else None
    return ground(result, record.text, record.task, event=ev)


def _trigger_span(f: _Finder, ev: Event, used: dict[str, set[Span]]) -> Span | None:
    t = ev.trigger
    if t.start is not None and t.end is not None:  # given (EEA prompt event)
        return (t.start, t.end)
    if not t.text:
        return None
    occ = f.find(t.text)
    if not occ:
        return None
    seen = used.setdefault(t.text, set())
    fresh = [c for c in occ if c not in seen] or occ
    arg_occ = [o for o in (f.find(a.text) for a in ev.arguments) if o]
    def key(c: Span) -> tuple:
        gaps = [min(_gap(c, s) for s in o) for o in arg_occ]
        return (min(gaps, default=0), sum(gaps), c[0])
    best = min(fresh, key=key)
    seen.add(best)
    return best
