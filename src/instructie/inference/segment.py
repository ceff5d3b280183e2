"""Split documents into model-sized pieces that keep exact document character offsets.

Pipeline per document: lines (every newline ends a sentence) -> blocks of at most
``_CHUNK`` chars (spaCy's ``nlp.max_length`` and memory stay safe on huge inputs) ->
sentences (spaCy blank pipeline + sentencizer; without spaCy, ``rule_sentences``) -> windows
(sentences longer than ``max_len`` by ``length_fn``). Every ``Segment`` satisfies
``text == doc[start:end]``.

spaCy is an optional extra, imported lazily: training never needs it, and extraction without it
splits sentences with the built-in rules.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..core.records import detect_language

# Tokens that end a sentence (added to spaCy's defaults, which hold most of them already).
SENTENCE_ENDERS = ("。", "！", "？", "!", "?", "；", "…", "……", ".", "．", "｡")
_ENDER_CHARS = "。！？!?；….．｡"
# Where a too-long sentence prefers to be cut (after the char), before falling back to spaces.
_BREAK_CHARS = "，、,;；"
_SPACE_CHARS = " \t\u3000\xa0"
# Largest piece handed to spaCy at once: far below nlp.max_length (1,000,000), and small
# because spaCy's zh tokenizer aligns chars in O(n^2) (100k chars: ~0.4 s; 10k: ~5 ms).
# Cuts prefer a sentence ender, so only sentences > _CHUNK/2 chars are ever cut here.
_CHUNK = 10_000
_LINE = re.compile(r"[^\n\r\u2028\u2029\x0b\x0c\x85]+")
# Only the start of a document is used for language detection (it is O(n) Python).
_DETECT_PREFIX = 10_000

_PIPELINES: dict[str, Any] = {}  # "zh"/"en" -> spaCy Language with a sentencizer (None: no spaCy)
_PUNCT: set[str] = set()  # the sentencizer's punct_chars, filled with the first pipeline
_PUNCT_RE: re.Pattern[str] | None = None  # any char of any punct token: cheap "needs spaCy?"


@dataclass(frozen=True)
class Segment:
    doc_index: int
    start: int
    end: int
    text: str
    sentence_index: int
    window_index: int  # 0 unless the sentence was longer than max_len


def _lang_key(language: str | None, text: str) -> str:
    lang = language or detect_language(text[:_DETECT_PREFIX])
    return "zh" if lang.lower().startswith("zh") else "en"


def spacy_available() -> bool:
    """Whether sentences are split by spaCy (installed) or by ``rule_sentences``."""
    try:
        import spacy  # noqa: F401
    except ImportError:
        return False
    return True


def _pipeline(lang: str) -> Any:
    """Cached blank pipeline + sentencizer; zh uses spaCy's offline char segmenter. None when spaCy
    is not installed."""
    global _PUNCT_RE
    if lang in _PIPELINES:
        return _PIPELINES[lang]
    if not spacy_available():
        _PIPELINES[lang] = None
        return None
    import spacy  # lazy: only inference-time segmentation needs spaCy
    from spacy.pipeline.sentencizer import Sentencizer

    _PUNCT.update(Sentencizer.default_punct_chars, SENTENCE_ENDERS)
    _PUNCT_RE = re.compile("[" + re.escape("".join(sorted(set("".join(_PUNCT))))) + "]")
    if lang == "zh":  # "char" is the default, made explicit: no jieba/pkuseg download
        nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "char"}}})
    else:
        nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", config={"punct_chars": sorted(_PUNCT)})
    _PIPELINES[lang] = nlp
    return nlp


# ------------------------------------------------------------------ the built-in splitter
# Used when spaCy is not installed. A sentence ends after a run of sentence-final punctuation and
# the closing quotes/brackets after it. CJK full-width enders end a sentence wherever they are;
# ASCII . ! ? only before a space, the end of the text or a CJK character -- so "3.5", "U.S.A",
# "e.g.," and "example.com" never split -- and a lone "." not after an abbreviation or an initial.
_RULE_ENDERS = re.compile(r"[.!?\u3002\uff01\uff1f\uff61\uff0e\uff1b\u2026]+")
_CLOSERS = "\"'\u201d\u2019\u00bb\u203a)]}\uff09\u3011\u300d\u300f\u300b\u3009\u3015\u3017\u3019\u301b\uff3d\uff5d"
_OPENERS = "\"'\u201c\u2018\u00ab\u2039([{\uff08\u3010\u300c\u300e\u300a\u3008"
# Words a "." follows without ending the sentence (compared in lower case): titles, company forms,
# months, and the like -- spaCy's English tokenizer exceptions plus a few common ones.
ABBREVIATIONS = frozenset("""
mr mrs ms dr prof rev gen gov sen rep sr jr st mt adm capt col lt sgt maj messrs mme mlle hon pres
inc ltd co corp bros dept univ assn vs cf approx ca al
jan feb mar apr jun jul aug sep sept oct nov dec
ala ariz ark calif colo conn del fla ga ill ind kan kans ky la md mass mich minn miss mo mont neb nebr
nev okla ore pa tenn va wash wis
""".split())
# ... and words a "." follows without ending the sentence when a number comes next ("No. 5", "Fig. 3").
NUMBER_ABBREVIATIONS = frozenset("no nos vol fig figs pp p art ch sec op".split())
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}$")  # U.S, e.g, i.e, a.m, Ph.D (the last "." is the run)


def _word_before(text: str, start: int, i: int) -> str:
    """The run of non-space characters ending at ``i``, without opening quotes/brackets."""
    j = i
    while j > start and not text[j - 1].isspace():
        j -= 1
    return text[j:i].lstrip(_OPENERS)


def _ends_sentence(text: str, start: int, end: int, a: int, b: int) -> bool:
    """Whether the run of enders text[a:b], followed by whatever closers, ends a sentence."""
    run = text[a:b]
    if not run.isascii():
        return True  # 。！？… and the like: a sentence ends, whatever follows
    c = b
    while c < end and text[c] in _CLOSERS:
        c += 1
    nxt = text[c] if c < end else None
    if nxt is not None and not nxt.isspace() and (nxt.isascii() or not nxt.isalnum()):
        return False  # 3.5, U.S.A, e.g., example.com, "Hi!" she said -- inside a token
    if run == ".":
        word = _word_before(text, start, a)
        if not word:
            return True  # "lamb ." (tokenized text): a period on its own ends the sentence
        w = word.lower()
        if _DOTTED.match(word) or (len(word) == 1 and word.isalpha()) or w in ABBREVIATIONS:
            return False  # U.S., e.g., Ph.D., an initial (J. Smith), Mr., Inc., Jan.
        if w in NUMBER_ABBREVIATIONS:
            k = c
            while k < end and text[k].isspace():
                k += 1
            if k < end and text[k].isdigit():
                return False  # No. 5, Fig. 3
        return True
    if set(run) == {"."}:  # "...": inside an English sentence ("Wait... what"), a clause's end before CJK
        return nxt is not None and not nxt.isascii()
    return True  # "?", "!", "?!"


def _after_closers(text: str, c: int, end: int) -> int:
    """The end of a sentence whose final punctuation ends at ``c``: closing quotes/brackets right
    after it, and a closer standing alone after a space (tokenized text: 'alarm . "')."""
    while c < end and text[c] in _CLOSERS:
        c += 1
    while True:
        k = c
        while k < end and text[k] in _SPACE_CHARS:
            k += 1
        if k == c or k >= end or text[k] not in _CLOSERS:
            return c
        e = k
        while e < end and text[e] in _CLOSERS:
            e += 1
        if e < end and not text[e].isspace():
            return c  # '. "Go' -- an opening quote of the next sentence
        c = e


def rule_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of text[start:end] by punctuation rules (English and Chinese), covering it
    without gaps; the caller strips the spaces at their edges."""
    end = len(text) if end is None else end
    out: list[tuple[int, int]] = []
    s = start
    for m in _RULE_ENDERS.finditer(text, start, end):
        if m.start() < s:
            continue  # within closers already taken into the last sentence
        if _ends_sentence(text, start, end, m.start(), m.end()):
            c = _after_closers(text, m.end(), end)
            if c > s:
                out.append((s, c))
            s = c
    if s < end:
        out.append((s, end))
    return out


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _rfind_any(text: str, chars: str, lo: int, hi: int) -> int:
    return max(text.rfind(c, lo, hi) for c in chars)


def _blocks(text: str) -> Iterator[tuple[int, int]]:
    """Non-blank lines, each cut into pieces of at most _CHUNK chars (offsets into text)."""
    for m in _LINE.finditer(text):
        start, end = _strip(text, m.start(), m.end())
        while end - start > _CHUNK:
            # Cut huge lines after a sentence ender, else at a space, else hard.
            lo, hi = start + _CHUNK // 2, start + _CHUNK
            cut = _rfind_any(text, _ENDER_CHARS, lo, hi)
            if cut < 0:
                cut = _rfind_any(text, _SPACE_CHARS, lo, hi)
            cut = hi if cut < 0 else cut + 1
            s, e = _strip(text, start, cut)
            if s < e:
                yield s, e
            start, _ = _strip(text, cut, end)
        if start < end:
            yield start, end


def _windows(
    text: str, start: int, end: int, max_len: int,
    length_fn: Callable[[str], int] | None, overlap: int,
) -> list[tuple[int, int]]:
    """Cut text[start:end] (already stripped) into windows that fit max_len."""
    fits: Callable[[int, int], bool] | None = None  # None: length is len, no calls needed
    if length_fn is not None:
        fn = length_fn
        if fn(text[start:end]) <= max_len:
            return [(start, end)]
        fits = lambda a, b: fn(text[a:b]) <= max_len  # noqa: E731
    elif end - start <= max_len:
        return [(start, end)]

    def longest(a: int) -> int:
        """Largest b in (a, end] whose window fits (assuming length grows with b); >= a+1."""
        if fits is None:
            return min(end, a + max_len)
        lo, hi, step = a, end + 1, max(1, max_len)  # lo fits (or is empty), hi does not
        while True:  # gallop: a tokenizer length has no fixed chars-per-unit ratio
            probe = a + step
            if probe >= end:
                break
            if fits(a, probe):
                lo, step = probe, step * 2
            else:
                hi = probe
                break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if mid <= end and fits(a, mid):
                lo = mid
            else:
                hi = mid
        return max(lo, a + 1)  # always advance, even if one char is "too long"

    out: list[tuple[int, int]] = []
    a = start
    while a < end:
        b = longest(a)
        cut = b
        if b < end:
            # Prefer a comma, then a space, in the window's second half.
            lo = a + (b - a) // 2
            i = _rfind_any(text, _BREAK_CHARS, lo, b)
            if i < 0:
                i = _rfind_any(text, _SPACE_CHARS, lo, b)
            if i >= lo and i + 1 > a and (fits is None or fits(a, i + 1)):
                cut = i + 1
        ws, we = _strip(text, a, cut)
        if ws < we:
            out.append((ws, we))
        if cut >= end:
            break
        # Overlap by `overlap` chars, but always move at least half a window forward.
        nxt = max(we - overlap, a + max(1, (we - a) // 2)) if overlap > 0 else cut
        a, _ = _strip(text, nxt, end)
    return out


def segment(
    text: str,
    language: str | None = None,
    max_len: int = 400,
    length_fn: Callable[[str], int] | None = None,
    overlap: int = 0,
) -> list[Segment]:
    """Sentences (and windows of long ones) of one document, with exact offsets."""
    return next(segment_many([text], language, max_len, length_fn, overlap, batch_size=1))


def segment_many(
    texts: Iterable[str],
    language: str | None = None,
    max_len: int = 400,
    length_fn: Callable[[str], int] | None = None,
    overlap: int = 0,
    batch_size: int = 256,
) -> Iterator[list[Segment]]:
    """Lazily yield ``segment(text)`` for each text, in order, via ``nlp.pipe``.

    Holds at most ``batch_size`` documents at a time, so any iterable (a generator over
    a huge file) is fine. ``language=None`` detects each document's language.
    """
    if max_len < 1 or overlap < 0 or batch_size < 1:
        raise ValueError("need max_len >= 1, overlap >= 0, batch_size >= 1")
    it = iter(texts)
    base = 0  # doc_index of docs[0]
    while True:
        docs = list(itertools.islice(it, batch_size))
        if not docs:
            return
        blocks: list[list[tuple[int, int]]] = [[] for _ in docs]
        todo: dict[str, list[tuple[int, int, int]]] = {}  # lang -> (doc, start, end)
        for d, text in enumerate(docs):
            if not text or text.isspace():
                continue
            lang = _lang_key(language, text)
            nlp = _pipeline(lang)  # also builds _PUNCT_RE
            enders = _PUNCT_RE if nlp is not None else _RULE_ENDERS
            blocks[d] = list(_blocks(text))
            for s, e in blocks[d]:
                # A block with no punctuation char at all is one sentence: skip the splitter.
                if enders is not None and enders.search(text, s, e):
                    todo.setdefault(lang, []).append((d, s, e))
        split: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for lang, items in todo.items():
            nlp = _pipeline(lang)
            if nlp is None:
                for d, s, e in items:
                    split[(d, s)] = rule_sentences(docs[d], s, e)
                continue
            pieces = ((docs[d][s:e], (d, s)) for d, s, e in items)
            for doc, (d, s) in nlp.pipe(pieces, as_tuples=True, batch_size=batch_size):
                split[(d, s)] = [(s + x.start_char, s + x.end_char) for x in doc.sents]
        sentences = [
            [(ss, se) for s, e in blocks[d] for ss, se in (_strip(text, a, b) for a, b in split.get((d, s), [(s, e)]))
             if ss < se]
            for d, text in enumerate(docs)
        ]
        prime = getattr(length_fn, "prime", None)
        if prime is not None:  # a length function that measures many texts at once: the batch's sentences
            prime([text[ss:se] for text, spans in zip(docs, sentences) for ss, se in spans])
        for d, text in enumerate(docs):
            out: list[Segment] = []
            for si, (ss, se) in enumerate(sentences[d]):
                for wi, (ws, we) in enumerate(_windows(text, ss, se, max_len, length_fn, overlap)):
                    out.append(Segment(base + d, ws, we, text[ws:we], si, wi))
            yield out
        base += len(docs)

