"""What bf16 weights lose, and what the Kahan-compensated optimizers keep (CPU, a minute).

A tiny T5 is trained from the same start on the same batches (real instances: ``eval/bench_train.py prepare``'s
.npz) three ways: fp32 weights (the reference), bf16 weights with the optimizer as torch or transformers compute
it, and bf16 weights with the Kahan-compensated form (``--optimizer adamw``: InstructUIE's AdamW lr 5e-5 constant,
``training.optim.KahanAdamW``; ``--optimizer adafactor``: T5's fine-tuning Adafactor, lr 1e-3 constant,
``training.optim.Adafactor``, against transformers'). Reported per variant: the training loss over the last steps
(each trains with its own weights, so bf16 compute differs too), and, fed the reference run's gradients step by
step, how far the weights' total change lies from the reference's (||dW - dW_ref|| / ||dW_ref||), and, for the
Kahan form, that of the weights plus the compensation it holds.

    python eval/bf16_updates.py --tokens .devdata/bench_flan.npz --steps 300 [--optimizer adafactor]
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
    from transformers.optimization import Adafactor as TransformersAdafactor

    from instructie.training.optim import Adafactor, KahanAdamW

    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--optimizer", choices=["adamw", "adafactor"], default="adamw")
    ap.add_argument("--lr", type=float, help="default: 5e-5 (adamw), 1e-3 (adafactor)")
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    a.lr = a.lr or (5e-5 if a.optimizer == "adamw" else 1e-3)
    if a.optimizer == "adamw":
        plain = lambda ps: torch.optim.AdamW(ps, lr=a.lr, weight_decay=0.0)  # noqa: E731
        variants = {"fp32 AdamW": (torch.float32, plain), "bf16 AdamW": (torch.bfloat16, plain),
                    "bf16 KahanAdamW": (torch.bfloat16, lambda ps: KahanAdamW(ps, lr=a.lr))}
    else:
        variants = {"fp32 Adafactor": (torch.float32, lambda ps: Adafactor(ps, lr=a.lr)),
                    "bf16 Adafactor, transformers'": (torch.bfloat16, lambda ps: TransformersAdafactor(
                        ps, lr=a.lr, scale_parameter=True, relative_step=False, warmup_init=False)),
                    "bf16 Adafactor, Kahan (instructie)": (torch.bfloat16, lambda ps: Adafactor(ps, lr=a.lr))}
    kahan = list(variants)[2]
    reference = list(variants)[0]
    torch.manual_seed(0)
    src, tgt, meta = load_tokens(a.tokens)
    cut = [(s[:128], t[:32]) for s, t in zip(src, tgt)]
    data = Tokenized([c[0] for c in cut], [c[1] for c in cut], 0, 0)
    order = random.Random(0).sample(range(len(cut)), a.steps * a.batch)
    batches = [collate(order[i : i + a.batch], data, 0, 1) for i in range(0, len(order), a.batch)]
    start = build_random_t5("tiny", meta["vocab"])
    rows = []
    for name, (dtype, make) in variants.items():
        model = build_random_t5("tiny", meta["vocab"])
        model.load_state_dict(start.state_dict())
        model.eval()  # no dropout: the three differ only in how weights are stored and updated
        model = model.to(dtype)
        opt = make(list(model.parameters()))
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
    copies = {name: [torch.nn.Parameter(w.clone().to(dtype)) for w in w0] for name, (dtype, _) in variants.items()}
    starts = {name: [p.detach().float().clone() for p in ps] for name, ps in copies.items()}  # after any rounding
    ref_opt = variants[reference][1](list(ref_model.parameters()))
    opts = {name: variants[name][1](ps) for name, ps in copies.items()}
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

    print(f"{a.optimizer} lr {a.lr} constant, {a.steps} steps of {a.batch} examples, tiny T5 ({sum(p.numel() for p in w0)} "
          f"weights). Same gradients: the fp32 run's gradients fed to each optimizer; distance = ||dW - dW_fp32|| / "
          f"||dW_fp32||, dW the change of a copy's weights from its own start.\n")
    print(f"| weights, optimizer | training loss, last 50 of {a.steps} steps | same gradients: distance of the "
          f"weights | of weights + Kahan compensation |")
    print("|---|---|---|---|")
    for name, loss in rows:
        ps = copies[name]
        held = ""
        if name == kahan:
            kept = [p.detach().float() + opts[name].state[p]["compensation"].float() for p in ps]
            held = f"{distance(kept, starts[name]):.3f}"
        print(f"| {name} | {loss:.4f} | {distance([p.detach().float() for p in ps], starts[name]):.3f} | {held} |")

if __name__ == "__main__":
    main()
