"""Extraction from raw text: the ``Extractor`` API and ``instructie extract``.

Most tests script the model's answers (``instructie.decoding.generation.generate`` is replaced by
``Scripted``, which writes a given answer with given per-item probabilities), so offsets,
confidences, filtering and parsing are checked deterministically. Two tests run the real
(random-init, tiny) model un-mocked: whatever it writes, every span it returns must be
the document's own text at the offsets given, and the output must be valid JSONL.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys

import pytest

from instructie.decoding import generation
from instructie.decoding.tokens import _token_char_ends, item_confidences
from instructie.inference.extractor import Extractor, Schema
from instructie.model.card import ModelCard
from instructie.decoding.generation import Generated
from instructie.core.io import ConfigError

from helpers import read_jsonl, run_cli as cli

# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def ex(tiny_model_dir):
    return Extractor.from_pretrained(tiny_model_dir, device="cpu")


def _field(source: str, name: str) -> str:
    m = re.search(rf"^{name}: (.*)$", source, re.M)
    return m.group(1) if m else ""


def prompt_task(source: str, templates: dict) -> str:
    for task in ("NER", "RE", "EE"):
        if source.startswith(templates[task][0].strip()):
            return task
    raise AssertionError(f"no template matches prompt {source[:80]!r}")


def prompt_text(source: str) -> str:
    return source[source.index("\nText: ") + 7: source.rindex("\nAnswer:")]


class Scripted:
    """Stands in for ``generation.generate``: ``answer(task, text, options)`` returns the
    answer as a string (all tokens probability ``p``) or as [(piece, probability), ...];
    every piece's tokens get that probability. Records every prompt it was given."""

    def __init__(self, answer, templates, p: float = 0.9):
        self.answer, self.templates, self.p = answer, templates, p
        self.sources: list[str] = []
        self.kwargs: list[dict] = []

    def __call__(self, model, tokenizer, sources, **kw):
        self.kwargs.append(kw)
        out = []
        for src in sources:
            self.sources.append(src)
            opts = [o for o in _field(src, "Option").split(", ") if o]
            ans = self.answer(prompt_task(src, self.templates), prompt_text(src), opts)
            pieces = [(ans, self.p)] if isinstance(ans, str) else ans
            ids, lps = [], []
            for piece, prob in pieces:
                pid = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids += pid
                lps += [math.log(prob)] * len(pid)
            text = tokenizer.decode(ids, skip_special_tokens=True)
            assert text == "".join(p for p, _ in pieces), "the tokenizer must round-trip scripted answers"
            out.append(Generated(text, ids, lps))
        return out


@pytest.fixture
def script(monkeypatch, ex):
    """script(answer_fn, p=0.9) -> the Scripted object now answering for the model."""
    def install(answer, p: float = 0.9) -> Scripted:
        s = Scripted(answer, ex.templates, p)
        monkeypatch.setattr(generation, "generate", s)
        return s
    return install


def mentions(text: str, names_labels: list[tuple[str, str]]) -> str:
    """NER answer listing every occurrence, in text order, of each name present in ``text``."""
    found = sorted((m.start(), name, label) for name, label in names_labels
                   for m in re.finditer(re.escape(name), text))
    # drop names inside a longer listed name ("Obama" inside "Barack Obama")
    keep = [(s, n, l) for s, n, l in found
            if not any(s2 <= s and s + len(n) <= s2 + len(n2) and (s2, n2) != (s, n) for s2, n2, _ in found)]
    return "; ".join(f"{n} | {l}" for _, n, l in keep) or "None"


def check_offsets(doc) -> None:
    """Every located span is the document's text at its document offsets."""
    spans = list(doc.entities)
    for r in doc.relations:
        spans += [r.head, r.tail, *r.slots]
    for v in doc.events:
        spans += [v.trigger, *v.arguments]
    for s in spans:
        assert s.start is not None and 0 <= s.start < s.end <= len(doc.text), s
        assert doc.text[s.start:s.end] == s.text, s
        assert 0.0 <= s.score <= 1.0
    for a, b in doc.sentences:
        assert 0 <= a < b <= len(doc.text) and doc.text[a:b].strip() == doc.text[a:b]


EN = "Barack Obama visited Paris on Monday. Obama met Emmanuel Macron in Paris. Paris was cold."
ZH = "王小明毕业于北京大学。王小明的妻子是李华，李华是作家。"
NAMES = [("Barack Obama", "person"), ("Obama", "person"), ("Emmanuel Macron", "person"), ("Paris", "location"),
         ("王小明", "person"), ("李华", "person"), ("北京大学", "organization")]


# ------------------------------------------------------------------ offsets, repeated mentions, languages

def test_document_offsets_multi_sentence_en_zh(ex, script):
    s = script(lambda task, text, opts: mentions(text, NAMES) if task == "NER" else "None")
    docs = list(ex.extract([EN, ZH], tasks=["ner"]))
    assert [d.id for d in docs] == ["0", "1"] and [d.language for d in docs] == ["en", "zh"]
    for d in docs:
        check_offsets(d)
    en, zh = docs
    assert len(en.sentences) == 3 and len(zh.sentences) == 2
    # every mention found once, at its own document offsets (Paris three times, in two sentences)
    assert [(e.text, e.start) for e in en.entities if e.text == "Paris"] == \
        [("Paris", m.start()) for m in re.finditer("Paris", EN)]
    assert {(e.start, e.text, e.label) for e in en.entities} == {
        (0, "Barack Obama", "person"), (EN.index("Obama met"), "Obama", "person"),
        (EN.index("Emmanuel"), "Emmanuel Macron", "person"),
        *((m.start(), "Paris", "location") for m in re.finditer("Paris", EN))}
    assert [(e.text, e.start) for e in zh.entities if e.text in ("王小明", "李华")] == \
        sorted([("王小明", m.start()) for m in re.finditer("王小明", ZH)] +
               [("李华", m.start()) for m in re.finditer("李华", ZH)], key=lambda x: x[1])
    # the zh document was asked with its own language's labels first; all NER prompts got options
    assert all(_field(src, "Option") for src in s.sources)


def test_repeated_mentions_in_one_sentence_get_distinct_offsets(ex, script):
    text = "Paris, Texas is not Paris, France, said Paris Hilton in Paris."
    script(lambda task, text_, opts: "; ".join(["Paris | location"] * text_.count("Paris")))
    (doc,) = ex.extract(text, tasks=["NER"])
    check_offsets(doc)
    assert [e.start for e in doc.entities] == [m.start() for m in re.finditer("Paris", text)]


def test_long_sentence_is_windowed_and_merged(ex, script):
    # one sentence (no punctuation) far longer than the prompt budget: several overlapping windows
    text = " ".join(f"Obama met Macron in Paris {i} and" for i in range(120)) + " Obama left"
    script(lambda task, seg, opts: mentions(seg, [("Obama", "person"), ("Paris", "location")]))
    (doc,) = ex.extract([text], tasks=["NER"])
    check_offsets(doc)
    assert doc.stats["windows"] > 0 and doc.stats["segments"] > 2
    assert doc.sentences == [(0, len(text))]  # the sentence once, whole, not its windows
    want = {(m.start(), "Obama") for m in re.finditer("Obama", text)} | \
        {(m.start(), "Paris") for m in re.finditer("Paris", text)}
    got = [(e.start, e.text) for e in doc.entities]
    assert len(got) == len(set(got))  # a mention seen by two overlapping windows is kept once
    assert set(got) == want


# ------------------------------------------------------------------ confidence

def test_each_item_gets_its_own_confidence(ex, script):
    def answer(task, text, opts):
        if "Obama" in text:
            return [("Barack Obama | person;", 0.9), (" Paris | location", 0.3)]
        return [("王小明 | person;", 0.8), (" 北京大学 | organization;", 0.5), (" 李华 | person", 0.25)]
    script(answer)
    en, zh = ex.extract(["Barack Obama visited Paris.", "王小明毕业于北京大学，认识李华。"], tasks=["NER"])
    assert {e.text: round(e.score, 6) for e in en.entities} == {"Barack Obama": 0.9, "Paris": 0.3}
    assert {e.text: round(e.score, 6) for e in zh.entities} == {"王小明": 0.8, "北京大学": 0.5, "李华": 0.25}


def test_min_confidence_filters(ex, script):
    script(lambda task, text, opts: [("Barack Obama | person;", 0.9), (" Paris | location", 0.3)])
    (doc,) = ex.extract(["Barack Obama visited Paris."], tasks=["NER"], min_confidence=0.5)
    assert [e.text for e in doc.entities] == ["Barack Obama"]
    (doc,) = ex.extract(["Barack Obama visited Paris."], tasks=["NER"], min_confidence=0.95)
    assert doc.entities == []


def test_single_item_confidence_needs_no_decoding(ex):
    tok = ex.tokenizer
    ids = tok("王小明 | person", add_special_tokens=False)["input_ids"]
    lps = [math.log(0.5)] * (len(ids) - 1) + [math.log(0.125)]
    want = math.exp(sum(lps) / len(lps))
    calls = []
    orig = tok.decode
    tok.decode = lambda *a, **k: calls.append(1) or orig(*a, **k)
    try:
        assert item_confidences(tok, ids, lps, "王小明 | person", [(0, 13)]) == [pytest.approx(want)]
        # several items, byte-level tokenizer: char ends come from token bytes, no decode call either
        text = "王小明 | person; 李华 | person; Paris | location"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        item_confidences(tok, ids, [-0.1] * len(ids), text, [(0, 15), (16, 28), (29, len(text))])
    finally:
        del tok.decode
    assert calls == []


def _prefix_char_ends(tok, ids, text):
    """Reference: the characters complete after each token, from decoding every prefix's bytes."""
    from instructie.decoding.tokens import _byte_decoder
    table = _byte_decoder()
    out, acc = [], b""
    for t in tok.convert_ids_to_tokens(ids):
        acc += bytes(table[c] for c in t)
        out.append(len(acc.decode("utf-8", errors="ignore")))
    return out


@pytest.mark.parametrize("text", ["Obama | person; Paris | location", "王小明 | person; 李华 | 妻子 | 北京大学",
                                  "横扫 | 竞赛行为-胜负 | 胜者=日本; 离世 | 人生-死亡 | 死者=查全性院士 | 时间=今晨5点08分",
                                  "a\\; b | c; 𝔘nicode ✓ | x"])
def test_token_char_ends_exact_and_fallback(ex, monkeypatch, text):
    import instructie.decoding.tokens as X
    tok = ex.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    ends = _token_char_ends(tok, ids, text)
    assert ends == _prefix_char_ends(tok, ids, text)
    assert ends[-1] == len(text) and ends == sorted(ends)
    # any other tokenizer: windowed batch decode; agrees wherever tokens end on character boundaries
    info = X._TokenInfo(tok)
    info.byte_level = False
    monkeypatch.setattr(X, "_token_info", lambda t: info)
    fb = _token_char_ends(tok, ids, text)
    assert fb[-1] == len(text) and fb == sorted(fb)
    if text.isascii():
        assert fb == ends


def test_token_char_ends_sentencepiece_style(monkeypatch):
    """A Metaspace (T5/Flan-T5-style) tokenizer: char ends from the pieces, equal to decoding
    every prefix; the windowed fallback agrees too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    import instructie.decoding.tokens as X
    sp = Tokenizer(models.Unigram())
    sp.pre_tokenizer = pre_tokenizers.Metaspace()
    sp.decoder = decoders.Metaspace()
    sp.train_from_iterator([EN, ZH, "person | location; None"] * 10, trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=sp, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                  clean_up_tokenization_spaces=False)
    assert X._token_info(tok).metaspace
    for ans in ["Obama | person; Paris | location", "王小明 | person; 北京大学 | location; 李华 | person"]:
        ids = tok(ans, add_special_tokens=False)["input_ids"]
        text = tok.decode(ids)
        assert tok.unk_token_id not in ids and text == ans
        ref = [len(tok.decode(ids[:k])) for k in range(1, len(ids) + 1)]
        assert _token_char_ends(tok, ids, text) == ref
        info = X._TokenInfo(tok)
        info.metaspace = False
        with monkeypatch.context() as m:
            m.setattr(X, "_token_info", lambda t: info)
            assert _token_char_ends(tok, ids, text) == ref


# ------------------------------------------------------------------ unsupported spans

def test_unsupported_spans_dropped_or_kept_marked(ex, script):
    def answer(task, seg, opts):
        if "Barack" not in seg:
            return "None"
        if task == "NER":
            return "Angela Merkel | person; Barack Obama | person"
        return "Barack Obama | 妻子 | Michelle Obama" if "妻子" in opts else "None"
    script(answer)
    text = "It rained. Barack Obama visited Paris."
    (doc,) = ex.extract([text], tasks=["NER", "RE"])
    assert [e.text for e in doc.entities] == ["Barack Obama"] and doc.relations == []
    assert doc.unsupported == [] and doc.stats["unsupported"] == 2
    (doc,) = ex.extract([text], tasks=["NER", "RE"], keep_unsupported=True)
    assert len(doc.unsupported) == 2 and [e.text for e in doc.entities] == ["Barack Obama"]
    by_task = {u["task"]: u for u in doc.unsupported}
    assert by_task["NER"]["missing"] == ["span"] and by_task["NER"]["item"]["text"] == "Angela Merkel"
    rel = by_task["RE"]
    assert rel["missing"] == ["tail"]
    head = rel["item"]["head"]  # the part that was found carries document offsets
    assert text[head["start"]:head["end"]] == "Barack Obama" and head["start"] == text.index("Barack")
    assert rel["sentence"] == [text.index("Barack"), len(text)]
    json.dumps(doc.to_dict())


# ------------------------------------------------------------------ relations and events

def test_relations_with_document_offsets(ex, script):
    def answer(task, text, opts):
        if task != "RE":
            return "None"
        out = []
        if "妻子" in text and "妻子" in opts:
            out.append("王小明 | 妻子 | 李华")
        if "毕业于" in text and "毕业院校" in opts:
            out.append("王小明 | 毕业院校 | 北京大学")
        return "; ".join(out) or "None"
    script(answer)
    (doc,) = ex.extract([ZH], tasks=["re"])
    check_offsets(doc)
    rels = {(r.head.text, r.label, r.tail.text): r for r in doc.relations}
    assert set(rels) == {("王小明", "妻子", "李华"), ("王小明", "毕业院校", "北京大学")}
    second = ZH.index("。") + 1
    wife = rels[("王小明", "妻子", "李华")]
    assert wife.head.start == ZH.index("王小明", second) and wife.tail.start == ZH.index("李华", second)
    assert rels[("王小明", "毕业院校", "北京大学")].head.start == 0


def test_events_with_document_offsets(ex, script):
    text = "比赛结束。国乒2大新星0-3遭日本横扫！今晨5点08分，查全性院士因病离世，享年95岁。"

    def answer(task, seg, opts):
        if task != "EE":
            return "None"
        if "横扫" in seg and "竞赛行为-胜负" in opts:
            return "横扫 | 竞赛行为-胜负 | 胜者=日本 | 败者=国乒2大新星"
        if "离世" in seg and "人生-死亡" in opts:
            return "离世 | 人生-死亡 | 死者=查全性院士 | 时间=今晨5点08分 | 国籍=中国"  # unknown role: dropped
        return "None"
    script(answer)
    (doc,) = ex.extract([text], tasks=["EE"])
    check_offsets(doc)
    ev = {v.type: v for v in doc.events}
    assert set(ev) == {"竞赛行为-胜负", "人生-死亡"}
    win = ev["竞赛行为-胜负"]
    assert (win.trigger.text, win.trigger.start) == ("横扫", text.index("横扫"))
    assert {(a.label, a.text, a.start) for a in win.arguments} == {
        ("胜者", "日本", text.index("日本")), ("败者", "国乒2大新星", text.index("国乒"))}
    death = ev["人生-死亡"]
    assert {a.label for a in death.arguments} == {"死者", "时间"}
    assert doc.stats.get("dropped_unknown_role") == 1


# ------------------------------------------------------------------ labels, schema, prompts

def test_zero_shot_labels_and_schema_reach_the_prompt(ex, script):
    s = script(lambda task, text, opts: "None")
    schema = Schema(ner=["gene"], re=["regulates"])
    list(ex.extract(["BRCA1 regulates TP53."], tasks=["NER", "RE"], labels=["disease", "drug"], schema=schema))
    opts = {_field(src, "Option") for src in s.sources}
    assert opts == {"disease, drug", "regulates"}
    assert schema.ner == ["gene"]  # the caller's schema is not modified
    s.sources.clear()
    list(ex.extract(["BRCA1 regulates TP53."], tasks=["NER"], labels=["a", "b", "c", "d", "e"]))
    # more labels than the model's max_options (3): asked in chunks, every label once
    assert [_field(src, "Option") for src in s.sources] == ["a, b, c", "d, e"]


def test_a_long_label_list_is_split_until_the_text_has_room(tiny_model_dir, script):
    """A model trained with every label in one prompt (max_options null) asks a user's long label list
    in as few chunks as leave the text a quarter of the prompt, every label once, nothing cut."""
    from instructie.inference.extractor import Extractor

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    ex.max_options = None
    s = script(lambda task, text, opts: "None")
    labels = [f"kind of thing number {k}" for k in range(40)]
    doc = next(ex.extract(["Barack Obama visited Paris on Monday."], tasks=["NER"], labels=labels))
    asked = [_field(src, "Option").split(", ") for src in s.sources]
    assert 1 < len(asked) < 40
    assert [x for opts in asked for x in opts] == labels
    assert "truncated_prompts" not in doc.stats
    s.sources.clear()
    list(ex.extract(["Obama visited Paris."], tasks=["NER"], labels=labels[:3]))  # few labels: one prompt, as trained
    assert [_field(src, "Option") for src in s.sources] == [", ".join(labels[:3])]


def test_sorted_option_order_makes_the_answer_independent_of_the_label_order(tiny_model_dir, script, capsys,
                                                                              tmp_path):
    """A model trained with eval.option_order sorted (the default) asks a user's labels sorted: listing them in
    another order gives the same prompts (in chunks of its max_options, 3), so the same answer; told schema, it
    asks them as listed (extract --option-order)."""
    from instructie.inference.extractor import Extractor

    assert Extractor.from_pretrained(tiny_model_dir, device="cpu").option_order == "schema"  # the fixture's card
    # predates the setting: asked as it was scored, unless told
    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu", option_order="sorted")
    with pytest.raises(ConfigError, match="sorted, schema"):
        Extractor.from_pretrained(tiny_model_dir, device="cpu", option_order="alphabetical")
    labels = ["person", "location", "organization", "date"]
    s = script(lambda task, text, opts: "None")
    for order in (labels, labels[::-1]):
        list(ex.extract(["Obama visited Paris."], tasks=["NER"], labels=order))
    assert [_field(src, "Option") for src in s.sources] == ["date, location, organization", "person"] * 2
    src = tmp_path / "a.txt"
    src.write_text("Obama visited Paris.", encoding="utf-8")
    for flag, asked in (("sorted", ["date, location, organization", "person"]),
                        ("schema", ["person, location, organization", "date"])):
        s.sources.clear()
        rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", tmp_path / "a.jsonl", "--tasks",
                         "ner", "--labels", ", ".join(labels), "--option-order", flag)
        assert rc == 0, err
        assert [_field(x, "Option") for x in s.sources] == asked


def test_default_labels_follow_the_document_language(ex, script):
    s = script(lambda task, text, opts: "None")
    list(ex.extract(["Obama visited Paris.", "王小明的妻子是李华。"], tasks=["NER", "RE"]))
    by = {}
    for src in s.sources:
        by.setdefault((prompt_task(src, ex.templates), prompt_text(src)), []).extend(_field(src, "Option").split(", "))
    assert by[("NER", "Obama visited Paris.")] == ["person", "organization", "location", "miscellaneous"]
    assert by[("RE", "王小明的妻子是李华。")] == ["作者", "毕业院校", "妻子", "丈夫"]


def test_empty_documents(ex):
    docs = list(ex.extract(["", "  \n "], tasks=["NER", "RE"]))  # no prompt at all in the chunk
    assert [(d.id, d.sentences, d.entities) for d in docs] == [("0", [], []), ("1", [], [])]


def test_bad_task_is_a_clear_error(ex):
    from instructie.core.io import ConfigError
    with pytest.raises(ConfigError, match="RC"):
        list(ex.extract(["x"], tasks=["RC"]))


def test_streaming_chunks_keep_order_and_ids(ex, script):
    s = script(lambda task, text, opts: "None")
    texts = (f"Sentence number {i}." for i in range(7))
    docs = list(ex.extract(texts, tasks=["NER"], ids=(f"d{i}" for i in range(7)), docs_per_chunk=3))
    assert [d.id for d in docs] == [f"d{i}" for i in range(7)]
    assert len(s.kwargs) == 3  # 3 + 3 + 1 documents: one generate call per chunk


# ------------------------------------------------------------------ the real (random) model, un-mocked

def test_real_tiny_model_end_to_end(ex):
    texts = [EN, ZH + "国乒2大新星0-3遭日本横扫！", ""]
    for constrained, tasks in ((False, ["NER", "RE", "EE"]), (True, ["NER"])):
        docs = list(ex.extract(texts, tasks=tasks, constrained=constrained, keep_unsupported=True, batch_size=16))
        assert [d.id for d in docs] == ["0", "1", "2"]
        for d in docs:
            check_offsets(d)
            json.loads(json.dumps(d.to_dict(), ensure_ascii=False))
        assert docs[2].sentences == [] and docs[2].entities == []


# ------------------------------------------------------------------ CLI

def obama_script(task, text, opts):
    return mentions(text, NAMES) if task == "NER" else "None"


def test_cli_txt_single_document_and_html(tmp_path, capsys, script, tiny_model_dir):
    script(obama_script)
    src = tmp_path / "news.txt"
    src.write_text(EN + "\n\nMacron left Paris. Barack Obama stayed.\n", encoding="utf-8")
    out, page = tmp_path / "out" / "news.jsonl", tmp_path / "news.html"
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner,re",
                     "--html", page)
    assert rc == 0, err
    (rec,) = read_jsonl(out)
    text = src.read_text(encoding="utf-8")
    assert rec["id"] == "news" and "text" not in rec
    assert len(rec["sentences"]) == 5
    for e in rec["entities"]:
        assert text[e["start"]:e["end"]] == e["text"] and set(e) == {"text", "label", "start", "end", "score"}
    assert [m.start() for m in re.finditer("Barack Obama", text)] == \
        [e["start"] for e in rec["entities"] if e["text"] == "Barack Obama"]
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'class="entity"' in html and "Barack Obama" in html
    assert "person" in html and "location" in html
    assert "extracted 1 document(s), 5 sentence(s)" in err


def test_cli_per_line_and_jsonl(tmp_path, capsys, script, tiny_model_dir):
    script(obama_script)
    lines = tmp_path / "lines.txt"
    lines.write_text("Barack Obama visited Paris.\n\n王小明毕业于北京大学。\nNothing here.\n", encoding="utf-8")
    out = tmp_path / "lines.jsonl"
    rc, _, err = cli(capsys, "extract", lines, "--model", tiny_model_dir, "-o", out, "--per-line")
    assert rc == 0, err
    recs = read_jsonl(out)
    assert [r["id"] for r in recs] == ["1", "3", "4"]  # line numbers; the blank line is no document
    assert [e["text"] for e in recs[0]["entities"]] == ["Barack Obama", "Paris"]
    assert recs[1]["entities"][0]["start"] == 0 and recs[2]["entities"] == []

    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in [
        {"id": "a", "body": "Obama met Emmanuel Macron in Paris."}, {"body": ZH}]) + "\n", encoding="utf-8")
    out2 = tmp_path / "docs.out.jsonl"
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out2, "--text-field", "body")
    assert rc == 0, err
    recs = read_jsonl(out2)
    assert [r["id"] for r in recs] == ["a", "2"]
    assert recs[1]["entities"][0]["text"] == "王小明"


STDIN_DOC = ZH + "\n国乒2大新星0-3遭日本横扫！一轮游出局 主力缺阵谁灭伊藤美诚？\n"


def test_cli_stdin_to_stdout_subprocess(tiny_model_dir):
    """The installed entry point end to end, real (random) model: stdin -> one JSONL record."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-m", "instructie", "extract", "-", "--model", str(tiny_model_dir),
                          "--device", "cpu", "--tasks", "ner"], input=STDIN_DOC.encode("utf-8"),
                         capture_output=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr.decode()
    (line,) = res.stdout.decode("utf-8").splitlines()
    rec = json.loads(line)
    text = STDIN_DOC
    assert rec["id"] == "stdin" and len(rec["sentences"]) == 4
    for e in rec["entities"]:
        assert text[e["start"]:e["end"]] == e["text"]


def test_cli_stdin_per_line_in_process(monkeypatch, capsys, script, tiny_model_dir):
    script(obama_script)
    data = "Barack Obama visited Paris.\n王小明毕业于北京大学。\n".encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    rc, out, err = cli(capsys, "extract", "-", "--model", tiny_model_dir, "--per-line")
    assert rc == 0, err
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["id"] for r in recs] == ["1", "2"] and recs[1]["entities"][0]["text"] == "王小明"


def test_cli_stdin_jsonl_needs_and_takes_jsonl(monkeypatch, capsys, script, tiny_model_dir):
    script(obama_script)
    data = '{"id": "a", "body": "Barack Obama visited Paris."}\n{"id": "b", "body": "Paris."}\n'.encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    rc, out, err = cli(capsys, "extract", "-", "--model", tiny_model_dir, "--jsonl", "--text-field", "body")
    assert rc == 0, err
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["id"] for r in recs] == ["a", "b"] and recs[0]["entities"][0]["text"] == "Barack Obama"
    # without --jsonl stdin is plain text: a --text-field that would be ignored is an error, not a surprise
    rc, _, err = cli(capsys, "extract", "-", "--model", tiny_model_dir, "--text-field", "body")
    assert rc == 2 and "--text-field reads JSON lines" in err and "--jsonl" in err


def test_cli_resume_after_interruption(tmp_path, capsys, script, tiny_model_dir):
    s = script(obama_script)
    src = tmp_path / "docs.jsonl"
    texts = [f"Obama visited Paris on day {i}." for i in range(6)]
    src.write_text("".join(json.dumps({"id": f"doc{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out.jsonl"

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as m:  # Ctrl-C before any document: exit 130, nothing written
        m.setattr(generation, "generate", interrupted)
        rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out)
    assert rc == 130 and "interrupted" in err and not out.exists()
    assert cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--resume")[0] == 0
    full = out.read_bytes().splitlines(keepends=True)
    assert len(full) == 6
    # an interrupted run: two whole records and half of the third
    out.write_bytes(b"".join(full[:2]) + full[2][: len(full[2]) // 2])
    s.sources.clear()
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--resume")
    assert rc == 0, err
    recs = read_jsonl(out)
    assert [r["id"] for r in recs] == [f"doc{i}" for i in range(6)]  # all once, in order, no duplicates
    assert out.read_bytes() == b"".join(full)
    assert not any("day 0." in x or "day 1." in x for x in s.sources)  # finished documents not redone
    assert "2 already done were skipped" in err
    # resuming a finished run does nothing
    s.sources.clear()
    assert cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--resume")[0] == 0
    assert s.sources == [] and len(read_jsonl(out)) == 6
    # without --resume the output is replaced, not appended to
    assert cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out)[0] == 0
    assert len(read_jsonl(out)) == 6


def test_cli_bad_lines(tmp_path, capsys, script, tiny_model_dir, monkeypatch):
    import instructie.cli.extract as xc
    script(obama_script)
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"id": "ok1", "text": "Obama visited Paris."}\n'
                    b'{"id": "bad", "text": "caf\xe9"}\n'
                    b'\n'
                    b'{"id": "ok2", "text": "Macron visited Paris."}\n'
                    b'{"id": "huge", "text": "' + b"x" * 200 + b'"}\n'
                    b'{"id": "ok3", "text": "Obama left."}\n')
    monkeypatch.setattr(xc, "MAX_DOC_CHARS", 150)
    monkeypatch.setattr(xc, "MAX_LINE_BYTES", 180)
    out = tmp_path / "out.jsonl"
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out)
    assert rc == 2
    assert f"{src}:2: not valid UTF-8" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--skip-invalid")
    assert rc == 0, err
    assert [r["id"] for r in read_jsonl(out)] == ["ok1", "ok2", "ok3"]
    assert "skipped 3 invalid record(s)" in err
    assert f"{src}:2: not valid UTF-8" in err and f"{src}:3: empty line" in err and f"{src}:5: line of" in err


def test_cli_errors_are_one_clear_line(tmp_path, capsys, tiny_model_dir):
    src = tmp_path / "a.txt"
    src.write_text("Obama.", encoding="utf-8")
    schema, empty = tmp_path / "roles.yaml", tmp_path / "empty.yaml"
    schema.write_text("ee:\n  Attack: attacker\n", encoding="utf-8")  # a string where a list of roles belongs
    empty.write_text("ner: []\n", encoding="utf-8")
    for argv, msg in [((tmp_path / "missing.txt", "--model", tiny_model_dir), "missing.txt: file not found"),
                      ((src, "--model", tmp_path), "not an instructie model directory"),
                      ((src, "--model", tiny_model_dir, "--resume"), "--resume needs an output file"),
                      ((src, "--model", tiny_model_dir, "--tasks", "rc"), "cannot run on raw text"),
                      ((src, "--model", tiny_model_dir, "--schema", tmp_path / "nope.yaml"), "schema file not found"),
                      ((src, "--model", tiny_model_dir, "--batch-size", "0"), "batch_size must be a whole number >= 1"),
                      ((src, "--model", tiny_model_dir, "--num-beams", "0"), "num_beams must be a whole number >= 1"),
                      ((src, "--model", tiny_model_dir, "--max-new-tokens", "0"), "max_new_tokens must be"),
                      ((src, "--model", tiny_model_dir, "--labels", ","), "labels: expected a non-empty list"),
                      ((src, "--model", tiny_model_dir, "--tasks", ""), "tasks: expected a non-empty list"),
                      ((src, "--model", tiny_model_dir, "--tasks", "re", "--labels", "person"),
                       "labels are entity types (NER)"),
                      ((src, "--model", tiny_model_dir, "--device", "toaster"), "device 'toaster': not a device"),
                      ((src, "--model", tiny_model_dir, "--schema", schema), "ee.Attack: the roles of an event type"),
                      ((src, "--model", tiny_model_dir, "--schema", empty), "ner must be a non-empty list"),
                      ((src, "--model", tiny_model_dir, "--html", tmp_path), "is a directory: give a file name")]:
        rc, _, err = cli(capsys, "extract", *argv)
        assert rc == 2 and msg in err and "Traceback" not in err, (argv, err)
    # --resume appends only to an earlier run's output: another file is an error, and is left as it was
    for notes in ("my precious notes\n", "my precious notes, no newline"):
        out = tmp_path / "notes.txt"
        out.write_text(notes, encoding="utf-8")
        rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--resume")
        assert rc == 2 and "notes.txt:1: not a line of extraction output" in err, err
        assert out.read_text(encoding="utf-8") == notes


def test_bad_api_arguments_are_clear_errors(ex):
    from instructie.inference.extractor import Schema
    from instructie.core.io import ConfigError, InputError
    for kw, msg in [({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
                    ({"num_beams": -1}, "num_beams must be"), ({"max_new_tokens": 2.5}, "max_new_tokens must be"),
                    ({"min_confidence": 5}, "min_confidence must be between 0 and 1"),
                    ({"labels": "person"}, "labels: expected a list, got the string 'person'"),
                    ({"tasks": []}, "tasks: expected a non-empty list"),
                    ({"labels": []}, "labels: expected a non-empty list"),
                    ({"tasks": ["RE"], "labels": ["person"]}, "labels are entity types"),
                    ({"tasks": ["NER"], "relations": ["born in"]}, "relations are asked by the RE task"),
                    ({"schema": Schema(ner=[])}, "schema.ner: expected a non-empty list")]:
        with pytest.raises(ConfigError, match=re.escape(msg)):
            list(ex.extract(["Obama visited Paris."], **kw))
    with pytest.raises(InputError, match=re.escape("(text 1): expected a string, got int")):
        list(ex.extract(["Obama visited Paris.", 123]))
    assert [d.text for d in ex.extract("Obama visited Paris.", tasks="ner", max_new_tokens=4)] == \
        ["Obama visited Paris."]  # one text, one task by name: as lists of one


def test_a_model_is_loaded_from_a_hub_id_too(tmp_path, capsys, monkeypatch, tiny_model_dir):
    # `--model org/name` (or Extractor.from_pretrained): a trained model published on the hub is fetched
    # (weights as safetensors only) and used like the directory; offline and not cached: one clear line.
    import huggingface_hub
    import huggingface_hub.constants as hc

    from instructie import Extractor

    asked = []

    def fake_download(repo_id, allow_patterns=None, **kw):
        asked.append((repo_id, allow_patterns))
        return str(tiny_model_dir)

    with monkeypatch.context() as m:
        m.setattr(huggingface_hub, "snapshot_download", fake_download)
        ex = Extractor.from_pretrained("someone/instructie-ner", device="cpu")
        assert ex.card == ModelCard.load(tiny_model_dir)
        assert asked[0][0] == "someone/instructie-ner" and "*.safetensors" in asked[0][1]
        assert not any(x.endswith((".bin", ".pt", ".pkl", ".ckpt")) for x in asked[0][1])

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # read at import time: patch the live value too
    src = tmp_path / "a.txt"
    src.write_text("Obama.", encoding="utf-8")
    rc, _, err = cli(capsys, "extract", src, "--model", "instructie-test/no-such-model-xyz")
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "'instructie-test/no-such-model-xyz' is neither a local directory nor a model on the Hugging Face hub" \
        in err


def test_cli_labels_schema_confidence_unsupported(tmp_path, capsys, script, tiny_model_dir):
    s = script(lambda task, text, opts: [("Obama | disease;", 0.9), (" Aspirin | drug;", 0.2),
                                         (" Ibuprofen | drug", 0.9)] if task == "NER" else "None")
    src = tmp_path / "a.txt"
    src.write_text("Obama took Aspirin.", encoding="utf-8")
    out = tmp_path / "a.jsonl"
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner",
                     "--labels", "disease, drug", "--min-confidence", "0.5", "--keep-unsupported")
    assert rc == 0, err
    assert {_field(x, "Option") for x in s.sources} == {"disease, drug"}
    (rec,) = read_jsonl(out)
    assert [(e["text"], e["label"]) for e in rec["entities"]] == [("Obama", "disease")]  # Aspirin: 0.2 < 0.5
    assert [u["item"]["text"] for u in rec["unsupported"]] == ["Ibuprofen"]

    schema = tmp_path / "schema.yaml"
    schema.write_text("ner: [gene, protein]\nre: [regulates]\nee:\n  mutation: [gene, site]\n", encoding="utf-8")
    s.sources.clear()
    rc, _, err = cli(capsys, "extract", src, "--model", tiny_model_dir, "-o", out, "--tasks", "ner,re,ee",
                     "--schema", schema)
    assert rc == 0, err
    asked = {(prompt_task(x, s.templates), _field(x, "Option")) for x in s.sources}
    assert asked == {("NER", "gene, protein"), ("RE", "regulates"), ("EE", "mutation")}


def test_cli_failed_fresh_run_keeps_the_previous_output(tmp_path, capsys, script, tiny_model_dir):
    """A fresh run that stops on bad input before its first document leaves an earlier output as it was."""
    script(obama_script)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "old"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "Obama visited Paris."\n')  # malformed JSON on line 1
    rc, _, err = cli(capsys, "extract", bad, "--model", tiny_model_dir, "-o", out)
    assert rc == 2 and f"{bad}:1" in err
    assert out.read_text() == '{"id": "old"}\n'


def test_cli_skip_invalid_drops_a_non_utf8_whole_file_document(tmp_path, capsys, script, tiny_model_dir):
    script(obama_script)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Obama visited Paris \xff\xfe.\n")
    out = tmp_path / "out.jsonl"
    rc, _, err = cli(capsys, "extract", bad, "--model", tiny_model_dir, "-o", out, "--skip-invalid")
    assert rc == 0 and "skipped 1" in err
    assert out.read_text() == ""  # reported as skipped, so not extracted either


def test_windows_are_cut_per_prompt_not_for_the_most_crowded_one(tiny_model_dir):
    """Long event-type labels leave little room for the text: only those prompts are windowed;
    the NER prompt still sees the whole sentence."""
    from instructie.inference.extractor import Extractor, Schema

    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    ex.max_source_length = 120
    text = "Barack Obama visited Paris on Monday and met Emmanuel Macron at the Elysee Palace in the afternoon ."
    long_types = ["a very long event type name number %d with many words in it" % k for k in range(3)]
    _, _, prompts = ex._plan([("d", text)], ["NER", "EE"], Schema(ner=["person"], ee=long_types), "en")
    ner = [p for p in prompts if p[2].task == "NER"]
    ee = [p for p in prompts if p[2].task == "EE"]
    assert [(p[1].start, p[1].end) for p in ner] == [(0, len(text))]
    assert len(ee) > 1
    for _, seg, _ in prompts:
        assert text[seg.start:seg.end] == seg.text


def test_a_prompt_still_too_long_is_counted_in_the_documents_stats(ex):
    """Windows fit the text to the prompt; labels alone longer than the model's limit cannot fit, and the
    document says its prompts were cut instead of hiding it."""
    doc = next(ex.extract([EN], tasks=["NER"], labels=["person", "location"], max_new_tokens=2))
    assert "truncated_prompts" not in doc.stats
    huge = [f"a very long label naming kind {k} of thing " * 30 for k in range(3)]  # each alone over the limit
    doc = next(ex.extract([EN], tasks=["NER"], labels=huge, max_new_tokens=2))
    assert doc.stats["truncated_prompts"] >= 1
