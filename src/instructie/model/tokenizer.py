"""Tokenizers: a model's own, one trained for a random-init T5, and a pretrained one made able to read and
write every character the model must read or write (texts, options, templates, answers).

Flan-T5's tokenizer (T5's SentencePiece unigram vocabulary, no byte fallback, ``nmt_nfkc`` normalisation)
loses characters in two ways, and either way even a perfect model could not write a span holding one:

* **unknown**: most CJK characters and ``{ } < ~ \\`` map to ``<unk>``, which decoding drops;
* **rewritten** (lossy): the normaliser changes them before the vocabulary sees them: fullwidth ``，：（）``
  become ASCII, ``…`` becomes ``...``, ``²`` and ``①`` become digits. A span holding one decodes to a string
  that is not in the source text.

``extend_tokenizer`` fixes both. Unknown characters become ordinary unigram pieces. Rewritten characters are
kept away from the normaliser -- each is swapped for a private-use placeholder before the checkpoint's own
normaliser and swapped back after it, so every other character is still normalised exactly as the checkpoint
was trained -- and then become pieces like the unknown ones. Keeping the user's characters (rather than
normalising the text the model sees and mapping answers back) means prompts, options, labels and answers need no
mapping at all, and offsets are offsets in the original text. A kept character's embedding row starts from its
normalised form's (``new_row_sources``), so "，" starts out as the model's ",".

White space is left as T5 has it (split on, written as single spaces): answers write newlines and tabs as
escapes (targets.py) and grounding matches any run of white space in a span to any run in the text (offsets.py).
"""
from __future__ import annotations

import collections
import json
import os
import unicodedata
from typing import Any, Iterable

from ..core.io import ConfigError
from .hub import hub_error

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # T5 convention: ids 0, 1, 2
MODEL_MAX_LENGTH = 512  # as Flan-T5's tokenizer; only used when a caller truncates without a max_length
# Supplementary Private Use Area-A: nmt_nfkc keeps these (it deletes the BMP private-use area), and text
# practically never holds them.
PLACEHOLDER_BASE = 0xF0000
MOSTLY_UNREPRESENTABLE = 0.5  # a document with more than this share of such characters gets a warning


def load_tokenizer(spec: Any, train_texts: Iterable[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """(tokenizer, report) for a ``loading.ModelSpec``: ``spec.tokenizer``, else ``spec.name_or_path``'s, else
    one trained on ``train_texts``. With ``train_texts`` the characters the tokenizer maps to ``<unk>`` or
    rewrites are counted and, with ``spec.extend_vocab``, made pieces of their own -- the tokenizer a run of
    ``spec`` trains with. The report counts both kinds before and after (``unknown_rate``) and gives
    ``base_tokenizer_len``: ids from there on are new."""
    texts = list(train_texts) if train_texts is not None else None
    report: dict[str, Any] = {}
    tok_source = spec.tokenizer or spec.name_or_path
    if tok_source:
        # errors name the model when its own tokenizer is what failed to load
        tokenizer = _load_tokenizer(tok_source, "tokenizer" if spec.tokenizer else "model")
        report["tokenizer"] = tok_source
    else:
        if not texts:
            raise ConfigError("init: random without a tokenizer needs training texts to train one")
        tokenizer = train_tokenizer(texts, spec.vocab_size)
        report["tokenizer"] = f"trained byte-level BPE (vocab {len(tokenizer)})"
    tokenizer.clean_up_tokenization_spaces = False  # why: "lamb ." must decode as "lamb ." to match the source

    # characters the tokenizer cannot write, measured (and fixed) before the model is sized
    if texts:
        before = unknown_rate(tokenizer, texts)
        report.update(unknown_rate_before=before, base_tokenizer_len=len(tokenizer), added_chars=[], kept_chars=[])
        todo = before["missing_chars"] + before["lossy_chars"]
        if spec.extend_vocab and todo:
            tokenizer, report["extend_method"] = extend_tokenizer(tokenizer, todo)
            report["added_chars"] = todo
            report["kept_chars"] = before["lossy_chars"]
            report["unknown_rate_after"] = unknown_rate(tokenizer, texts)
        else:
            report["unknown_rate_after"] = before
    quiet_length_warning(tokenizer)
    return tokenizer, report


def _load_tokenizer(name: str, what: str = "tokenizer") -> Any:
    from transformers import AutoTokenizer

    name = os.path.expanduser(name)
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as err:  # OSError / ValueError / hub errors: all mean "not loadable from here"
        raise hub_error(what, name, err) from err


# ---------------------------------------------------------------------------------------------- training one
# CJK characters become pre-tokens of their own, so a name is tokenized the same inside a sentence and alone
# in an answer (copying needs that); byte-level BPE then merges each frequent character's UTF-8 bytes.
# CJK and fullwidth punctuation and curly quotes too: merged with what follows ("）。", "”，") a span
# ending in one could not be copied (eval/check_constraint.py: 2% of DuEE's gold answers were blocked).
_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\x{3000}-\x{303F}\x{FF00}-\x{FFEF}\x{2018}-\x{201F}]"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 16000) -> Any:
    """Byte-level BPE trained on ``texts``: no character is ever <unk>, decode(encode(x)) == x (no normalizer:
    fullwidth punctuation and newlines survive), <pad>=0 </s>=1 <unk>=2, and every encoding ends in </s>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_CJK), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[PAD, EOS, UNK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((t for t in texts if t), trainer)
    # Without this post-processor targets never end in </s> and generation never learns to stop.
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, tok.token_to_id(EOS))])
    assert (tok.token_to_id(PAD), tok.token_to_id(EOS), tok.token_to_id(UNK)) == (0, 1, 2)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   model_max_length=MODEL_MAX_LENGTH, clean_up_tokenization_spaces=False)


# ---------------------------------------------------------------------------------------------- coverage
def char_verdicts(tokenizer: Any, chars: Iterable[str]) -> dict[str, str]:
    """For each (non-white-space) character: "ok", "unknown" (encodes to <unk>) or "lossy" (not <unk>, but
    encode -> decode does not give it back: the normaliser rewrites or deletes it)."""
    chars = list(dict.fromkeys(chars))
    if not chars:
        return {}
    unk = tokenizer.unk_token_id
    enc = tokenizer(chars, add_special_tokens=False)["input_ids"]
    dec = tokenizer.batch_decode(enc, skip_special_tokens=True)
    return {c: "unknown" if unk is not None and unk in ids else "ok" if back.strip() == c else "lossy"
            for c, ids, back in zip(chars, enc, dec)}


def unknown_rate(tokenizer: Any, texts: Iterable[str]) -> dict[str, Any]:
    """Character-level coverage of ``texts`` (white space counted apart): ``chars_total``; ``chars_unknown``
    and ``rate`` (occurrences of characters mapped to <unk>, and their share); ``chars_lossy`` and
    ``lossy_rate`` (characters the normaliser rewrites, e.g. T5's NFKC turns '，' into ','); ``missing_chars``
    and ``lossy_chars`` (each kind, most frequent first); ``lossy_whitespace``: white-space characters written
    back as a plain space (T5 turns newlines into spaces; answers escape them and grounding matches any
    white space, so these cost no span)."""
    counts = collections.Counter()
    for t in texts:
        counts.update(t)
    verdict = char_verdicts(tokenizer, (c for c in counts if not c.isspace()))
    missing = sorted((c for c, v in verdict.items() if v == "unknown"), key=lambda c: -counts[c])
    lossy = sorted((c for c, v in verdict.items() if v == "lossy"), key=lambda c: -counts[c])
    lossy_ws = []
    for c in sorted((c for c in counts if c.isspace() and c != " "), key=lambda c: -counts[c]):
        ids = tokenizer(f"a{c}b", add_special_tokens=False)["input_ids"]
        if tokenizer.decode(ids, skip_special_tokens=True) != f"a{c}b":
            lossy_ws.append(c)
    total = sum(counts[c] for c in verdict)
    n_unk = sum(counts[c] for c in missing)
    n_lossy = sum(counts[c] for c in lossy)
    return {"chars_total": total, "chars_unknown": n_unk, "rate": n_unk / total if total else 0.0,
            "chars_lossy": n_lossy, "lossy_rate": n_lossy / total if total else 0.0,
            "missing_chars": missing, "lossy_chars": lossy, "lossy_whitespace": lossy_ws}


class UnrepresentableChars:
    """Counts, per text, the characters a tokenizer cannot represent: mapped to <unk> or rewritten by its
    normaliser (white space aside). What a model reads of them is not the text, and what it writes of them
    cannot be found in the text. One tokenizer call per batch of characters not seen before."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self._bad: dict[str, bool] = {}

    def counts(self, text: str) -> tuple[int, int]:
        """(unrepresentable characters, non-white-space characters) of ``text``."""
        new = {c for c in text if c not in self._bad and not c.isspace()}
        if new:
            self._bad.update((c, v != "ok") for c, v in char_verdicts(self.tokenizer, sorted(new)).items())
        n = total = 0
        for c in text:
            if not c.isspace():
                total += 1
                n += self._bad[c]
        return n, total

    def count(self, text: str) -> int:
        return self.counts(text)[0]

    def mostly_unrepresentable(self, text: str, share: float = MOSTLY_UNREPRESENTABLE) -> bool:
        """More than ``share`` of the text's characters cannot be represented (e.g. a language the model's
        vocabulary was not built for)."""
        n, total = self.counts(text)
        return total > 0 and n > share * total


# ---------------------------------------------------------------------------------------------- extension
def _replace(src: str, dst: str) -> dict[str, Any]:
    return {"type": "Replace", "pattern": {"String": src}, "content": dst}


def _is_placeholder(s: str) -> bool:
    return len(s) == 1 and PLACEHOLDER_BASE <= ord(s) < PLACEHOLDER_BASE + 0xFFFE


def _kept_chars(norm: dict[str, Any] | None) -> tuple[list[str], dict[str, Any] | None]:
    """(characters a normaliser built by ``_keeping`` keeps, the checkpoint's normaliser inside it)."""
    if not norm or norm.get("type") != "Sequence":
        return [], norm
    steps = norm["normalizers"]
    kept = [s["pattern"].get("String") for s in steps
            if s.get("type") == "Replace" and _is_placeholder(s.get("content", ""))]
    if not kept:
        return [], norm
    inner = [s for s in steps if s.get("type") != "Replace"
             or not (_is_placeholder(s.get("content", "")) or _is_placeholder(s["pattern"].get("String", "")))]
    return kept, (inner[0] if len(inner) == 1 else {"type": "Sequence", "normalizers": inner})


def _keeping(inner: dict[str, Any], chars: list[str]) -> dict[str, Any]:
    """``inner`` (the checkpoint's normaliser) with ``chars`` passed through unchanged."""
    marks = [chr(PLACEHOLDER_BASE + i) for i in range(len(chars))]
    return {"type": "Sequence", "normalizers": [_replace(c, m) for c, m in zip(chars, marks)] + [inner]
            + [_replace(m, c) for c, m in zip(chars, marks)]}


def extend_tokenizer(tokenizer: Any, chars: list[str]) -> tuple[Any, str]:
    """A tokenizer that reads and writes ``chars`` as they are; returns (tokenizer, method). Existing ids are
    unchanged; the new pieces' ids follow every existing id.

    Unigram models (T5/mT5 SentencePiece): characters the normaliser would rewrite are kept from it (see the
    module docstring), and every character becomes an ordinary vocabulary piece, so the Metaspace
    pre-tokenizer sees it like any other text. ``add_tokens`` instead splits the text around each added token
    and breaks spacing ("Blackburn 王" decodes as "Blackburn王"). Other models fall back to ``add_tokens``
    with tokens the normaliser does not see."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in dict.fromkeys(chars) if c and not c.isspace()]
    backend = tokenizer.backend_tokenizer
    spec = json.loads(backend.to_str())
    if spec["model"]["type"] != "Unigram":
        from tokenizers import AddedToken
        tokenizer.add_tokens([AddedToken(c, normalized=False) for c in chars])
        return tokenizer, "add_tokens"
    norm = backend.normalizer
    kept, inner = _kept_chars(spec.get("normalizer"))
    rewritten = [c for c in chars if norm is not None and norm.normalize_str(c) != c and c not in kept]
    if rewritten:
        spec["normalizer"] = _keeping(inner, kept + rewritten)
    vocab = spec["model"]["vocab"]
    known = {p for p, _ in vocab}
    floor = min(s for _, s in vocab) - 1.0  # a new char competes only with <unk>; keep it below real pieces
    added = {a["id"]: a["content"] for a in spec["added_tokens"]}
    # Added tokens (T5's <extra_id_*>) may sit past the model vocab: fill those ids so new pieces follow them.
    for i in range(len(vocab), max(added, default=-1) + 1):
        vocab.append([added.get(i, f"<unused_{i}>"), floor - 10.0])
    vocab.extend([c, floor] for c in chars if c not in known)
    new = Tokenizer.from_str(json.dumps(spec))
    special = {k: getattr(tokenizer, k) for k in ("pad_token", "eos_token", "unk_token", "bos_token",
                                                  "sep_token", "cls_token", "mask_token")
               if getattr(tokenizer, k, None) is not None}
    extra = getattr(tokenizer, "extra_special_tokens", None) or getattr(tokenizer, "additional_special_tokens", None)
    if isinstance(extra, (list, tuple)) and extra:  # T5's sentinels; 5.x maps this kwarg to extra_special_tokens
        special["additional_special_tokens"] = [str(t) for t in extra]
    # A plain fast tokenizer: tokenizer.json is then saved and loaded verbatim (a T5Tokenizer rebuilds parts).
    out = PreTrainedTokenizerFast(tokenizer_object=new, model_max_length=tokenizer.model_max_length,
                                  clean_up_tokenization_spaces=False, **special)
    return out, "unigram_pieces"


def new_row_sources(tokenizer: Any, first_new: int) -> dict[int, list[int]]:
    """For each token id from ``first_new`` on: the older ids whose embedding rows its own starts from -- the
    tokens of its NFKC form ('，' -> ',', '…' -> '...', '²' -> '2'), else of its decomposition less combining
    marks ('ï' -> 'i'); [] when neither is written with older tokens (a CJK character)."""
    unk = tokenizer.unk_token_id
    special = set(tokenizer.all_special_ids)
    out: dict[int, list[int]] = {}
    for i in range(first_new, len(tokenizer)):
        piece = tokenizer.convert_ids_to_tokens(i)
        if piece is None or i in special:
            continue
        text = piece.replace("\u2581", " ")
        forms = (unicodedata.normalize("NFKC", text),
                 "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)))
        ids: list[int] = []
        for form in forms:
            if form == text or not form.strip():
                continue
            whole = tokenizer.convert_tokens_to_ids(form)  # the piece itself, without a word-start mark
            if isinstance(whole, int) and whole != unk and whole < first_new:
                ids = [whole]
                break
            enc = [t for t in tokenizer(form, add_special_tokens=False)["input_ids"]
                   if tokenizer.convert_ids_to_tokens(t) != "\u2581"]
            if enc and unk not in enc and all(t < first_new for t in enc):
                ids = enc
                break
        out[i] = ids
    return out


def quiet_length_warning(tokenizer: Any) -> None:
    """Silence transformers' "Token indices sequence length is longer than the specified maximum ... will
    result in indexing errors": this package measures texts with the tokenizer to cut them itself (windows,
    prompt budgets, ``cut_ids``), so a long text is never given to the model whole and the warning is wrong.
    transformers warns once per tokenizer and records that it did: mark it as said."""
    said = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(said, dict):
        said["sequence-length-is-longer-than-the-specified-maximum"] = True
