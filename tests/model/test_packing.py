"""Packed rows (data/packing.py, model/packing.py): several examples per fixed-length row must train the model
exactly as the same examples run unpacked -- loss and gradients equal -- with and without the copy head."""
from __future__ import annotations

import random

import pytest
import torch

from instructie.data.packing import collate_packed, fill, pack_rows
from instructie.data.sources import Tokenized, collate
from instructie.model.loading import build_random_t5
from instructie.model.packing import PackedSeq2Seq, _self_bias

VOCAB = 64
# fp32 on the CPU: a packed and an unpacked pass differ only in the order of sums
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-4, 1e-6


def examples(n: int, seed: int = 3, max_src: int = 30, max_tgt: int = 9):
    rng = random.Random(seed)
    srcs = [[rng.randint(3, VOCAB - 1) for _ in range(rng.randint(3, max_src))] + [1] for _ in range(n)]
    tgts = [[rng.randint(3, VOCAB - 1) for _ in range(rng.randint(1, max_tgt))] + [1] for _ in range(n)]
    # a target token that also stands in another example's source: the copy head must not copy it from there
    tgts[1][0] = srcs[0][2]
    return srcs, tgts


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = 0.0
    return model


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run(model, fn):
    model.zero_grad()
    loss = fn()
    loss.backward()
    return float(loss.detach()), grads(model)


# ---------------------------------------------------------------- rows
def test_rows_hold_every_example_once_within_their_lengths():
    rng = random.Random(0)
    src = [rng.randint(5, 200) for _ in range(3000)]
    tgt = [rng.randint(1, 12) for _ in range(3000)]  # the source is what fills a row
    rows = pack_rows(src, tgt, 512, 64, random.Random(1), window=1000)
    assert sorted(i for r in rows for i in r) == list(range(3000))
    assert all(sum(src[i] for i in r) <= 512 and sum(tgt[i] for i in r) <= 64 for r in rows)
    s_fill, t_fill = fill(rows, src, tgt, 512, 64)
    assert s_fill > 0.9, s_fill  # first-fit decreasing leaves little padding
    assert pack_rows(src, tgt, 512, 64, random.Random(1), window=1000) == rows  # seeded
    assert pack_rows(src, tgt, 512, 64, random.Random(2), window=1000) != rows
    with pytest.raises(ValueError, match="does not fit a packed row of 512 source and 64 target tokens"):
        pack_rows(src + [513], tgt + [1], 512, 64, random.Random(1))


def test_collated_rows_shift_each_segments_target_on_its_own():
    srcs, tgts = examples(3)
    batch = collate_packed([[0, 1], [2]], srcs, tgts, 64, 24, pad_id=0, decoder_start_id=0)
    model = build_random_t5("tiny", VOCAB)
    a, b = len(tgts[0]), len(tgts[1])
    assert batch["target_segments"][0, : a + b].tolist() == [1] * a + [2] * b
    assert (batch["target_segments"][0, a + b :] == 0).all() and (batch["labels"][0, a + b :] == -100).all()
    for seg, t in ((slice(0, a), tgts[0]), (slice(a, a + b), tgts[1])):
        alone = model._shift_right(torch.tensor([t]))[0]
        assert batch["decoder_input_ids"][0, seg].tolist() == alone.tolist()
    assert batch["input_ids"][0, : len(srcs[0]) + len(srcs[1])].tolist() == srcs[0] + srcs[1]
    assert batch["source_segments"][1, : len(srcs[2])].tolist() == [1] * len(srcs[2])


# ---------------------------------------------------------------- the model on packed rows
def test_the_relative_position_bias_restarts_in_every_segment():
    """Each segment's block of the packed bias is the bias T5 computes for that example alone."""
    torch.manual_seed(0)
    model = build_random_t5("tiny", VOCAB)
    attn = model.encoder.block[0].layer[0].SelfAttention
    dec_attn = model.decoder.block[0].layer[0].SelfAttention
    segments = torch.tensor([[1] * 5 + [2] * 40 + [3] * 11 + [0] * 8])
    with torch.no_grad():
        packed = _self_bias(attn, segments, causal=False, dtype=torch.float32)
        packed_dec = _self_bias(dec_attn, segments, causal=True, dtype=torch.float32)
        for start, n in ((0, 5), (5, 40), (45, 11)):
            alone = attn.compute_bias(n, n)[0]
            torch.testing.assert_close(packed[0, :, start : start + n, start : start + n], alone)
            alone_dec = dec_attn.compute_bias(n, n)[0]
            block = packed_dec[0, :, start : start + n, start : start + n]
            upper = torch.ones(n, n, dtype=torch.bool).triu(1)
            torch.testing.assert_close(block[:, ~upper], alone_dec[:, ~upper])  # where the decoder may look
            assert (block[:, upper] < -1e30).all()
        # across segments: masked
        assert (packed[0, :, :5, 5:56] < -1e30).all() and (packed[0, :, 5:45, 45:56] < -1e30).all()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # on a GPU: its attention kernels too


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("copy_head", [False, True])
@pytest.mark.parametrize("attention", ["sdpa", "efficient", "eager", "flex"])
def test_a_packed_batch_has_the_loss_and_gradients_of_its_examples_unpacked(copy_head, attention, device):
    if attention == "flex" and device == "cpu":
        pytest.skip("flex_attention's backward needs a GPU (its CPU forward: the test below)")
    if attention == "efficient" and device == "cpu":
        pytest.skip("SDPA's memory-efficient kernel is a GPU kernel")
    torch.manual_seed(0)
    model = build_random_t5("tiny", VOCAB, copy_head=copy_head).to(device)
    model.eval()  # no dropout: both passes must see the same network
    srcs, tgts = examples(9)
    # row lengths that are multiples of 16, as the configs' are (the memory-efficient kernel pads a bias that is
    # not, a path that has crashed compiled)
    rows = pack_rows([len(s) for s in srcs], [len(t) for t in tgts], 64, 32, random.Random(0))
    assert max(len(r) for r in rows) >= 3 and len(rows) < 9  # several examples share a row
    packed = collate_packed(rows, srcs, tgts, 64, 32, pad_id=0, decoder_start_id=0)
    plain = collate(list(range(9)), Tokenized(srcs, tgts, 0, 0), pad_id=0, pad_multiple=1)
    packed, plain = ({k: v.to(device) for k, v in b.items()} for b in (packed, plain))
    # flex trains compiled only (uncompiled it is a slow reference); on a GPU, compiled kernels are what trains
    wrapper = PackedSeq2Seq(model, attention=attention, compile=attention == "flex")

    loss_plain, grads_plain = run(model, lambda: model(**plain).loss)
    loss_packed, grads_packed = run(model, lambda: wrapper(**packed).loss)
    assert loss_packed == pytest.approx(loss_plain, rel=LOSS_RTOL)
    assert grads_packed.keys() == grads_plain.keys()
    for name, g in grads_plain.items():
        torch.testing.assert_close(grads_packed[name], g, rtol=GRAD_RTOL, atol=GRAD_ATOL, msg=name)


@pytest.mark.parametrize("copy_head", [False, True])
def test_flex_attention_gives_the_loss_of_the_examples_unpacked(copy_head):
    """The bias looked up inside the kernel and the segments as a block mask: the loss of the examples alone."""
    torch.manual_seed(0)
    model = build_random_t5("tiny", VOCAB, copy_head=copy_head).eval()
    srcs, tgts = examples(9)
    rows = pack_rows([len(s) for s in srcs], [len(t) for t in tgts], 64, 20, random.Random(0))
    packed = collate_packed(rows, srcs, tgts, 64, 20, pad_id=0, decoder_start_id=0)
    plain = collate(list(range(9)), Tokenized(srcs, tgts, 0, 0), pad_id=0, pad_multiple=1)
    with torch.no_grad():
        flex = float(PackedSeq2Seq(model, attention="flex")(**packed).loss)
        assert flex == pytest.approx(float(model(**plain).loss), rel=LOSS_RTOL)


def test_compiled_flex_attention_compiles_once_for_every_batch():
    """Compiled, flex attention's blocks take the block mask and bias table as values: new batches of the one row
    shape reuse the graphs compiled for the first (one encoder block, one decoder block, the loss)."""
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    torch._dynamo.reset()
    counters.clear()
    model = build_random_t5("tiny", VOCAB).eval()
    compiled, plain = PackedSeq2Seq(model, attention="flex", compile=True), PackedSeq2Seq(model)
    srcs, tgts = examples(12)
    rows = pack_rows([len(s) for s in srcs], [len(t) for t in tgts], 64, 20, random.Random(0))
    assert len(rows) >= 4
    with torch.no_grad():
        for first in range(0, 4, 2):
            batch = collate_packed(rows[first:first + 2], srcs, tgts, 64, 20, pad_id=0, decoder_start_id=0)
            assert float(compiled(**batch).loss) == pytest.approx(float(plain(**batch).loss), rel=LOSS_RTOL)
    assert counters["stats"]["unique_graphs"] == 3
    torch._dynamo.reset()


def test_a_model_that_scales_its_decoder_output_is_packed_alike():
    """T5 v1.0 (tied head) scales the decoder output by d_model**-0.5 before lm_head; Flan-T5 does not."""
    from transformers import T5Config, T5ForConditionalGeneration

    from instructie.model.loading import SIZES
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, decoder_start_token_id=0, **SIZES["tiny"])).eval()
    srcs, tgts = examples(5)
    rows = pack_rows([len(s) for s in srcs], [len(t) for t in tgts], 96, 24, random.Random(0))
    packed = collate_packed(rows, srcs, tgts, 96, 24, pad_id=0, decoder_start_id=0)
    plain = collate(list(range(5)), Tokenized(srcs, tgts, 0, 0), pad_id=0, pad_multiple=1)
    with torch.no_grad():
        assert float(PackedSeq2Seq(model)(**packed).loss) == pytest.approx(float(model(**plain).loss), rel=LOSS_RTOL)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = no_dropout(build_random_t5("tiny", VOCAB, copy_head=True)).train()
    srcs, tgts = examples(6)
    rows = pack_rows([len(s) for s in srcs], [len(t) for t in tgts], 64, 20, random.Random(0))
    packed = collate_packed(rows, srcs, tgts, 64, 20, pad_id=0, decoder_start_id=0)
    loss_a, grads_a = run(model, lambda: PackedSeq2Seq(model)(**packed).loss)
    loss_b, grads_b = run(model, lambda: PackedSeq2Seq(model, checkpointing=True)(**packed).loss)
    assert loss_a == loss_b
    for name, g in grads_a.items():
        torch.testing.assert_close(grads_b[name], g, msg=name)


def test_the_wrapper_saves_and_loads_the_models_own_weights():
    model = build_random_t5("tiny", VOCAB)
    wrapper = PackedSeq2Seq(model)
    assert wrapper.state_dict().keys() == model.state_dict().keys()
    other = build_random_t5("tiny", VOCAB)
    PackedSeq2Seq(other).load_state_dict(wrapper.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
