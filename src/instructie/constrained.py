"""Constrained decoding: the model may only write tokens that occur in its input.

The prompt holds the text and the option labels, so "tokens of the source" covers
every span that can be copied and every label that can be chosen; the answer
grammar's own tokens (separators, ``None``, escapes) and ``</s>`` are added. The
mask is built once per batch as a (batch, vocab) boolean tensor and applied each
step with one ``masked_fill``: a constant number of kernels per step, no Python
loop over rows (HF's ``prefix_allowed_tokens_fn`` loops over every row every step).

It does not force a span to be *contiguous* in the source; it removes the failure
seen with random-init models, which write plausible names that are not in the input.
"""
from __future__ import annotations

import torch

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

    def make(ids: torch.Tensor, mask: torch.Tensor) -> SourceVocabularyProcessor:
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
