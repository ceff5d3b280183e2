"""What generated tokens stand for: each token id's bytes, and where in a decoded answer
each token ends (for per-item confidences)."""
from __future__ import annotations

import functools
import math
from bisect import bisect_right


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character map (used by byte-level BPE vocabularies)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _decoder_kind(tokenizer) -> str:
    import json

    try:
        spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder") or {}
    except Exception:
        return "decode"
    text = json.dumps(spec)
    if "ByteLevel" in text:
        return "bytelevel"
    if "Metaspace" in text or "\\u2581" in text or "▁" in text:
        return "metaspace"
    return "decode"


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-char -> byte table, as used by byte-level BPE (``decoders.ByteLevel``)."""
    return {c: b for b, c in _bytes_to_unicode().items()}


class _TokenInfo:
    """Per-tokenizer facts computed once: byte-level or not, special ids, and (at first use) token bytes."""

    def __init__(self, tokenizer):
        try:
            kind = type(tokenizer.backend_tokenizer.decoder).__name__
        except AttributeError:
            kind = ""
        self.byte_level = kind == "ByteLevel"
        self.metaspace = kind == "Metaspace"  # sentencepiece-style (T5, Flan-T5)
        self.special = frozenset(tokenizer.all_special_ids)
        self.size = len(tokenizer)
        self.bytes: list[bytes] | None = None

    def token_bytes(self, tokenizer) -> list[bytes]:
        if self.bytes is None:  # a whole vocabulary: read only when asked for
            self.bytes = _read_token_bytes(tokenizer, self.size, self.special)
        return self.bytes


def _token_info(tokenizer) -> _TokenInfo:
    info = getattr(tokenizer, "_instructie_token_info", None)
    if info is None or info.size != len(tokenizer):  # tokens added since: read it again
        info = _TokenInfo(tokenizer)
        try:
            tokenizer._instructie_token_info = info
        except AttributeError:
            pass
    return info


def token_bytes(tokenizer) -> list[bytes]:
    """The UTF-8 bytes each token id stands for (b"" for special tokens), one per id of ``tokenizer``.
    Read once per tokenizer and shared by every caller: not to be changed."""
    return _token_info(tokenizer).token_bytes(tokenizer)


def _read_token_bytes(tokenizer, n: int, special: frozenset[int]) -> list[bytes]:
    kind = _decoder_kind(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    out: list[bytes] = []
    if kind == "bytelevel":
        inv = _byte_decoder()
    for i, p in enumerate(pieces):
        if i in special or p is None:
            out.append(b"")
            continue
        if kind == "bytelevel":
            try:
                out.append(bytes(inv[c] for c in p))
                continue
            except KeyError:  # an added token: stored as plain text
                pass
        elif kind == "metaspace":
            if len(p) == 6 and p.startswith("<0x") and p.endswith(">"):  # sentencepiece byte fallback
                try:
                    out.append(bytes([int(p[3:5], 16)]))
                    continue
                except ValueError:
                    pass
            out.append(p.replace("▁", " ").encode("utf-8"))
            continue
        out.append(tokenizer.decode([i], clean_up_tokenization_spaces=False).encode("utf-8"))
    return out


def item_confidences(tokenizer, token_ids: list[int], logprobs: list[float], text: str,
                     ranges: list[tuple[int, int]]) -> list[float]:
    """Confidence of each answer item: exp of the mean log-probability of its tokens.

    Token k belongs to the item ``(s, e)`` (a range of ``text``, ``e`` at the item's ';')
    when the decoded answer ends inside ``(s, e + 1]`` after it: the item's own tokens and
    the separator that closes it. A token straddling two items goes to the one it ends in;
    an item with no token of its own (all its chars inside a token that ends later) takes
    the token covering its first character. An answer with at most one item uses all its
    tokens, with no decoding at all (the common case: one item or "None").
    """
    if not ranges:
        return []
    if not logprobs:
        return [0.0] * len(ranges)
    if len(ranges) == 1:
        return [math.exp(sum(logprobs) / len(logprobs))]
    ends = _token_char_ends(tokenizer, token_ids, text)
    out = []
    for s, e in ranges:
        lo, hi = bisect_right(ends, s), bisect_right(ends, e + 1)
        lps = logprobs[lo:hi] if hi > lo else logprobs[min(lo, len(logprobs) - 1):][:1]
        out.append(math.exp(sum(lps) / len(lps)))
    return out


def _token_char_ends(tokenizer, token_ids: list[int], text: str) -> list[int]:
    """For each generated token, how many characters of ``text`` (the decoded answer) are
    complete after it. Non-decreasing; the last is ``len(text)``.

    Byte-level BPE (the tokenizers ``instructie`` trains): exact, from the token bytes, with
    no decoding (a character split over several tokens belongs to the token that completes
    it). Sentencepiece-style (Metaspace, T5/Flan-T5): from the pieces, '▁' read as a
    space and the answer's leading space dropped as the decoder does. Both are used only
    when the pieces put together give exactly ``text``. Any other case: the characters each token adds, read from decoding a window of
    the previous ``_WINDOW`` tokens with and without it -- one batched decode call, O(n)
    work, instead of decoding every prefix (O(n^2)).
    """
    if not token_ids:
        return []
    info = _token_info(tokenizer)
    if info.byte_level:
        ends = _byte_level_ends(tokenizer, info, token_ids, text)
        if ends is not None:
            return ends
    elif info.metaspace:
        ends = _metaspace_ends(tokenizer, info, token_ids, text)
        if ends is not None:
            return ends
    w = _WINDOW
    seqs = []
    for k in range(1, len(token_ids) + 1):
        a = max(0, k - w)
        seqs.append(token_ids[a:k])
        seqs.append(token_ids[a:k - 1])
    dec = tokenizer.batch_decode(seqs, skip_special_tokens=True)
    ends, pos = [], 0
    for k in range(len(token_ids)):
        pos = min(len(text), pos + max(0, len(dec[2 * k]) - len(dec[2 * k + 1])))
        ends.append(pos)
    ends[-1] = len(text)
    return ends


_WINDOW = 8


def _metaspace_ends(tokenizer, info: _TokenInfo, token_ids: list[int], text: str) -> list[int] | None:
    if info.special.intersection(token_ids):
        return None
    pieces = tokenizer.convert_ids_to_tokens(token_ids)
    if any(p is None for p in pieces):
        return None
    strs = [p.replace("\u2581", " ") for p in pieces]
    if strs and strs[0].startswith(" ") and not text.startswith(" "):
        strs[0] = strs[0][1:]
    if "".join(strs) != text:  # byte-fallback pieces, normalisation, clean-up: decode instead
        return None
    ends, n = [], 0
    for x in strs:
        n += len(x)
        ends.append(n)
    return ends


def _byte_level_ends(tokenizer, info: _TokenInfo, token_ids: list[int], text: str) -> list[int] | None:
    table = info.token_bytes(tokenizer)
    if info.special.intersection(token_ids) or max(token_ids) >= len(table):  # special or unknown: decoding skips them
        return None
    parts = [table[i] for i in token_ids]
    try:
        if b"".join(parts).decode("utf-8") != text:  # added tokens decoded differently, invalid UTF-8
            return None
    except UnicodeDecodeError:
        return None
    byte_ends, total = [], 0
    for b in parts:
        total += len(b)
        byte_ends.append(total)
    if text.isascii():
        return byte_ends
    char_byte_ends, n = [], 0
    for ch in text:
        n += len(ch.encode("utf-8"))
        char_byte_ends.append(n)
    return [bisect_right(char_byte_ends, b) for b in byte_ends]
