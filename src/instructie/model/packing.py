"""Training a T5 (or the copy-head T5) on packed rows (data/packing.py): several examples per row, kept apart.

``PackedSeq2Seq`` wraps the model and runs its own modules (embeddings, attention projections, layer norms,
feed-forward layers, lm_head, copy head) with per-segment attention:

* encoder self-attention: a source token sees the source tokens of its own segment;
* decoder self-attention: a target token sees the earlier target tokens of its own segment;
* cross-attention: a target token sees the source tokens of its own segment;
* relative position bias: T5's bias depends only on the distance between two tokens, and a segment's tokens
  lie side by side in the row, so the distance between two tokens of one segment is the distance they have in
  the example alone. The bias is computed once per row length and pairs across segments are masked out, which
  is the same as positions restarting at 0 in every segment (tests/model/test_packing.py checks that a packed
  batch's loss and gradients equal those of its examples run one by one).

Padding is segment 0; a padding query may look anywhere (its output is never used), so no softmax row is
empty. The loss is the mean over every target token of the batch, as T5's own loss over an unpacked batch.

Attention runs through ``F.scaled_dot_product_attention`` with the bias and mask as one additive tensor (T5
scales no query-key product: scale 1), or, with ``attention="eager"``, as explicit matrix products (what
``torch.compile`` fuses best on some GPUs). Both give the same numbers up to rounding. ``attention="efficient"``
holds SDPA to its memory-efficient kernel, which takes the bias's gradient and drops attention probabilities in
the kernel (SDPA's own choice may be its math path, which makes the scores in fp32). With ``attention="flex"`` it
runs through ``flex_attention``: the bias is looked up per query-key pair from each head's bias by distance
(gathered once a stack) inside the kernel and the segments are a block mask, so no (B, H, L, L) tensor is made
and blocks of keys outside a query block's segments are skipped. flex_attention has no attention dropout:
attention probabilities are not dropped (every other dropout is); it is fast only compiled (``train.compile``),
and its backward needs a GPU.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from .loading import scales_decoder_output

ATTENTION = ("sdpa", "efficient", "eager", "flex")


class PackedSeq2Seq(nn.Module):
    """``forward(input_ids, source_segments, labels, decoder_input_ids, target_segments)`` -> an output whose
    ``loss`` is the batch's mean token loss. Its state dict is the wrapped model's (checkpoints are the same
    whether a run packs or not).

    ``compile``: each T5 block and the loss are compiled on their own (regional compilation): the blocks of a
    stack share one compiled graph, so compiling costs one encoder block, one decoder block and the loss,
    whatever the depth of the model, and packed rows give them one shape."""

    def __init__(self, model: nn.Module, attention: str = "sdpa", checkpointing: bool = False,
                 compile: bool = False):
        super().__init__()
        if attention not in ATTENTION:
            raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
        self.model = model
        self.attention = attention
        self.checkpointing = checkpointing
        self._block = torch.compile(_block, dynamic=False) if compile else _block
        self._loss = torch.compile(_loss, dynamic=False) if compile else _loss
        self.train(model.training)

    # the wrapped model's weights, under its own names
    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, input_ids, source_segments, labels, decoder_input_ids, target_segments, **_unused):
        from transformers.modeling_outputs import Seq2SeqLMOutput

        m = self.model
        enc = self._stack(m.encoder, input_ids, source_segments)
        dec = self._stack(m.decoder, decoder_input_ids, target_segments, enc, source_segments)
        loss = self._loss(m, dec, enc, input_ids, labels, decoder_input_ids, source_segments, target_segments)
        return Seq2SeqLMOutput(loss=loss)

    def _stack(self, stack, ids, segments, enc=None, enc_segments=None):
        """One T5 stack (encoder, or decoder with ``enc``) over packed rows; its final hidden states."""
        h = stack.dropout(stack.embed_tokens(ids))
        decoder = enc is not None
        first = stack.block[0].layer[0].SelfAttention
        if self.attention == "flex":
            # made once a stack, outside the compiled blocks: its gradient reaches the (num_buckets, H) table by
            # autograd, where a score_mod reading the table itself would have every query-key pair of every layer
            # add into those few values at once
            self_bias = _FlexBias(_block_mask(segments, segments, decoder),
                                  _distance_bias(first, segments.shape[1], decoder, ids.device).contiguous())
            cross_bias = _FlexBias(_block_mask(segments, enc_segments)) if decoder else None
        else:
            self_bias = _self_bias(first, segments, causal=decoder, dtype=h.dtype)
            cross_bias = _mask_bias(segments, enc_segments, h.dtype) if decoder else None
        for block in stack.block:
            args = (block, h, self_bias, enc, cross_bias, self.attention)
            if self.checkpointing and torch.is_grad_enabled():
                h = checkpoint(self._block, *args, use_reentrant=False)
            else:
                h = self._block(*args)
        return stack.dropout(stack.final_layer_norm(h))


def _block(block, h, self_bias, enc, cross_bias, attention: str):
    """One T5 block over packed rows (a decoder block when ``enc`` is given)."""
    sa = block.layer[0]
    x = sa.layer_norm(h)
    h = h + sa.dropout(_attend(sa.SelfAttention, x, x, self_bias, attention))
    if enc is not None:
        ca = block.layer[1]
        h = h + ca.dropout(_attend(ca.EncDecAttention, ca.layer_norm(h), enc, cross_bias, attention))
    return block.layer[-1](h)  # T5LayerFF: norm, feed-forward, dropout, residual


def _attend(attn, x, kv, bias, attention: str):
    b, n, _ = x.shape
    heads, d = attn.n_heads, attn.key_value_proj_dim
    q = attn.q(x).view(b, n, heads, d).transpose(1, 2)
    k = attn.k(kv).view(b, kv.shape[1], heads, d).transpose(1, 2)
    v = attn.v(kv).view(b, kv.shape[1], heads, d).transpose(1, 2)
    p = attn.dropout if attn.training else 0.0
    if attention == "flex":
        out = bias.attend(q, k, v)
    elif attention in ("sdpa", "efficient"):
        kernels = sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]) if attention == "efficient" else nullcontext()
        with kernels:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=p, scale=1.0)
    else:
        scores = torch.matmul(q, k.transpose(-1, -2)).float() + bias.float()
        out = torch.matmul(F.dropout(torch.softmax(scores, dim=-1).to(q.dtype), p=p), v)
    return attn.o(out.transpose(1, 2).reshape(b, n, heads * d))


def _loss(model, dec, enc, input_ids, labels, decoder_input_ids, source_segments, target_segments):
    """Mean token loss of the batch: lm_head (and the copy head's mixture) over the decoder's states."""
    seq = dec * (model.config.d_model ** -0.5) if scales_decoder_output(model.config) else dec
    logits = model.lm_head(seq)
    if getattr(model.config, "copy_head", False):
        log_p = model.mix(logits, dec, enc, input_ids, None, decoder_input_ids, source_segments=source_segments,
                          target_segments=target_segments)
        return F.nll_loss(log_p.reshape(-1, log_p.size(-1)), labels.reshape(-1), ignore_index=-100)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


def _allowed(query_segments, key_segments, causal: bool = False):
    """(B, Lq, Lk): which keys each query sees -- its own segment (earlier positions only with ``causal``);
    a padding query (segment 0) sees every key."""
    allowed = query_segments[:, :, None] == key_segments[:, None, :]
    if causal:
        n = query_segments.shape[1]
        allowed = allowed & torch.ones(n, n, dtype=torch.bool, device=allowed.device).tril()
    return allowed | (query_segments == 0)[:, :, None]


class _FlexBias(NamedTuple):
    """What flex_attention needs for one attention of a stack: the segments' block mask and, for self-attention,
    T5's bias of every head and key - query distance, (H, 2L-1), at index distance + L - 1. (A named tuple:
    compiled blocks take it as plain values, with no guard on a new object each step.)"""

    block_mask: Any
    distance_bias: torch.Tensor | None = None

    def attend(self, q, k, v):
        from torch.nn.attention.flex_attention import flex_attention

        score_mod = None
        if self.distance_bias is not None:
            bias, last = self.distance_bias, q.shape[2] - 1

            def score_mod(score, b, h, qi, ki):
                return score + bias[h, ki - qi + last].to(score.dtype)
        # 4-D buffers of their own: inductor's flex kernels (its CPU one at least) take no views of the projections
        q, k, v = (x.contiguous() for x in (q, k, v))
        out = flex_attention(q, k, v, score_mod=score_mod, block_mask=self.block_mask, scale=1.0)
        return out.to(q.dtype)


def _block_mask(query_segments, key_segments, causal: bool = False):
    """The segments as a flex_attention block mask: a query sees the keys of its own segment (padding, segment 0,
    sees padding; a padding query with no padding key gets zeros, and its output is never used)."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, qi, ki):
        same = query_segments[b, qi] == key_segments[b, ki]
        return same & (ki <= qi) if causal else same
    return create_block_mask(mask_mod, B=query_segments.shape[0], H=None, Q_LEN=query_segments.shape[1],
                             KV_LEN=key_segments.shape[1], device=query_segments.device)


def _distance_bias(attn, n: int, causal: bool, device):
    """T5's bias of every head and key - query distance in [-(n-1), n-1]: (H, 2n-1), at index distance + n - 1."""
    buckets = attn._relative_position_bucket(torch.arange(-(n - 1), n, device=device), bidirectional=not causal,
                                             num_buckets=attn.relative_attention_num_buckets,
                                             max_distance=attn.relative_attention_max_distance)
    return attn.relative_attention_bias(buckets).t()


def _mask_bias(query_segments, key_segments, dtype, causal: bool = False):
    """The mask as an additive (B, 1, Lq, Lk) tensor: 0 where a query sees a key, the dtype's minimum elsewhere."""
    allowed = _allowed(query_segments, key_segments, causal)
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


def _self_bias(attn, segments, causal: bool, dtype):
    """T5's relative position bias (1, H, L, L) plus the segment mask: (B, H, L, L)."""
    n = segments.shape[1]
    pos = torch.arange(n, device=segments.device)
    position = _distance_bias(attn, n, causal, segments.device)[:, pos[None, :] - pos[:, None] + n - 1][None]
    return position.to(dtype) + _mask_bias(segments, segments, dtype, causal)
