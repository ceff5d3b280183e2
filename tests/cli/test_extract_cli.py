"""`instructie extract` as a user runs it: without spaCy, lines written as chunks finish, resume by id and
input line, repaired texts, clear errors before the model loads, a readable summary, and the HTML page.

Generation is scripted (``Scripted``) so that answers are known; the tokenizer, segmentation, parsing and
grounding are the real ones."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from instructie.decoding import generation
from instructie.decoding.generation import Generated
from instructie.inference import segment as seg_mod

from helpers import read_jsonl as rows, run_cli as cli


def _field(source: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", source, re.M)
    return m.group(1) if m else ""


class Scripted:
    """Stands in for ``generation.generate``: ``answer(task, text)`` gives each prompt's answer; every
    call's sources are kept, and ``on_call(k)`` runs before the k-th call (1-based) answers."""

    def __init__(self, templates, answer, on_call=None):
        self.templates, self.answer, self.on_call = templates, answer, on_call
        self.calls: list[list[str]] = []

    def task(self, source: str) -> str:
        return next(t for t in ("NER", "RE", "EE") if source.startswith(self.templates[t][0].strip()))

    def __call__(self, model, tokenizer, sources, progress=None, **kw):
        self.calls.append(list(sources))
        if self.on_call:
            self.on_call(len(self.calls))
        out = []
        for src in sources:
            text = src[src.index("\nText: ") + 7: src.rindex("\nAnswer:")]
            ans = self.answer(self.task(src), text, _field(src, "Option"))
            ids = tokenizer(ans, add_special_tokens=False)["input_ids"]
            out.append(Generated(tokenizer.decode(ids, skip_special_tokens=True), ids, [math.log(0.9)] * len(ids)))
        if progress:
            progress(len(sources))
        return out


@pytest.fixture
def script(monkeypatch, tiny_model_dir):
    templates = json.loads((Path(tiny_model_dir) / "instructie.json").read_text(encoding="utf-8"))["templates"]

    def install(answer, on_call=None) -> Scripted:
        s = Scripted(templates, answer, on_call)
        monkeypatch.setattr(generation, "generate", s)
        return s
    return install


NAMES = {"Obama": "person", "Paris": "location", "王小明": "person", "北京大学": "organization"}


def names(task, text, options):
    found = [f"{n} | {lab}" for n, lab in NAMES.items() if n in text and lab in options]
    return "; ".join(found) if task == "NER" and found else "None"


@pytest.fixture
def no_spacy(monkeypatch):
    """As after `pip install -e .` without the spacy extra: `import spacy` fails."""
    monkeypatch.setitem(sys.modules, "spacy", None)
    monkeypatch.setattr(seg_mod, "_PIPELINES", {})


# ------------------------------------------------------------------ without spaCy

def test_extract_works_without_spacy_and_says_what_the_extra_adds(tmp_path, capsys, script, tiny_model_dir,
                                                                   no_spacy):
    script(names)
    src = tmp_path / "docs.txt"
    en = "Mr. Obama visited Paris on Jan. 5. He spoke for 2.5 hours! Then he left."
    zh = "王小明毕业于北京大学。他说：“你好。”然后走了！"
    src.write_text(en + "\n" + zh + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    rc, _, err = cli(capsys, "extract", src, "--per-line", "--model", tiny_model_dir, "-o", out, "--tasks", "ner")
    assert rc == 0, err
    first, second = rows(out)
    assert [en[s["start"]:s["end"]] for s in first["sentences"]] == [
        "Mr. Obama visited Paris on Jan. 5.", "He spoke for 2.5 hours!", "Then he left."]
    assert [zh[s["start"]:s["end"]] for s in second["sentences"]] == ["王小明毕业于北京大学。", "他说：“你好。”", "然后走了！"]
    assert [e["text"] for e in first["entities"]] == ["Obama", "Paris"]
    assert [e["text"] for e in second["entities"]] == ["王小明", "北京大学"]
    assert err.count("spaCy is not installed") == 1 and "pip install 'instructie[spacy]'" in err
    # the page needs displaCy: said before the model loads (a model path that does not exist is not reached)
    rc, _, err = cli(capsys, "extract", src, "--model", tmp_path / "no-model", "--html", tmp_path / "p.html")
    assert rc == 2 and "--html draws the page with spaCy's displaCy" in err and "Traceback" not in err


def test_with_spacy_no_notice(tmp_path, capsys, script, tiny_model_dir):
    pytest.importorskip("spacy")
    script(names)
    src = tmp_path / "a.txt"
    src.write_text("Obama visited Paris.", encoding="utf-8")
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", tmp_path / "o.jsonl", "--tasks", "ner")
    assert rc == 0 and "spaCy is not installed" not in err
    assert err.count("extracting on the CPU") == 1  # the fixture model runs on the CPU here


# ------------------------------------------------------------------ progressive writing, resume

def test_lines_are_written_as_each_chunk_finishes(tmp_path, capsys, script, tiny_model_dir):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Obama visited Paris on day {i}."}) + "\n"
                           for i in range(30)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    seen = []
    script(names, on_call=lambda k: seen.append(len(out.read_text().splitlines()) if out.exists() else 0))
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner",
                     "--chunk-size", "7")
    assert rc == 0, err
    assert seen == [0, 7, 14, 21, 28]  # before each chunk's generation, every earlier document is on disk
    assert [r["id"] for r in rows(out)] == [f"d{i}" for i in range(30)]
    # the default on a CPU: a 30-document file is written in several steps, not once at its end
    seen.clear()
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner")
    assert rc == 0, err
    assert len(seen) >= 4 and seen[1] > 0
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "--chunk-size", "0")
    assert rc == 2 and "--chunk-size is a number of documents" in err


def test_repeated_ids_are_reported_and_resume_goes_by_input_line(tmp_path, capsys, script, tiny_model_dir):
    src = tmp_path / "docs.jsonl"
    ids = ["a", "b", "c", "a", "d", "b", "e", "a", "f", "g"]  # 3 lines reuse an earlier id
    src.write_text("".join(json.dumps({"id": x, "text": f"Obama visited Paris, line {i + 1}."}) + "\n"
                           for i, x in enumerate(ids)), encoding="utf-8")
    out = tmp_path / "out.jsonl"

    def stop(k):
        if k == 3:
            raise KeyboardInterrupt
    script(names, on_call=stop)
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner",
                     "--chunk-size", "3")
    assert rc == 130
    assert [(r["id"], r["line"]) for r in rows(out)] == list(zip(ids, range(1, 11)))[:6]
    assert "id 'a' was already used at line 1" in err
    s = script(names)
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner", "--resume",
                     "--chunk-size", "3")
    assert rc == 0, err
    got = rows(out)
    assert [(r["id"], r["line"]) for r in got] == list(zip(ids, range(1, 11)))  # none skipped, none twice
    asked = [x for call in s.calls for x in call]
    assert not any(f"line {i}." in x for x in asked for i in range(1, 7))  # finished documents not redone
    assert "6 already done were skipped" in err
    assert "3 document(s) reuse the id of an earlier line" in err and "'a' at lines 1 and 4" in err


def test_a_row_written_before_lines_were_recorded_resumes_by_id(tmp_path, capsys, script, tiny_model_dir):
    script(names)
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": "x", "text": "Obama."}\n{"id": "y", "text": "Paris."}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "x", "sentences": [], "entities": []}\n', encoding="utf-8")
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner", "--resume")
    assert rc == 0, err
    assert [r["id"] for r in rows(out)] == ["x", "y"]


# ------------------------------------------------------------------ texts the tokenizer cannot take

def test_lone_surrogates_and_control_characters_are_repaired_or_skipped(tmp_path, capsys, script, tiny_model_dir):
    src = tmp_path / "docs.jsonl"
    # JSON escapes of half a character (\ud800) and a NUL: the tokenizer and spaCy cannot take the first
    src.write_text('{"id": "ok", "text": "Obama visited Paris."}\n'
                   '{"id": "bad", "text": "Obama \\ud800 visited\\u0000 Paris."}\n'
                   '{"id": "bad\\udc00id", "text": "Paris."}\n'
                   '{"id": "ok2", "text": "Paris was cold."}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    script(names)
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner", "--with-text")
    assert rc == 0, err
    got = rows(out)
    assert [r["id"] for r in got] == ["ok", "bad", "bad\ufffdid", "ok2"]
    assert got[1]["text"] == "Obama \ufffd visited\ufffd Paris."  # one for one: offsets still fit the input
    for e in got[1]["entities"]:
        assert got[1]["text"][e["start"]:e["end"]] == e["text"]
    assert [e["text"] for e in got[1]["entities"]] == ["Obama", "Paris"]
    assert "repaired 2 document(s): 3 lone surrogate(s) or control character(s)" in err

    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner",
                     "--skip-invalid")
    assert rc == 0, err
    assert [r["id"] for r in rows(out)] == ["ok", "ok2"]
    assert "skipped 2 invalid record(s)" in err and f"{src}:2: 2 lone surrogate(s) or control character(s)" in err
    # an interrupted run over such a file resumes to the end
    out.write_text(out.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner", "--resume")
    assert rc == 0, err
    assert [r["id"] for r in rows(out)] == ["ok", "bad", "bad\ufffdid", "ok2"]


# ------------------------------------------------------------------ errors before the model loads, output rows

def test_output_naming_a_directory_is_an_error_before_the_model_loads(tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("Obama.", encoding="utf-8")
    rc, _, err = cli(capsys, "extract", src, "--model", tmp_path / "no-model", "-o", tmp_path)
    assert rc == 2 and f"-o {tmp_path} is a directory" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_rows_carry_no_internal_counters_and_the_run_ends_with_a_summary(tmp_path, capsys, script, tiny_model_dir):
    # "Mars" is not in the text: an unsupported item, counted
    script(lambda task, text, opts: "Obama | person; Mars | location" if task == "NER" else "None")
    src = tmp_path / "a.txt"
    src.write_text("Obama visited Paris.", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner")
    assert rc == 0, err
    (row,) = rows(out)
    assert "stats" not in row and list(row)[:2] == ["id", "line"]
    assert "item(s) naming text that is not in the document" in err and "--keep-unsupported" in err
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner", "--debug-stats")
    assert rc == 0, err
    (row,) = rows(out)
    assert row["stats"]["unsupported"] >= 1


def test_no_token_length_warning_on_long_texts(tmp_path, capsys, script, tiny_model_dir):
    """The package cuts texts to the model itself: transformers' 'Token indices sequence length is longer than
    the specified maximum ... indexing errors' is wrong here and must not reach the user."""
    import logging

    said = []

    class Keep(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())
    handler = Keep()
    logger = logging.getLogger("transformers")  # the library's loggers do not propagate to the root
    logger.addHandler(handler)
    try:
        script(names)
        src = tmp_path / "long.txt"
        src.write_text("王小明毕业于北京大学，" * 150 + "。", encoding="utf-8")  # one sentence, > 512 tokens
        rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", tmp_path / "o.jsonl", "--tasks",
                         "ner")
    finally:
        logger.removeHandler(handler)
    assert rc == 0, err
    assert not [m for m in said if "sequence length is longer" in m]


# ------------------------------------------------------------------ the HTML page

def _html_answer(task, text, options):
    if task == "NER":
        return "; ".join(f"{n} | {lab}" for n, lab in NAMES.items() if n in text and lab in options) or "None"
    if task == "EE" and "击败" in text:
        return "击败 | 竞赛行为-胜负 | 胜者=王小明 | 败者=李华"
    return "None"


def test_html_page_colours_labels_marks_events_says_nothing_found_and_escapes(tmp_path, capsys, script,
                                                                               tiny_model_dir):
    pytest.importorskip("spacy")
    script(_html_answer)
    src = tmp_path / "docs.jsonl"
    docs = [{"id": "<script>alert(1)</script>", "text": "Obama visited Paris. <b>bold</b> & more."},
            {"id": "zh", "text": "王小明在北京大学击败了李华。"},
            {"id": "empty", "text": "Nothing to see here."}]
    src.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    page = tmp_path / "page.html"
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", tmp_path / "o.jsonl", "--tasks",
                     "ner,ee", "--html", page)
    assert rc == 0, err
    html = page.read_text(encoding="utf-8")
    # nothing from the input or the model becomes markup
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; more." in html
    # each label its own colour, as displaCy draws it
    colour = {lab: re.search(r'<mark class="entity" style="background: (#[0-9a-f]+);[^>]*>\s*'
                             + re.escape(name), html).group(1) for name, lab in
              (("Obama", "person"), ("Paris", "location"), ("北京大学", "organization"))}
    assert len(set(colour.values())) == 3
    # the event drawn on its sentence: trigger with its type, arguments with their roles
    event = html[html.index("<h3>Events</h3>"):]
    for text, label in (("击败", "竞赛行为-胜负"), ("王小明", "胜者"), ("李华", "败者")):
        assert re.search(re.escape(text) + r"\s*<span[^>]*>" + re.escape(label), event), (text, label)
    assert html.count("Nothing found in this document.") == 1
    assert html.index("Nothing found") > html.index("document empty")
    assert "Noto Sans CJK SC" in html and "Microsoft YaHei" in html and 'lang="zh"' in html
