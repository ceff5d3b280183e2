"""The optimizer and learning-rate schedule of a run.

* ``adamw``: torch's AdamW (fused on a GPU), on fp32 weights.
* ``adafactor``: steps scaled by each tensor's RMS (random-init T5, see the shared notes on nanoT5); transformers'
  Adafactor computed on stacks of same-shape weights (``Adafactor`` below).
* ``adamw`` with ``train.bf16_weights``: ``KahanAdamW`` (``adafactor`` compensates bf16 weights alike). Weights
  held in bf16 have 8 significant bits: an update smaller than half the spacing between neighbouring bf16 values
  is rounded away (a weight of 1.0 ignores any step under 0.004, and fine-tuning steps at lr 5e-5 are ~1e-5).
  Kahan summation keeps, per weight, the part of the update that rounding lost (a bf16 buffer) and adds it to
  the next update, so small updates accumulate as they would in fp32. Moments stay fp32. eval/bench_train.md
  measures what each choice keeps.
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
        return Adafactor(groups, lr=cfg.lr)
    if getattr(cfg, "bf16_weights", False):
        return KahanAdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
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


def _kahan_adamw_update(params, grads, exp_avgs, exp_avg_sqs, compensations, *, lr: float, beta1: float,
                        beta2: float, eps: float, weight_decay: float, bias_correction1: float,
                        bias_correction2: float) -> None:
    """AdamW steps of a list of tensors with Kahan-compensated weights, all arithmetic in fp32, as multi-tensor
    (``torch._foreach_*``) kernels: a few launches per bucket of weights instead of several per weight."""
    g = [x.float() for x in grads]
    torch._foreach_lerp_(exp_avgs, g, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, g, g, value=1 - beta2)
    del g
    denom = torch._foreach_div(exp_avg_sqs, bias_correction2)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    update = torch._foreach_div(exp_avgs, bias_correction1)
    torch._foreach_div_(update, denom)
    del denom
    new = [p.float() if p.dtype != torch.float32 else p.clone() for p in params]  # never the weight itself
    if weight_decay:
        torch._foreach_add_(update, new, alpha=weight_decay)
    torch._foreach_mul_(update, -lr)
    torch._foreach_add_(update, [c.float() for c in compensations])
    torch._foreach_add_(new, update)  # the weights in fp32, the compensation of earlier steps included
    del update
    rounded = [n.to(p.dtype, copy=True) for n, p in zip(new, params)]
    torch._foreach_sub_(new, [r.float() for r in rounded])  # what rounding to the weights' dtype lost ...
    torch._foreach_copy_(compensations, new)  # ... kept for next time
    torch._foreach_copy_(params, rounded)


def _load_with_fp32_moments(optimizer: torch.optim.Optimizer, state_dict: dict, keys) -> None:
    """``optimizer.load_state_dict`` as torch does it, except the moments ``keys`` are taken from the saved state as
    fp32: torch casts a loaded state's floating tensors to their weight's dtype, and bf16 moments would lose what the
    compensation of bf16 weights keeps."""
    torch.optim.Optimizer.load_state_dict(optimizer, state_dict)
    saved = state_dict["state"]
    for saved_group, group in zip(state_dict["param_groups"], optimizer.param_groups):
        for pid, p in zip(saved_group["params"], group["params"]):
            for key in keys:
                if key in saved.get(pid, {}):
                    optimizer.state[p][key] = saved[pid][key].to(device=p.device, dtype=torch.float32)


class KahanAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay) for low-precision weights, with Kahan-compensated updates.

    State per weight: fp32 first and second moments, and a compensation buffer in the weight's dtype. With fp32
    weights it is plain AdamW (the compensation stays ~0). Weights are updated in buckets of about
    ``bucket_elements`` values, which bounds the fp32 temporaries (~12 bytes per value of a bucket at most)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 bucket_elements: int = 2**26):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.bucket_elements = bucket_elements

    def load_state_dict(self, state_dict: dict) -> None:
        _load_with_fp32_moments(self, state_dict, ("exp_avg", "exp_avg_sq"))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            buckets: dict = {}  # (device, dtype, step) -> buckets of weights
            filled: dict = {}  # the same key -> values in its last bucket
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
                key = (p.device, p.dtype, float(state["step"]))
                lists = buckets.setdefault(key, [[]])
                if lists[-1] and filled[key] + p.numel() > self.bucket_elements:
                    lists.append([])
                    filled[key] = 0
                lists[-1].append(p)
                filled[key] = filled.get(key, 0) + p.numel()
            for (_, _, n), lists in buckets.items():
                for ps in lists:
                    st = [self.state[p] for p in ps]
                    _kahan_adamw_update(ps, [p.grad for p in ps], [s["exp_avg"] for s in st],
                                        [s["exp_avg_sq"] for s in st], [s["compensation"] for s in st],
                                        lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                                        weight_decay=group["weight_decay"], bias_correction1=1 - beta1 ** n,
                                        bias_correction2=1 - beta2 ** n)
        return loss


class Adafactor(torch.optim.Optimizer):
    """transformers' ``Adafactor`` as the recipes run it (``scale_parameter=True, relative_step=False``, no first
    moment), computed on stacks of same-shape weights: a few dozen kernels per stack instead of ~28 per weight,
    and no host-device sync (transformers' takes ``max(eps, RMS)`` of a GPU tensor in Python once per weight:
    196 syncs and ~5,600 kernels a step at T5-small size, where the packed forward and backward take ~80 ms).

    Per weight, as transformers computes it: step size ``lr * max(eps[1], RMS(weight))``; second moments
    factored into row and column means for weights of 2 or more dimensions (decay ``1 - step ** decay_rate``);
    the update clipped to RMS ``clip_threshold``. State per weight has transformers' names and shapes, so
    checkpoints of either load into the other. Weights held in bf16 (``train.bf16_weights``) get a Kahan
    compensation buffer, as ``KahanAdamW``'s, where transformers' rounds each step's update away when it is under
    half a bf16 spacing: 6 bytes per weight in all (weight, gradient, compensation; the factored moments are
    small) against KahanAdamW's 14. A stack holds up to ``bucket_elements`` values (a larger weight
    is a stack of its own); a step's fp32 temporaries are ~16 bytes per value of its largest stack (weights,
    gradients, their squares, the update), against ~8 per value of the largest weight in transformers'.

    A step can be skipped on the device, as torch's ``GradScaler`` has fused AdamW skip one: with ``found_inf`` set
    on the optimizer (a 0-dim float tensor, 1.0 = skip), a step where it is 1.0 leaves weights and state exactly as
    they were (the gradients may be NaN), and the host never reads the flag. The second-moment decay's step count
    counts a skipped update."""

    def __init__(self, params, lr: float, eps=(1e-30, 1e-3), clip_threshold: float = 1.0,
                 decay_rate: float = -0.8, weight_decay: float = 0.0, bucket_elements: int = 2**26):
        # the groups carry transformers' options as well, fixed, so that its Adafactor loads these checkpoints
        super().__init__(params, dict(lr=lr, eps=tuple(eps), clip_threshold=clip_threshold, decay_rate=decay_rate,
                                      weight_decay=weight_decay, beta1=None, scale_parameter=True,
                                      relative_step=False, warmup_init=False))
        self.bucket_elements = bucket_elements

    def load_state_dict(self, state_dict: dict) -> None:
        _load_with_fp32_moments(self, state_dict, ("exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        found_inf = getattr(self, "found_inf", None)
        for group in self.param_groups:
            stacks: dict = {}  # (shape, device, dtype, step) -> lists of weights, each one stack
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients")
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    if p.ndim >= 2:
                        state["exp_avg_sq_row"] = torch.zeros(p.shape[:-1], device=p.device)
                        state["exp_avg_sq_col"] = torch.zeros(p.shape[:-2] + p.shape[-1:], device=p.device)
                    else:
                        state["exp_avg_sq"] = torch.zeros(p.shape, device=p.device)
                if p.dtype != torch.float32 and "compensation" not in state:
                    state["compensation"] = torch.zeros_like(p)
                state["step"] += 1
                lists = stacks.setdefault((tuple(p.shape), p.device, p.dtype, state["step"]), [[]])
                if lists[-1] and (len(lists[-1]) + 1) * p.numel() > self.bucket_elements:
                    lists.append([])
                lists[-1].append(p)
            for (_, device, _, n), lists in stacks.items():
                skip = found_inf.to(device) != 0 if torch.is_tensor(found_inf) else None
                for ps in lists:
                    self._update(ps, group, n, skip)
        return loss

    def _update(self, ps: list, group: dict, n: int, skip: torch.Tensor | None = None) -> None:
        """One step of the weights ``ps`` (one shape, dtype and step count), stacked along a new first dim.
        ``skip``: a 0-dim bool tensor; where true, weights and state keep their values (selected, not multiplied:
        the update may be NaN)."""
        keep = (lambda old, new: new) if skip is None else (lambda old, new: torch.where(skip, old, new))  # noqa: E731
        k, factored = len(ps), ps[0].ndim >= 2
        eps1, eps2 = group["eps"]
        weights = torch.stack(ps).float()
        grad = torch.stack([p.grad for p in ps]).float()
        lead = (k,) + (1,) * ps[0].ndim  # a per-weight value broadcast over its stack entry
        rms = lambda x: torch.linalg.vector_norm(x.reshape(k, -1), dim=1) / math.sqrt(x[0].numel())  # noqa: E731
        lr = rms(weights).clamp_(min=eps2).mul_(group["lr"]).reshape(lead)
        beta2t = 1.0 - math.pow(n, group["decay_rate"])
        sq = grad.square().add_(eps1)
        st = [self.state[p] for p in ps]
        if factored:
            row0 = torch.stack([s["exp_avg_sq_row"] for s in st])
            col0 = torch.stack([s["exp_avg_sq_col"] for s in st])
            row = row0.mul(beta2t).add_(sq.mean(dim=-1), alpha=1 - beta2t)
            col = col0.mul(beta2t).add_(sq.mean(dim=-2), alpha=1 - beta2t)
            torch._foreach_copy_([s["exp_avg_sq_row"] for s in st], list(keep(row0, row).unbind(0)))
            torch._foreach_copy_([s["exp_avg_sq_col"] for s in st], list(keep(col0, col).unbind(0)))
            r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = r_factor.mul(col.unsqueeze(-2).rsqrt()).mul_(grad)
        else:
            v0 = torch.stack([s["exp_avg_sq"] for s in st])
            v = v0.mul(beta2t).add_(sq, alpha=1 - beta2t)
            torch._foreach_copy_([s["exp_avg_sq"] for s in st], list(keep(v0, v).unbind(0)))
            update = v.rsqrt().mul_(grad)
        del sq, grad
        update.div_((rms(update) / group["clip_threshold"]).clamp_(min=1.0).reshape(lead)).mul_(lr)
        # ``weights`` stays the weights as they were (what a skipped step keeps)
        if group["weight_decay"]:
            new = weights.sub(weights * (group["weight_decay"] * lr)).sub_(update)
        else:
            new = weights.sub(update)
        del update
        if ps[0].dtype == torch.float32:
            torch._foreach_copy_(ps, list(keep(weights, new).unbind(0)))
            return
        # low-precision weights: add what rounding lost before, round, keep what rounding loses now
        comps = [s["compensation"] for s in st]
        comp0 = torch.stack(comps)
        new.add_(comp0.float())
        rounded = new.to(ps[0].dtype)
        torch._foreach_copy_(comps, list(keep(comp0, new.sub_(rounded.float())).unbind(0)))
        torch._foreach_copy_(ps, list(keep(weights, rounded).unbind(0)))
