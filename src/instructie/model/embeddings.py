"""Keeping a T5's embedding tables as T5 has them (see loading.py's notes on transformers 5)."""
from __future__ import annotations

import torch
from torch import nn


def pin_untied_head(model: nn.Module) -> bool:
    """If lm_head is a separate tensor, make HF's later ``tie_weights()`` calls leave it alone."""
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or head.weight is emb.weight:
        return False
    model.config.tie_word_embeddings = False
    tied = getattr(model, "all_tied_weights_keys", None)  # 5.x cache of the mapping computed at init
    if isinstance(tied, dict):
        for k in [k for k in tied if k.split(".")[0] == "lm_head"]:
            tied.pop(k)
    return True


def share_input_embeddings(model: nn.Module, force: bool = False) -> None:
    """Make a T5's encoder and decoder read its ``shared`` embedding table. Without ``force`` only a table equal
    to ``shared`` is replaced (one that differs was trained apart, by an older version: left as loaded)."""
    shared = getattr(model, "shared", None)
    if not isinstance(shared, nn.Embedding):
        return
    for stack in (getattr(model, "encoder", None), getattr(model, "decoder", None)):
        emb = getattr(stack, "embed_tokens", None)
        if emb is None or emb is shared:
            continue
        if force or (emb.weight.shape == shared.weight.shape and torch.equal(emb.weight, shared.weight)):
            stack.embed_tokens = shared
