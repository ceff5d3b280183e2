"""Keeping a T5's embedding tables as T5 has them (see loading.py's notes on transformers 5), and a start for
the rows of new tokens."""
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


@torch.no_grad()
def init_new_rows(model: nn.Module, first: int, sources: dict[int, list[int]], seed: int = 0) -> dict[str, int]:
    """Give rows ``first``.. of the input embedding (and of an untied output layer) a start that means something.

    A row listed in ``sources`` with older ids becomes their mean (a kept fullwidth '，' starts as the model's
    ','). Every other row is drawn per dimension from the older rows' mean and standard deviation: new
    characters then start as far apart as the model's own tokens are. (transformers' mean resizing draws
    them with the covariance scaled by 1e-9: all alike, and a fine-tuning learning rate barely separates them.)
    Returns how many rows took each start."""
    gen = torch.Generator().manual_seed(seed)
    tables = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not tables[0]:
        tables.append(head.weight)
    n_rows = tables[0].shape[0]
    copied = [i for i in range(first, n_rows) if sources.get(i)]
    drawn = [i for i in range(first, n_rows) if not sources.get(i)]
    for w in tables:
        old = w[:first].float()
        mean, std = old.mean(0), old.std(0)
        for i in copied:
            w[i] = old[sources[i]].mean(0).to(w.dtype)
        if drawn:
            noise = torch.randn(len(drawn), w.shape[1], generator=gen).to(old.device)
            w[drawn] = (mean + std * noise).to(w.dtype)
    return {"from_normalised_form": len(copied), "drawn": len(drawn)}
