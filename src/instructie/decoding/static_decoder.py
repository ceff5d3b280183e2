"""Greedy decoding of a T5 model with static buffers, CUDA graphs and continuous feeding.

``model.generate`` spends most of a decoding step in Python: per-step input preparation, a
cache object that grows, ~30 kernel launches per decoder layer issued one by one. At the
batch sizes and answer lengths of extraction the GPU waits on the host. This decoder runs the
same T5 computation (the model's own modules: embeddings, layer norms, projections,
feed-forward, ``lm_head``; the copy head's mix where the model has one) over buffers whose
shapes never change:

* ``slots`` rows decode at once. Each row has its own position: a row whose answer ended is
  given the next prompt while the others go on (continuous feeding), so mixed answer lengths
  keep every row busy instead of waiting for a batch's longest answer;
* self-attention keys/values live in a ``[slots, heads, max_new_tokens, d_kv]`` buffer per
  layer, written at each row's position; the relative position bias is looked up from each
  row's position, the keys past it masked;
* cross-attention keys/values are computed once per prompt, when it enters its row, into a
  ``[slots, heads, S, d_kv]`` buffer; a step attends over the first ``bucket`` source
  positions, ``bucket`` the smallest of a few lengths that holds the longest prompt in the
  rows (prompts enter longest first, so it only shrinks);
* on CUDA one decoding step is a captured CUDA graph per bucket (one graph launch instead of
  hundreds of kernel launches), reused by every later call on the same model.

Logits processors (``constraints.RowStateProcessor`` and others built per batch by a
factory) run between the model's graph and the token choice, on the rows of the prompts
they were built for: a refill builds one for the entering prompts (a cohort), so their state
stays per row as in ``model.generate``. Token log-probabilities are taken from the model's
logits before any processor, as ``generation.generate`` documents.
"""
from __future__ import annotations

import weakref
from typing import Callable, Sequence

import numpy as np
import torch

from ..model.loading import scales_decoder_output

# Source lengths are padded up to one of these, so that a few graphs serve a whole run
_BUCKET_STEPS = ((256, 32), (512, 64), (1 << 30, 128))
# Refill once a quarter of the rows (1/_REFILL_SHARE) is free, or no row is live: a refill runs the encoder
# once for the entering prompts, and with a logits processor adds a cohort whose processor
# runs every step; refilling row by row would pay both for a single prompt
_REFILL_SHARE = 4


def bucket(n: int) -> int:
    """The padded source length for a prompt of ``n`` tokens."""
    for limit, step in _BUCKET_STEPS:
        if n <= limit:
            return max(step, -(-n // step) * step)
    raise AssertionError("unreachable")


def unsupported_reason(model, num_beams: int) -> str | None:
    """Why ``model`` cannot be decoded here (None when it can): the static decoder does greedy
    T5 decoding with no generation-config processors."""
    from transformers import T5ForConditionalGeneration

    if num_beams != 1:
        return "beam search"
    if not isinstance(model, T5ForConditionalGeneration):
        return f"{type(model).__name__} is not a T5 model"
    if model.training:
        return "the model is in training mode (dropout)"
    gc = getattr(model, "generation_config", None)
    if gc is not None:
        for name, neutral in (("repetition_penalty", 1.0), ("no_repeat_ngram_size", 0), ("min_length", 0),
                              ("min_new_tokens", None), ("bad_words_ids", None), ("forced_bos_token_id", None),
                              ("forced_eos_token_id", None), ("suppress_tokens", None),
                              ("begin_suppress_tokens", None), ("sequence_bias", None),
                              ("encoder_no_repeat_ngram_size", 0), ("encoder_repetition_penalty", 1.0)):
            v = getattr(gc, name, neutral)
            if v not in (neutral, None) and not (neutral == 0 and v == 0):
                return f"generation_config.{name} = {v!r}"
        eos = getattr(gc, "eos_token_id", None)
        if isinstance(eos, (list, tuple)) and len(set(eos)) > 1:
            return "several end-of-sequence tokens"
    return None


def _token(model, name: str):
    """A special token id as ``model.generate`` reads it: the generation config's, else the config's."""
    v = getattr(getattr(model, "generation_config", None), name, None)
    if v is None:
        v = getattr(model.config, name, None)
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    return v


class StaticT5Decoder:
    """Static buffers and graphs for ``slots`` rows, sources up to ``src_cap`` tokens and
    ``steps`` new tokens; kept per model between calls (``decoder_for``)."""

    def __init__(self, model, slots: int, src_cap: int, steps: int, use_graphs: bool):
        cfg = model.config
        # weakly: the decoder is kept per model (``_DECODERS``, keyed weakly) and must not keep the model alive
        self.model = weakref.proxy(model)
        dec = model.get_decoder()
        self.blocks = list(dec.block)
        self.embed = dec.embed_tokens
        self.final_norm = dec.final_layer_norm
        att0 = self.blocks[0].layer[0].SelfAttention
        self.rel_emb = att0.relative_attention_bias
        self.B, self.S, self.T = slots, src_cap, steps
        self.H, self.dk, self.d = cfg.num_heads, cfg.d_kv, cfg.d_model
        self.scale = scales_decoder_output(cfg)
        self.copy = bool(getattr(cfg, "copy_head", False)) and hasattr(model, "mix")
        self.device = dev = self.embed.weight.device
        kv_dtype = att0.k.weight.dtype
        pad = _token(model, "pad_token_id")
        self.pad = 0 if pad is None else pad
        self.eos = _token(model, "eos_token_id")
        start = _token(model, "decoder_start_token_id")
        self.start = self.pad if start is None else start
        self.V = model.get_output_embeddings().out_features
        B, S, T, H, dk = slots, src_cap, steps, self.H, self.dk
        z = dict(device=dev, dtype=kv_dtype)
        self.self_k = [torch.zeros(B, H, T, dk, **z) for _ in self.blocks]
        self.self_v = [torch.zeros(B, H, T, dk, **z) for _ in self.blocks]
        self.cross_k = [torch.zeros(B, H, S, dk, **z) for _ in self.blocks]
        self.cross_v = [torch.zeros(B, H, S, dk, **z) for _ in self.blocks]
        self.neg = torch.finfo(kv_dtype).min
        self.cross_bias = torch.full((B, 1, 1, S), self.neg, **z)
        if self.copy:
            self.enc = torch.zeros(B, S, self.d, device=dev, dtype=self.embed.weight.dtype)
            self.src = torch.full((B, S), self.pad, dtype=torch.long, device=dev)
            self.src_mask = torch.zeros(B, S, dtype=torch.long, device=dev)
        # relative position bucket of each distance 0..T-1 back (depends on the config only)
        dist = -torch.arange(T, device=dev)
        self.rel_bucket = att0._relative_position_bucket(dist, bidirectional=False,
                                                         num_buckets=att0.relative_attention_num_buckets,
                                                         max_distance=att0.relative_attention_max_distance)
        self.ar_T = torch.arange(T, device=dev)
        # per-row decoding state
        lg = dict(dtype=torch.long, device=dev)
        self.tok = torch.full((B,), self.start, **lg)  # the token each row feeds next
        self.pos = torch.zeros(B, **lg)  # its position (= tokens the row has generated)
        self.fin = torch.ones(B, dtype=torch.bool, device=dev)  # the row's answer is complete
        # generated tokens: column 0 the start token, k+1 the k-th token, T+1 a dump for finished rows
        self.hist = torch.full((B, T + 2), self.pad, **lg)
        self.lps = torch.zeros(B, T + 1, dtype=torch.float32, device=dev)
        self.raw = torch.zeros(B, self.V, dtype=torch.float32, device=dev)  # the model's logits
        self.lse = torch.zeros(B, dtype=torch.float32, device=dev)
        self.scores = torch.zeros(B, self.V, dtype=torch.float32, device=dev)  # after the processors
        self.use_graphs = use_graphs and dev.type == "cuda"
        self.graphs: dict = {}
        self.graph_error: str | None = None
        if self.use_graphs:
            # one memory pool for every graph: only one runs at a time, and everything a step
            # keeps is copied into the buffers above, so their scratch memory can be shared
            self.pool = torch.cuda.graph_pool_handle()
            self.fin_host = torch.ones(B, dtype=torch.bool).pin_memory()
            self.fin_event = torch.cuda.Event()
            self._warm_select()

    # ------------------------------------------------------------------ the model's step
    def _attend(self, q, k, v, bias):
        s = torch.matmul(q, k.transpose(2, 3)) + bias  # T5: no 1/sqrt(d) scaling
        w = torch.softmax(s.float(), dim=-1).to(q.dtype)
        return torch.matmul(w, v).transpose(1, 2).reshape(q.shape[0], 1, self.H * self.dk)

    def _model_step(self, S: int) -> None:
        """One decoding step of every row: ``raw`` (float32 logits) and ``lse`` (their log-sum-exp)."""
        B, H, dk = self.B, self.H, self.dk
        x = self.embed(self.tok)[:, None, :]
        back = self.pos[:, None] - self.ar_T[None, :]  # how far back each cache slot lies
        bias = self.rel_emb(self.rel_bucket[back.clamp(min=0)]).permute(0, 2, 1)[:, :, None, :]
        bias = bias.masked_fill((back < 0)[:, None, None, :], self.neg)
        where = self.pos.view(B, 1, 1, 1).expand(B, H, 1, dk)
        cross_bias = self.cross_bias[..., :S]
        for i, blk in enumerate(self.blocks):
            sa, ca, ff = blk.layer[0], blk.layer[1], blk.layer[2]
            att = sa.SelfAttention
            h = sa.layer_norm(x)
            q = att.q(h).view(B, 1, H, dk).transpose(1, 2)
            self.self_k[i].scatter_(2, where, att.k(h).view(B, 1, H, dk).transpose(1, 2))
            self.self_v[i].scatter_(2, where, att.v(h).view(B, 1, H, dk).transpose(1, 2))
            x = x + att.o(self._attend(q, self.self_k[i], self.self_v[i], bias))
            att = ca.EncDecAttention
            q = att.q(ca.layer_norm(x)).view(B, 1, H, dk).transpose(1, 2)
            x = x + att.o(self._attend(q, self.cross_k[i][:, :, :S], self.cross_v[i][:, :, :S], cross_bias))
            x = ff(x)
        h = self.final_norm(x)
        logits = self.model.lm_head(h * self.d ** -0.5 if self.scale else h)
        if self.copy:
            logits = self.model.mix(logits, h, self.enc[:, :S], self.src[:, :S], self.src_mask[:, :S],
                                    self.tok[:, None])
        raw = logits[:, 0].float()
        self.raw.copy_(raw)
        self.lse.copy_(torch.logsumexp(raw, dim=-1))

    def _select(self, scores: torch.Tensor) -> None:
        """Greedy choice from ``scores``; the rows' state moves one token on. A finished row
        feeds padding (as ``model.generate`` does) and writes nothing more."""
        done = self.fin
        nxt = torch.where(done, self.pad, scores.argmax(dim=-1))
        col = torch.where(done, self.T + 1, self.pos + 1)
        self.hist.scatter_(1, col[:, None], nxt[:, None])
        lp = self.raw.gather(1, nxt[:, None])[:, 0] - self.lse
        self.lps.scatter_(1, torch.where(done, self.T, self.pos)[:, None], lp[:, None])
        new_pos = torch.where(done, self.pos, self.pos + 1)
        self.fin.copy_(done | (nxt == self.eos) | (new_pos >= self.T))
        self.pos.copy_(new_pos.clamp(max=self.T - 1))
        self.tok.copy_(nxt)

    # ------------------------------------------------------------------ graphs
    def _warm_select(self) -> None:
        """Run the choice's kernels once before any capture (lazy initialisation must not
        happen inside one), then reset the state it moved."""
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            self._select(self.scores)
        torch.cuda.current_stream().wait_stream(s)
        self.fin.fill_(True)
        self.pos.zero_()
        self.tok.fill_(self.start)

    def _graph(self, key, fn, warm_S: int | None):
        g = self.graphs.get(key)
        if g is None:
            if warm_S is not None:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    # The model's step rewrites each row's cache entry at its position from the
                    # same inputs the next real step has: running it here moves no state
                    self._model_step(warm_S)
                torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(g, pool=self.pool):
                    fn()
            except Exception as e:  # noqa: BLE001 -- a capture that fails (an op that syncs) leaves eager steps
                import warnings

                warnings.warn(f"CUDA graph capture failed, decoding without graphs: {type(e).__name__}: {e}")
                self.use_graphs, self.graph_error = False, f"{type(e).__name__}: {e}"
                return None
            self.graphs[key] = g
        return g

    def _run(self, key, fn, warm_S: int | None) -> None:
        g = self._graph(key, fn, warm_S) if self.use_graphs else None
        if g is not None:
            g.replay()
        else:
            fn()

    def step(self, S: int, processors: Callable | None) -> None:
        """One decoding step over ``S`` source positions; ``processors(raw) -> scores`` when given."""
        if processors is None:
            self._run(("fused", S), lambda: (self._model_step(S), self._select(self.raw)), S)
            return
        self._run(("model", S), lambda: self._model_step(S), S)
        self.scores.copy_(processors(self.raw))
        self._run(("select",), lambda: self._select(self.scores), None)

    def finished(self) -> np.ndarray:
        if self.use_graphs:
            self.fin_host.copy_(self.fin, non_blocking=True)
            self.fin_event.record()
            self.fin_event.synchronize()
            return self.fin_host.numpy()
        return self.fin.cpu().numpy()

    # ------------------------------------------------------------------ prompts entering rows
    def fill(self, slots: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Prompts ``ids`` (``[n, S']`` padded, ``mask``) enter rows ``slots``: encode them, store
        their cross-attention keys/values, reset the rows' state."""
        n, w = ids.shape
        enc = self.model.get_encoder()(input_ids=ids, attention_mask=mask)[0]
        H, dk = self.H, self.dk
        for i, blk in enumerate(self.blocks):
            att = blk.layer[1].EncDecAttention
            self.cross_k[i][:, :, :w].index_copy_(0, slots, att.k(enc).view(n, w, H, dk).transpose(1, 2))
            self.cross_v[i][:, :, :w].index_copy_(0, slots, att.v(enc).view(n, w, H, dk).transpose(1, 2))
        full = torch.zeros(n, self.S, dtype=torch.bool, device=self.device)
        full[:, :w] = mask.bool()
        self.cross_bias.index_copy_(0, slots, torch.where(full, 0.0, self.neg).to(self.cross_bias.dtype)[:, None, None, :])
        if self.copy:
            self.enc[:, :w].index_copy_(0, slots, enc.to(self.enc.dtype))
            src = torch.full((n, self.S), self.pad, dtype=torch.long, device=self.device)
            src[:, :w] = ids
            self.src.index_copy_(0, slots, src)
            self.src_mask.index_copy_(0, slots, full.long())
        self.tok.index_fill_(0, slots, self.start)
        self.pos.index_fill_(0, slots, 0)
        self.fin.index_fill_(0, slots, False)
        self.hist.index_fill_(0, slots, self.pad)
        self.hist[:, 0] = self.start
        self.lps.index_fill_(0, slots, 0.0)


_DECODERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def decoder_for(model, rows: int, max_rows: int, src_len: int, steps: int, use_graphs: bool) -> StaticT5Decoder:
    """The model's decoder for ``rows`` to ``max_rows`` rows, kept between calls while it fits
    (its graphs are captured once); a new one (the old one dropped first) when the rows,
    lengths or weights' dtype change."""
    cur = _DECODERS.get(model)
    dtype = model.get_decoder().block[0].layer[0].SelfAttention.k.weight.dtype
    if (cur is not None and rows <= cur.B <= max_rows and cur.S >= src_len and cur.T == steps and cur.use_graphs == use_graphs
            and cur.self_k[0].dtype == dtype and cur.device == model.get_decoder().embed_tokens.weight.device
            and cur.embed is model.get_decoder().embed_tokens):
        return cur
    if cur is not None:
        del _DECODERS[model]
        del cur
    dec = StaticT5Decoder(model, rows, bucket(src_len), steps, use_graphs)
    _DECODERS[model] = dec
    return dec


def warm_up(model, *, batch_size: int, max_new_tokens: int, max_source_length: int,
            processors: bool = False) -> int:
    """Allocate ``model``'s decoder and capture its graphs for every source bucket up to
    ``max_source_length`` now (a run does it the first time it needs each), so that timed or
    latency-bound work does not pay for it. ``processors``: the graphs used when a logits
    processor runs between the model and the choice of token. Returns the graphs captured."""
    dev = model.get_decoder().embed_tokens.weight.device
    dec = decoder_for(model, batch_size, batch_size, max_source_length, max_new_tokens, dev.type == "cuda")
    if not dec.use_graphs:
        return 0
    before = len(dec.graphs)
    sizes = sorted({bucket(n) for n in range(1, max_source_length + 1)})
    for S in sizes:
        if not dec.use_graphs:  # a capture failed
            break
        if processors:
            dec._graph(("model", S), lambda S=S: dec._model_step(S), S)
        else:
            dec._graph(("fused", S), lambda S=S: (dec._model_step(S), dec._select(dec.raw)), S)
    if processors and dec.use_graphs:
        dec._graph(("select",), lambda: dec._select(dec.scores), None)
    torch.cuda.synchronize()
    return len(dec.graphs) - before


def release(model) -> None:
    """Drop the buffers and graphs kept for ``model``."""
    _DECODERS.pop(model, None)


class _Cohort:
    """The logits processor of the prompts that entered rows together, and the rows it owns."""

    def __init__(self, proc, slots: list[int], dec: StaticT5Decoder, steps: int):
        self.proc = proc
        self.slots = list(slots)
        n = len(slots)
        dev = dec.device
        self.owned = [True] * n
        self.ids = torch.full((n, steps + 1), dec.pad, dtype=torch.long, device=dev)
        self.ids[:, 0] = dec.start
        self.k = 0  # processor calls made
        self.pad = dec.pad
        self.identity = slots == list(range(dec.B))
        self._index(dev)

    def _index(self, dev) -> None:
        rows = [r for r, o in enumerate(self.owned) if o]
        self.rows_t = torch.tensor(rows, dtype=torch.long, device=dev)
        self.slots_t = torch.tensor([self.slots[r] for r in rows], dtype=torch.long, device=dev)
        self.all_slots_t = torch.tensor(self.slots, dtype=torch.long, device=dev)
        self.own_t = torch.tensor(self.owned, dtype=torch.bool, device=dev)

    def release(self, rows: list[int], dev) -> bool:
        """The prompts of ``rows`` are done (re-indexed once for all of them); True when the cohort owns no row
        any more."""
        for row in rows:
            self.owned[row] = False
        self.identity = False
        if any(self.owned):
            self._index(dev)
            return False
        return True

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        ids = self.ids[:, : self.k + 1]
        if self.identity:
            return self.proc(ids, scores)
        out = self.proc(ids, scores.index_select(0, self.all_slots_t))
        return scores.index_copy(0, self.slots_t, out.index_select(0, self.rows_t))

    def advance(self, tok: torch.Tensor) -> None:
        """Record the tokens just chosen (padding for rows it no longer owns)."""
        self.k += 1
        t = tok if self.identity else torch.where(self.own_t, tok.index_select(0, self.all_slots_t), self.pad)
        self.ids[:, self.k] = t


def generate_ids(model, enc: Sequence[list[int]], *, batch_size: int, max_new_tokens: int,
                 logits_processor_factory: Callable | None = None, rows: Sequence | None = None,
                 progress: Callable[[int], None] | None = None,
                 use_graphs: bool | None = None, stats: dict | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy answers to the token-id prompts ``enc``: ``(tokens [n, max_new_tokens],
    log-probs [n, max_new_tokens])`` in input order, each row as ``model.generate`` writes it
    after the decoder start token (padding after ``</s>``). ``rows``: each prompt's metadata,
    handed to the factory with the prompts of each group (``factory(ids, mask, rows)``)."""
    n = len(enc)
    dev = model.get_decoder().embed_tokens.weight.device
    if use_graphs is None:
        use_graphs = dev.type == "cuda"
    lens = np.fromiter((len(e) for e in enc), dtype=np.int64, count=n)
    order = np.argsort(-lens, kind="stable")  # longest first: the rows' bucket only shrinks
    width = int(lens.max())
    dec = decoder_for(model, min(batch_size, n), batch_size, width, max_new_tokens, use_graphs)
    B, T = dec.B, dec.T
    pad = dec.pad
    # every prompt on the device once, in decoding order
    host = np.full((n, width), pad, dtype=np.int64)
    for r, i in enumerate(order):
        host[r, : lens[i]] = enc[i]
    ids_all = torch.from_numpy(host).to(dev)
    mask_all = torch.from_numpy(np.arange(width)[None, :] < lens[order][:, None]).to(dev).long()
    slens = lens[order]
    out_tok = torch.full((n, T), pad, dtype=torch.long, device=dev)
    out_lp = torch.zeros(n, T, dtype=torch.float32, device=dev)

    slot_prompt = np.full(B, -1, dtype=np.int64)  # the prompt (decoding order) in each row
    free = list(range(B))
    cohort_of: list[tuple[_Cohort, int] | None] = [None] * B
    cohorts: list[_Cohort] = []
    nxt_prompt = live = steps = 0
    refill_at = max(1, B // _REFILL_SHARE)
    S = bucket(width)

    def run_processors(raw: torch.Tensor) -> torch.Tensor:
        scores = raw.clone()  # the log-probs are read from ``raw``: processors must not write into it
        for c in cohorts:
            scores = c.apply(scores)
        return scores

    while live or nxt_prompt < n:
        if nxt_prompt < n and (len(free) >= refill_at or not live):
            take = min(len(free), n - nxt_prompt)
            slots, free = sorted(free[:take]), free[take:]
            a, b = nxt_prompt, nxt_prompt + take
            w = int(slens[a])
            slots_t = torch.tensor(slots, dtype=torch.long, device=dev)
            dec.fill(slots_t, ids_all[a:b, :w], mask_all[a:b, :w])
            slot_prompt[slots] = np.arange(a, b)
            if logits_processor_factory is not None:
                # the prompts as ``model.generate`` gets them: padded to the longest of the group
                extra = ([rows[i] for i in order[a:b]],) if rows is not None else ()
                c = _Cohort(logits_processor_factory(ids_all[a:b, :w], mask_all[a:b, :w], *extra), slots, dec, T)
                cohorts.append(c)
                for r, s in enumerate(slots):
                    cohort_of[s] = (c, r)
            nxt_prompt, live = b, live + take
            S = bucket(int(slens[slot_prompt[slot_prompt >= 0].min()]))
        dec.step(S, run_processors if cohorts else None)
        steps += 1
        for c in cohorts:
            c.advance(dec.tok)
        fin = dec.finished()
        done = np.flatnonzero(fin & (slot_prompt >= 0))
        if not len(done):
            continue
        done_t = torch.from_numpy(done).to(dev)
        prompts_t = torch.from_numpy(slot_prompt[done]).to(dev)
        out_tok.index_copy_(0, prompts_t, dec.hist.index_select(0, done_t)[:, 1: T + 1])
        out_lp.index_copy_(0, prompts_t, dec.lps.index_select(0, done_t)[:, :T])
        slot_prompt[done] = -1
        ended: dict[_Cohort, list[int]] = {}  # each cohort's rows done this step
        for s in done.tolist():
            if cohort_of[s] is not None:
                c, r = cohort_of[s]
                cohort_of[s] = None
                ended.setdefault(c, []).append(r)
        for c, rs in ended.items():
            if c.release(rs, dev):
                cohorts.remove(c)
        free += done.tolist()
        live -= len(done)
        if live:
            S = bucket(int(slens[slot_prompt[slot_prompt >= 0].min()]))
        if progress:
            progress(len(done))
    tok = np.empty((n, T), dtype=np.int64)
    lp = np.empty((n, T), dtype=np.float32)
    tok[order] = out_tok.cpu().numpy()
    lp[order] = out_lp.cpu().numpy()
    if stats is not None:
        stats["steps"] = stats.get("steps", 0) + steps
        stats["rows"] = B
        stats["graphs"] = dec.use_graphs
        if dec.graph_error:
            stats["graph_error"] = dec.graph_error
    return tok, lp
