"""A CPU copy task for the copy head: train a tiny random-init T5 on "<word> went home ." -> "<word>"
(300 random 4-letter words) and count exact answers on 40 words never seen in training. Plain T5 can
only memorise; a copy head can point at the word. Same data, seed and 120 steps for every variant.

    python eval/experiments/copy_task.py   # prints the table, writes eval/runs/copy_task.json

Variants: plain T5; copy head with its continue-the-copy bias frozen at 0 (the head as first built);
the copy head as it is. tests/model/test_copy_head.py runs ``copy_first_word`` too.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import torch

from instructie.decoding import generation
from instructie.model.loading import ModelSpec, load_model_and_tokenizer

VARIANTS = ("plain", "copy_no_continue", "copy")


def copy_first_word(variant: str, steps: int = 120) -> int:
    """Exact answers (of 40) on unseen words after ``steps`` training steps."""
    torch.manual_seed(0)
    rng = random.Random(0)
    letters = "bcdfghjklmnprstvz"
    words = ["".join(rng.choice(letters) for _ in range(4)).capitalize() for _ in range(340)]
    train_w, test_w = words[:300], words[300:]
    model, tok, _ = load_model_and_tokenizer(
        ModelSpec(init="random", size="tiny", vocab_size=600, copy_head=variant != "plain"),
        [f"{w} went home ." for w in words])
    if variant == "copy_no_continue":
        with torch.no_grad():
            model.copy_next.weight.zero_()
            model.copy_next.bias.zero_()
        model.copy_next.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = rng.sample(train_w, 32)
        enc = tok([f"{w} went home ." for w in batch], return_tensors="pt", padding=True)
        lab = tok(batch, return_tensors="pt", padding=True)["input_ids"]
        lab[lab == tok.pad_token_id] = -100
        model(**enc, labels=lab).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    outs = generation.generate(model, tok, [f"{w} went home ." for w in test_w], max_new_tokens=8)
    return sum(o.text.strip() == w for o, w in zip(outs, test_w))


def main() -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    res = {v: copy_first_word(v) for v in VARIANTS}
    print("| variant | unseen words copied (of 40) |\n|---|---|")
    for v, n in res.items():
        print(f"| {v} | {n} |")
    out = Path(__file__).parents[1] / "runs" / "copy_task.json"
    out.write_text(json.dumps({"command": "python eval/experiments/copy_task.py", "device": "CPU (2 cores)",
                               "torch": torch.__version__, "steps": 120, "unseen_copied_of_40": res},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
