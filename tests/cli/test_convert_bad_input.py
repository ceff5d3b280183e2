"""`instructie convert` on malformed records that once crashed it or were read wrongly without a word.

Each bad record, placed between good ones, must end the run with exit code 2 and one line naming
the file, the line (or record) and what is wrong -- no traceback, no output written -- and with
``--skip-invalid`` be counted and skipped while every good record is kept.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructie.cli.main import main
from instructie.core import io as core_io

from helpers import read_jsonl as rows

FIX = Path(__file__).resolve().parents[1] / "fixtures"
DUIE_SCHEMA = FIX / "duie/duie_schema.json"
DUIE_ROWS = [json.loads(x) for x in (FIX / "duie/duie_train_excerpt.json").read_text(encoding="utf-8").splitlines()]
DEEP = 100_000


def run(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("instructie convert: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return path


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def duie_with(bad_line: str) -> list[str]:
    return [dumps(DUIE_ROWS[0]), bad_line, dumps(DUIE_ROWS[1])]


def spo(predicate) -> str:
    return dumps({"text": "abc", "spo_list": [{"predicate": predicate, "subject": "a", "object": {"@value": "b"}}]})


DOC_GOOD = dumps({"id": 1, "text": "JAPAN won", "label": [[0, 5, "LOC"]]})
DOC_GOOD2 = dumps({"id": 3, "text": "CHINA lost", "label": [[0, 5, "LOC"]]})


def doccano_rel(ent_id, from_id, to_id=2) -> str:
    return dumps({"id": 2, "text": "JAPAN beat CHINA", "entities": [
        {"id": ent_id, "label": "LOC", "start_offset": 0, "end_offset": 5},
        {"id": 2, "label": "LOC", "start_offset": 11, "end_offset": 16}],
        "relations": [{"id": 1, "from_id": from_id, "to_id": to_id, "type": "beat"}]})


def ls_task(tid, result) -> dict:
    return {"id": tid, "data": {"text": "JAPAN beat CHINA"}, "annotations": [{"result": result}]}


def ls_span(rid, labels=("LOC",), start=0, end=5) -> dict:
    return {"id": rid, "type": "labels", "from_name": "label", "to_name": "text",
            "value": {"start": start, "end": end, "labels": list(labels)}}


def ls_file(path: Path, bad_task: dict) -> Path:
    good = [ls_task(1, [ls_span("a")]), bad_task, ls_task(3, [ls_span("b", start=11, end=16)])]
    path.write_text(json.dumps(good), encoding="utf-8")  # ASCII: a lone surrogate is written as its escape
    return path


# (id, dataset, lines of a JSONL input (the bad one second), extra args, where, problem)
JSONL_CASES = [
    ("duie-predicate-list", "duie", duie_with(spo(["作者"])), ["--schema", DUIE_SCHEMA],
     ":2:", "'predicate' must be a string, got list ['作者']"),
    ("duie-predicate-dict", "duie", duie_with(spo({"a": 1})), ["--schema", DUIE_SCHEMA],
     ":2:", "'predicate' must be a string, got dict"),
    ("duie-lone-surrogate", "duie", duie_with('{"text": "abc\\ud800def", "spo_list": []}'), ["--schema", DUIE_SCHEMA],
     ":2:", "field text holds a lone surrogate \\ud800 (character 4)"),
    ("duie-nested-too-deep", "duie", duie_with('{"text": ' + "[" * DEEP + "]" * DEEP + "}"),
     ["--schema", DUIE_SCHEMA], ":2:", "JSON nested too deeply"),
    ("doccano-null-label", "doccano", [DOC_GOOD, dumps({"id": 2, "text": "JAPAN", "label": [[0, 5, None]]}), DOC_GOOD2],
     [], ":2:", "label[0] (its third item, the label) must be a non-empty string, got null"),
    ("doccano-list-label", "doccano", [DOC_GOOD, dumps({"id": 2, "text": "JAPAN", "label": [[0, 5, ["a"]]]}),
                                       DOC_GOOD2], [], ":2:", "must be a non-empty string, got list ['a']"),
    ("doccano-entity-null-label", "doccano",
     [DOC_GOOD, dumps({"id": 2, "text": "JAPAN", "entities": [{"id": 1, "label": None, "start_offset": 0,
                                                               "end_offset": 5}]}), DOC_GOOD2],
     [], ":2:", "entities[0].label must be a non-empty string, got null"),
    ("doccano-entity-id-list", "doccano", [DOC_GOOD, doccano_rel([1], 1), DOC_GOOD2], [],
     ":2:", "entities[0].id must be a number or a string, got list [1]"),
    ("doccano-from-id-object", "doccano", [DOC_GOOD, doccano_rel(1, {"id": 1}), DOC_GOOD2], [],
     ":2:", "relations[0].from_id must be a number or a string, got dict"),
    ("doccano-lone-surrogate", "doccano", [DOC_GOOD, '{"id": 2, "text": "JA\\udc00PAN", "label": []}', DOC_GOOD2],
     [], ":2:", "field text holds a lone surrogate \\udc00 (character 3)"),
]


@pytest.mark.parametrize("case", JSONL_CASES, ids=[c[0] for c in JSONL_CASES])
def test_bad_jsonl_record_is_one_clear_line_or_skipped(case, tmp_path, capsys):
    _, dataset, lines, extra, where, problem = case
    src = jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", dataset, "--input", src, *extra, "-o", out)
    assert rc == 2
    line = error_line(err)
    assert f"{src}{where}" in line and problem in line, line
    assert not out.exists()

    rc, err = run(capsys, "convert", "--dataset", dataset, "--input", src, *extra, "-o", out, "--skip-invalid")
    assert rc == 0, err
    assert "Traceback" not in err and "skipped 1 invalid record(s)" in err and problem in err
    assert {r["meta"]["line"] for r in rows(out)} == {1, 3}  # both good records kept


LS_CASES = [
    ("label-studio-result-id-list", ls_task(2, [ls_span(["e0"]), ls_span("t", start=11, end=16),
                                                {"type": "relation", "from_id": "t", "to_id": "t", "labels": ["x"]}]),
     "result[0].id must be a number or a string, got list ['e0']"),
    ("label-studio-from-id-object", ls_task(2, [ls_span("e0"), {"type": "relation", "from_id": {"a": 1},
                                                               "to_id": "e0", "labels": ["x"]}]),
     "result[1].from_id must be a number or a string, got dict"),
    ("label-studio-null-label", ls_task(2, [ls_span("e0", labels=[None])]),
     "result[0].value.labels[0] must be a non-empty string, got null"),
    ("label-studio-task-id-list", ls_task([2], [ls_span("e0")]), "id must be a number or a string, got list [2]"),
    ("label-studio-lone-surrogate", {"id": 2, "data": {"text": "JAPAN \ud800"}, "annotations": [{"result": []}]},
     "field data.text holds a lone surrogate \\ud800 (character 7)"),
]


@pytest.mark.parametrize("case", LS_CASES, ids=[c[0] for c in LS_CASES])
def test_bad_label_studio_task_is_one_clear_line_or_skipped(case, tmp_path, capsys):
    _, bad, problem = case
    src = ls_file(tmp_path / "export.json", bad)
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", "label_studio", "--input", src, "-o", out)
    assert rc == 2
    line = error_line(err)
    assert f"{src} (task 2)" in line and problem in line, line
    assert not out.exists()
    rc, err = run(capsys, "convert", "--dataset", "label_studio", "--input", src, "-o", out, "--skip-invalid")
    assert rc == 0, err
    assert "skipped 1 invalid record(s)" in err
    assert [r["meta"]["line"] for r in rows(out)] == [1, 3]


def iei_dataset(root: Path, labels, records) -> Path:
    d = root / "EE" / "Mini"
    d.mkdir(parents=True)
    (d / "labels.json").write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    (d / "train.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return d


GOOD_EVENT = {"sentence": "A met B", "events": [{"trigger": "met", "type": "Meet", "arguments": [
    {"name": "A", "role": "who"}]}]}


@pytest.mark.parametrize("bad, problem", [
    ({"sentence": "A met B", "events": 5}, "field 'events' must be a list of objects"),
    ({"sentence": "A met B", "events": [{"trigger": "met", "type": "Meet", "arguments": 7}]},
     "field 'arguments' must be a list of objects"),
], ids=["events-a-number", "arguments-a-number"])
def test_ie_instructions_events_that_are_not_lists(bad, problem, tmp_path, capsys):
    d = iei_dataset(tmp_path, [["Meet"], ["who"]], [GOOD_EVENT, bad, GOOD_EVENT])
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", "ie_instructions", "--input", d, "-o", out)
    assert rc == 2
    line = error_line(err)
    assert "Mini/train.json (record 1)" in line and problem in line, line
    rc, err = run(capsys, "convert", "--dataset", "ie_instructions", "--input", d, "-o", out, "--skip-invalid")
    assert rc == 0, err
    assert [r["id"] for r in rows(out)] == ["EE/Mini/train/0", "EE/Mini/train/2"]


@pytest.mark.parametrize("labels, problem", [
    ({"Meet": 5}, "the roles of 'Meet' must be a list of role names, got 5"),
    ([["Meet"], {"Meet": [1, 2]}], "the roles of 'Meet' must be a list of role names"),
    ([["Meet", 3], ["who"]], "the event types must be a list of strings"),
    ([["Meet"], ["who", None]], "roles must be a list of role names or a mapping"),
])
def test_ie_instructions_ee_labels_with_non_string_roles(labels, problem, tmp_path, capsys):
    d = iei_dataset(tmp_path, labels, [GOOD_EVENT])
    rc, err = run(capsys, "convert", "--dataset", "ie_instructions", "--input", d, "-o", tmp_path / "out.jsonl")
    assert rc == 2
    line = error_line(err)
    assert str(d / "labels.json") in line and problem in line, line


def test_fin_negative_text_over_the_csv_field_limit_is_read(tmp_path, capsys):
    long_text = "某公司" + "很" * 200_000 + "差"  # over the csv module's default 131,072 characters
    src = tmp_path / "Train_long.csv"
    src.write_text("id,title,text,entity,negative,key_entity\n"
                   f"a1,,{long_text},某公司,1,某公司\nb2,,短文本,乙,0,\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", "fin_negative", "--input", src, "-o", out)
    assert rc == 0, err
    got = rows(out)
    assert [r["id"] for r in got] == ["a1", "b2"]
    assert got[0]["meta"]["orig_chars"] == len(long_text) and got[0]["entities"][0]["text"] == "某公司"


# ---------------------------------------------------------------- repeated ids from annotation tools
def test_doccano_rows_sharing_an_id_are_kept_unique_and_reported(tmp_path, capsys):
    src = jsonl(tmp_path / "joined.jsonl", [dumps({"id": i % 2, "text": t, "label": [[0, 5, "LOC"]]})
                                            for i, t in enumerate(["JAPAN a", "CHINA b", "INDIA c", "SPAIN d"])])
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", "doccano", "--input", src, "-o", out)
    assert rc == 0, err
    got = rows(out)
    assert [r["text"] for r in got] == ["JAPAN a", "CHINA b", "INDIA c", "SPAIN d"]  # nothing lost
    assert len({r["id"] for r in got}) == len({r["instance_id"] for r in got}) == 4
    assert [r["meta"].get("repeated_id") for r in got] == [None, None, "0", "1"]
    assert got[2]["meta"]["first_line"] == 1 and got[3]["meta"]["first_line"] == 2
    assert "repeated_ids=2" in err
    assert "2 text(s) reuse the id of an earlier text" in err and "id '0' at 3, first at 1" in err


def test_label_studio_tasks_sharing_an_id_are_kept_unique_and_reported(tmp_path, capsys):
    src = tmp_path / "export.json"
    src.write_text(json.dumps([ls_task(7, [ls_span("a")]), ls_task(7, [ls_span("b", start=11, end=16)])]),
                   encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", "label_studio", "--input", src, "-o", out)
    assert rc == 0, err
    ids = [r["id"] for r in rows(out)]
    assert len(ids) == len(set(ids)) == 2
    assert "1 text(s) reuse the id" in err and "id '7' at 2, first at 1" in err


# ---------------------------------------------------------------- output
def test_a_record_that_cannot_be_encoded_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    """Whatever a reader lets through (here a lone surrogate in a text), convert never dies of a
    UnicodeEncodeError while writing; with --skip-invalid that record alone is left out."""
    from instructie import data_adapters
    from instructie.core.records import Record

    def reader(path, *, split="", on_error=None, stats=None, **options):
        for i, text in enumerate(["fine", "bad \udc80 text", "fine too"], 1):
            yield Record(id=f"r{i}", dataset="d", task="NER", text=text, meta={"line": i})

    monkeypatch.setitem(data_adapters.ADAPTERS, "surrogates", reader)
    src = jsonl(tmp_path / "in.jsonl", ["{}"])
    out = tmp_path / "out.jsonl"
    rc, err = run(capsys, "convert", "--dataset", "surrogates", "--input", src, "-o", out)
    assert rc == 2
    line = error_line(err)
    assert f"{src}:2:" in line and "not valid Unicode" in line and "cannot be written as UTF-8" in line
    assert not out.exists() and os.listdir(tmp_path) == ["in.jsonl"]
    rc, err = run(capsys, "convert", "--dataset", "surrogates", "--input", src, "-o", out, "--skip-invalid")
    assert rc == 0, err
    assert [r["text"] for r in rows(out)] == ["fine", "fine too"]


class _FullDisk:
    """A file that takes ``room`` characters and then fails as a full disk does."""

    def __init__(self, f, room: int):
        self._f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_is_one_line_naming_the_output(where, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf-8")
    if where == "write":
        real = os.fdopen
        monkeypatch.setattr(core_io.os, "fdopen", lambda *a, **k: _FullDisk(real(*a, **k), 2000))
    else:  # delayed allocation: the data is accepted and the disk says no when it is flushed to it
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(core_io.os, "fsync", fsync)
    rc, err = run(capsys, "convert", "--dataset", "duie", "--input", FIX / "duie/duie_train_excerpt.json",
                  "--schema", DUIE_SCHEMA, "-o", out)
    assert rc == 2
    line = error_line(err)
    assert line == f"instructie convert: error: {out}: cannot write output: No space left on device"
    assert out.read_text(encoding="utf-8") == "previous output\n"  # the earlier output is intact
    assert sorted(os.listdir(tmp_path)) == ["out.jsonl"]  # and no temporary file is left


def test_a_killed_convert_leaves_a_temporary_the_next_write_removes(tmp_path, capsys):
    """SIGKILL mid-write (nothing can clean up) leaves the hidden temporary; the next write to the same
    output removes it, and leaves alone the temporaries of running writers and of other outputs."""
    out = tmp_path / "out.jsonl"
    code = ("import os, signal, sys\nfrom instructie.core.io import atomic_write\n"
            "with atomic_write(sys.argv[1]) as f:\n    f.write('half')\n    f.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left, = [p for p in tmp_path.iterdir()]
    assert left.name.startswith(".out.jsonl.") and left.name.endswith(".tmp") and not out.exists()

    dead = _dead_pid()
    live = tmp_path / f".out.jsonl.{os.getpid()}.abcd1234.tmp"  # this process runs: a concurrent writer
    other = tmp_path / f".other.jsonl.{dead}.abcd1234.tmp"  # a dead writer's, of another output
    young = tmp_path / f".out.jsonl.{dead}.young_12.tmp"  # a dead writer's, modified just now
    for p in (live, other, young):
        p.write_text("x")
    old = time.time() - 3600
    for p in (left, live, other):
        os.utime(p, (old, old))
    rc, err = run(capsys, "convert", "--dataset", "duie", "--input", FIX / "duie/duie_train_excerpt.json",
                  "--schema", DUIE_SCHEMA, "-o", out)
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.jsonl", live.name, other.name, young.name])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
