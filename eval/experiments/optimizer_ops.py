"""Host-side work of one optimizer step at a model size (CPU, random weights and gradients): the aten calls
``torch.profiler`` records at the top level of a step, for transformers' Adafactor and for ``optimizer:
adafactor``'s stacked one (also as training runs it, handed the device flag that skips a non-finite update). On
a GPU each call is at least a kernel launch's worth of host time, and transformers' also waits for the GPU once
per weight (``max(eps, RMS)`` of a tensor in Python).

    python eval/experiments/optimizer_ops.py [--size small]
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile
from transformers.optimization import Adafactor as TransformersAdafactor

from instructie.model.loading import build_random_t5
from instructie.training.optim import Adafactor


def top_level_calls(opt) -> int:
    opt.step()  # the state is made on the first step
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        opt.step()
    return sum(1 for e in prof.events()
               if e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    params = [p for p in build_random_t5(a.size, 16000, None, copy_head=True).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    groups = lambda: [{"params": [p for p in params if p.ndim >= 2]},  # noqa: E731
                      {"params": [p for p in params if p.ndim < 2]}]
    print(f"{a.size}: {len(params)} weights of {len({tuple(p.shape) for p in params})} shapes")
    print("transformers' Adafactor:", top_level_calls(TransformersAdafactor(
        groups(), lr=5e-3, scale_parameter=True, relative_step=False, warmup_init=False)), "aten calls a step")
    print("stacked Adafactor:", top_level_calls(Adafactor(groups(), lr=5e-3)), "aten calls a step")
    told = Adafactor(groups(), lr=5e-3)
    told.found_inf = torch.zeros(())  # as training runs it: told on the device whether to skip the update
    print("stacked Adafactor, told whether to skip:", top_level_calls(told), "aten calls a step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
