"""The stacked Adafactor makes transformers' Adafactor's updates, and their checkpoints load into each other."""
import copy

import pytest
import torch
from transformers.optimization import Adafactor as HFAdafactor

from instructie.training.optim import Adafactor

SHAPES = [(48, 32), (48, 32), (48, 32), (32, 48), (16,), (16,), (7,), (3, 5, 6), (3, 5, 6), (64, 32)]


def weights(seed: int = 0, dtype=torch.float32) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter((torch.randn(s, generator=g) * (0.02 if len(s) > 1 else 1.0)).to(dtype))
            for s in SHAPES]


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
    for a, b, s in zip(ours, theirs, start):
        assert not torch.equal(a, s)  # it moved
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_small_buckets_change_nothing():
    """Stacks cut into buckets of a few weights (as large models' are) give the same weights."""
    whole, bucketed = weights(), weights()
    run(Adafactor(groups(whole), lr=1e-2), whole, range(3))
    run(Adafactor(groups(bucketed), lr=1e-2, bucket_elements=48 * 32 * 2), bucketed, range(3))
    for a, b in zip(whole, bucketed):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_bf16_weights_update_in_fp32_and_stay_bf16():
    ours, theirs = weights(dtype=torch.bfloat16), weights(dtype=torch.bfloat16)
    run(Adafactor(groups(ours), lr=1e-2), ours, range(3))
    run(HFAdafactor(groups(theirs), lr=1e-2, scale_parameter=True, relative_step=False, warmup_init=False),
        theirs, range(3))
    for a, b in zip(ours, theirs):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-2, atol=1e-3)


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
