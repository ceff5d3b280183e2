"""Hint-biased decoding: lean the model toward the items of its prompt's memory hint.

A model trained with memory hints (memory.py) sees, for each text, what the training data
says about it -- the no-model baseline's answer -- and learns when to trust it. A small
random-init model learns that only partly: on DuEE it wrote 96 of the hint's 453 trigger
items (precision 0.75) and dropped 357 (precision 0.57), while its own triggers were right
3% of the time (``eval/hint_usage.py``). ``HintBiasProcessor`` adds ``bias`` to the logit of

* the first token of every hint item not yet written, where an answer item starts (the
  answer's start, or after an item separator ``;``),
* the next token of a hint item the answer is in the middle of writing, and
* the item separator ``;`` right after a hint item is written while others are left,

and subtracts it from ``</s>`` while hint items are left and the answer holds fewer items
than the hint. So the model keeps a hint item unless it prefers something else by more than
``bias`` (in log-probability) -- ending early, or spending the answer on one event's
arguments, included -- and once it starts one it finishes it rather than drifting into a
non-word. An item the answer started and then left (another label) is retired, unless
another hint item goes on from the same start. ``bias`` 0 is plain decoding; a large bias
writes the hint. Where between the two is best is a property of the model and the task:
``eval/tune_hint_bias.py`` picks it per task on dev sets (``bias`` may be one number or
``{task: number}``). Without the retirement and the item cap a changed item came back again
and again; without the separator's share DuEE answers wrote the first event's arguments to
the token limit.

Each row's items, bias and task come from its prompt's metadata (``plugin.Hints``), not from
reading the prompt back. RC hints name a relation per evidence level (``pair | mother; tail |
child``); the answer is one relation, so its items are the hint's relations.

Like ``CopyProcessor`` the per-row state lives on the device and a step costs a constant
number of tensor ops.

The other half of using a hint is after decoding (``plugin.Hints.keeps``): an answer item the
hint did not propose stays only if the model's own confidence in it (from its logits, not the
biased scores) reaches the unhinted floor. The model's own items are where a small model's
precision is lowest (CrossNER AI test: 0.13 against 0.76 for hint items it kept); the tuning
picks the floor per task with the bias, 0 where it does not help.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..decoding.constraints import CopyVocabulary, RowStateProcessor
from .memory import HINT_TASKS
from ..prompts.targets import render_items

def setting_for(setting: float | dict[str, float], task: str, dataset: str = "") -> float:
    """A hint bias's or floor's value for a record of ``task`` from ``dataset``: the mapping's
    ``TASK/DATASET`` entry, else its ``TASK`` entry, else 0 (a number: itself). Text from no
    known dataset (extraction) gets the task's value."""
    if not isinstance(setting, dict):
        return float(setting)
    return float(setting.get(f"{task}/{dataset}", setting.get(task, 0.0)) if dataset else setting.get(task, 0.0))


# A classification answer is one label: an answer with it left out is always wrong.
FLOORLESS_TASKS = ("RC",)


def floor_for(floor: float | dict[str, float], task: str, dataset: str = "") -> float:
    """The unhinted-item floor of ``task``'s items (``setting_for``): 0 for RC and for the tasks
    that get no hint (NEG, the auxiliary tasks), whose items the floor would all cut alike."""
    if task in FLOORLESS_TASKS or task not in HINT_TASKS:
        return 0.0
    return setting_for(floor, task, dataset)


def bias_label(bias: float | dict[str, float]) -> str:
    """A short name for a bias setting in report keys: "8", "EE=8,NER=2"."""
    if isinstance(bias, dict):
        return ",".join(f"{t}={v:g}" for t, v in sorted(bias.items()))
    return f"{bias:g}"


def is_hinted(fields, hint: list[tuple[str, ...]]) -> bool:
    """Whether an answer item (its fields, ``targets.split_items``) is one the hint proposed:
    its leading fields are a hint item -- an entity's span and label, a triple, an event's
    trigger and type (its arguments are the model's own), RC's relation."""
    fields = tuple(fields)
    return any(fields[: len(h)] == h for h in hint)


def _item_forms(tokenizer, vocab: CopyVocabulary, item: tuple[str, ...]) -> list[tuple[list[int], bool, bool]]:
    """The token ids of an item as an answer writes it, each with where it may start: after a
    space or at the answer's start ("plain"), and right after the ``;`` of "; " ("lead").
    Byte-level BPE writes "Paris" and " Paris" differently; sentencepiece alike."""
    text = render_items([item])
    first = tokenizer(text, add_special_tokens=False)["input_ids"]
    after = tokenizer("; " + text, add_special_tokens=False)["input_ids"]
    if not all(0 <= i < vocab.vocab_size and not vocab.special_list[i] for i in first + after):
        return []  # an unknown or special token: the model cannot write it as such
    k = 0
    while k < len(after) and not vocab.token_bytes[after[k]].strip(b" \t\n\r;"):
        k += 1  # drop the separator's tokens (";", " ")
    after = after[k:]
    forms = [(first, True, after == first)]
    if after and after != first:
        forms.append((after, False, True))
    return [(f, p, q) for f, p, q in forms if f]


class HintBiasProcessor(RowStateProcessor):
    """A transformers LogitsProcessor; built per batch by ``hint_bias_factory``.

    Layout per row: the token sequences of its hint items (each in its forms) laid end to
    end in ``A[L]`` with successor ``nxt`` (``L``: the item ends), the item of each position
    and whether it is an item's first/last token."""

    ROW_TENSORS = ("bias", "single", "A", "nxt", "item", "plain", "lead", "last", "has", "n_items")

    def __init__(self, vocab: CopyVocabulary, ends: tuple[torch.Tensor, torch.Tensor], bias: torch.Tensor,
                 single: torch.Tensor, A, nxt, item, plain, lead, last, n_items: int):
        # ends: [V] bools, the token ends in white space / in a backslash; bias: [rows], float;
        # single: [rows], the answer is one item (RC: one relation), so writing any hint item
        # writes them all
        self.vocab, (self.ends_ws, self.ends_bs), self.bias, self.single = vocab, ends, bias, single
        self.A, self.nxt, self.item, self.plain, self.lead, self.last = A, nxt, item, plain, lead, last
        self.K = n_items  # column K of ``written`` is a dump for "no item"
        # the items each row has, and how many items its answer may hold before it may end (an RC
        # answer is one relation, however many the hint names)
        self.has = torch.zeros(A.shape[0], self.K + 1, dtype=torch.bool, device=A.device).scatter_(1, item, True)
        self.n_items = torch.where(single, 1, self.has[:, : self.K].sum(1))
        self._start(A)

    def _init(self, input_ids: torch.Tensor):
        R = input_ids.shape[0]
        dev = self.A.device
        written = ~self.has  # items a row lacks count as written: never offered
        written[:, self.K] = True
        at_start = torch.ones(R, dtype=torch.bool, device=dev)
        self.state = {"written": written, "at_start": at_start, "after_sep": torch.zeros_like(at_start),
                      "escaped": torch.zeros_like(at_start), "mid": torch.zeros_like(written),
                      "just_done": torch.zeros_like(at_start),
                      "n_seps": torch.zeros(R, dtype=torch.long, device=dev),
                      "finished": torch.zeros(R, dtype=torch.bool, device=dev),
                      "cand": self.plain.clone()}

    def _step(self, input_ids: torch.Tensor):
        s, v = self.state, self.vocab.on(input_ids.device)
        t = input_ids[:, -1]
        cont = s["cand"] & (self.A == t[:, None])
        # an item written to its last token: mark one (the first) so a repeated hint item
        # (a name mentioned twice) is still offered for its second mention
        done = torch.where(cont & self.last, self.item, self.K).min(1).values
        s["just_done"] = done < self.K
        s["written"].scatter_(1, done[:, None], True)
        s["written"] |= (self.single & (done < self.K))[:, None]
        # an item the answer started and then left for something else ("EU | location" where the
        # hint said "EU | organization") is retired too, or it would be offered again and again
        # (with </s> lowered: a loop). Only when no hint item goes on: "New" may become "New York"
        # or "New Zealand", and the one not taken stays open.
        going = torch.zeros_like(s["mid"])
        going.scatter_(1, torch.where(cont, self.item, self.K), True)
        going[:, self.K] = False
        s["written"] |= s["mid"] & ~going.any(1, keepdim=True)
        s["mid"] = torch.zeros_like(going)
        s["mid"].scatter_(1, torch.where(cont & ~self.last, self.item, self.K), True)
        s["mid"][:, self.K] = False
        # an item separator starts an item unless escaped (a token ending in a backslash before it)
        sep = v["is_item"][t] & ~s["escaped"]
        s["n_seps"] = s["n_seps"] + sep.long()
        s["escaped"] = self.ends_bs.to(t.device)[t]
        s["at_start"] = sep | (s["at_start"] & v["is_ws"][t])
        # right after ";" an item's first token carries its leading space; after a space it does not
        s["after_sep"] = sep & ~self.ends_ws.to(t.device)[t]
        s["finished"] = s["finished"] | v["is_special"][t]
        open_items = ~s["written"].gather(1, self.item)
        starts = torch.where(s["after_sep"][:, None], self.lead, self.plain)
        s["cand"] = self._follow(cont) | (s["at_start"][:, None] & starts & open_items)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._advance(input_ids)
        s = self.state
        V = scores.shape[1]
        live = ~s["finished"]
        idx = torch.where(s["cand"] & live[:, None] & (self.A < V), self.A, V)
        bias = self.bias.to(scores.dtype)[:, None]
        add = torch.zeros(scores.shape[0], V + 1, dtype=scores.dtype, device=scores.device)
        add.scatter_(1, idx, bias.expand(-1, idx.shape[1]).contiguous())
        eos = self.vocab.eos
        if eos is not None and eos < V:
            # not done while hint items are left unwritten -- for at most as many items as the hint has
            held = s["n_seps"] + (~s["at_start"]).long()  # items the answer holds (the one begun included)
            left = live & ~s["written"][:, : self.K].all(1) & (held < self.n_items)
            add[:, eos] -= torch.where(left, bias[:, 0], torch.zeros_like(bias[:, 0]))
            # a hint item just written and others left: on to the next item
            ids = self.vocab.on(scores.device)["item_ids"]
            ids = torch.where(ids < V, ids, V)  # past the scores: the spare column (no host sync)
            nxt = torch.where(left & s["just_done"], bias[:, 0], torch.zeros_like(bias[:, 0]))
            add[:, ids] += nxt[:, None]
        return scores + add[:, :V]


def hint_bias_factory(tokenizer, vocab_size: int, vocab: CopyVocabulary | None = None, *,
                      row_items: Callable[[object], Sequence[tuple[str, ...]]],
                      row_bias: Callable[[object], float], row_is_rc: Callable[[object], bool]):
    """A factory for ``generation.generate(logits_processor_factory=..., rows=...)`` building a
    ``HintBiasProcessor`` per batch from each row's metadata: the answer items its hint proposes
    (``row_items``), its bias (``row_bias``) and whether its answer is one RC relation (``row_is_rc``).
    ``vocab``: a ``CopyVocabulary`` to share with a constraint."""
    vocab = vocab or CopyVocabulary(tokenizer, vocab_size)
    ends_ws = torch.tensor([bool(b) and b[-1:] in (b" ", b"\t", b"\n", b"\r") for b in vocab.token_bytes])
    ends_bs = torch.tensor([b.endswith(b"\\") for b in vocab.token_bytes])
    cache: dict[tuple[str, ...], list[tuple[list[int], bool, bool]]] = {}

    def make(ids: torch.Tensor, mask: torch.Tensor, rows: Sequence | None = None) -> HintBiasProcessor:
        if rows is None:
            raise ValueError("the hint bias needs each row's metadata (generate(..., rows=...))")
        forms_of = []
        for meta in rows:
            forms = []
            # an item holding an escape is written differently (or, under the copy constraint, never): the
            # processor could never see it finished, and the end would stay lowered
            items = [it for it in row_items(meta) if "\\" not in render_items([it])]
            for k, item in enumerate(items):
                if item not in cache:
                    if len(cache) > 100_000:
                        cache.clear()
                    cache[item] = _item_forms(tokenizer, vocab, item)
                forms += [(k, f) for f in cache[item]]
            forms_of.append(forms)
        L = max([1] + [sum(len(f[0]) for _, f in r) for r in forms_of])
        K = max([1] + [1 + max((k for k, _ in r), default=-1) for r in forms_of])
        B = len(forms_of)
        A = torch.full((B, L), vocab_size, dtype=torch.long)
        nxt = torch.full((B, L), L, dtype=torch.long)
        item = torch.full((B, L), K, dtype=torch.long)
        plain = torch.zeros((B, L), dtype=torch.bool)
        lead = torch.zeros((B, L), dtype=torch.bool)
        last = torch.zeros((B, L), dtype=torch.bool)
        for r, forms in enumerate(forms_of):
            pos = 0
            for k, (f, p, q) in forms:
                n = len(f)
                A[r, pos : pos + n] = torch.tensor(f)
                nxt[r, pos : pos + n - 1] = torch.arange(pos + 1, pos + n)
                item[r, pos : pos + n] = k
                plain[r, pos], lead[r, pos] = p, q
                last[r, pos + n - 1] = True
                pos += n
        dev = ids.device
        return HintBiasProcessor(vocab, (ends_ws.to(dev), ends_bs.to(dev)),
                                 torch.tensor([float(row_bias(m)) for m in rows], device=dev),
                                 torch.tensor([bool(row_is_rc(m)) for m in rows], device=dev),
                                 *(x.to(dev) for x in (A, nxt, item, plain, lead, last)), K)

    make.vocab = vocab  # type: ignore[attr-defined]
    return make
