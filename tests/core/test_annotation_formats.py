"""doccano and Label Studio, both ways: their exports read as records (adapters), and records or
extraction output written as files they import (``instructie export``)."""
import json
from pathlib import Path

import pytest

from instructie.data_adapters import get_adapter
from instructie.core.annotation_formats import from_rows, to_label_studio
from instructie.cli.main import main as cli_main
from instructie.core.io import InputError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "annotation_tools"


def by_task(records, task):
    return [r for r in records if r.task == task]


def test_doccano_exports_read_as_located_records():
    ner = list(get_adapter("doccano")(FIX / "doccano_ner.jsonl"))
    assert len(ner) == 6 and {r.task for r in ner} == {"NER"} and ner[0].dataset == "doccano_ner"
    for r in ner:
        assert r.entities and all(r.text[e.start:e.end] == e.text for e in r.entities)
        assert r.options == sorted({e.label for x in ner for e in x.entities})  # every label of the file
    recs = list(get_adapter("doccano")(FIX / "doccano_relations.jsonl", name="duie_mine"))
    re_ = by_task(recs, "RE")
    assert len(re_) == 5 and len(by_task(recs, "NER")) == 5 and re_[0].dataset == "duie_mine"
    first = re_[0]
    assert first.text.startswith("《邪少兵王》") and [(x.head.text, x.label, x.tail.text) for x in first.relations] == \
        [("邪少兵王", "作者", "冰火未央")]
    # a label set asked for: spans of other labels are left out, the options are the set
    only = list(get_adapter("doccano")(FIX / "doccano_ner.jsonl", labels="person"))
    assert all(r.options == ["person"] and all(e.label == "person" for e in r.entities) for r in only)


def test_label_studio_export_reads_annotations_else_predictions():
    recs = list(get_adapter("label_studio")(FIX / "label_studio_export.json"))
    ner = by_task(recs, "NER")
    tasks = json.loads((FIX / "label_studio_export.json").read_text())
    assert len(ner) == len(tasks) == 8
    for r, t in zip(ner, tasks):
        src = ([a for a in t["annotations"] if not a.get("was_cancelled")] or t["predictions"])[0]["result"]
        spans = {(x["value"]["start"], x["value"]["end"], x["value"]["labels"][0]) for x in src if x["type"] == "labels"}
        assert {(e.start, e.end, e.label) for e in r.entities} == spans  # the cancelled one is not read
    re_ = {r.id: r for r in by_task(recs, "RE")}
    duie = {r.text: r for r in get_adapter("duie")(FIX.parent / "duie" / "duie_train_excerpt.json",
                                                   schema=FIX.parent / "duie" / "duie_schema.json")}
    for r in re_.values():
        if r.relations:  # drawn left or right: the same (head, relation, tail) as the source
            assert {(x.head.text, x.label, x.tail.text) for x in r.relations} == \
                {(x.head.text, x.label, x.tail.text) for x in duie[r.text].relations}


def test_records_round_trip_through_both_tools(tmp_path):
    """convert (doccano import) -> export to Label Studio -> read back: the same spans and relations;
    and to doccano and back."""
    conv = tmp_path / "conv.jsonl"
    assert cli_main(["convert", "--dataset", "doccano", "--input", str(FIX / "doccano_relations.jsonl"),
                     "--tasks", "NER,RE", "-o", str(conv)]) == 0
    rows = [json.loads(x) for x in conv.read_text().splitlines()]
    for to, name in (("label-studio", "ls.json"), ("doccano", "dc.jsonl")):
        out = tmp_path / name
        assert cli_main(["export", str(conv), "--to", to, "-o", str(out)]) == 0
        back = list(get_adapter("label_studio" if to == "label-studio" else "doccano")(out))
        for row in rows:
            same = [r for r in back if r.text == row["text"] and r.task == row["task"]]
            assert len(same) == 1  # one task per text (its NER and RE records merged), read back per task
            got = next(r for r in same if r.task == row["task"])
            if row["task"] == "NER":
                assert {(e["start"], e["end"], e["label"]) for e in row["entities"]} == \
                    {(e.start, e.end, e.label) for e in got.entities}
            else:
                assert {(x["head"]["start"], x["label"], x["tail"]["start"]) for x in row["relations"]} == \
                    {(x.head.start, x.label, x.tail.start) for x in got.relations}
    ls = json.loads((tmp_path / "ls.json").read_text())
    assert all("annotations" in t and "predictions" not in t for t in ls)  # gold records: annotations


def test_extraction_output_becomes_label_studio_predictions_with_scores():
    doc = {"id": "7", "text": "Obama visited Paris . He met Macron .", "language": "en", "sentences": [],
           "entities": [{"text": "Obama", "label": "person", "start": 0, "end": 5, "score": 0.91},
                        {"text": "Paris", "label": "location", "start": 14, "end": 19, "score": 0.42},
                        {"text": "Nowhere", "label": "location", "start": None, "end": None, "score": 0.3}],
           "relations": [{"head": {"text": "Obama", "label": "person", "start": 0, "end": 5, "score": 0.8},
                          "label": "visited", "tail": {"text": "Paris", "label": "location", "start": 14, "end": 19,
                                                       "score": 0.8}, "score": 0.8, "slots": []}],
           "events": [{"type": "Meet", "trigger": {"text": "met", "label": "Meet", "start": 25, "end": 28, "score": 0.7},
                       "arguments": [{"text": "Macron", "label": "entity", "start": 29, "end": 35, "score": 0.7}],
                       "score": 0.7}]}
    a = from_rows([doc])
    assert [(s, e, lab) for s, e, lab, _ in a.spans] == [(0, 5, "person"), (14, 19, "location"), (25, 28, "Meet"),
                                                         (29, 35, "entity")]  # the unlocated one left out
    task = to_label_studio(a, as_predictions=True)
    res = task["predictions"][0]["result"]
    labels = [r for r in res if r["type"] == "labels"]
    assert [r["value"]["text"] for r in labels] == ["Obama", "Paris", "met", "Macron"]
    assert labels[0]["score"] == 0.91 and task["predictions"][0]["score"] == 0.42  # the least sure item
    assert [(r["from_id"], r["to_id"], r["labels"]) for r in res if r["type"] == "relation"] == \
        [("e0", "e1", ["visited"]), ("e2", "e3", ["entity"])]
    with pytest.raises(ValueError, match="--with-text"):
        from_rows([{k: v for k, v in doc.items() if k != "text"}])


def test_bad_annotation_files_name_file_and_record(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "EU rejects", "label": [[0, 2, "ORG"]]}\n{"text": "short", "label": [[0, 40, "ORG"]]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: span 0-40 \(ORG\) is outside the text"):
        list(get_adapter("doccano")(bad))
    ls = tmp_path / "bad_ls.json"
    ls.write_text(json.dumps([{"data": {"text": "a b"}, "annotations": [{"result": [
        {"type": "relation", "from_id": "x", "to_id": "y", "labels": ["r"]}]}]}]))
    with pytest.raises(InputError, match=r"bad_ls.json \(task 1\): relation 'x' -> 'y': names no labeled span"):
        list(get_adapter("label_studio")(ls))
    rows = tmp_path / "no_text.jsonl"
    rows.write_text('{"id": "0", "entities": []}\n')
    assert cli_main(["export", str(rows), "--to", "doccano", "-o", str(tmp_path / "o.jsonl")]) != 0


def test_extract_with_text_then_export_to_label_studio(tiny_model_dir, tmp_path):
    """End to end on a random tiny model: its rows carry their text, and export makes them
    predictions (whatever the model found, located items only)."""
    src = tmp_path / "in.txt"
    src.write_text("EU rejects German call to boycott British lamb .\nPeter Blackburn\n")
    out, ls = tmp_path / "out.jsonl", tmp_path / "ls.json"
    assert cli_main(["extract", str(src), "--per-line", "--model", str(tiny_model_dir), "--with-text", "-o", str(out),
                     "--device", "cpu", "--max-new-tokens", "8"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["EU rejects German call to boycott British lamb .", "Peter Blackburn"]
    assert cli_main(["export", str(out), "--to", "label-studio", "-o", str(ls)]) == 0
    tasks = json.loads(ls.read_text())
    assert [t["data"]["text"] for t in tasks] == [r["text"] for r in rows]
    for t, r in zip(tasks, rows):
        located = [e for e in r["entities"] if e["start"] is not None]
        assert len([x for x in t["predictions"][0]["result"] if x["type"] == "labels"]) == len(
            {(e["start"], e["end"], e["label"]) for e in located})


def test_export_keeps_one_shape_per_file_one_task_per_document_and_no_duplicate_ends(tmp_path):
    rec = {"text": "Obama visited Paris", "task": "NER", "id": "a-NER",
           "entities": [{"label": "PER", "text": "Obama", "start": 0, "end": 5},
                        {"label": "LOC", "text": "Paris", "start": 14, "end": 19}]}
    rel = {"text": "Obama visited Paris", "task": "RE", "id": "a-RE",
           "relations": [{"head": {"label": "", "text": "Obama", "start": 0, "end": 5}, "label": "visited",
                          "tail": {"label": "", "text": "Paris", "start": 14, "end": 19}}]}
    lone = {"text": "Peter Blackburn", "task": "NER", "id": "b-NER",
            "entities": [{"label": "PER", "text": "Peter Blackburn", "start": 0, "end": 15}]}
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in (rec, rel, lone)))
    out = tmp_path / "dc.jsonl"
    assert cli_main(["export", str(src), "--to", "doccano", "-o", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    # one task per sentence; a relation's untyped ends are the NER record's spans; every row in the
    # relation shape (a doccano project with relations reads only entities/relations)
    assert [len(r["entities"]) for r in rows] == [2, 1] and all("label" not in r for r in rows)
    assert rows[0]["relations"] == [{"id": 1, "from_id": 1, "to_id": 2, "type": "visited"}]
    # extraction output: two documents with one text stay two tasks
    doc = {"id": "0", "text": "Peter Blackburn", "sentences": [], "entities": [], "relations": [], "events": []}
    src.write_text(json.dumps(doc) + "\n" + json.dumps({**doc, "id": "1"}) + "\n")
    assert cli_main(["export", str(src), "--to", "label-studio", "-o", str(tmp_path / "ls.json")]) == 0
    assert [t["data"]["id"] for t in json.loads((tmp_path / "ls.json").read_text())] == ["0", "1"]


def test_label_studio_tasks_not_labeled_yet_are_left_out_and_drifted_offsets_refused(tmp_path):
    from collections import Counter

    ls = tmp_path / "ls.json"
    labeled = {"data": {"text": "Obama spoke"}, "annotations": [{"result": [
        {"id": "a", "type": "labels", "value": {"start": 0, "end": 5, "text": "Obama", "labels": ["PER"]}}]}]}
    ls.write_text(json.dumps([labeled, {"data": {"text": "Not yet"}, "annotations": [], "predictions": [3]}]))
    stats = Counter()
    recs = list(get_adapter("label_studio")(ls, stats=stats))
    assert [r.text for r in recs] == ["Obama spoke"] and stats["not_labeled"] == 1
    drift = json.loads(json.dumps(labeled))
    drift["annotations"][0]["result"][0]["value"].update(start=1, end=6)
    ls.write_text(json.dumps([drift]))
    with pytest.raises(InputError, match=r"task 1\): labels result 'a': offsets 1-6 cut 'bama ' from the text, "
                                         r"not 'Obama'"):
        list(get_adapter("label_studio")(ls))
    for bad, msg in (({"data": {"text": "x"}, "annotations": [{"result": [{"type": "labels", "value": []}]}]},
                      "needs value.start"),
                     ({"data": {"text": "x"}, "annotations": 5}, "'annotations' must be a list")):
        ls.write_text(json.dumps([bad]))
        with pytest.raises(InputError, match=msg):
            list(get_adapter("label_studio")(ls))
    dc = tmp_path / "dc.jsonl"
    dc.write_text(json.dumps({"text": "ab", "label": [[False, True, "A"]]}) + "\n")
    with pytest.raises(InputError, match="dc.jsonl:1: span False-True .*offsets must be integers"):
        list(get_adapter("doccano")(dc))


def test_export_refuses_a_tools_raw_export_and_keeps_records_without_items(tmp_path, capsys):
    """A raw doccano or Label Studio file is not records: read as records every span was lost and the
    export still said "wrote 6 tasks". One line naming file and line, and the command to run first."""
    out = tmp_path / "ls.json"
    ls = tmp_path / "tasks.jsonl"
    ls.write_text(json.dumps({"data": {"text": "Obama spoke"}, "annotations": []}) + "\n")
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"id": "1", "text": "Obama spoke", "entities": []}) + "\n")
    for src, needle in ((FIX / "doccano_ner.jsonl", "convert --dataset doccano"),
                        (FIX / "doccano_relations.jsonl", "convert --dataset doccano"),
                        (ls, "convert --dataset label_studio"), (plain, "not an instructie record (no 'task')")):
        assert cli_main(["export", str(src), "--to", "label-studio", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{src}:1: " in err and needle in err and "Traceback" not in err, err
        assert not out.exists()
    # records with nothing in them (and their relation record) are records all the same
    recs = tmp_path / "recs.jsonl"
    recs.write_text("".join(json.dumps(r) + "\n" for r in (
        {"id": "a-NER", "dataset": "d", "task": "NER", "text": "Obama spoke", "entities": [], "options": ["PER"]},
        {"id": "a-RE", "dataset": "d", "task": "RE", "text": "Obama spoke", "relations": []})))
    assert cli_main(["export", str(recs), "--to", "label-studio", "-o", str(out)]) == 0
    assert [t["annotations"] for t in json.loads(out.read_text())] == [[{"result": []}]]
