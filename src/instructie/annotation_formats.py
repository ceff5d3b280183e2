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

    def span_index(self, start: int, end: int, label: str, score: float | None = None) -> int:
        """The index of the span (start, end, label), added if new."""
        for k, (s, e, lab, _) in enumerate(self.spans):
            if (s, e, lab) == (start, end, label):
                return k
        self.spans.append((start, end, label, score))
        return len(self.spans) - 1


    def merge(self, other: "Annotated") -> None:
        """Add ``other``'s spans and relations (the same text: a record per task of one sentence)."""
        where = [self.span_index(*sp) for sp in other.spans]
        for h, t, lab, score in other.relations:
            if (where[h], where[t], lab) not in {(x[0], x[1], x[2]) for x in self.relations}:
                self.relations.append((where[h], where[t], lab, score))


def merged_by_text(docs: list[Annotated]) -> list[Annotated]:
    """One ``Annotated`` per distinct text, in first-seen order: converted data holds a record
    per task of each sentence, an annotation tool one task per text."""
    out: dict[str, Annotated] = {}
    for d in docs:
        if d.text in out:
            out[d.text].merge(d)
        else:
            out[d.text] = Annotated(d.text, d.id, list(d.spans), list(d.relations))
    return list(out.values())


# ---------------------------------------------------------------- from package rows
def from_row(row: dict) -> Annotated:
    """A converted record (``Record.to_dict``) or an extracted document (``Document.to_dict(
    with_text=True)``) as an ``Annotated``; ValueError naming what is missing. Items without
    offsets (not found in the text) cannot be placed in a tool and are left out."""
    if not isinstance(row.get("text"), str):
        raise ValueError("no 'text' (extraction output needs `instructie extract --with-text`)")
    out = Annotated(row["text"], str(row.get("id", "")))

    def span(d: dict, label: str) -> int | None:
        if not isinstance(d, dict) or not isinstance(d.get("start"), int) or not isinstance(d.get("end"), int):
            return None
        return out.span_index(d["start"], d["end"], label, d.get("score"))

    for e in row.get("entities") or []:
        span(e, e.get("label", ""))
    for r in row.get("relations") or []:
        h, t = span(r.get("head"), r.get("head", {}).get("label") or "entity"), \
            span(r.get("tail"), r.get("tail", {}).get("label") or "entity")
        if h is not None and t is not None:
            out.relations.append((h, t, r.get("label", ""), r.get("score")))
    for ev in row.get("events") or []:
        trig = span(ev.get("trigger"), ev.get("type", ""))
        if trig is None:
            continue
        for a in ev.get("arguments") or []:
            role = a.get("role") or a.get("label") or ""  # records name it role, documents label
            k = span(a, role)
            if k is not None:
                out.relations.append((trig, k, role, ev.get("score")))
    return out


# ---------------------------------------------------------------- writing
def to_doccano(doc: Annotated) -> dict:
    """doccano's import row: ``label`` triples, or entities + relations when there are relations."""
    if not doc.relations:
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
def from_doccano(row: dict) -> Annotated:
    """A doccano export row as an ``Annotated``; ValueError saying what is wrong."""
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise ValueError("a doccano row is an object with a 'text' string")
    out = Annotated(row["text"], str(row.get("id", "")))
    if "entities" in row:
        ids = {}
        for e in row.get("entities") or []:
            try:
                s, t, lab = int(e["start_offset"]), int(e["end_offset"]), str(e["label"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"entity {e!r}: needs id, label, start_offset, end_offset") from None
            _check_span(out.text, s, t, lab)
            ids[e.get("id")] = out.span_index(s, t, lab)
        for r in row.get("relations") or []:
            if not isinstance(r, dict) or r.get("from_id") not in ids or r.get("to_id") not in ids:
                raise ValueError(f"relation {r!r}: from_id/to_id name no entity of the row")
            out.relations.append((ids[r["from_id"]], ids[r["to_id"]], str(r.get("type", "")), None))
        return out
    for x in row.get("label", row.get("labels")) or []:
        if not (isinstance(x, (list, tuple)) and len(x) == 3):
            raise ValueError(f"label {x!r}: expected [start, end, label]")
        s, t, lab = x
        if not (isinstance(s, int) and isinstance(t, int)):
            raise ValueError(f"label {x!r}: offsets must be integers")
        _check_span(out.text, s, t, str(lab))
        out.span_index(s, t, str(lab))
    return out


def from_label_studio(task: dict, text_key: str | None = None) -> Annotated:
    """A Label Studio task as an ``Annotated``: its first annotation that was not cancelled,
    else its first prediction. ``text_key``: the data field holding the text (default: "text",
    else the only string field)."""
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
    out = Annotated(data[text_key], str(task.get("id", data.get("id", ""))))
    done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    source = (done or [p for p in task.get("predictions") or [] if isinstance(p, dict)] or [{}])[0]
    ids: dict = {}
    results = source.get("result") or []
    for r in results:
        if isinstance(r, dict) and r.get("type") == "labels":
            v = r.get("value") or {}
            labels = v.get("labels") or []
            if not (isinstance(v.get("start"), int) and isinstance(v.get("end"), int) and labels):
                raise ValueError(f"labels result {r.get('id')!r}: needs value.start, value.end and value.labels")
            _check_span(out.text, v["start"], v["end"], labels[0])
            for lab in labels:  # a span with two labels is two entities
                ids.setdefault(r.get("id"), out.span_index(v["start"], v["end"], str(lab), r.get("score")))
    for r in results:
        if isinstance(r, dict) and r.get("type") == "relation":
            if r.get("from_id") not in ids or r.get("to_id") not in ids:
                raise ValueError(f"relation {r.get('from_id')!r} -> {r.get('to_id')!r}: names no labeled span")
            h, t = ids[r["from_id"]], ids[r["to_id"]]
            if r.get("direction") == "left":
                h, t = t, h
            for lab in r.get("labels") or [""]:
                out.relations.append((h, t, str(lab), None))
    return out


def _check_span(text: str, start: int, end: int, label: str) -> None:
    if not (0 <= start < end <= len(text)):
        raise ValueError(f"span {start}-{end} ({label}) is outside the text ({len(text)} characters)")


def to_records(docs: list[tuple[int, Annotated]], dataset: str, split: str = "",
               entity_labels: list[str] | None = None, relation_labels: list[str] | None = None) -> list:
    """``Record``s from annotated texts (with their line or task numbers): an NER record per
    text (its options: ``entity_labels``, default every span label of the file), and an RE
    record per text when the file has relations (options: ``relation_labels``, default every
    relation label). Unlabeled texts are kept: they teach that nothing is there too."""
    from .records import Entity, Record, Relation, detect_language

    ents = entity_labels or sorted({lab for _, d in docs for _, _, lab, _ in d.spans})
    rels = relation_labels or sorted({lab for _, d in docs for _, _, lab, _ in d.relations})
    out = []
    for no, d in docs:
        lang = detect_language(d.text)
        base = d.id or str(no)
        spans = [Entity(lab, d.text[s:e], s, e) for s, e, lab, _ in d.spans]
        meta = {"line": no}
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

    docs = []
    for no, raw in rows:
        try:
            docs.append((no, parse(raw)))
        except ValueError as e:
            on_error(InputError(path, where(no), str(e)))
    if stats is not None:
        stats["texts"] += len(docs)
    return to_records(docs, options.get("name") or Path(path).stem, split,
                      label_list(options.get("labels")), label_list(options.get("relations")))


def label_list(value) -> list[str] | None:
    """A label set option: a list, or one comma-separated string."""
    if value is None or isinstance(value, list):
        return value
    return [x.strip() for x in str(value).split(",") if x.strip()]
