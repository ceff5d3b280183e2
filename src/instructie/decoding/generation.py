"""Batched generation: one model load, per-token log-probs, results in input order.

Two decoders compute the same greedy answers:

* ``static`` (``static_decoder``): T5 models, greedy -- static buffers, one CUDA graph per
  decoding step, continuous feeding (a row whose answer ended takes the next prompt);
* ``eager``: ``model.generate`` over length-sorted batches -- beam search and any other model.

Per-sentence Python happens only before (tokenise, once) and after (decode, once per call).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..data.sources import cut_ids

DECODERS = ("auto", "static", "eager")


@dataclass
class Generated:
    text: str
    token_ids: list[int]
    token_logprobs: list[float]  # one per generated token (special tokens excluded)
    truncated: bool = False  # the source was cut to max_source_length (its end never reached the model)


def encode_sources(tokenizer, sources: Sequence[str], max_source_length: int) -> tuple[list[list[int]], list[bool]]:
    """Token ids of each source, cut as training cuts them (``cut_ids``), and which were cut."""
    # verbose=False: the "longer than the maximum length" warning is wrong here -- the ids are cut after
    enc = tokenizer(list(sources), add_special_tokens=True, verbose=False)["input_ids"]
    return cut_ids(enc, max_source_length, tokenizer.eos_token_id)


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    if device.type == "cuda" and dtype in (torch.bfloat16,):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def pick_decoder(model, decoder: str, num_beams: int) -> str:
    """``static`` or ``eager`` for a ``decoder`` setting: ``auto`` takes the static decoder
    wherever it applies (greedy T5); asking ``static`` where it does not is an error."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {decoder!r}")
    if decoder == "eager":
        return "eager"
    from .static_decoder import unsupported_reason

    why = unsupported_reason(model, num_beams)
    if why is None:
        return "static"
    if decoder == "static":
        raise ValueError(f"the static decoder cannot run here: {why}")
    return "eager"


class _Rows:
    """Turns generated id rows into answers: stop at ``</s>``/padding, drop other special
    tokens (vectorised over a batch), decode every answer in one call at the end."""

    def __init__(self, tokenizer, n: int):
        self.tokenizer = tokenizer
        self.special = np.array(sorted({i for i in tokenizer.all_special_ids if i is not None and i >= 0}),
                                dtype=np.int64)
        self.stops = [i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None]
        self.toks: list[list[int] | None] = [None] * n
        self.lps: list[list[float] | None] = [None] * n
        self.eos = tokenizer.eos_token_id
        self.generated = 0  # tokens the decoder wrote: up to and with each answer's </s>, or to the limit

    def add(self, idx: Sequence[int], tok: np.ndarray, lp: np.ndarray | None) -> None:
        """Rows ``tok`` ``[k, T]`` (after the decoder start token) of prompts ``idx``; ``lp`` their
        tokens' log-probs (None: zeros)."""
        T = tok.shape[1]
        stop = np.isin(tok, self.stops)
        first = np.where(stop.any(1), stop.argmax(1), T)
        keep = (np.arange(T)[None, :] < first[:, None]) & ~np.isin(tok, self.special)
        if self.eos is not None:
            ended = tok == self.eos
            self.generated += int(np.where(ended.any(1), ended.argmax(1) + 1, T).sum())
        for r, i in enumerate(idx):
            k = keep[r]
            self.toks[i] = tok[r][k].tolist()
            self.lps[i] = lp[r][k].tolist() if lp is not None else [0.0] * len(self.toks[i])

    def results(self, cut: Sequence[bool]) -> list[Generated]:
        texts = self.tokenizer.batch_decode(self.toks, skip_special_tokens=True)
        return [Generated(t, ids, lps, c) for t, ids, lps, c in zip(texts, self.toks, self.lps, cut)]


@torch.inference_mode()
def generate(model, tokenizer, sources: Sequence[str], *, batch_size: int = 64, max_source_length: int = 512,
             max_new_tokens: int = 128, num_beams: int = 1, logits_processor_factory: Callable | None = None,
             progress: Callable[[int], None] | None = None, sort_by_length: bool = True,
             with_scores: bool = True, rows: Sequence | None = None, decoder: str = "auto",
             stats: dict | None = None) -> list[Generated]:
    """Generate answers for ``sources``; results come back in input order.

    ``logits_processor_factory(ids, mask)`` builds the logits processor of a group of prompts
    (their padded token ids and mask), called as transformers calls one: ``(decoder ids so far,
    scores) -> scores``. ``rows``: metadata of each source, handed on to the factory as a third
    argument, the group's own (``factory(ids, mask, rows_of_the_group)``). ``decoder``: ``auto`` (the static decoder for greedy T5, else
    ``model.generate``), ``static`` or ``eager`` -- both give the same greedy answers.
    ``stats``: filled with the decoder used, the decoding steps run, the tokens generated (up to
    and with each answer's ``</s>``, or to the limit) and where the time went
    (``seconds_tokenise``, ``seconds_decoding``: the model's work and the decoding loop around
    it, ``seconds_answers``: turning ids into answers)."""
    if not sources:  # e.g. a chunk of empty documents: nothing to ask
        return []
    kind = pick_decoder(model, decoder, num_beams)
    t0 = time.perf_counter()
    enc, cut = encode_sources(tokenizer, sources, max_source_length)
    answers = _Rows(tokenizer, len(enc))
    t1 = time.perf_counter()
    in_loop = 0.0
    if kind == "static":
        from .static_decoder import generate_ids

        tok, lp = generate_ids(model, enc, batch_size=batch_size, max_new_tokens=max_new_tokens,
                               logits_processor_factory=logits_processor_factory, rows=rows, progress=progress,
                               stats=stats)
        in_loop = time.perf_counter() - t1
        answers.add(range(len(enc)), tok, lp if with_scores else None)
        out = answers.results(cut)
        _account(stats, kind, t1 - t0, in_loop, time.perf_counter() - t1 - in_loop, answers.generated)
        return out
    device = next(model.parameters()).device
    lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=len(enc))
    order = np.argsort(-lens, kind="stable") if sort_by_length else np.arange(len(enc))
    pad = tokenizer.pad_token_id
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = int(lens[idx].max())
        host = np.full((len(idx), width), pad, dtype=np.int64)
        for r, i in enumerate(idx):
            host[r, : lens[i]] = enc[i]
        ids = torch.from_numpy(host).to(device)
        mask = (ids != pad).long()
        kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_beams=num_beams,
                      do_sample=False, return_dict_in_generate=True, output_logits=with_scores)
        t = time.perf_counter()
        if logits_processor_factory is not None:
            from transformers import LogitsProcessorList
            extra = ([rows[i] for i in idx],) if rows is not None else ()
            kwargs["logits_processor"] = LogitsProcessorList([logits_processor_factory(ids, mask, *extra)])
        res = model.generate(**kwargs)
        seqs = res.sequences
        trans = None
        if with_scores:
            # from the model's own logits, before any logits processor: a token's log-probability is
            # what the model believes, not what a hint bias or a copy constraint pushed decoding to
            trans = model.compute_transition_scores(seqs, res.logits, getattr(res, "beam_indices", None),
                                                    normalize_logits=True).float().cpu().numpy()
        tok = seqs[:, 1:].cpu().numpy()  # drop the decoder start token
        in_loop += time.perf_counter() - t
        if stats is not None:
            stats["steps"] = stats.get("steps", 0) + tok.shape[1]
        answers.add(idx.tolist(), tok, trans[:, : tok.shape[1]] if trans is not None else None)
        if progress:
            progress(len(idx))
    out = answers.results(cut)
    _account(stats, kind, t1 - t0, in_loop, time.perf_counter() - t1 - in_loop, answers.generated)
    return out


def _account(stats: dict | None, kind: str, tokenise: float, decoding: float, answers: float,
             generated: int) -> None:
    if stats is None:
        return
    stats["decoder"] = kind
    stats["tokens"] = stats.get("tokens", 0) + generated
    for k, v in (("seconds_tokenise", tokenise), ("seconds_decoding", decoding), ("seconds_answers", answers)):
        stats[k] = stats.get(k, 0.0) + v
