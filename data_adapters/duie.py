"""DuIE 2.0 relation extraction (Chinese) -> ``Record(task="RE")``.

Input: JSON lines ``{"text", "spo_list": [{"predicate", "subject", "subject_type",
"object": {"@value", slot...}, "object_type": {"@value", slot...}}]}`` and the schema
file (option ``schema=PATH``, JSON lines ``{"predicate", "subject_type",
"object_type": {"@value", slot...}}``). Complex objects are kept: every object key
other than ``@value`` becomes a relation slot (``Argument(role=slot, ...)``) in schema
order, so ``饰演`` yields ``head | 饰演 | tail | inWork=作品``.

DuIE gives spans as strings only, so each is located in the text with ``find_all``:

* 0 occurrences -> offsets ``None`` (``stats["span_not_found"]``); the span still
  scores at string level.
* 1 occurrence -> that one.
* several (``stats["span_ambiguous"]``):
  1. occurrences lying strictly inside an occurrence of a *longer* span annotated in
     the same record are dropped if any other occurrence remains (``楚留香`` inside
     ``《楚留香新传》`` is the work, not the character; ``stats["span_resolved_nested"]``);
  2. then subject and object are chosen *jointly*: the pair of occurrences that do not
     overlap each other and are closest (character gap), ties -> earliest subject, then
     earliest object; a slot value picks the occurrence closest to the chosen subject /
     object, not overlapping them, ties -> earliest (``stats["span_resolved_distance"]``).
  Why closest: a triple is almost always stated locally, and when it is not, the other
  occurrence is normally a mention of the same thing, so only the offsets (never the
  text, which is what the answer and scorer use) can be off.

Counted too: ``records``, ``relations``, ``complex_objects`` (relations with slots),
``duplicate_spo`` (exact duplicates in one ``spo_list``, dropped).

Options: ``schema`` (required), ``labeled`` (default True: a record without
``spo_list`` is an error; False allows them, e.g. DuIE's unlabeled test split).
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Iterator

from instructie.core.io import ConfigError, InputError, SkipCounter, iter_jsonl
from instructie.prompts.offsets import Span, closest_pair, nearest
from instructie.core.records import Argument, Entity, Record, Relation, find_all

from . import check_options, register

_OPTIONS = {"schema", "labeled"}


def load_schema(path: str) -> dict[str, dict[str, Any]]:
    """predicate -> {"subject_type", "object_type", "slots": {slot: type}} in file order.
    A bad schema line is fatal (it would make every record of that predicate invalid)."""
    schema: dict[str, dict[str, Any]] = {}
    for no, row in iter_jsonl(path):  # default on_error raises, naming file and line
        if not isinstance(row, dict):
            raise InputError(path, no, "schema line is not a JSON object")
        pred, st, ot = row.get("predicate"), row.get("subject_type"), row.get("object_type")
        if not isinstance(pred, str) or not pred:
            raise InputError(path, no, "schema line lacks a 'predicate' string")
        if pred in schema:
            raise InputError(path, no, f"predicate {pred!r} defined twice")
        if not isinstance(st, str) or not st:
            raise InputError(path, no, f"predicate {pred!r}: 'subject_type' must be a string")
        if not isinstance(ot, dict) or not isinstance(ot.get("@value"), str) \
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in ot.items()):
            raise InputError(path, no, f"predicate {pred!r}: 'object_type' must map '@value' and slots to type strings")
        slots = {k: v for k, v in ot.items() if k != "@value"}
        schema[pred] = {"subject_type": st, "object_type": ot["@value"], "slots": slots}
    if not schema:
        raise InputError(path, None, "schema file holds no predicates")
    return schema


class _Locator:
    """Finds candidate occurrences for the strings of one record (see module doc)."""

    def __init__(self, text: str, annotated: set[str], stats: Counter):
        self.text, self.stats = text, stats
        # Occurrences of every annotated string, to spot mentions nested in longer ones.
        self.occ = {s: [(i, i + len(s)) for i in find_all(text, s)] for s in annotated}

    def candidates(self, s: str) -> list[Span]:
        cands = self.occ.get(s) or [(i, i + len(s)) for i in find_all(self.text, s)]
        if not cands:
            self.stats["span_not_found"] += 1
            return []
        if len(cands) == 1:
            return cands
        self.stats["span_ambiguous"] += 1
        free = [c for c in cands if not any(
            len(o) > len(s) and sp[0] <= c[0] and c[1] <= sp[1]
            for o, sps in self.occ.items() for sp in sps)]
        if len(free) == 1:
            self.stats["span_resolved_nested"] += 1
            return free
        self.stats["span_resolved_distance"] += 1
        return free or cands

    # The same nearest-occurrence rules that ground model outputs (instructie.prompts.offsets).
    pair = staticmethod(closest_pair)
    near = staticmethod(nearest)


def _check_spo(spo: Any, schema: dict) -> str | None:
    """What is wrong with one spo, or None."""
    if not isinstance(spo, dict):
        return "spo is not a JSON object"
    for k in ("predicate", "subject", "object"):
        if k not in spo:
            return f"spo lacks {k!r}"
    pred = spo["predicate"]
    if not isinstance(pred, str):
        return f"'predicate' must be a string, got {type(pred).__name__} {pred!r}"
    if pred not in schema:
        return f"predicate {pred!r} is not in the schema"
    if not isinstance(spo["subject"], str) or not spo["subject"]:
        return f"{pred}: subject must be a non-empty string"
    obj = spo["object"]
    if not isinstance(obj, dict) or not isinstance(obj.get("@value"), str) or not obj["@value"]:
        return f"{pred}: object must be an object with a non-empty '@value' string"
    extra = [k for k in obj if k != "@value" and k not in schema[pred]["slots"]]
    if extra:
        return f"{pred}: object slot(s) {extra} not in the schema"
    if not all(isinstance(v, str) and v for v in obj.values()):
        return f"{pred}: object slot values must be non-empty strings"
    for k in ("subject_type", "object_type"):
        if k in spo and not isinstance(spo[k], (str, dict)):
            return f"{pred}: bad {k!r}"
    return None


@register("duie")
def read(path: str, *, split: str = "", on_error: Callable[[InputError], None] | None = None,
         stats: Counter | None = None, **options: Any) -> Iterator[Record]:
    check_options("duie", options, _OPTIONS)
    if not options.get("schema"):
        raise ConfigError("duie: option 'schema' (path to duie_schema.json) is required")
    labeled = options.get("labeled", True)
    if not isinstance(labeled, bool):
        raise ConfigError(f"duie: option 'labeled' must be true or false, got {labeled!r}")
    on_error = on_error if on_error is not None else SkipCounter(False)
    stats = stats if stats is not None else Counter()
    schema = load_schema(str(options["schema"]))
    preds = list(schema)
    roles = {p: list(s["slots"]) for p, s in schema.items()}

    for no, row in iter_jsonl(path, on_error):
        rec = _record(path, no, row, split, schema, preds, roles, labeled, on_error, stats)
        if rec is not None:
            yield rec


def _record(path, no, row, split, schema, preds, roles, labeled, on_error, stats) -> Record | None:
    def bad(problem: str) -> None:
        on_error(InputError(path, no, problem))

    if not isinstance(row, dict):
        return bad("line is not a JSON object")
    text = row.get("text")
    if not isinstance(text, str) or not text:
        return bad("missing or empty 'text'")
    if "spo_list" not in row and labeled:
        return bad("missing 'spo_list' (pass labeled=False for unlabeled data)")
    spos = row.get("spo_list", [])
    if not isinstance(spos, list):
        return bad("'spo_list' is not a list")
    for i, spo in enumerate(spos):
        problem = _check_spo(spo, schema)
        if problem:
            return bad(f"spo #{i + 1}: {problem}")

    # Drop exact duplicates (they would render a repeated item the parser discards).
    seen, uniq = set(), []
    for spo in spos:
        k = json.dumps(spo, sort_keys=True, ensure_ascii=False)
        if k in seen:
            stats["duplicate_spo"] += 1
            continue
        seen.add(k)
        uniq.append(spo)

    annotated = {spo["subject"] for spo in uniq} | {v for spo in uniq for v in spo["object"].values()}
    loc = _Locator(text, annotated, stats)
    relations = []
    for spo in uniq:
        pred, sch, obj = spo["predicate"], schema[spo["predicate"]], spo["object"]
        st = spo.get("subject_type") if isinstance(spo.get("subject_type"), str) else sch["subject_type"]
        ot = spo.get("object_type")
        ot = ot.get("@value") if isinstance(ot, dict) else ot
        ot = ot if isinstance(ot, str) and ot else sch["object_type"]
        h, t = loc.pair(loc.candidates(spo["subject"]), loc.candidates(obj["@value"]))
        anchors = [s for s in (h, t) if s]
        slots = []
        for role in sch["slots"]:  # schema order, so equal objects render equally
            if role in obj:
                sp = loc.near(loc.candidates(obj[role]), anchors)
                slots.append(Argument(role, obj[role], *(sp or (None, None))))
        head = Entity(st, spo["subject"], *(h or (None, None)))
        tail = Entity(ot, obj["@value"], *(t or (None, None)))
        relations.append(Relation(head, pred, tail, tuple(slots)))
        stats["relations"] += 1
        stats["complex_objects"] += bool(slots)
    stats["records"] += 1
    return Record(id=f"duie-{split or 'x'}-{no}", dataset="duie", task="RE", text=text, language="zh",
                  relations=relations, options=list(preds), roles={p: list(r) for p, r in roles.items()},
                  split=split, meta={"line": no})
