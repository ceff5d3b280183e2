"""InstructUIE's IE INSTRUCTIONS layout: ``{NER,RE,EE}/<dataset>/{train,dev,test}.json`` + ``labels.json``.

``path`` may be the tree root (holding NER/RE/EE folders), one task folder (``.../NER``),
one dataset folder (``.../NER/CoNLL2003``) or one split file (``.../train.json``).
Options: ``datasets=[names]`` keeps only those dataset folders; ``language`` overrides
detection (done once per dataset so a dataset never mixes languages).

Split files are JSON arrays::

    NER  {"sentence", "entities": [{"name", "type", "pos": [s, e]}]}
    RE   {"sentence", "relations": [{"head": {"name", "type", "pos"}, "type", "tail": {...}}], "entities"?}
    EE   {"sentence", "events": [{"trigger", "type", "pos", "arguments": [{"name", "role", "pos"}]}]}

``labels.json``: NER/RE a list of labels; EE ``[event_types, roles]`` where roles is a
flat list or a {type: roles} mapping (a bare {type: roles} mapping is accepted too).

Spans: a ``pos`` that slices to its name is kept. An empty/missing ``pos`` (InstructUIE's
released files have them) is located with ``find_all``: NER entities and EE triggers
take the first occurrence no earlier span of the same text took (distinct mentions);
relation heads/tails and event arguments take the first occurrence (the same mention
is shared across relations/events). A ``pos`` that does not slice to its name is
repaired to the nearest occurrence within ``REPAIR_WINDOW`` chars, else the record is
bad. Spans found nowhere keep ``None`` offsets (counted).

EE ``roles``: {event type: roles seen with that type in *all* split files of the
dataset}, in labels.json order, so every split gets the same schema; a type never
seen gets every role.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

from instructie.core.io import ConfigError, InputError, SkipCounter, lone_surrogate, read_json
from instructie.core.records import Argument, Entity, Event, Record, Relation, detect_language, find_all

from . import check_options, register

TASK_DIRS = ("NER", "RE", "EE")
SPLITS = ("train", "dev", "test")
REPAIR_WINDOW = 100
_OPTIONS = {"datasets", "language"}


class _Bad(Exception):
    """One record is invalid; carries the problem text."""


@register("ie_instructions")
def read(path, *, split: str = "", on_error: Callable[[InputError], None] | None = None,
         stats: Counter | None = None, **options: Any) -> Iterator[Record]:
    check_options("ie_instructions", options, _OPTIONS)
    if split not in ("",) + SPLITS:
        raise ConfigError(f"ie_instructions: split must be one of train, dev, test or empty, not {split!r}")
    on_error = on_error or SkipCounter(False)
    stats = stats if stats is not None else Counter()
    wanted = options.get("datasets")
    if isinstance(wanted, str):
        wanted = [wanted]
    for task, ds_dir, files in _resolve(Path(path), split):
        if wanted and ds_dir.name not in wanted:
            continue
        yield from _read_dataset(task, ds_dir, files, on_error, stats, options.get("language"))


def _resolve(p: Path, split: str) -> Iterator[tuple[str, Path, list[Path]]]:
    """(task, dataset folder, split files to yield) for whatever ``p`` names."""
    if not p.exists():
        raise InputError(p, None, "not found")
    if p.is_file():
        task = p.parent.parent.name
        if task not in TASK_DIRS:
            raise InputError(p, None, f"cannot tell the task: expected <{'|'.join(TASK_DIRS)}>/<dataset>/{p.name}")
        if split and p.stem != split:
            return
        yield task, p.parent, [p]
        return
    if any((p / t).is_dir() for t in TASK_DIRS):  # tree root
        dirs = [(t, d) for t in TASK_DIRS if (p / t).is_dir() for d in sorted((p / t).iterdir()) if d.is_dir()]
    elif p.name in TASK_DIRS:  # one task folder
        dirs = [(p.name, d) for d in sorted(p.iterdir()) if d.is_dir()]
    elif p.parent.name in TASK_DIRS:  # one dataset folder
        dirs = [(p.parent.name, p)]
    else:
        raise InputError(p, None, "not an IE INSTRUCTIONS folder: expected NER/RE/EE folders, a task folder or a dataset folder inside one")
    for task, d in dirs:
        files = [d / f"{s}.json" for s in SPLITS if (not split or s == split) and (d / f"{s}.json").is_file()]
        if files:
            yield task, d, files


def _load_labels(task: str, ds_dir: Path) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(labels, flat roles, per-type roles from labels.json)."""
    lp = ds_dir / "labels.json"
    if not lp.is_file():
        raise InputError(lp, None, "labels.json missing")
    raw = read_json(lp)
    if problem := lone_surrogate(raw):
        raise InputError(lp, None, problem)
    if task != "EE":
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise InputError(lp, None, "expected a JSON list of label strings")
        return list(raw), [], {}
    if isinstance(raw, dict):
        raw = [list(raw), raw]
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], list)):
        raise InputError(lp, None, "EE labels.json: expected [event_types, roles] or {event_type: roles}")
    types, roles = raw[0], raw[1]
    if not all(isinstance(x, str) for x in types):
        raise InputError(lp, None, "EE labels.json: the event types must be a list of strings")
    if isinstance(roles, dict):
        for k, v in roles.items():
            if not isinstance(v, list) or not all(isinstance(r, str) for r in v):
                raise InputError(lp, None, f"EE labels.json: the roles of {k!r} must be a list of role names, "
                                           f"got {v!r}")
        by_type = {k: list(v) for k, v in roles.items()}
        flat = list(dict.fromkeys(r for v in by_type.values() for r in v))
        return list(types), flat, by_type
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InputError(lp, None, "EE labels.json: roles must be a list of role names or a mapping")
    return list(types), list(roles), {}


def _read_dataset(task: str, ds_dir: Path, files: list[Path], on_error, stats: Counter,
                  language: str | None) -> Iterator[Record]:
    try:
        labels, flat_roles, typed_roles = _load_labels(task, ds_dir)
    except InputError as e:  # a dataset-level problem: report, go on with the next dataset
        on_error(e)
        stats["invalid_files"] += 1
        return
    label_set, role_set = set(labels), set(flat_roles)
    data: dict[Path, list] = {}
    for f in files:
        try:
            data[f] = _load_array(f)
        except InputError as e:
            on_error(e)
            stats["invalid_files"] += 1
    roles: dict[str, list[str]] = {}
    if task == "EE":
        roles = typed_roles or _roles_from_data(ds_dir, data, labels, flat_roles)
    if language is None:  # one language per dataset, from a sample of its sentences
        sample = " ".join(str(r.get("sentence", "")) for rows in data.values() for r in rows[:200] if isinstance(r, dict))
        language = detect_language(sample)
    for f, rows in data.items():
        sp = f.stem
        for i, raw in enumerate(rows):
            try:
                rec = _convert(task, raw, label_set, role_set, stats)
            except _Bad as e:
                on_error(InputError(f, f"record {i}", str(e)))
                stats["invalid"] += 1
                continue
            rec.id = f"{task}/{ds_dir.name}/{sp}/{i}"
            rec.dataset, rec.split, rec.language = ds_dir.name, sp, language
            rec.options = list(labels)
            rec.roles = {k: list(v) for k, v in roles.items()}
            stats["records"] += 1
            stats[f"records:{task}/{ds_dir.name}/{sp}"] += 1
            yield rec


def _load_array(f: Path) -> list:
    data = read_json(f)
    if not isinstance(data, list):
        raise InputError(f, None, "expected a JSON array of records")
    return data


def _roles_from_data(ds_dir: Path, data: dict[Path, list], types: list[str], flat: list[str]) -> dict[str, list[str]]:
    seen: dict[str, set] = {}
    rows_by_file = dict(data)
    for s in SPLITS:  # every split, not only those read, so all splits share one schema
        f = ds_dir / f"{s}.json"
        if f.is_file() and f not in rows_by_file:
            try:
                rows_by_file[f] = _load_array(f)
            except InputError:
                continue  # that file's problems are reported when it is read itself
    for rows in rows_by_file.values():
        for r in rows:  # malformed records are reported when converted (_convert); here they add nothing
            events = r.get("events") if isinstance(r, dict) else None
            for ev in events if isinstance(events, list) else []:
                args = ev.get("arguments") if isinstance(ev, dict) else None
                if isinstance(ev, dict):
                    seen.setdefault(str(ev.get("type")), set()).update(
                        str(a.get("role")) for a in (args if isinstance(args, list) else []) if isinstance(a, dict))
    return {t: [r for r in flat if r in seen[t]] if t in seen else list(flat) for t in types}


# ---------------------------------------------------------------- one record
def _convert(task: str, raw: Any, labels: set, roles: set, stats: Counter) -> Record:
    if not isinstance(raw, dict):
        raise _Bad(f"expected an object, got {type(raw).__name__}")
    if problem := lone_surrogate(raw):
        raise _Bad(problem)
    text = raw.get("sentence")
    if not isinstance(text, str):
        raise _Bad("missing field 'sentence'")
    if not text.strip():
        raise _Bad("empty sentence")
    rec = Record(id="", dataset="", task=task, text=text)
    used: set[tuple[int, int]] = set()  # spans taken by located NER entities / triggers
    if task == "NER" or (task == "RE" and raw.get("entities")):
        for e in _list(raw, "entities", required=task == "NER"):
            name, label = _str(e, "name"), _str(e, "type")
            if task == "NER" and label not in labels:
                raise _Bad(f"unknown label {label!r}")
            s, t = _span(text, name, e.get("pos"), used, stats, distinct=True)
            rec.entities.append(Entity(label, name, s, t))
    if task == "RE":
        for r in _list(raw, "relations", required=True):
            label = _str(r, "type")
            if label not in labels:
                raise _Bad(f"unknown label {label!r}")
            ends = []
            for side in ("head", "tail"):
                x = r.get(side)
                if not isinstance(x, dict):
                    raise _Bad(f"relation missing field {side!r}")
                name = _str(x, "name")
                s, t = _span(text, name, x.get("pos"), used, stats, distinct=False)
                ends.append(Entity(str(x.get("type") or ""), name, s, t))
            rec.relations.append(Relation(ends[0], label, ends[1]))
    if task == "EE":
        for ev in _list(raw, "events", required=True):
            etype, trig = _str(ev, "type"), _str(ev, "trigger")
            if etype not in labels:
                raise _Bad(f"unknown label {etype!r}")
            s, t = _span(text, trig, ev.get("pos"), used, stats, distinct=True)
            args = []
            for a in _list(ev, "arguments", required=False):
                role, name = _str(a, "role"), _str(a, "name")
                if roles and role not in roles:
                    raise _Bad(f"unknown role {role!r}")
                s2, t2 = _span(text, name, a.get("pos"), used, stats, distinct=False)
                args.append(Argument(role, name, s2, t2))
            rec.events.append(Event(etype, Entity(etype, trig, s, t), tuple(args)))
    stats["entities"] += len(rec.entities)
    stats["relations"] += len(rec.relations)
    stats["events"] += len(rec.events)
    stats["arguments"] += sum(len(e.arguments) for e in rec.events)
    return rec


def _list(obj: dict, key: str, required: bool) -> list[dict]:
    v = obj.get(key)
    if v is None:
        if required:
            raise _Bad(f"missing field {key!r}")
        return []
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise _Bad(f"field {key!r} must be a list of objects")
    return v


def _str(obj: dict, key: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise _Bad(f"missing field {key!r}")
    return v


def _span(text: str, name: str, pos: Any, used: set, stats: Counter, distinct: bool) -> tuple[int | None, int | None]:
    """Offsets for ``name``: checked ``pos``, else located (see module docstring)."""
    if pos is None or pos == []:
        starts = find_all(text, name)
        if not starts:
            stats["span_not_found"] += 1
            return None, None
        stats["span_located"] += 1
        if len(starts) > 1:
            stats["span_ambiguous"] += 1
        s = starts[0]
        if distinct:
            free = [x for x in starts if (x, x + len(name)) not in used]
            s = free[0] if free else starts[0]
            used.add((s, s + len(name)))
        return s, s + len(name)
    if not (isinstance(pos, list) and len(pos) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in pos)):
        raise _Bad(f"bad pos {pos!r} for {name!r}: expected [start, end]")
    s, e = pos
    if not 0 <= s < e <= len(text):
        raise _Bad(f"pos {pos} of {name!r} outside the sentence (length {len(text)})")
    if text[s:e] != name:
        near = [x for x in find_all(text, name) if abs(x - s) <= REPAIR_WINDOW]
        if not near:
            raise _Bad(f"pos {pos} gives {text[s:e]!r}, not {name!r}, and no occurrence nearby")
        s = min(near, key=lambda x: abs(x - s))
        e = s + len(name)
        stats["span_repaired"] += 1
    if distinct:
        used.add((s, e))
    return s, e
