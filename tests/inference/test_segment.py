"""Segmentation: exact offsets, sentence/newline splits, windows, overlap, streaming, speed."""
from __future__ import annotations

import importlib.util
import time
from typing import Iterator

import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("spacy")

from instructie.inference import segment as seg_mod  # noqa: E402
from instructie.inference.segment import Segment, segment, segment_many  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _spacy_entry_points():
    # spacy.blank() imports every spacy_factories entry point, including this package's
    # instructie.inference.spacy_component; if that module is not importable here, don't let it
    # break unrelated segmentation tests.
    import spacy.util

    reg = spacy.util.registry._entry_point_factories
    old = reg.entry_points
    if importlib.util.find_spec("instructie.inference.spacy_component") is None:
        reg.entry_points = False
    yield
    reg.entry_points = old


def check(doc: str, segs: list[Segment], max_len: int | None = None, length_fn=len) -> None:
    for s in segs:
        assert s.text == doc[s.start:s.end]
        assert s.text and s.text == s.text.strip()
        if max_len is not None:
            assert length_fn(s.text) <= max_len
    assert [s.start for s in segs] == sorted(s.start for s in segs)
    covered = set()
    for s in segs:
        covered.update(range(s.start, s.end))
    assert all(i in covered for i, ch in enumerate(doc) if not ch.isspace())


def test_chinese_sentences():
    doc = "他说：“你好。”然后走了！你来吗？ 好的；再见……下次见"
    segs = segment(doc)
    assert [s.text for s in segs] == ["他说：“你好。”", "然后走了！", "你来吗？", "好的；", "再见……", "下次见"]
    assert [s.sentence_index for s in segs] == list(range(6))
    assert {s.window_index for s in segs} == {0} and {s.doc_index for s in segs} == {0}
    check(doc, segs)


def test_english_offsets_and_newlines():
    doc = "  The U.S. economy grew. Did it?  Yes!\nno punctuation here\n\n\n  last line  \r\n"
    segs = segment(doc)
    check(doc, segs)
    texts = [s.text for s in segs]
    assert texts[-2:] == ["no punctuation here", "last line"]
    assert "Did it?" in texts and "Yes!" in texts


def test_empty_docs():
    assert segment("") == [] and segment("  \n\n\t ") == []
    assert list(segment_many(["", "a.", " "])) == [[], [Segment(1, 0, 2, "a.", 0, 0)], []]


def test_windows_respect_length_fn():
    doc = "alpha beta, gamma delta " * 60 + "end."
    words = lambda s: len(s.split())  # noqa: E731  (a stand-in for a tokenizer length)
    segs = segment(doc, max_len=25, length_fn=words)
    assert len(segs) > 1 and {s.sentence_index for s in segs} == {0}
    assert [s.window_index for s in segs] == list(range(len(segs)))
    check(doc, segs, 25, words)
    # Cuts prefer the comma: windows end after "beta," where there is one in reach.
    assert all(s.text.endswith(",") for s in segs[:-1])
    segs = segment(doc, max_len=50)
    check(doc, segs, 50)


def test_hard_cut_and_overlap():
    doc = "中" * 97 + "北京大学" + "文" * 99  # no spaces, no commas: hard cuts
    segs = segment(doc, max_len=100, overlap=10)
    check(doc, segs, 100)
    assert all(b.start == a.end - 10 for a, b in zip(segs, segs[1:]))
    # The entity straddling the first cut is whole in the second window.
    assert any("北京大学" in s.text for s in segs)
    assert not any("北京大学" in s.text for s in segment(doc, max_len=100))
    plain = segment(doc, max_len=100)
    assert all(b.start == a.end for a, b in zip(plain, plain[1:]))


def test_huge_text_is_fast():
    docs = ("词" * 300_000, "word " * 60_000, "a b c d e f. " * 25_000, "天气很好，。" * 50_000)
    for doc in docs:
        t = time.perf_counter()
        segs = segment(doc, max_len=400, overlap=20)
        assert time.perf_counter() - t < 10
        check(doc, segs, 400)
    t = time.perf_counter()
    segs = segment("x" * 300_000, max_len=400, length_fn=lambda s: (len(s) + 3) // 4)
    assert time.perf_counter() - t < 10 and all((len(s.text) + 3) // 4 <= 400 for s in segs)


def test_segment_many_streams():
    consumed = 0
    docs = ["First one. Second one.", "第一句。第二句！", "", "mixed 中文。and English."]

    def gen() -> Iterator[str]:
        nonlocal consumed
        for d in docs * 3:
            consumed += 1
            yield d

    it = segment_many(gen(), batch_size=2)
    first = next(it)
    assert consumed == 2 and [s.text for s in first] == ["First one.", "Second one."]
    rest = [first, *it]
    assert len(rest) == 12
    for i, (doc, segs) in enumerate(zip(docs * 3, rest)):
        assert all(s.doc_index == i for s in segs)
        assert [(s.start, s.end) for s in segs] == [(s.start, s.end) for s in segment(doc)]
        check(doc, segs)
    assert [s.text for s in rest[1]] == ["第一句。", "第二句！"]


def test_pipelines_cached():
    segment("One. Two.", language="en")
    segment("一。二。", language="zh")
    nlp = seg_mod._PIPELINES["zh"]
    segment("三。四。", language="zh-cn")
    assert seg_mod._PIPELINES["zh"] is nlp and set(seg_mod._PIPELINES) == {"en", "zh"}


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="ab 中文。！？!?.,，；\n\t", max_size=300),
    st.integers(1, 40),
    st.integers(0, 15),
)
def test_invariants(doc: str, max_len: int, overlap: int):
    segs = segment(doc, max_len=max_len, overlap=overlap)
    check(doc, segs, max_len)


def test_a_length_function_that_primes_is_given_each_batch_sentences_at_once():
    """Planning measures sentences with the tokenizer: a length function with ``prime`` gets every sentence
    of a batch in one call (one batched tokenizer call, not one per sentence), and the segments are those a
    plain length function gives."""
    texts = ["First one here. And a second, longer sentence follows it.", "", "Alone", "A b c d e f g h i j k l."]

    class Counting:
        def __init__(self):
            self.primed: list[list[str]] = []
            self.known: dict[str, int] = {}

        def prime(self, batch):
            self.primed.append(list(batch))
            self.known.update((t, len(t.split())) for t in batch)

        def __call__(self, text):
            return self.known[text] if text in self.known else len(text.split())

    counting = Counting()
    got = list(segment_many(texts, language="en", max_len=5, length_fn=counting, overlap=0))
    plain = list(segment_many(texts, language="en", max_len=5, length_fn=lambda t: len(t.split()), overlap=0))
    assert got == plain
    assert len(counting.primed) == 1  # one batch of documents, one call
    # every sentence, before any is cut into windows; none of the empty document
    assert counting.primed[0] == ["First one here.", "And a second, longer sentence follows it.", "Alone",
                                  "A b c d e f g h i j k l."]


def test_token_counts_measure_each_text_once():
    from instructie.inference.predict import TokenCounts

    calls = []

    def tokenizer(texts, add_special_tokens=False):
        calls.append(texts)
        batch = [texts] if isinstance(texts, str) else texts
        ids = [[0] * len(t.split()) for t in batch]
        return {"input_ids": ids[0] if isinstance(texts, str) else ids}

    counts = TokenCounts(tokenizer)
    counts.prime(["a b", "c d e", "a b"])
    assert counts("a b") == 2 and counts("c d e") == 3
    assert counts("f") == 1 and counts("f") == 1
    assert calls == [["a b", "c d e"], "f"]  # one batched call, then one for the text not primed
