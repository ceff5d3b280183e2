"""The one data model that flows adapters -> instructions -> model -> parser -> scorer.

Every span carries its surface text and, where known, character offsets into
``Record.text`` (``end`` exclusive). Offsets are ``None`` only for spans that could
not be located (e.g. a DuIE object absent from its sentence); such spans still score
at string level.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, asdict
from typing import Any, Iterable

# Main tasks, then InstructUIE's auxiliary tasks.
MAIN_TASKS = ("NER", "RE", "EE", "RC", "NEG")
AUX_TASKS = ("ES", "ET", "EP", "EPR", "EET", "EEA")
TASKS = MAIN_TASKS + AUX_TASKS
# Which auxiliary tasks a main task's records can be turned into.
AUX_OF = {"NER": ("ES", "ET"), "RE": ("EP", "EPR"), "EE": ("EET", "EEA")}


@dataclass(frozen=True)
class Entity:
    label: str
    text: str
    start: int | None = None
    end: int | None = None

    def key(self) -> tuple:
        return (self.text, self.label)


@dataclass(frozen=True)
class Argument:
    """A role-filling span: an event argument or a relation's extra slot (DuIE ``inWork``)."""
    role: str
    text: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Relation:
    head: Entity
    label: str
    tail: Entity
    slots: tuple[Argument, ...] = ()

    def key(self) -> tuple:
        return (self.head.text, self.label, self.tail.text)


@dataclass(frozen=True)
class Event:
    type: str
    trigger: Entity  # trigger.label == type
    arguments: tuple[Argument, ...] = ()


@dataclass
class Record:
    """One instance of one task on one text.

    ``options`` are the labels the instruction offers (entity types, relations,
    event types, RC relation names, or for NEG the candidate entities).
    ``roles`` maps event type -> allowed roles (EE) or relation -> slot roles (DuIE).
    ``meta`` holds adapter-specific extras the rest of the system may ignore.
    """
    id: str
    dataset: str
    task: str
    text: str
    language: str = "en"
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    roles: dict[str, list[str]] = field(default_factory=dict)
    split: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def spans(self) -> list[Entity | Argument]:
        """Every span of the record: entities, relation heads/tails/slots, triggers, arguments."""
        return [x for item in (*self.entities, *self.relations, *self.events) for x in item_spans(item)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """A record from its ``to_dict`` form (also structured predictions); a malformed item is a
        ValueError naming it in the data's terms (``entities[0]: missing field 'label'``)."""
        return cls(
            id=str(d["id"]),
            dataset=d["dataset"],
            task=d["task"],
            text=d["text"],
            language=d.get("language", "en"),
            entities=[_build(Entity, e, f"entities[{i}]")
                      for i, e in enumerate(_items(d.get("entities", []), "entities"))],
            relations=[relation_from_dict(r, f"relations[{i}]")
                       for i, r in enumerate(_items(d.get("relations", []), "relations"))],
            events=[event_from_dict(e, f"events[{i}]") for i, e in enumerate(_items(d.get("events", []), "events"))],
            options=_names(d.get("options", []), "options"),
            roles=_roles(d.get("roles", {})),
            split=d.get("split", ""),
            meta=dict(d.get("meta", {})),
        )


def item_spans(item: Entity | Relation | Event) -> list[Entity | Argument]:
    """The spans of one item: an entity itself, a relation's head, tail and slots, an event's
    trigger and arguments."""
    if isinstance(item, Relation):
        return [item.head, item.tail, *item.slots]
    if isinstance(item, Event):
        return [item.trigger, *item.arguments]
    return [item]


def relation_from_dict(d: dict, where: str = "relation") -> Relation:
    _check_fields(Relation, d, where)
    return Relation(
        head=_build(Entity, d["head"], f"{where}.head"),
        label=d["label"],
        tail=_build(Entity, d["tail"], f"{where}.tail"),
        slots=tuple(_build(Argument, a, f"{where}.slots[{i}]")
                    for i, a in enumerate(_items(d.get("slots", ()), f"{where}.slots"))),
    )


def event_from_dict(d: dict, where: str = "event") -> Event:
    _check_fields(Event, d, where)
    return Event(
        type=d["type"],
        trigger=_build(Entity, d["trigger"], f"{where}.trigger"),
        arguments=tuple(_build(Argument, a, f"{where}.arguments[{i}]")
                        for i, a in enumerate(_items(d.get("arguments", ()), f"{where}.arguments"))),
    )


# Read from files (gold, structured predictions): a bad item must say what is wrong in the data's
# terms, not Python's ("Entity.__init__() missing 1 required positional argument").
def _kind(v) -> str:
    return "null" if v is None else type(v).__name__


def _items(v, where: str) -> list:
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"{where}: expected a list of objects, got {_kind(v)}")
    return v


def _names(value, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{where}: expected a list of label names, got {_kind(value)}")
    return list(value)


def _roles(value) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError(f"roles: expected an object of event type -> list of role names, got {_kind(value)}")
    return {k: _names(v, f"roles.{k}") for k, v in value.items()}


def _check_fields(cls, d, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object, got {_kind(d)}")
    known = [f.name for f in fields(cls)]
    missing = [f.name for f in fields(cls)
               if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{where}: missing field {missing[0]!r}")
    unknown = [k for k in d if k not in known]
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(known)})")
    for f in fields(cls):  # the plain fields; the nested ones are checked when built
        v = d.get(f.name)
        if f.type == "str" and f.name in d and not isinstance(v, str):
            raise ValueError(f"{where}.{f.name}: expected a string, got {_kind(v)}")
        if f.type == "int | None" and v is not None and type(v) is not int:
            raise ValueError(f"{where}.{f.name}: expected an integer offset or null, got {_kind(v)}")


def _build(cls, d, where: str):
    _check_fields(cls, d, where)
    return cls(**d)


def find_all(text: str, needle: str) -> list[int]:
    """Start offsets of every (possibly overlapping) occurrence of ``needle``."""
    if not needle:
        return []
    out, i = [], text.find(needle)
    while i >= 0:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


def detect_language(text: str) -> str:
    """'zh' when CJK ideographs make up a noticeable share of the letters, else 'en'."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and cjk / letters > 0.3 else "en"


def unique(items: Iterable) -> list:
    """Order-preserving de-duplication."""
    seen, out = set(), []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out
