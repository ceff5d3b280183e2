"""T5 with a pointer-generator copy head: each output token is a mix of "write from the vocabulary" and
"copy a token of the source".

Why: a random-init T5 learns to *memorise* training names rather than copy them from the input (train
loss ~0.05 while test F1 stays at 0.3; DuIE answers are plausible names absent from the text). A copy
head (See et al. 2017, "Get To The Point"; CopyRE/CopyMTL for relation triples) gives the decoder a
direct route to every source token: an attention over the encoder states whose weights are added to
the vocabulary distribution at the source tokens' ids, mixed by a learned gate.

    p(y) = g * softmax(lm_head(h))[y] + (1 - g) * sum_{j : src_j = y} softmax_j(q(h) . k(e_j) / sqrt(d))
    g    = sigmoid(w . h + b)          h: decoder state, e_j: encoder states

``forward`` returns log p as ``logits``, so ``generate``, beam search, logits processors (constrained
decoding) and ``compute_transition_scores`` work unchanged. Generation needs the source ids at every
step: ``generate`` passes its ``input_ids`` on as ``source_ids``, so callers need nothing special. The model saves as a
normal T5 checkpoint plus three small tensors; ``config.copy_head: true`` tells ``modeling.load_trained``
to build this class (no remote code). Loaded as plain T5 elsewhere, the copy tensors are ignored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import T5ForConditionalGeneration

_TINY = 1e-30  # floor under the copy probability before its log: never -inf, no gradient below it


class CopyT5ForConditionalGeneration(T5ForConditionalGeneration):
    def __init__(self, config):
        config.copy_head = True
        super().__init__(config)
        d = config.d_model
        self.copy_query = nn.Linear(d, d, bias=False)
        self.copy_key = nn.Linear(d, d, bias=False)
        self.copy_gate = nn.Linear(d, 1)
        self.copy_next = nn.Linear(d, 1)  # weight of the "continue the copy" bias, per decoder state
        self.reset_copy_head()

    @torch.no_grad()
    def reset_copy_head(self) -> None:
        d = self.config.d_model
        # unit-variance q.k/sqrt(d) for unit-RMS (RMS-normed) states; gate starts at 0.5
        self.copy_query.weight.normal_(0.0, d ** -0.5)
        self.copy_key.weight.normal_(0.0, d ** -0.5)
        self.copy_gate.weight.normal_(0.0, d ** -0.5)
        self.copy_gate.bias.zero_()
        self.copy_next.weight.normal_(0.0, d ** -0.5)
        self.copy_next.bias.fill_(1.0)  # prior: after a copied token, its source successor is likely next

    @torch.no_grad()
    def warm_up(self) -> None:
        """One tiny eager forward. transformers 5.x installs its hidden-state capturing hooks on the first
        ``output_hidden_states=True`` call under a thread lock, which torch.compile cannot trace (4 graph
        breaks); after this call the compiled forward is one graph (tests/test_copy_head.py)."""
        was_training = self.training
        ids = torch.full((1, 2), self.config.eos_token_id, dtype=torch.long, device=self.device)
        self.eval()
        self(input_ids=ids, labels=ids, use_cache=False)  # as the training loop calls it
        self.train(was_training)

    def generate(self, inputs=None, **kwargs):
        # every decoding step points into the source: hand the encoder's ids on to forward (beam search
        # expands them with the other inputs)
        ids = inputs if inputs is not None else kwargs.get("input_ids")
        if kwargs.get("source_ids") is None and ids is not None:
            kwargs["source_ids"] = ids
        return super().generate(inputs, **kwargs)

    def forward(self, input_ids=None, attention_mask=None, labels=None, source_ids=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        # output_hidden_states / return_dict: always on (the head needs the states; callers get a ModelOutput)
        if source_ids is None:
            source_ids = input_ids
        if source_ids is None:
            raise ValueError("the copy head needs the source token ids: pass input_ids (or source_ids)")
        if labels is not None and kwargs.get("decoder_input_ids") is None and kwargs.get("decoder_inputs_embeds") is None:
            kwargs["decoder_input_ids"] = self._shift_right(labels)
        # output_hidden_states: the last decoder state is lm_head's input (tests/test_copy_head.py checks it)
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                              return_dict=True, **kwargs)
        dec = out.decoder_hidden_states[-1]  # (B, T, d), after the final RMSNorm
        enc = out.encoder_last_hidden_state  # (B, S, d)
        if attention_mask is None:
            attention_mask = source_ids.ne(self.config.pad_token_id)
        log_p = self.mix(out.logits, dec, enc, source_ids, attention_mask, kwargs.get("decoder_input_ids"))

        loss = None
        if labels is not None:
            loss = F.nll_loss(log_p.reshape(-1, log_p.size(-1)), labels.to(log_p.device).reshape(-1),
                              ignore_index=-100)
        # the same output class with its own fields (the cache field's name differs across transformers 5.x
        # releases); rebuilt so that the loss comes first, as in T5's own output
        fields = {k: v for k, v in out.items() if k != "loss"}
        fields["logits"] = log_p
        return type(out)(loss=loss, **fields) if loss is not None else type(out)(**fields)

    def mix(self, vocab_logits, dec, enc, source_ids, source_mask, prev_ids=None, source_segments=None,
            target_segments=None):
        """log of the gated mixture of the vocabulary and copy distributions, (B, T, V), float32.
        ``prev_ids`` (B, T): the token before each output position (the decoder input). Source positions
        whose predecessor is that token get a learned bias: copying a multi-token name then means
        "continue where the last copy was", which content matching alone learns slowly.
        Packed rows (model/packing.py) give ``source_segments`` (B, S) and ``target_segments`` (B, T) instead of
        ``source_mask``: an output token copies only from its own example's source, whose first token follows
        nothing."""
        q = self.copy_query(dec)
        k = self.copy_key(enc)
        scores = torch.matmul(q, k.transpose(1, 2)).float() * (q.size(-1) ** -0.5)  # (B, T, S)
        if prev_ids is not None:
            src_prev = F.pad(source_ids[:, :-1], (1, 0), value=-1)  # token before each source position
            if source_segments is not None:  # a segment's first token has no predecessor in its example
                starts = source_segments != F.pad(source_segments[:, :-1], (1, 0), value=-1)
                src_prev = src_prev.masked_fill(starts, -1)
            follows = prev_ids[:, :, None] == src_prev[:, None, :]  # (B, T, S)
            scores = scores + follows * self.copy_next(dec).float()
        if source_segments is not None:
            # its own segment; a padding position (segment 0) may look anywhere: its output is never used
            keep = (target_segments[:, :, None] == source_segments[:, None, :]) | (target_segments == 0)[:, :, None]
        else:
            keep = source_mask.bool()[:, None, :]
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores, dim=-1)
        log_vocab = torch.log_softmax(vocab_logits.float(), dim=-1)
        index = source_ids[:, None, :].expand(-1, log_vocab.size(1), -1)
        p_copy = torch.zeros_like(log_vocab).scatter_add(-1, index, attn)
        # Mixed in log space: log(p + eps) let a label token of p ~ 0 send 1/eps-sized gradients back (a
        # run went NaN at step 2,200). The clamp gives tokens absent from the source log p_copy = -69 and
        # a zero gradient.
        gate = self.copy_gate(dec).float()  # (B, T, 1): logit of the share of "write"
        return torch.logaddexp(F.logsigmoid(gate) + log_vocab,
                               F.logsigmoid(-gate) + torch.log(p_copy.clamp_min(_TINY)))


def add_copy_head(model: nn.Module) -> nn.Module:
    """A CopyT5 holding ``model``'s weights (a plain T5, e.g. Flan-T5 or a pretrain run), with a fresh copy head."""
    import copy

    from .embeddings import pin_untied_head, share_input_embeddings

    if isinstance(model, CopyT5ForConditionalGeneration):
        return model
    if not isinstance(model, T5ForConditionalGeneration):
        raise TypeError(f"model.copy_head needs a T5 model, got {type(model).__name__}")
    old_head, old_emb = model.get_output_embeddings(), model.get_input_embeddings()
    new = CopyT5ForConditionalGeneration(copy.deepcopy(model.config))
    untied = old_head.weight is not old_emb.weight
    if untied and new.get_output_embeddings().weight is new.get_input_embeddings().weight:
        # 5.x builds T5 with lm_head tied to `shared`: untie before loading, or one would overwrite the other
        new.set_output_embeddings(nn.Linear(old_head.in_features, old_head.out_features, bias=False))
        pin_untied_head(new)
    if model.encoder.embed_tokens.weight is model.shared.weight:  # 5.x ties by parameter, older by module
        share_input_embeddings(new, force=True)  # built from a config saying "untied": one table, as in ``model``
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    bad = [k for k in missing if not k.startswith("copy_")] + list(unexpected)
    if bad:
        raise RuntimeError(f"adding the copy head lost weights: {bad[:5]}")
    return new.train(model.training)
