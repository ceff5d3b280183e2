"""Constrained decoding: the model may only write what its input holds.

Two modes, each a transformers ``LogitsProcessor`` built per batch by a factory for
``generation.generate(logits_processor_factory=...)`` (``make_factory`` picks one):

``vocab`` (``SourceVocabularyProcessor``, ``source_vocabulary_factory``): only tokens that
occur in the prompt, plus the answer grammar's tokens (separators, ``None``, escapes) and
``</s>``. The mask is built once per batch as a (batch, vocab) boolean tensor and applied each
step with one ``masked_fill``. It does not force a span to be *contiguous* in the source
("Barack Paris" passes).

``copy`` (``CopyProcessor``, ``copy_factory``): every answer field is a contiguous copy: a
span of the ``Text:`` line (starting and ending on word boundaries), a whole label of the
``Option:`` line, a given role name before a slot's ``=``, or ``None`` as the whole answer.
The per-row state lives on the device and each step costs a constant number of tensor ops
(no Python loop over rows, beams or source positions; HF's ``prefix_allowed_tokens_fn``
loops over every row every step). See the section "Contiguous-copy constraint" below.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .tokens import token_bytes

GRAMMAR_STRINGS = ("; ", " | ", "None", "=", "\\", " ", ";", "|")


class SourceVocabularyProcessor:
    """A transformers LogitsProcessor (duck-typed: called with input_ids and scores)."""

    def __init__(self, source_ids: torch.Tensor, source_mask: torch.Tensor, vocab_size: int,
                 always_allowed: torch.Tensor):
        b = source_ids.shape[0]
        allowed = torch.zeros((b, vocab_size), dtype=torch.bool, device=source_ids.device)
        ids = source_ids.clamp(max=vocab_size - 1)
        allowed.scatter_(1, ids, source_mask.bool())
        allowed[:, always_allowed.to(source_ids.device)] = True
        self.allowed = allowed

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        allowed = self.allowed
        if scores.shape[0] != allowed.shape[0]:  # beam search: rows are batch * beams
            allowed = allowed.repeat_interleave(scores.shape[0] // allowed.shape[0], dim=0)
        if scores.shape[1] != allowed.shape[1]:  # model vocab padded beyond the tokenizer's
            pad = torch.zeros((allowed.shape[0], scores.shape[1] - allowed.shape[1]), dtype=torch.bool,
                              device=allowed.device)
            allowed = torch.cat([allowed, pad], dim=1)
        return scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)


def grammar_token_ids(tokenizer) -> torch.Tensor:
    ids = set()
    for s in GRAMMAR_STRINGS:
        ids.update(tokenizer(s, add_special_tokens=False)["input_ids"])
    ids.add(tokenizer.eos_token_id)
    return torch.tensor(sorted(i for i in ids if i is not None), dtype=torch.long)


def source_vocabulary_factory(tokenizer, vocab_size: int):
    """A factory for ``generation.generate(logits_processor_factory=...)``."""
    always = grammar_token_ids(tokenizer)

    def make(ids: torch.Tensor, mask: torch.Tensor, rows=None) -> SourceVocabularyProcessor:
        proc = SourceVocabularyProcessor(ids, mask, vocab_size, always)
        # A word is tokenized differently with and without a leading space ("Ġchild" in
        # "Option: mother, child" vs "child" at the start of the answer): allow the
        # no-space form of every source word too. Once per batch, not per step.
        for r, text in enumerate(tokenizer.batch_decode(ids, skip_special_tokens=True)):
            words = sorted(set(text.split()))
            if words:
                extra = {i for enc in tokenizer(words, add_special_tokens=False)["input_ids"] for i in enc}
                proc.allowed[r, torch.tensor(sorted(i for i in extra if i < vocab_size), dtype=torch.long,
                                             device=ids.device)] = True
        return proc

    return make


# =====================================================================================
# Contiguous-copy constraint
# =====================================================================================
# ``CopyProcessor`` forces every answer field to be a contiguous copy of the prompt: a span
# field copies a run of the ``Text:`` line, a label field one whole label of the ``Option:``
# line. The state of each row lives on the device and is updated with a constant number of
# tensor ops per decoding step (no Python loop over rows, beams or source positions):
#
# * the source of a row is laid out as an *augmented token sequence* ``A[L]`` with a
#   successor ``nxt[L]`` (``L`` = "nothing follows"): the row's own tokens (``nxt = j+1``
#   inside a unit: the text, or one label), plus per-batch *variant segments*: the other
#   tokenization of each source word (byte-level BPE writes "Barack" as ``Bara ck`` at the
#   start of the answer or after ``=`` but ``ĠB ara ck`` after a space), whose last token
#   links back to the source token after the word, plus the role names given to the factory
#   and ``None``;
# * ``cand[B, L]``: the positions the next token may take. Allowed tokens = one scatter of
#   ``A`` over ``cand`` into a ``[B, V]`` mask, plus the grammar tokens the row's flags allow;
# * after a token ``t``: ``cont = cand & (A == t)``, ``cand = scatter(nxt, cont)`` (the copy
#   goes on) ``| at_start & startable`` (a new field may start anywhere allowed).
#
# Grammar (targets.py): fields end with ``|`` (next field) or ``;`` (next item); tokens whose
# text is only ``|``/``;`` plus white space are separators, so " | " may be ``Ġ|``+``Ġ``,
# ``▁ | ▁`` or one token. A separator, ``</s>`` or (in a slot) ``=`` is allowed only once the
# field holds a complete copy (ending on a word boundary of the text, or at the end of a
# label); one space token is allowed at a field start and after a complete copy (the parser
# strips it). ``None`` is allowed only as the whole answer.
#
# Simplifications (by design):
# * Which field copies the text and which a label is read from the prompt's instruction (it
#   must be one of ``templates``; an unknown instruction lets any field copy the text or a
#   label). A slot's role name must be one of the ``roles`` given to the factory or a copy of
#   the text; without roles a role not in the text cannot be written (the vocabulary mode's
#   fallback, "any token of the prompt", would never fire for a byte-level vocabulary: every
#   token of the prompt is also the start of some copy).
# * Escapes (``\;`` ``\|`` ``\\`` and escaped white space) are never written, and tokens holding a
#   backslash are never copied: a span holding ``;``, ``|`` or ``\`` cannot be copied whole;
#   "=" inside a role name is not supported.
# * Only the variants of whole pre-tokenizer words are added; any other mismatch between
#   the answer's and the prompt's tokenization is bridged by a separate space token (a space
#   is allowed at a field start), e.g. " | France" written ``Ġ|`` ``Ġ`` ``F`` ``rance`` when the
#   prompt holds "(France)".
# * A generation cut by ``max_new_tokens`` can end inside a copy (a partial word, or half a
#   multi-byte character); every complete field is a copy.

TEXT, LABEL, ROLE, NONE_BITS = 1, 2, 4, 8
# Where each field may copy from: field 0, field 1, fields >= 2, a slot's role (before '='), a
# slot's value (after '='); the last entry is the first field index that is a role=value slot.
_NO_SLOTS = 1 << 20
_SPAN_LABEL = (TEXT, LABEL, TEXT, TEXT | ROLE, TEXT)
TASK_POLICY = {t: _SPAN_LABEL + (_NO_SLOTS,) for t in ("NER", "ET", "EET", "EEA")}
TASK_POLICY.update({"RE": _SPAN_LABEL + (3,), "EPR": _SPAN_LABEL + (3,), "EE": _SPAN_LABEL + (2,),
                    "ES": (TEXT, TEXT, TEXT, TEXT | ROLE, TEXT, _NO_SLOTS),
                    "EP": (TEXT, TEXT, TEXT, TEXT | ROLE, TEXT, _NO_SLOTS),
                    "RC": (LABEL, LABEL, LABEL, LABEL | ROLE, TEXT, _NO_SLOTS),
                    "NEG": (LABEL, LABEL, LABEL, LABEL | ROLE, TEXT, _NO_SLOTS)})
# A prompt whose instruction is not a known template: any field may copy the text or a label,
# and fields from the third on may be slots (as in EE).
UNKNOWN_POLICY = (TEXT | LABEL, TEXT | LABEL, TEXT | LABEL, TEXT | LABEL | ROLE, TEXT | LABEL, 2)
_GIVEN_MARKERS = (b"Entities: ", b"Pairs: ", b"Event: ", b"Head: ", b"Tail: ")
_WS = b" \t\n\r\x0b\x0c"


def _strip(rb: bytes, s: int, e: int) -> tuple[int, int]:
    """``rb[s:e]`` without white space at its ends, as (start, end)."""
    while s < e and rb[s] in _WS:
        s += 1
    while e > s and rb[e - 1] in _WS:
        e -= 1
    return s, e


class CopyVocabulary:
    """Per-tokenizer tables (built once by ``copy_factory``): token bytes and token classes."""

    def __init__(self, tokenizer, vocab_size: int):
        self.vocab_size = V = vocab_size
        n = min(len(tokenizer), V)
        tb = token_bytes(tokenizer)[:n] + [b""] * (V - n)
        self.token_bytes = tb
        special = {i for i in tokenizer.all_special_ids if i is not None and i < V}
        special |= set(range(n, V))  # ids past the tokenizer (padded model vocabulary): never written
        names = ("sep", "item", "eq", "ws", "space", "special", "midchar")
        lists = {k: [False] * V for k in names}
        for i, b in enumerate(tb):
            if i in special:
                lists["special"][i] = True
            if i in special or not b:
                continue
            core = b.strip(_WS)
            lists["sep"][i] = core in (b"|", b";")
            lists["item"][i] = core == b";"
            lists["eq"][i] = core == b"="
            lists["ws"][i] = not core
            lists["space"][i] = not b.strip(b" ")
            lists["midchar"][i] = (b[0] & 0xC0) == 0x80  # starts inside a UTF-8 character
        flags = {k: torch.tensor(v, dtype=torch.bool) for k, v in lists.items()}
        for k, v in flags.items():
            setattr(self, "is_" + k, v)
        self.midchar_list = lists["midchar"]  # for the per-batch Python set-up
        self.special_list = lists["special"]
        self.sep_ids = flags["sep"].nonzero().flatten()
        self.item_ids = flags["item"].nonzero().flatten()
        self.eq_ids = flags["eq"].nonzero().flatten()
        self.space_ids = flags["space"].nonzero().flatten()
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        self._dev: dict = {}

    def on(self, device) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._dev:
            self._dev[key] = {k: getattr(self, k).to(device) for k in
                              ("is_sep", "is_item", "is_eq", "is_ws", "is_special", "sep_ids", "item_ids", "eq_ids",
                               "space_ids")}
        return self._dev[key]


def _norm(s: str) -> str:
    return " ".join(s.split())


def task_table(templates: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Instruction (white space normalized) -> task, for reading a prompt's task from its
    instruction; default: the package's templates."""
    if templates is None:
        from ..prompts.instructions import load_templates
        templates = load_templates()
    return {_norm(t): task for task, ts in templates.items() for t in ts}


def _find_units(rb: bytes) -> tuple[list[tuple[int, int, int, bool]], bytes]:
    """Copyable units of a prompt's bytes: (start, end, bits, exact) -- the text, and each label
    of the Option line (``exact``: a copy must start and end at the label's ends). Returns the
    units and the instruction (the bytes before "Option:"). A prompt without the markers is one
    unit that any field may copy."""
    n = len(rb)
    o = rb.find(b"Option: ")
    t = rb.find(b"\nText: ", max(o, 0))
    t_len = 7
    if t < 0:
        t = rb.find(b"Text: ", max(o, 0))
        t_len = 6
    if o < 0 or t < 0:
        s, e = 0, n
        while s < e and rb[s] in _WS:
            s += 1
        while e > s and rb[e - 1] in _WS:
            e -= 1
        return [(s, e, TEXT | LABEL, False)], b""
    units = []
    ostart = o + len(b"Option: ")
    oend = min([p for p in [rb.find(b"\n", ostart)] + [rb.find(m, ostart) for m in _GIVEN_MARKERS + (b"Text: ",)]
                if p >= 0] + [n])
    pos = ostart
    for part in rb[ostart:oend].split(b", "):
        s, e = _strip(rb, pos, pos + len(part))
        pos += len(part) + 2
        if e > s:
            units.append((s, e, LABEL, True))
    a = rb.rfind(b"Answer:")
    ts, te = _strip(rb, t + t_len, a if a >= t + t_len else n)
    if te > ts:
        units.append((ts, te, TEXT, False))
    return units, rb[:o]


def _boundaries(rb: bytes):
    """bool[n+1]: may a span start/end at this byte offset (a character start between two
    characters that are not both letters/digits of a space-separated script)."""
    import numpy as np

    arr = np.frombuffer(rb, dtype=np.uint8) if rb else np.zeros(0, dtype=np.uint8)
    n = len(arr)
    out = np.ones(n + 1, dtype=bool)
    if n == 0:
        return out
    is_cont = (arr & 0xC0) == 0x80
    idx = np.arange(n)
    lead = np.maximum.accumulate(np.where(is_cont, 0, idx))
    la = arr[lead]
    ascii_alnum = ((la >= 48) & (la <= 57)) | ((la >= 65) & (la <= 90)) | ((la >= 97) & (la <= 122))
    # two-byte characters (Latin-1 supplement .. Arabic) count as letters; CJK etc. stand alone
    wordish = ascii_alnum | ((la >= 0xC2) & (la <= 0xDF))
    inner = ~is_cont[1:] & ~(wordish[:-1] & wordish[1:])
    out[1:n] = inner
    return out


def beam_parents(prev_ids: torch.Tensor, input_ids: torch.Tensor, beams: int) -> torch.Tensor | None:
    """Beam search reorders rows between steps: the row of the previous step (``prev_ids``)
    whose tokens each row's prefix repeats (rows of one batch item only), for a processor to
    carry its per-row state along; None when the shapes do not line up."""
    cur = input_ids[:, :-1]
    if prev_ids.shape != cur.shape:
        return None
    b = cur.shape[0] // beams
    t = cur.shape[1]
    same = (cur.view(b, beams, 1, t) == prev_ids.view(b, 1, beams, t)).all(-1)  # [b, beams, beams]
    parent = same.float().argmax(-1) + torch.arange(b, device=cur.device)[:, None] * beams
    return parent.flatten()


class RowStateProcessor:
    """Base of the logits processors that carry per-row decoding state through one ``generate``
    call (``CopyProcessor``, ``hint_bias.HintBiasProcessor``). Rows = prompts * beams: the
    per-prompt tensors named in ``ROW_TENSORS`` are repeated for each beam on the first call,
    and ``self.state`` (tensors with rows first) follows beam search's reordering of rows.
    Subclasses build their layout ``A[rows, L]`` (and successors ``nxt``), then define
    ``_init(input_ids)`` (first step) and ``_step(input_ids)`` (each later one), and start
    ``__call__`` with ``self._advance(input_ids)``."""

    ROW_TENSORS: tuple[str, ...] = ()

    def _start(self, A: torch.Tensor) -> None:
        self.B, self.L = A.shape
        self._batch = self.B  # prompts; rows = prompts * beams
        self.state: dict | None = None

    def _expand(self, R: int) -> None:
        if R == self.B:
            return
        if R % self.B:
            raise ValueError(f"{type(self).__name__} built for {self.B} rows called with {R}")
        k = R // self.B
        for name in self.ROW_TENSORS:
            setattr(self, name, getattr(self, name).repeat_interleave(k, dim=0))
        self.B = R

    def _advance(self, input_ids: torch.Tensor) -> None:
        """Bring the state to this call's step (the first: ``_init``; later: rows to their beam
        parents, then ``_step``)."""
        if self.state is None or input_ids.shape[1] == 1:
            self._expand(input_ids.shape[0])
            self._init(input_ids)
        else:
            beams = input_ids.shape[0] // self._batch
            if beams > 1:
                parent = beam_parents(self.prev_ids, input_ids, beams)
                if parent is not None:
                    self.state = {k: v[parent] for k, v in self.state.items()}
            self._step(input_ids)
        self.prev_ids = input_ids

    def _follow(self, cont: torch.Tensor) -> torch.Tensor:
        """bool[rows, L]: the positions after the matched ones ``cont`` (``nxt``; ``L``: none)."""
        nxt = torch.where(cont, self.nxt, self.L)
        moved = torch.zeros(cont.shape[0], self.L + 1, dtype=torch.bool, device=cont.device)
        moved.scatter_(1, nxt, True)
        return moved[:, : self.L]


class CopyProcessor(RowStateProcessor):
    """A transformers LogitsProcessor: every answer field is a contiguous copy of the prompt.

    Built per batch by ``copy_factory``; keeps its decoding state between calls (it must see
    every step of one ``generate`` call, from the decoder start token on). Handles beams (rows
    = batch * beams, reordered between steps: each row finds its parent by its prefix).
    """

    ROW_TENSORS = ("A", "nxt", "bits", "start_ok", "can_end", "policy")

    def __init__(self, vocab: CopyVocabulary, A, nxt, bits, start_ok, can_end, policy):
        self.vocab = vocab
        self.A, self.nxt, self.bits, self.start_ok, self.can_end, self.policy = A, nxt, bits, start_ok, can_end, policy
        self._start(A)

    # ------------------------------------------------------------ state
    def _init(self, input_ids: torch.Tensor):
        R = input_ids.shape[0]
        dev = self.A.device
        z = torch.zeros(R, dtype=torch.bool, device=dev)
        self.state = {"at_start": ~z, "has_content": z, "end_sep": z, "end_eos": z, "end_eq": z,
                      "in_value": z, "finished": z, "last_ws": z,
                      "fidx": torch.zeros(R, dtype=torch.long, device=dev)}
        fb = self.policy[:, :1] | NONE_BITS  # the answer's first field, or None
        self.state["cand"] = self.start_ok & ((self.bits & fb) != 0)

    def _step(self, input_ids: torch.Tensor):
        s, v = self.state, self.vocab.on(input_ids.device)
        t = input_ids[:, -1]
        sep, item, ws, eq = v["is_sep"][t], v["is_item"][t], v["is_ws"][t], v["is_eq"][t]
        spec = v["is_special"][t]
        slot_from = self.policy[:, 5]
        role_part = (s["fidx"] >= slot_from) & ~s["in_value"]
        slot = eq & role_part  # '=' ends a role name
        stop = sep | slot | spec
        cont = s["cand"] & (self.A == t[:, None]) & ~stop[:, None]
        content = ~(stop | ws)
        ce = cont & self.can_end
        e_sep = (ce & ((self.bits & (TEXT | LABEL)) != 0)).any(1)
        e_none = (ce & (self.bits == NONE_BITS)).any(1)
        e_eq = (ce & ((self.bits & (TEXT | ROLE)) != 0)).any(1)
        has = (s["has_content"] | content) & ~stop
        keep = ws & s["has_content"]  # a space after a complete copy: the field may still end
        fidx = torch.where(sep, torch.where(item, torch.zeros_like(s["fidx"]), s["fidx"] + 1), s["fidx"])
        in_value = (s["in_value"] | slot) & ~sep
        s["end_sep"] = has & (e_sep | (keep & s["end_sep"]))
        s["end_eos"] = has & (e_sep | e_none | (keep & s["end_eos"]))
        s["end_eq"] = has & (e_eq | (keep & s["end_eq"])) & (fidx >= slot_from) & ~in_value
        s["at_start"] = sep | slot | (s["at_start"] & ~content & ~spec)
        s["has_content"], s["fidx"], s["in_value"] = has, fidx, in_value
        s["finished"] = s["finished"] | spec
        s["last_ws"] = ws
        # where the next token may come from: the copy goes on, or a new field starts
        cls = torch.where(in_value, 4, torch.where(fidx >= slot_from, 3, fidx.clamp(max=2)))
        fb = self.policy.gather(1, cls[:, None])
        starts = self.start_ok & ((self.bits & fb) != 0)
        s["cand"] = self._follow(cont) | (s["at_start"][:, None] & starts)

    def allowed_mask(self) -> torch.Tensor:
        """bool[rows, V]: the tokens the current state allows next."""
        s, v = self.state, self.vocab.on(self.A.device)
        V = self.vocab.vocab_size
        R = self.A.shape[0]
        idx = torch.where(s["cand"], self.A, V)
        allowed = torch.zeros(R, V + 1, dtype=torch.bool, device=self.A.device)
        allowed.scatter_(1, idx, True)
        allowed = allowed[:, :V]
        role_part = (s["fidx"] >= self.policy[:, 5]) & ~s["in_value"]
        k = len(v["sep_ids"])
        if k:
            allowed[:, v["sep_ids"]] = s["end_sep"][:, None].expand(R, k)
        k = len(v["eq_ids"])
        if k:  # in a slot's role '=' ends the role; elsewhere it is an ordinary copied character
            allowed[:, v["eq_ids"]] = torch.where(role_part[:, None], s["end_eq"][:, None], allowed[:, v["eq_ids"]])
        k = len(v["space_ids"])
        if k:
            space_ok = (s["at_start"] | s["end_sep"] | s["end_eq"]) & ~s["last_ws"]
            allowed[:, v["space_ids"]] |= space_ok[:, None]
        eos = self.vocab.eos
        if eos is not None and eos < V:
            allowed[:, eos] = s["end_eos"] | ~allowed.any(1)  # never a row with nothing allowed
            allowed &= ~s["finished"][:, None]  # a finished row (on </s> or padding) only pads on
            allowed[:, eos] |= s["finished"]
        return allowed

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._advance(input_ids)
        allowed = self.allowed_mask()
        w = scores.shape[1]
        if w > allowed.shape[1]:
            allowed = torch.cat([allowed, allowed.new_zeros(allowed.shape[0], w - allowed.shape[1])], dim=1)
        elif w < allowed.shape[1]:
            allowed = allowed[:, :w]
        return scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)


def _sublist(small: list[int], big: list[int]) -> bool:
    k = len(small)
    return any(big[i : i + k] == small for i in range(len(big) - k + 1))


def _layout(vocab: CopyVocabulary, tokenizer, rows: list[list[int]], extra_segments: list[tuple[list[int], int]],
            task_of: dict[str, str], cache: dict[str, list[int]] | None = None):
    """Per batch (Python, once): the augmented sequence of every row. Returns lists per row of
    (A, nxt, bits, start_ok, can_end) and the policy per row."""
    tb = vocab.token_bytes
    special = vocab.special_list
    pre = None
    try:
        pre = tokenizer.backend_tokenizer.pre_tokenizer
    except Exception:
        pass
    layouts, policies, variant_jobs = [], [], []
    for r, toks in enumerate(rows):
        starts, pos = [], 0
        for x in toks:
            starts.append(pos)
            pos += len(tb[x])
        rb = b"".join(tb[x] for x in toks)
        n = len(rb)
        units, instr = _find_units(rb)
        task = task_of.get(_norm(instr.decode("utf-8", "replace"))) if instr else None
        policies.append(TASK_POLICY.get(task, UNKNOWN_POLICY) if task else UNKNOWN_POLICY)
        unit_of = [-1] * (n + 1)
        for u, (us, ue, _, _) in enumerate(units):
            for b in range(us, ue):
                unit_of[b] = u
        bnd = _boundaries(rb)

        def first_content(s: int, e: int) -> int | None:
            for b in range(s, e):
                if rb[b] not in _WS:
                    return b
            return None

        def start_at(u: int, b: int) -> bool:  # may a copy of unit u begin with the character at b
            us, ue, _, exact = units[u]
            return b == us if exact else bool(bnd[b])

        def end_at(u: int, e: int) -> bool:
            us, ue, _, exact = units[u]
            return e == ue if exact else (e <= ue and bool(bnd[e]))

        A, nxt, bits, sok, cen, unit_tok = [], [], [], [], [], []
        for j, x in enumerate(toks):
            s, e = starts[j], starts[j] + len(tb[x])
            u = -1
            if not special[x] and e > s:
                fc = first_content(s, e)
                u = unit_of[fc] if fc is not None else unit_of[s]
                if u >= 0 and (e > units[u][1] or b"\\" in tb[x]):
                    # runs past the end of its unit (a label and its comma in one token), or holds a
                    # backslash (the parser would read it as an escape)
                    u = -1
            unit_tok.append(u)
            A.append(x)
            bits.append(units[u][2] if u >= 0 else 0)
            fc = first_content(s, e) if u >= 0 else None
            sok.append(u >= 0 and not vocab.midchar_list[x] and start_at(u, fc if fc is not None else s)
                       and (fc is not None or not units[u][3]))
            cen.append(u >= 0 and end_at(u, e))
        for j in range(len(toks)):
            nxt.append(j + 1 if j + 1 < len(toks) and unit_tok[j] >= 0 and unit_tok[j + 1] == unit_tok[j] else -1)
        layouts.append([A, nxt, bits, sok, cen])
        # the other tokenization of each word of the text and of each label (see CopyProcessor)
        if pre is None or not units:
            continue
        try:
            text = rb.decode("utf-8")
        except UnicodeDecodeError:
            continue
        cb = [0]
        for ch in text:
            cb.append(cb[-1] + len(ch.encode("utf-8")))
        tok_at, any_tok_at = {}, {}
        for j, x in enumerate(toks):
            any_tok_at.setdefault(starts[j], j)
            if unit_tok[j] >= 0:
                tok_at.setdefault(starts[j], j)
        try:
            pieces = pre.pre_tokenize_str(text)
        except Exception:
            continue
        for _, (cs, ce) in pieces:
            bs, be = cb[cs], cb[ce]
            p = tok_at.get(bs)
            # the token after the word: in its unit (the copy goes on there) or not (a label's
            # comma, the text's line end: the variant ends the copy)
            q = any_tok_at.get(be, len(toks) if be >= n else None)
            if p is None or q is None or q <= p:
                continue
            piece = text[cs:ce]
            core = piece.lstrip()
            if not core.strip():
                continue
            fc = bs + len(piece[: len(piece) - len(core)].encode("utf-8"))
            u = unit_of[fc]
            if u < 0 or not start_at(u, fc) or be > units[u][1]:
                continue
            if core != piece:  # " word" in the source: also "word" (start of the answer, after '=')
                variant_jobs.append((r, p, q, core, fc, u, be))
            else:  # "word" after punctuation or a line start: also " word" (after ' | ')
                variant_jobs.append((r, p, q, " " + core, fc - 1, u, be))
        layouts[-1].append((rb, units, bnd, unit_tok, starts))
    if variant_jobs:
        cache = {} if cache is None else cache
        if len(cache) > 200_000:
            cache.clear()
        missing = sorted({j[3] for j in variant_jobs if j[3] not in cache})
        if missing:
            cache.update(zip(missing, tokenizer(missing, add_special_tokens=False)["input_ids"]))
        enc = [cache[j[3]] for j in variant_jobs]
        for (r, p, q, vs, off, u, be), tv in zip(variant_jobs, enc):
            A, nxt, bits, sok, cen, (rb, units, bnd, unit_tok, starts) = layouts[r]
            toks = rows[r]
            if not tv or _sublist(tv, toks[max(0, p - 2) : q]):
                continue
            want = vs.encode("utf-8")
            if b"\\" in want:
                continue
            if b"".join(tb[x] if x < len(tb) else b"\0" for x in tv) != want:
                continue
            us, ue, ubits, exact = units[u]
            base = len(A)
            pos = off
            for k, x in enumerate(tv):
                pos += len(tb[x])
                A.append(x)
                bits.append(ubits)
                sok.append(k == 0 and not vocab.midchar_list[x])
                cen.append((pos == ue) if exact else (pos <= ue and bool(bnd[pos])))
                last = k == len(tv) - 1
                nxt.append(base + k + 1 if not last else (q if q < len(toks) and unit_tok[q] == u else -1))
    for lay in layouts:
        A, nxt, bits, sok, cen = lay[:5]
        for seg, b in extra_segments:
            base = len(A)
            for k, x in enumerate(seg):
                A.append(x)
                bits.append(b)
                sok.append(k == 0)
                cen.append(k == len(seg) - 1)
                nxt.append(base + k + 1 if k < len(seg) - 1 else -1)
    return [lay[:5] for lay in layouts], policies


def copy_factory(tokenizer, vocab_size: int, *, roles: Sequence[str] | None = None,
                 templates: dict[str, list[str]] | None = None):
    """A factory for ``generation.generate(logits_processor_factory=...)`` that builds a
    ``CopyProcessor`` per batch.

    ``roles``: slot role names (EE argument roles, n-ary relation roles) a ``role=value``
    field may use besides copies of the text -- they are usually not in the prompt.
    ``templates``: the instruction templates (task -> list), used to recognise each prompt's
    task (which field copies the text and which a label); default: the package's templates.
    """
    task_of = task_table(templates)
    vocab = CopyVocabulary(tokenizer, vocab_size)
    segs: list[tuple[list[int], int]] = []
    seen = set()
    for name in sorted(set(roles or ())):
        for form in (name, " " + name):
            ids = tuple(tokenizer(form, add_special_tokens=False)["input_ids"])
            if ids and ids not in seen and all(i < vocab_size for i in ids):
                seen.add(ids)
                segs.append((list(ids), ROLE))
    cache: dict[str, list[int]] = {}  # word variant -> its tokens, shared by the batches
    none_ids = tokenizer("None", add_special_tokens=False)["input_ids"]
    if none_ids:
        segs.append((none_ids, NONE_BITS))

    def make(ids: torch.Tensor, mask: torch.Tensor, rows=None) -> CopyProcessor:  # rows: not needed here
        sources = []  # each prompt's token ids, without padding and its closing </s>
        for row, m in zip(ids.cpu().tolist(), mask.cpu().tolist()):
            toks = [x for x, k in zip(row, m) if k]
            while toks and toks[-1] == vocab.eos:
                toks.pop()
            sources.append([x if 0 <= x < vocab_size else vocab.pad for x in toks])
        lays, policies = _layout(vocab, tokenizer, sources, segs, task_of, cache)
        L = max(1, max(len(l[0]) for l in lays))
        B = len(lays)
        A = torch.full((B, L), vocab_size, dtype=torch.long)
        nxt = torch.full((B, L), L, dtype=torch.long)
        bits = torch.zeros((B, L), dtype=torch.long)
        sok = torch.zeros((B, L), dtype=torch.bool)
        cen = torch.zeros((B, L), dtype=torch.bool)
        for r, (a, nx, bi, so, ce) in enumerate(lays):
            k = len(a)
            A[r, :k] = torch.tensor(a, dtype=torch.long)
            nxt[r, :k] = torch.tensor([x if x >= 0 else L for x in nx], dtype=torch.long)
            bits[r, :k] = torch.tensor(bi, dtype=torch.long)
            sok[r, :k] = torch.tensor(so, dtype=torch.bool)
            cen[r, :k] = torch.tensor(ce, dtype=torch.bool)
        pol = torch.tensor(policies, dtype=torch.long)
        dev = ids.device
        return CopyProcessor(vocab, A.to(dev), nxt.to(dev), bits.to(dev), sok.to(dev), cen.to(dev), pol.to(dev))

    make.vocab = vocab  # type: ignore[attr-defined]
    return make


def first_blocked(factory, tokenizer, source: str, answer: str, max_source_length: int = 512) -> int | None:
    """Drive a processor built by ``factory`` along ``answer``'s tokens (as ``generate`` would,
    from the decoder start token): the index of the first token it forbids, or None when the
    whole answer and ``</s>`` may be written. A gold answer the constraint forbids is one it
    can only get wrong."""
    from .generation import encode_sources

    src = torch.tensor(encode_sources(tokenizer, [source], max_source_length)[0])  # as generate feeds it
    proc = factory(src, torch.ones_like(src))
    start = getattr(tokenizer, "pad_token_id", 0) or 0  # T5: the decoder starts from <pad>
    ids = torch.tensor([[start]])
    width = max(len(tokenizer), int(src.max()) + 1)
    for k, t in enumerate(tokenizer(answer)["input_ids"]):  # ends with </s>
        if proc(ids, torch.zeros(1, width))[0, t] < -1e30:
            return k
        ids = torch.cat([ids, torch.tensor([[t]])], dim=1)
    return None


class ProcessorChain:
    """Several per-batch processors applied in turn (a hint bias, then a constraint's mask)."""

    def __init__(self, processors):
        self.processors = processors

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for p in self.processors:
            scores = p(input_ids, scores)
        return scores


def make_factory(constrained, tokenizer, vocab_size: int, *, roles: Sequence[str] | None = None,
                 templates: dict[str, list[str]] | None = None):
    """The logits-processor factory for a ``constrained`` setting: False/None/"off" -> None;
    True/"on"/"vocab" -> tokens of the prompt only (``source_vocabulary_factory``); "copy" ->
    every field a contiguous copy of the text or a label (``copy_factory``)."""
    if constrained is None or constrained is False or constrained == "off":
        return None
    if constrained is True or constrained in ("on", "vocab"):
        return source_vocabulary_factory(tokenizer, vocab_size)
    if constrained == "copy":
        return copy_factory(tokenizer, vocab_size, roles=roles, templates=templates)
    raise ValueError(f"constrained must be False, True, 'vocab' or 'copy', not {constrained!r}")


def chain_factories(*factories):
    """One factory whose processors apply each given factory's in turn (None entries left out);
    None when none is given. A factory is called with the batch's input ids, attention mask and
    its rows' metadata (``generation.generate(rows=...)``; None without)."""
    given = [f for f in factories if f is not None]
    if len(given) <= 1:
        return given[0] if given else None

    def make(ids: torch.Tensor, m: torch.Tensor, rows=None) -> ProcessorChain:
        return ProcessorChain([f(ids, m, rows) for f in given])

    return make
