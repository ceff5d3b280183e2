"""Target serialization: records -> answer text -> records, for every task.

Grammar (one line, any language)::

    answer := "None" | item ("; " item)*
    item   := field (" | " field)*

Inside a field, ``\\`` escapes the next character, so a span may hold any text:
``;`` ``|`` ``\\`` are always escaped, ``=`` in a role name, spaces at a field's ends,
and a lone item "None" is written ``\\None``. ``\\n``/``\\t``/``\\r`` stand for the
control characters. Items per task:

    NER, ET  span | label              RE, EPR  head | relation | tail [| role=value]...
    ES       span                      EP       head | tail
    EE       trigger | type [| role=argument]...     EET  trigger | type
    EEA      argument | role           RC   relation              NEG  entity

``parse`` never raises: it reads what it can from any string (truncated, repeated,
garbage) and reports what it dropped and why in ``ParseResult.dropped``. Repeated
span items (NER, EE, ...) are kept: they stand for repeated mentions; repeated
relations and RC/NEG answers are dropped as duplicates.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..core.records import Argument, Entity, Event, Record, Relation

NONE = "None"
ITEM_SEP = "; "
FIELD_SEP = " | "
_CONTROL = {"n": "\n", "t": "\t", "r": "\r"}
_CONTROL_REV = {v: k for k, v in _CONTROL.items()}


# ---------------------------------------------------------------- field level
def escape(text: str, extra: str = "") -> str:
    out = []
    for ch in text:
        if ch in _CONTROL_REV:
            out.append("\\" + _CONTROL_REV[ch])
        elif ch in "\\;|" or ch in extra:
            out.append("\\" + ch)
        else:
            out.append(ch)
    # Unescaped white space at a field's ends is padding the parser strips;
    # white space that belongs to the text is escaped there.
    i = 0
    while i < len(text) and text[i].isspace() and len(out[i]) == 1:
        out[i] = "\\" + text[i]
        i += 1
    j = len(text) - 1
    while j >= i and text[j].isspace() and len(out[j]) == 1:
        out[j] = "\\" + text[j]
        j -= 1
    return "".join(out)


def render_items(items: list[tuple[str, ...]]) -> str:
    if not items:
        return NONE
    rendered = []
    for item in items:
        s = FIELD_SEP.join(escape(f) for f in item)
        if s == NONE:
            s = "\\" + NONE
        rendered.append(s)
    return ITEM_SEP.join(rendered)


def split_items(answer: str) -> list[list[str]]:
    """Split an answer into items of fields, undoing escapes; never raises."""
    items: list[list[str]] = []
    fields: list[str] = []
    buf: list[str] = []
    lit: list[bool] = []  # True where the char came from an escape (never stripped)

    def end_field():
        lo, hi = 0, len(buf)
        while lo < hi and buf[lo].isspace() and not lit[lo]:
            lo += 1
        while hi > lo and buf[hi - 1].isspace() and not lit[hi - 1]:
            hi -= 1
        fields.append("".join(buf[lo:hi]))
        buf.clear()
        lit.clear()

    i, n = 0, len(answer)
    while i < n:
        ch = answer[i]
        if ch == "\\" and i + 1 < n:
            nxt = answer[i + 1]
            buf.append(_CONTROL.get(nxt, nxt))
            lit.append(True)
            i += 2
            continue
        if ch == "|":
            end_field()
        elif ch == ";":
            end_field()
            items.append(fields[:])
            fields.clear()
        elif ch != "\\":  # a dangling final backslash (truncation) is dropped
            buf.append(ch)
            lit.append(False)
        i += 1
    end_field()
    items.append(fields[:])
    return items


def _is_none(answer: str) -> bool:
    return answer.strip() in ("", NONE)


# ---------------------------------------------------------------- results
@dataclass
class ParseResult:
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # RC answer / NEG entities
    dropped: Counter = field(default_factory=Counter)  # reason -> count


# ---------------------------------------------------------------- render
def _slot(role: str, text: str) -> str:
    # '=' is escaped in the role so the first unescaped '=' separates role from value.
    return escape(role, "=") + "=" + escape(text)


def render(record: Record) -> str:
    """The answer text a model should produce for ``record``."""
    t = record.task
    if t in ("NER", "ET"):
        return render_items([(e.text, e.label) for e in record.entities])
    if t == "ES":
        return render_items([(e.text,) for e in record.entities])
    if t == "NEG":
        return render_items([(e.text,) for e in record.entities])
    if t in ("RE", "EPR", "EP"):
        if t == "EP":
            return render_items(list(dict.fromkeys((r.head.text, r.tail.text) for r in record.relations)))
        return _join_raw(
            [
                [escape(r.head.text), escape(r.label), escape(r.tail.text)]
                + [_slot(a.role, a.text) for a in r.slots]
                for r in record.relations
            ]
        )
    if t == "EE":
        return _join_raw(
            [
                [escape(e.trigger.text), escape(e.type)] + [_slot(a.role, a.text) for a in e.arguments]
                for e in record.events
            ]
        )
    if t == "EET":
        return render_items([(e.trigger.text, e.type) for e in record.events])
    if t == "EEA":
        return render_items([(a.text, a.role) for e in record.events for a in e.arguments])
    if t == "RC":
        return render_items([(r.label,) for r in record.relations])
    raise ValueError(f"unknown task {t!r}")


def _join_raw(items: list[list[str]]) -> str:
    if not items:
        return NONE
    out = []
    for fields_ in items:
        s = FIELD_SEP.join(fields_)
        out.append("\\" + NONE if s == NONE else s)
    return ITEM_SEP.join(out)


# ---------------------------------------------------------------- parse
def _split_slot(raw: str) -> tuple[str, str] | None:
    """Split an escaped ``role=value`` field at its first unescaped '='."""
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw[i] == "=":
            return raw[:i], raw[i + 1 :]
        i += 1
    return None


def _split_items_raw(answer: str) -> list[list[str]]:
    """Like split_items, but fields keep their escapes (needed where '=' matters)."""
    items, fields_, buf = [], [], []
    i, n = 0, len(answer)
    while i < n:
        ch = answer[i]
        if ch == "\\" and i + 1 < n:
            buf.append(answer[i : i + 2])
            i += 2
            continue
        if ch in "|;":
            fields_.append("".join(buf))
            buf = []
            if ch == ";":
                items.append(fields_)
                fields_ = []
        elif ch != "\\":
            buf.append(ch)
        i += 1
    fields_.append("".join(buf))
    items.append(fields_)
    return items


def _unescape(raw: str) -> str:
    if "\\" not in raw:  # nothing escaped: only the padding to strip (str.strip's white space is isspace's)
        return raw.strip()
    got = split_items(raw)
    return got[0][0] if got and got[0] else ""


def _slot_args(raw_fields: list[str], allowed: set[str] | None, res: ParseResult) -> tuple[Argument, ...]:
    args = []
    for raw in raw_fields:
        sp = _split_slot(raw)
        if sp is None:
            res.dropped["malformed_argument"] += 1
            continue
        role, value = _unescape(sp[0]), _unescape(sp[1])
        if not role or not value:
            res.dropped["empty_field"] += 1
            continue
        if allowed is not None and role not in allowed:
            res.dropped["unknown_role"] += 1
            continue
        args.append(Argument(role, value))
    return args


def parse(answer: str, task: str, options: list[str] | None = None,
          roles: dict[str, list[str]] | None = None) -> ParseResult:
    """Read what a model wrote for ``task``. Never raises.

    Labels outside ``options`` (when given) and roles outside ``roles`` (when given
    for that type) are dropped and counted; duplicate items are dropped and counted.
    """
    res = ParseResult()
    try:
        _parse_into(res, answer if isinstance(answer, str) else str(answer), task, options, roles)
    except Exception:  # defensive: a parser bug must not kill an evaluation run
        res.dropped["parser_error"] += 1
    return res


def parse_items(answer: str, task: str, options: list[str] | None = None,
                roles: dict[str, list[str]] | None = None) -> list[tuple[tuple[int, int], ParseResult]]:
    """``parse`` item by item: each item's character range in ``answer`` (``item_ranges``) with what it
    parsed to, so that every item can carry a confidence of its own. A set-valued task's repeat of an
    earlier item is dropped and counted in the repeat's result, as ``parse`` does; EEA's arguments
    come one event per item (``parse`` joins them into the prompt's one event). Never raises."""
    out, reading = [], _Reading(task, options, roles)
    if not isinstance(answer, str) or _is_none(answer):
        return out
    for s, e in item_ranges(answer, keep_empty=True):
        res = ParseResult()
        body = answer[s:e].strip()
        if body in ("", NONE):  # counted as parse counts it in a list of items
            res.dropped["none_in_list" if body else "empty_item"] += 1
        else:
            try:
                _parse_into(res, answer[s:e], task, options, roles, reading)
            except Exception:  # defensive, as parse
                res.dropped["parser_error"] += 1
        out.append(((s, e), res))
    return out


class _Reading:
    """What the items of one answer share while they are read: the options, the schema's role sets (built
    once per answer, not per item: a schema may hold thousands of roles -- DuEE: 65 event types -- and a
    looping answer hundreds of thousands of items), and the set-valued items seen so far."""

    def __init__(self, task: str, options, roles):
        self.opts = set(options) if options else None
        self.roles = roles
        self.role_sets: dict[str, set[str]] = {}
        self.any_role = {r for rs in roles.values() for r in rs} if roles and task == "EEA" else None
        self.seen: set = set()

    def roles_of(self, label: str) -> set[str] | None:
        if not self.roles or label not in self.roles:
            return None
        if label not in self.role_sets:
            self.role_sets[label] = set(self.roles[label])
        return self.role_sets[label]


def _parse_into(res, answer, task, options, roles, reading: _Reading | None = None):
    if _is_none(answer):
        return
    reading = reading or _Reading(task, options, roles)
    opts, seen, roles_of, any_role = reading.opts, reading.seen, reading.roles_of, reading.any_role

    # A repeated span item is a repeated mention (gold writes "Wales | location" twice
    # when Wales occurs twice): kept, and grounded to its next occurrence. Relations,
    # RC/NEG answers are sets: a repeat is a generation loop, dropped and counted.
    set_valued = task in ("RE", "EP", "EPR", "NEG", "RC")

    def keep(key) -> bool:
        if not set_valued:
            return True
        if key in seen:
            res.dropped["duplicate"] += 1
            return False
        seen.add(key)
        return True

    def label_ok(label: str) -> bool:
        if not label:
            res.dropped["empty_field"] += 1
            return False
        if opts is not None and label not in opts:
            res.dropped["unknown_label"] += 1
            return False
        return True

    if task in ("NER", "ET", "ES", "NEG", "RC", "EP", "EET", "EEA"):
        width = {"ES": 1, "NEG": 1, "RC": 1}.get(task, 2)
        for raw in _split_items_raw(answer):
            if len(raw) == 1 and raw[0].strip() in (NONE, ""):  # an escaped \None is a span
                res.dropped["none_in_list" if raw[0].strip() else "empty_item"] += 1
                continue
            fields_ = [_unescape(f) for f in raw]
            if len(fields_) != width or any(not f for f in fields_):
                res.dropped["wrong_arity" if len(fields_) != width else "empty_field"] += 1
                continue
            if task in ("ES",):
                if keep(tuple(fields_)):
                    res.entities.append(Entity("", fields_[0]))
            elif task in ("NEG", "RC"):
                if label_ok(fields_[0]) and keep(fields_[0]):
                    res.labels.append(fields_[0])
            elif task in ("NER", "ET"):
                if label_ok(fields_[1]) and keep(tuple(fields_)):
                    res.entities.append(Entity(fields_[1], fields_[0]))
            elif task == "EP":
                if keep(tuple(fields_)):
                    res.relations.append(Relation(Entity("", fields_[0]), "", Entity("", fields_[1])))
            elif task == "EET":
                if label_ok(fields_[1]) and keep(tuple(fields_)):
                    res.events.append(Event(fields_[1], Entity(fields_[1], fields_[0])))
            elif task == "EEA":
                if any_role is not None and fields_[1] not in any_role:
                    res.dropped["unknown_role"] += 1
                    continue
                if keep(tuple(fields_)):
                    res.events.append(Event("", Entity("", ""), (Argument(fields_[1], fields_[0]),)))
        if task == "EEA" and res.events:
            # One event (the one named in the prompt) holding every argument read.
            args = tuple(a for e in res.events for a in e.arguments)
            res.events = [Event("", Entity("", ""), args)]
        return

    if task in ("RE", "EPR", "EE"):
        for raw in _split_items_raw(answer):
            fields_ = [_unescape(f) for f in raw]
            if len(raw) == 1 and raw[0].strip() in (NONE, ""):
                res.dropped["none_in_list" if raw[0].strip() else "empty_item"] += 1
                continue
            if task == "EE":
                if len(raw) < 2 or not fields_[0] or not fields_[1]:
                    res.dropped["wrong_arity" if len(raw) < 2 else "empty_field"] += 1
                    continue
                etype = fields_[1]
                if not label_ok(etype):
                    continue
                args = _slot_args(raw[2:], roles_of(etype), res)
                ev = Event(etype, Entity(etype, fields_[0]), tuple(args))
                if keep(ev):
                    res.events.append(ev)
            else:
                if len(raw) < 3 or not all(fields_[:3]):
                    res.dropped["wrong_arity" if len(raw) < 3 else "empty_field"] += 1
                    continue
                if not label_ok(fields_[1]):
                    continue
                slots = _slot_args(raw[3:], roles_of(fields_[1]), res)
                rel = Relation(Entity("", fields_[0]), fields_[1], Entity("", fields_[2]), tuple(slots))
                if keep(rel):
                    res.relations.append(rel)
        return
    res.dropped["unknown_task"] += 1


def item_ranges(answer: str, keep_empty: bool = False) -> list[tuple[int, int]]:
    """Character ranges of the items of an answer (split at unescaped ';'), so a
    caller can parse items one by one and give each its own confidence; blank items
    left out unless ``keep_empty``."""
    out, start, i, n = [], 0, 0, len(answer)
    while i < n:
        if answer[i] == "\\":
            i += 2
            continue
        if answer[i] == ";":
            out.append((start, i))
            start = i + 1
        i += 1
    out.append((start, n))
    return out if keep_empty else [(s, e) for s, e in out if answer[s:e].strip()]
