"""Batched generation: length-sorted batches, one model load, per-token log-probs.

The hot loop does tensor work per *batch*; per-sentence Python happens only
before (tokenize) and after (decode).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..data.sources import cut_ids


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


@torch.inference_mode()
def generate(model, tokenizer, sources: Sequence[str], *, batch_size: int = 64, max_source_length: int = 512,
             max_new_tokens: int = 128, num_beams: int = 1, logits_processor_factory: Callable | None = None,
             progress: Callable[[int], None] | None = None, sort_by_length: bool = True,
             with_scores: bool = True, rows: Sequence | None = None) -> list[Generated]:
    """Generate answers for ``sources``; results come back in input order. ``rows``: metadata of each
    source, handed to ``logits_processor_factory(input_ids, attention_mask, rows_of_the_batch)``."""
    if not sources:  # e.g. a chunk of empty documents: nothing to ask
        return []
    device = next(model.parameters()).device
    enc, cut = encode_sources(tokenizer, sources, max_source_length)
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i])) if sort_by_length else list(range(len(enc)))
    out: list[Generated | None] = [None] * len(enc)
    pad = tokenizer.pad_token_id
    special = set(tokenizer.all_special_ids)
    eos = tokenizer.eos_token_id
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i])] = torch.tensor(enc[i])
        ids = ids.to(device)
        mask = (ids != pad).long()
        kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, num_beams=num_beams,
                      do_sample=False, return_dict_in_generate=True, output_logits=with_scores)
        if logits_processor_factory is not None:
            from transformers import LogitsProcessorList
            batch_rows = [rows[i] for i in idx] if rows is not None else None
            kwargs["logits_processor"] = LogitsProcessorList([logits_processor_factory(ids, mask, batch_rows)])
        res = model.generate(**kwargs)
        seqs = res.sequences
        if with_scores:
            # from the model's own logits, before any logits processor: a token's log-probability is
            # what the model believes, not what a hint bias or a copy constraint pushed decoding to
            trans = model.compute_transition_scores(seqs, res.logits, getattr(res, "beam_indices", None),
                                                    normalize_logits=True).float().cpu()
        seqs_cpu = seqs[:, 1:].cpu().tolist()  # drop the decoder start token
        trans_rows = trans.tolist() if with_scores else None
        rows_toks, rows_lps = [], []
        for r in range(len(idx)):
            toks, lps = [], []
            row_lp = trans_rows[r] if trans_rows is not None else None
            for k, t in enumerate(seqs_cpu[r]):
                if t in special:
                    if t == eos or t == pad:
                        break
                    continue
                toks.append(t)
                lps.append(row_lp[k] if row_lp is not None else 0.0)
            rows_toks.append(toks)
            rows_lps.append(lps)
        texts = tokenizer.batch_decode(rows_toks, skip_special_tokens=True)  # one call per batch
        for r, i in enumerate(idx):
            out[i] = Generated(texts[r], rows_toks[r], rows_lps[r], cut[i])
        if progress:
            progress(len(idx))
    return out  # type: ignore[return-value]
