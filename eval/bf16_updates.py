"""What bf16 weights lose, and what Kahan-compensated AdamW keeps (CPU, a minute).

A tiny T5 is trained from the same start on the same batches (real instances: ``eval/bench_train.py prepare``'s
.npz) with InstructUIE's optimizer settings (AdamW, lr 5e-5 constant) three ways: fp32 weights (the reference),
bf16 weights with plain AdamW, and bf16 weights with ``training.optim.KahanAdamW``. Reported per variant: the
training loss over the last steps (each trains with its own weights, so bf16 compute differs too), and, fed the
reference run's gradients step by step, how far the weights' total change lies from the reference's
(||dW - dW_ref|| / ||dW_ref||), and, for the Kahan optimizer, that of the weights plus the compensation it holds.

    python eval/bf16_updates.py --tokens .devdata/bench_flan.npz --steps 300
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import load_tokens  # noqa: E402


def main() -> None:
    from instructie.data.sources import Tokenized, collate
    from instructie.model.loading import build_random_t5
    from instructie.training.optim import KahanAdamW

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    torch.manual_seed(0)
    src, tgt, meta = load_tokens(a.tokens)
    cut = [(s[:128], t[:32]) for s, t in zip(src, tgt)]
    data = Tokenized([c[0] for c in cut], [c[1] for c in cut], 0, 0)
    order = random.Random(0).sample(range(len(cut)), a.steps * a.batch)
    batches = [collate(order[i : i + a.batch], data, 0, 1) for i in range(0, len(order), a.batch)]
    start = build_random_t5("tiny", meta["vocab"])
    rows = []
    for name in ("fp32 AdamW", "bf16 AdamW", "bf16 KahanAdamW"):
        model = build_random_t5("tiny", meta["vocab"])
        model.load_state_dict(start.state_dict())
        model.eval()  # no dropout: the three differ only in how weights are stored and updated
        if name.startswith("bf16"):
            model = model.to(torch.bfloat16)
        params = list(model.parameters())
        opt = (KahanAdamW(params, lr=a.lr) if "Kahan" in name else torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0))
        losses = []
        for b in batches:
            loss = model(**b).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        rows.append((name, sum(losses[-50:]) / 50))
    # the reference's gradients, applied to bf16 copies of the start: only the weights' storage differs
    w0 = [p.detach().float() for p in start.parameters()]
    ref_model = build_random_t5("tiny", meta["vocab"])
    ref_model.load_state_dict(start.state_dict())
    ref_model.eval()
    copies = {name: [torch.nn.Parameter(w.clone().to(dtype)) for w in w0] for name, dtype in (
        ("fp32 AdamW", torch.float32), ("bf16 AdamW", torch.bfloat16), ("bf16 KahanAdamW", torch.bfloat16))}
    starts = {name: [p.detach().float().clone() for p in ps] for name, ps in copies.items()}  # after any rounding
    ref_opt = torch.optim.AdamW(ref_model.parameters(), lr=a.lr, weight_decay=0.0)
    opts = {name: (KahanAdamW(ps, lr=a.lr) if "Kahan" in name else torch.optim.AdamW(ps, lr=a.lr, weight_decay=0.0))
            for name, ps in copies.items()}
    for b in batches:
        ref_model(**b).loss.backward()
        for name, ps in copies.items():
            for p, r in zip(ps, ref_model.parameters()):
                p.grad = r.grad.to(p.dtype)
            opts[name].step()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)
    ref = [p.detach().float() - s for p, s in zip(ref_model.parameters(), w0)]
    ref_norm = torch.sqrt(sum((r ** 2).sum() for r in ref))


    def distance(weights, start) -> float:  # of the weights' change from the reference's, relative to the latter
        return float(torch.sqrt(sum(((w - s - r) ** 2).sum() for w, s, r in zip(weights, start, ref))) / ref_norm)

    print(f"AdamW lr {a.lr} constant, {a.steps} steps of {a.batch} examples, tiny T5 ({sum(p.numel() for p in w0)} "
          f"weights). Same gradients: the fp32 run's gradients fed to each optimizer; distance = ||dW - dW_fp32|| / "
          f"||dW_fp32||, dW the change of a copy's weights from its own start.\n")
    print(f"| weights, optimizer | training loss, last 50 of {a.steps} steps | same gradients: distance of the "
          f"weights | of weights + Kahan compensation |")
    print("|---|---|---|---|")
    for name, loss in rows:
        ps = copies[name]
        held = ""
        if "Kahan" in name:
            kept = [p.detach().float() + opts[name].state[p]["compensation"].float() for p in ps]
            held = f"{distance(kept, starts[name]):.3f}"
        print(f"| {name} | {loss:.4f} | {distance([p.detach().float() for p in ps], starts[name]):.3f} | {held} |")

if __name__ == "__main__":
    main()
