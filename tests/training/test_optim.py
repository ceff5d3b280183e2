"""The stacked Adafactor makes transformers' Adafactor's updates, and their checkpoints load into each other."""
import copy

import pytest
import torch
from transformers.optimization import Adafactor as HFAdafactor

from instructie.training.optim import Adafactor

SHAPES = [(48, 32), (48, 32), (48, 32), (32, 48), (16,), (16,), (7,), (3, 5, 6), (3, 5, 6), (64, 32), (24, 8)]
TINY = 10  # a weight whose RMS (1e-5) is under eps[1] (1e-3): its step size is lr * 1e-3
UNUSED_ROWS = 9  # a weight (an embedding) whose first rows never get a gradient: eps[0] keeps them finite


def weights(seed: int = 0, dtype=torch.float32) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    scale = [0.02 if len(s) > 1 else 1.0 for s in SHAPES]
    scale[TINY] = 1e-5
    return [torch.nn.Parameter((torch.randn(s, generator=g) * c).to(dtype)) for s, c in zip(SHAPES, scale)]


def groups(ps, weight_decay: float = 0.0):
    return [{"params": [p for p in ps if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0}]


def run(opt, ps, steps: range, lrs=None, skip=None):
    """Steps with seeded gradients (``skip``: a weight left without a gradient on step 2), lr changed per step as
    a schedule changes it."""
    for t in steps:
        g = torch.Generator().manual_seed(100 + t)
        for i, p in enumerate(ps):
            p.grad = None if (skip == i and t == 2) else torch.randn(p.shape, generator=g).to(p.dtype)
            if i == UNUSED_ROWS and p.grad is not None:
                p.grad[:8] = 0
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[t]
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_same_updates_as_transformers(weight_decay):
    ours, theirs = weights(), weights()
    lrs = [5e-3 * (t + 1) / 4 for t in range(8)]  # a warm-up: the lr changes between steps
    run(Adafactor(groups(ours, weight_decay), lr=5e-3), ours, range(8), lrs, skip=4)
    run(HFAdafactor(groups(theirs, weight_decay), lr=5e-3, scale_parameter=True, relative_step=False,
                    warmup_init=False), theirs, range(8), lrs, skip=4)
    start = weights()
    for a, b, s in ((a.detach(), b.detach(), s.detach()) for a, b, s in zip(ours, theirs, start)):
        assert torch.isfinite(a).all()
        moved = (b - s).abs().max()
        assert moved > 0
        # the steps themselves agree, to a small share of how far the weights moved
        torch.testing.assert_close(a - s, b - s, rtol=1e-4, atol=1e-5 * float(moved))


def test_small_buckets_change_nothing():
    """Stacks cut into buckets of a few weights (as large models' are) give the same weights."""
    whole, bucketed = weights(), weights()
    run(Adafactor(groups(whole), lr=1e-2), whole, range(3))
    run(Adafactor(groups(bucketed), lr=1e-2, bucket_elements=48 * 32 * 2), bucketed, range(3))
    for a, b in zip(whole, bucketed):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_bf16_weights_keep_the_small_updates_rounding_drops():
    """Steps under half a bf16 spacing: transformers' Adafactor rounds them away on bf16 weights; the stacked one
    carries what rounding lost (Kahan), so weight + compensation follows the fp32 run."""
    start = weights(dtype=torch.bfloat16)
    fp32 = [torch.nn.Parameter(p.detach().float()) for p in start]
    ours, theirs = weights(dtype=torch.bfloat16), weights(dtype=torch.bfloat16)
    steps, lr = range(20), 2e-3  # a step moves a weight of RMS 0.02 by ~4e-5, bf16 spacing there is ~1.2e-4
    run(Adafactor(groups(fp32), lr=lr), fp32, steps)
    opt = Adafactor(groups(ours), lr=lr)
    run(opt, ours, steps)
    run(HFAdafactor(groups(theirs), lr=lr, scale_parameter=True, relative_step=False, warmup_init=False),
        theirs, steps)

    def off(ws, with_compensation=False):  # how far the change lies from fp32's, relative to fp32's
        num = den = 0.0
        for w, ref, s in zip(ws, fp32, start):
            if w.ndim < 2 or w is ours[TINY]:
                continue  # the large matrices: where bf16 spacing exceeds the steps
            got = w.detach().float() + (opt.state[w]["compensation"].float() if with_compensation else 0)
            num += float(((got - s.detach().float()) - (ref.detach() - s.detach().float())).norm() ** 2)
            den += float((ref.detach() - s.detach().float()).norm() ** 2)
        return (num / den) ** 0.5

    assert all(p.dtype == torch.bfloat16 for p in ours)
    assert off(theirs) > 0.3  # transformers' loses a large share of the change
    assert off(ours, with_compensation=True) < 0.01
    assert off(ours) < off(theirs)  # the weights alone are the fp32 run rounded


def test_a_resumed_run_keeps_fp32_moments_for_bf16_weights():
    ps = weights(dtype=torch.bfloat16)
    opt = Adafactor(groups(ps), lr=1e-2)
    run(opt, ps, range(2))
    resumed = Adafactor(groups(ps), lr=1e-2)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    moments = [v for st in resumed.state.values() for k, v in st.items() if k.startswith("exp_avg_sq")]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    for p in ps:  # as saved, not rounded to the weights' bf16 on the way
        for key, value in opt.state[p].items():
            if key.startswith("exp_avg_sq"):
                assert torch.equal(resumed.state[p][key], value), key
    for p in ps:  # the compensation comes back as saved
        assert torch.equal(resumed.state[p]["compensation"], opt.state[p]["compensation"])


@pytest.mark.parametrize("saved_by", ["ours", "transformers"])
def test_checkpoints_load_into_the_other(saved_by):
    """A run resumed from a checkpoint of either optimizer continues as one run of transformers' would."""
    make_hf = lambda ps: HFAdafactor(groups(ps), lr=5e-3, scale_parameter=True, relative_step=False,  # noqa: E731
                                     warmup_init=False)
    make_ours = lambda ps: Adafactor(groups(ps), lr=5e-3)  # noqa: E731
    first, then = (make_ours, make_hf) if saved_by == "ours" else (make_hf, make_ours)
    ps = weights()
    opt = first(ps)
    run(opt, ps, range(3))
    state = copy.deepcopy(opt.state_dict())
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = then(resumed)
    opt2.load_state_dict(state)
    run(opt2, resumed, range(3, 6))
    reference = weights()
    ref_opt = make_hf(reference)
    run(ref_opt, reference, range(6))
    for a, b in zip(resumed, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(a.detach().view(torch.uint8), b.detach().view(torch.uint8))


def snapshot(opt, ps) -> list:
    """Each weight and its state tensors, copied."""
    return [(p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}) for p in ps]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_step_flagged_found_inf_leaves_weights_and_state_as_they_were(dtype):
    """With ``found_inf`` 1.0 (set as GradScaler sets it), a step with NaN and inf gradients changes no bit of the
    weights, the factored and unfactored moments, or the bf16 compensation; the next step trains on."""
    ps = weights(dtype=dtype)
    opt = Adafactor(groups(ps, weight_decay=0.1), lr=2e-3)
    run(opt, ps, range(3))
    before = snapshot(opt, ps)
    keys = {k for _, st in before for k in st}
    assert {"exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"} <= keys
    if dtype == torch.bfloat16:  # what the skipped step must keep: compensations that are not all zero
        assert any(st["compensation"].any() for _, st in before)
    for i, p in enumerate(ps):
        p.grad = torch.full_like(p, float("nan") if i % 2 else float("inf"))
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    del opt.found_inf
    for p, (w, st) in zip(ps, before):
        assert same_bits(p, w)
        assert st.keys() == {k for k, v in opt.state[p].items() if torch.is_tensor(v)}
        for k, v in st.items():
            assert same_bits(opt.state[p][k], v), k
    run(opt, ps, range(3, 4))
    assert all(torch.isfinite(p).all() for p in ps)
    assert all(not same_bits(p, w) for p, (w, _) in zip(ps, before) if p.ndim >= 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_step_flagged_finite_is_the_step_made_without_the_flag(dtype):
    plain, flagged = weights(dtype=dtype), weights(dtype=dtype)
    opt_plain = Adafactor(groups(plain, weight_decay=0.1), lr=2e-3)
    opt_flagged = Adafactor(groups(flagged, weight_decay=0.1), lr=2e-3)
    run(opt_plain, plain, range(4))
    opt_flagged.found_inf = torch.tensor(0.0)
    run(opt_flagged, flagged, range(4))
    del opt_flagged.found_inf
    for (w, st), (w2, st2) in zip(snapshot(opt_plain, plain), snapshot(opt_flagged, flagged)):
        assert same_bits(w, w2)
        assert st.keys() == st2.keys()
        for k in st:
            assert same_bits(st[k], st2[k]), k
