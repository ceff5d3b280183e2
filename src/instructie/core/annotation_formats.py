"""Annotation-tool formats, both ways: doccano JSONL and Label Studio JSON tasks.

Reading (``data_adapters/doccano.py``, ``data_adapters/label_studio.py``) turns a tool's
export into the package's ``Record``s; writing (``instructie export``) turns records or
``instructie extract --with-text`` output into files the tool imports -- model output as
pre-annotations to correct, with each item's confidence where the tool keeps one.

doccano (sequence labeling, with or without relations)::

    {"text": ..., "label": [[start, end, "LABEL"], ...]}
    {"text": ..., "entities": [{"id": 1, "label": "PER", "start_offset": 0, "end_offset": 5}],
     "relations": [{"id": 1, "from_id": 1, "to_id": 2, "type": "born_in"}]}

Label Studio (a JSON list of tasks; ``<Labels name="label" toName="text">`` and
``<Relations>`` in the labeling config)::

    {"data": {"text": ...}, "annotations" | "predictions": [{"result": [
        {"id": "e0", "from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 5, "text": "Obama", "labels": ["PER"]}, "score": 0.93},
        {"type": "relation", "from_id": "e0", "to_id": "e1", "direction": "right", "labels": ["born_in"]}]}]}

Offsets are character offsets, end exclusive, in both tools and here. An event is written as
its trigger (labeled with the event type) and its arguments (labeled with their roles), each
argument joined to the trigger by a relation named after its role; reading treats every
relation as a relation between entities.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Annotated:
    """One text with located spans and relations between them (indices into ``spans``), the
    shape both tools share."""
    text: str
    id: str = ""
    spans: list[tuple[int, int, str, float | None]] = field(default_factory=list)  # start, end, label, score
    relations: list[tuple[int, int, str, float | None]] = field(default_factory=list)  # head, tail, label, score
    unplaced: int = 0  # items left out: no offsets in the text

    def span_index(self, start: int, end: int, label: str | None, score: float | None = None) -> int:
        """The index of the span (start, end, label), added if new. ``label`` None (a relation's
        end with no type): any span at those offsets, else a new one labeled "entity"."""
        for k, (s, e, lab, _) in enumerate(self.spans):
            if (s, e) == (start, end) and (label is None or lab == label):
                return k
        self.spans.append((start, end, "entity" if label is None else label, score))
        return len(self.spans) - 1


# ---------------------------------------------------------------- from package rows
def not_a_record(row: dict) -> str | None:
    """Why ``instructie export`` cannot read ``row``, or None: it reads records (``convert`` output,
    ``test --gold-out``: a 'task') or extraction output (``extract --with-text``: 'sentences'). A
    tool's own export shares 'text' (doccano's relation shape 'entities' too) with records, and read
    as records every span would be lost without a word."""
    ents, labels = row.get("entities"), row.get("labels")
    if ("label" in row or isinstance(labels, list) and any(isinstance(x, list) for x in labels)
            or isinstance(ents, list) and any(isinstance(e, dict) and "start_offset" in e for e in ents)):
        tool, name = "doccano", "a doccano row"
    elif {"data", "annotations", "predictions"} & set(row):
        tool, name = "label_studio", "a Label Studio task"
    elif "task" not in row and "sentences" not in row:
        return ("not an instructie record (no 'task'): export reads `instructie convert` output, "
                "`instructie test --gold-out` or `instructie extract --with-text` output")
    else:
        return None
    return (f"{name}, not an instructie record: run `instructie convert --dataset {tool}` on the file "
            "first and export its output")


def from_rows(rows: list[dict]) -> Annotated:
    """Converted records (``Record.to_dict``: one per task of a sentence) or one extracted
    document (``Document.to_dict(with_text=True)``) of one text as an ``Annotated``; ValueError
    naming what is wrong. Items without offsets (not found in the text) cannot be placed in a
    tool and are left out (``Annotated.unplaced`` counts them). A relation's end that has no type
    is the span at its offsets (an NER record of the same sentence names it)."""
    first = rows[0]
    if not isinstance(first.get("text"), str):
        raise ValueError("no 'text' (extraction output needs `instructie extract --with-text`)")
    out = Annotated(first["text"], str(first.get("id", "")))
    ends = []  # (span dict, label or None): relation ends and event arguments, placed after the entities

    def located(d) -> bool:
        if d is not None and not isinstance(d, dict):
            raise ValueError(f"an item's span must be an object, got {d!r}")
        ok = bool(d) and type(d.get("start")) is int and type(d.get("end")) is int
        if ok and not 0 <= d["start"] < d["end"] <= len(out.text):
            raise ValueError(f"span {d['start']}-{d['end']} is outside the text ({len(out.text)} characters)")
        out.unplaced += not ok
        return ok

    def items(row, key):
        v = _list(row, key)
        if not all(isinstance(x, dict) for x in v):
            raise ValueError(f"'{key}' must be a list of objects")
        return v

    for row in rows:
        for e in items(row, "entities"):
            if located(e):
                out.span_index(e["start"], e["end"], str(e.get("label", "")), _score(e))
    for row in rows:
        for r in items(row, "relations"):
            h, t = r.get("head"), r.get("tail")
            if located(h) and located(t):
                ends.append((h, t, str(r.get("label", "")), _score(r)))
        for ev in items(row, "events"):
            trig = ev.get("trigger")
            if not located(trig):
                continue
            for a in ev.get("arguments") or []:
                if located(a):  # records name the role "role", documents "label"
                    role = str(a.get("role") or a.get("label") or "")
                    ends.append(({**trig, "label": str(ev.get("type", ""))}, {**a, "label": role}, role,
                                 _score(ev)))
    for h, t, lab, score in ends:
        hi = out.span_index(h["start"], h["end"], h.get("label") or None, _score(h))
        ti = out.span_index(t["start"], t["end"], t.get("label") or None, _score(t))
        if (hi, ti, lab) not in {x[:3] for x in out.relations}:
            out.relations.append((hi, ti, lab, score))
    return out


def _score(d: dict) -> float | None:
    v = d.get("score")
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ValueError(f"score {v!r} is not a number")
    return v


def grouped(rows: list[tuple[int, dict]], extracted: bool) -> list[tuple[int, list[dict]]]:
    """Rows to write as one task each: an extracted document alone; converted records of one
    sentence (consecutive rows with the same text: ``convert`` writes a sentence's tasks
    together) as one."""
    out: list[tuple[int, list[dict]]] = []
    for no, row in rows:
        if out and not extracted and row.get("text") == out[-1][1][-1].get("text"):
            out[-1][1].append(row)
        else:
            out.append((no, [row]))
    return out


# ---------------------------------------------------------------- writing
def to_doccano(doc: Annotated, with_relations: bool) -> dict:
    """doccano's import row: ``label`` triples (a sequence-labeling project), or entities +
    relations (a project with relations; it reads only those columns). One shape per file."""
    if not with_relations:
        return {"id": doc.id, "text": doc.text, "label": [[s, e, lab] for s, e, lab, _ in doc.spans]}
    return {"id": doc.id, "text": doc.text,
            "entities": [{"id": k + 1, "label": lab, "start_offset": s, "end_offset": e}
                         for k, (s, e, lab, _) in enumerate(doc.spans)],
            "relations": [{"id": k + 1, "from_id": h + 1, "to_id": t + 1, "type": lab}
                          for k, (h, t, lab, _) in enumerate(doc.relations)]}


def to_label_studio(doc: Annotated, as_predictions: bool, model_version: str = "instructie",
                    from_name: str = "label", to_name: str = "text") -> dict:
    """A Label Studio task: the text and its items, as ``predictions`` (pre-annotations, with
    scores) or ``annotations``."""
    result: list[dict] = []
    for k, (s, e, lab, score) in enumerate(doc.spans):
        item = {"id": f"e{k}", "from_name": from_name, "to_name": to_name, "type": "labels",
                "value": {"start": s, "end": e, "text": doc.text[s:e], "labels": [lab]}}
        if score is not None and as_predictions:
            item["score"] = round(float(score), 4)
        result.append(item)
    for h, t, lab, _ in doc.relations:
        result.append({"from_id": f"e{h}", "to_id": f"e{t}", "type": "relation", "direction": "right",
                       "labels": [lab]})
    task: dict = {"data": {to_name: doc.text}}
    if doc.id:
        task["data"]["id"] = doc.id
    if as_predictions:
        scores = [x[3] for x in doc.spans if x[3] is not None]
        pred: dict = {"model_version": model_version, "result": result}
        if scores:  # the task's score: its least sure item (Label Studio sorts review queues by it)
            pred["score"] = round(float(min(scores)), 4)
        task["predictions"] = [pred]
    else:
        task["annotations"] = [{"result": result}]
    return task


# ---------------------------------------------------------------- reading
def from_doccano(row: dict) -> Annotated | None:
    """A doccano export row as an ``Annotated``; ValueError saying what is wrong."""
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise ValueError("a doccano row is an object with a 'text' string")
    if not {"entities", "label", "labels"} & set(row):  # another format's line (DuIE's spo_list...) would pass as
        # a text with no spans: every annotation lost without a word
        raise ValueError(f"a doccano row holds its spans in 'label' (or 'labels', or 'entities'); this one has only "
                         f"{', '.join(sorted(row))}: is the file a doccano export?")
    out = Annotated(row["text"], _id(row.get("id"), "id"))
    if "entities" in row:
        ents, rels = _list(row, "entities"), _list(row, "relations")
        ids: dict = {}
        for i, e in enumerate(ents):
            if not isinstance(e, dict) or not {"label", "start_offset", "end_offset"} <= set(e):
                raise ValueError(f"entity {e!r}: needs label, start_offset, end_offset")
            label = _label(e["label"], f"entities[{i}].label")
            _check_span(out.text, e["start_offset"], e["end_offset"], label)
            k = out.span_index(e["start_offset"], e["end_offset"], label)
            eid = _id(e.get("id"), f"entities[{i}].id")
            if rels and (not eid or eid in ids):
                raise ValueError(f"entity {e!r}: relations need every entity's own id")
            ids[eid] = k
        for i, r in enumerate(rels):
            if not isinstance(r, dict):
                raise ValueError(f"relation {r!r}: from_id/to_id name no entity of the row")
            ends = [_id(r.get(k), f"relations[{i}].{k}") for k in ("from_id", "to_id")]
            if not all(x and x in ids for x in ends):
                raise ValueError(f"relation {r!r}: from_id/to_id name no entity of the row")
            if not isinstance(r.get("type"), str) or not r["type"]:
                raise ValueError(f"relation {r!r}: needs a type")
            out.relations.append((ids[ends[0]], ids[ends[1]], r["type"], None))
        return out
    key = "label" if "label" in row else "labels"
    for i, x in enumerate(_list(row, key)):
        if not (isinstance(x, (list, tuple)) and len(x) == 3):
            raise ValueError(f"label {x!r}: expected [start, end, label]")
        label = _label(x[2], f"{key}[{i}] (its third item, the label)")
        _check_span(out.text, x[0], x[1], label)
        out.span_index(x[0], x[1], label)
    return out


def from_label_studio(task: dict, text_key: str | None = None) -> Annotated | None:
    """A Label Studio task as an ``Annotated``: its first annotation that was not cancelled,
    else its first prediction; None when it has neither (not labeled yet: not "nothing here").
    ``text_key``: the data field holding the text (default: "text", else the only string field).
    A span's ``value.text``, where given, must be what its offsets cut from the text."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise ValueError("a Label Studio task is an object with a 'data' object")
    data = task["data"]
    if text_key is None:
        strings = [k for k, v in data.items() if isinstance(v, str) and k != "id"]
        text_key = "text" if "text" in data else (strings[0] if len(strings) == 1 else None)
        if text_key is None:
            raise ValueError(f"no 'text' in data and {len(strings)} string fields: name one (option text_key)")
    if not isinstance(data.get(text_key), str):
        raise ValueError(f"data.{text_key} is not a string")
    tid = task.get("id", data.get("id"))
    out = Annotated(data[text_key], _id(tid, "id" if "id" in task else "data.id"))
    done = [a for a in _list(task, "annotations") if isinstance(a, dict) and not a.get("was_cancelled")]
    # an export lists a task's predictions by id (numbers); tasks built for import hold them whole
    source = (done or [p for p in _list(task, "predictions") if isinstance(p, dict)] or [None])[0]
    if source is None:
        return None
    results = [r for r in _list(source, "result") if isinstance(r, dict)]
    ids: dict = {}
    has_relations = any(r.get("type") == "relation" for r in results)
    for i, r in enumerate(results):
        if r.get("type") != "labels":
            continue
        v = r.get("value")
        labels = v.get("labels") if isinstance(v, dict) else None
        if not (isinstance(labels, list) and labels):
            raise ValueError(f"labels result {r.get('id')!r}: needs value.start, value.end and value.labels")
        labels = [_label(lab, f"result[{i}].value.labels[{j}]") for j, lab in enumerate(labels)]
        rid = _id(r.get("id"), f"result[{i}].id")
        _check_span(out.text, v.get("start"), v.get("end"), labels[0])
        if isinstance(v.get("text"), str) and out.text[v["start"]:v["end"]] != v["text"]:
            raise ValueError(f"labels result {r.get('id')!r}: offsets {v['start']}-{v['end']} cut "
                             f"{out.text[v['start']:v['end']]!r} from the text, not {v['text']!r}")
        if has_relations and (not rid or rid in ids):
            raise ValueError(f"labels result {r.get('id')!r}: relations need every span's own id")
        for lab in labels:  # a span with two labels is two entities; relations join the first
            ids.setdefault(rid, out.span_index(v["start"], v["end"], lab, _score(r)))
    for i, r in enumerate(results):
        if r.get("type") != "relation":
            continue
        ends = [_id(r.get(k), f"result[{i}].{k}") for k in ("from_id", "to_id")]
        if not all(x and x in ids for x in ends):
            raise ValueError(f"relation {r.get('from_id')!r} -> {r.get('to_id')!r}: names no labeled span")
        labels = r.get("labels") or []
        if not isinstance(labels, list):
            raise ValueError(f"relation {r.get('from_id')!r} -> {r.get('to_id')!r}: labels must be a list")
        h, t = ids[ends[0]], ids[ends[1]]
        if r.get("direction") == "left":
            h, t = t, h
        for j, lab in enumerate(labels):  # an unlabeled relation names no relation type: nothing to learn from
            out.relations.append((h, t, _label(lab, f"result[{i}].labels[{j}]"), None))
    return out


def _list(obj: dict, key: str) -> list:
    v = obj.get(key) or []
    if not isinstance(v, list):
        raise ValueError(f"'{key}' must be a list, got {type(v).__name__}")
    return v


def _label(value, where: str) -> str:
    """A span's or relation's label as the tool wrote it: a non-empty string (a null or a list would become
    the label "None" or "['a']" and be learned as one)."""
    if not isinstance(value, str) or not value.strip():
        got = "null" if value is None else repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"
        raise ValueError(f"{where} must be a non-empty string, got {got}")
    return value


def _id(value, where: str) -> str:
    """An id as the tool wrote it (a number or a string) as a string; "" when there is none."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{where} must be a number or a string, got {type(value).__name__} {value!r}")
    return str(value)


def _check_span(text: str, start, end, label: str) -> None:
    if type(start) is not int or type(end) is not int:
        raise ValueError(f"span {start!r}-{end!r} ({label}): offsets must be integers")
    if not (0 <= start < end <= len(text)):
        raise ValueError(f"span {start}-{end} ({label}) is outside the text ({len(text)} characters)")


def to_records(docs: list[tuple[int, Annotated]], dataset: str, split: str = "",
               entity_labels: list[str] | None = None, relation_labels: list[str] | None = None) -> list:
    """``Record``s from annotated texts (with their line or task numbers): an NER record per
    text (its options: ``entity_labels``, default every span label of the file), and an RE
    record per text when the file has relations (options: ``relation_labels``, default every
    relation label). Unlabeled texts are kept: they teach that nothing is there too.

    Record ids come from the tool's ids (else the line or task number). A text whose id an
    earlier text of the file already has (two exports joined, each counting from 1) is kept
    under the id with ``@<its number>`` appended -- two records sharing an id could not be told
    apart when predictions are matched to gold -- and its ``meta`` says so: ``repeated_id``
    (the id as written) and ``first_line`` (the earlier text's number)."""
    from .records import Entity, Record, Relation, detect_language

    ents = entity_labels or sorted({lab for _, d in docs for _, _, lab, _ in d.spans})
    rels = relation_labels or sorted({lab for _, d in docs for _, _, lab, _ in d.relations})
    out = []
    used: dict[str, int] = {}  # id -> number of the text that has it
    for no, d in docs:
        lang = detect_language(d.text)
        base = d.id or str(no)
        spans = [Entity(lab, d.text[s:e], s, e) for s, e, lab, _ in d.spans]
        meta: dict = {"line": no}
        if base in used:
            meta.update(repeated_id=base, first_line=used[base])
            new, k = f"{base}@{no}", 1
            while new in used:
                k += 1
                new = f"{base}@{no}.{k}"
            base = new
        used[base] = no
        out.append(Record(f"{dataset}-{split or 'x'}-{base}-NER", dataset, "NER", d.text, lang,
                          entities=[x for x in spans if x.label in ents], options=list(ents), split=split, meta=meta))
        if rels:
            relations = [Relation(Entity(spans[h].label, spans[h].text, spans[h].start, spans[h].end), lab,
                                  Entity(spans[t].label, spans[t].text, spans[t].start, spans[t].end))
                         for h, t, lab, _ in d.relations if lab in rels]
            out.append(Record(f"{dataset}-{split or 'x'}-{base}-RE", dataset, "RE", d.text, lang,
                              relations=relations, options=list(rels), split=split, meta=meta))
    return out


def read_records(path, rows, parse, where, *, split: str, on_error, stats, options: dict) -> list:
    """An adapter's body: ``(number, raw)`` ``rows`` parsed by ``parse`` into ``Annotated``s (a
    ValueError goes to ``on_error`` as an ``InputError`` at ``where(number)``), then ``to_records``
    with the adapter's options (``name``, ``labels``, ``relations``)."""
    from pathlib import Path

    from .io import InputError

    docs, unlabeled = [], 0
    for no, raw in rows:
        try:
            doc = parse(raw)
        except ValueError as e:
            on_error(InputError(path, where(no), str(e)))
            continue
        if doc is None:
            unlabeled += 1
        else:
            docs.append((no, doc))
    records = to_records(docs, options.get("name") or Path(path).stem, split,
                         label_list(options.get("labels")), label_list(options.get("relations")))
    if stats is not None:
        stats["texts"] += len(docs)
        if unlabeled:
            stats["not_labeled"] += unlabeled  # Label Studio tasks with no annotation yet: left out
        repeated = sum(r.task == "NER" and "repeated_id" in r.meta for r in records)
        if repeated:
            stats["repeated_ids"] += repeated  # given unique ids (to_records)
    return records


def label_list(value) -> list[str] | None:
    """A label set option: a list, or one comma-separated string."""
    if value is None or isinstance(value, list):
        return value
    return [x.strip() for x in str(value).split(",") if x.strip()]
