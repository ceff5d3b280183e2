"""The optimizer and learning-rate schedule of a run.

* ``adamw``: torch's AdamW (fused on a GPU), on fp32 weights.
* ``adafactor``: steps scaled by each tensor's RMS (random-init T5, see the shared notes on nanoT5).
* ``adamw`` with ``train.bf16_weights``: ``KahanAdamW``. Weights held in bf16 have 8 significant bits: an update
  smaller than half the spacing between neighbouring bf16 values is rounded away (a weight of 1.0 ignores any
  step under 0.004, and fine-tuning steps at lr 5e-5 are ~1e-5). Kahan summation keeps, per weight, the part
  of the update that rounding lost (a bf16 buffer) and adds it to the next update, so small updates accumulate
  as they would in fp32. Moments stay fp32. eval/bench_train.md measures what each choice keeps.
"""
from __future__ import annotations

import math

import torch


def build_optimizer(model, cfg) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(groups, lr=cfg.lr, scale_parameter=True, relative_step=False, warmup_init=False)
    if getattr(cfg, "bf16_weights", False):
        return KahanAdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), compiled=torch.cuda.is_available())
    fused = torch.cuda.is_available()
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def lr_lambda(cfg, total_steps: int):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


def _kahan_adamw_update(p, grad, exp_avg, exp_avg_sq, compensation, lr, beta1, beta2, eps, weight_decay,
                        bias_correction1, bias_correction2):
    """One tensor's AdamW step with Kahan-compensated weights: all arithmetic in fp32, one kernel once compiled.
    The scalars are 0-d tensors, so a compiled version serves every step."""
    g = grad.float()
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    w = p.float()
    step = (exp_avg / bias_correction1) / ((exp_avg_sq / bias_correction2).sqrt() + eps)
    update = -lr * (step + weight_decay * w) + compensation.float()
    new = w + update
    rounded = new.to(p.dtype)
    compensation.copy_(new - rounded.float())  # what rounding to the weights' dtype lost, kept for next time
    p.copy_(rounded)


class KahanAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) for low-precision weights, with Kahan-compensated updates.

    State per weight: fp32 first and second moments, and a compensation buffer in the weight's dtype. With fp32
    weights it is plain AdamW (the compensation stays ~0)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 compiled: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self._update = torch.compile(_kahan_adamw_update, dynamic=True) if compiled else _kahan_adamw_update

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            scalars: dict = {}  # per device, made once per step: the same for every weight of the group
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32,
                                                           memory_format=torch.preserve_format)
                    state["compensation"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                n = float(state["step"])
                key = (p.device, n)
                if key not in scalars:
                    values = [group["lr"], beta1, beta2, group["eps"], group["weight_decay"], 1 - beta1 ** n,
                              1 - beta2 ** n]
                    scalars[key] = list(torch.tensor(values, dtype=torch.float32, device=p.device).unbind())
                self._update(p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["compensation"], *scalars[key])
        return loss
