"""Activation memory one training batch keeps for its backward pass, by source length (CPU, no GPU).

Sums the storage of every tensor autograd saves during the forward pass of a random-init model
of the configured size (bf16 autocast, as training on the GPU), for a few rows at each source
length, and scales it to ``train.batch_size`` rows. Parameters, gradients and optimizer state
(about 1 GiB for T5-small) come on top. This is what ``train.max_batch_tokens`` guards against:
the share that grows with the square of the source length (attention) makes long prompts cost
more per token.

    python eval/activation_memory.py --config configs/multitask-small.yaml --set train.batch_size=128 \
        --json eval/runs/activation_memory.json
    python eval/activation_memory.py --config configs/multitask-small.yaml --set train.batch_size=128 \
        --set model.size=base --lengths 512 1024 --json eval/runs/activation_memory_base.json

(128: the unpacked recipe's batch of examples; the config's ``train.batch_size`` counts packed rows.)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


from instructie.config import load_config
from instructie.model.loading import build_random_t5


def saved_bytes(model, rows: int, src_len: int, tgt_len: int, vocab: int) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    ids = torch.randint(3, vocab, (rows, src_len))
    labels = torch.randint(3, vocab, (rows, tgt_len))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
    return sum(seen.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="config override")
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 768, 1024])
    ap.add_argument("--rows", type=int, default=4, help="rows measured (the result is scaled to the batch)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.set)
    torch.manual_seed(0)
    vocab = cfg.model.vocab_size
    model = build_random_t5(cfg.model.size, vocab, None, copy_head=cfg.model.copy_head)
    model.train()
    rows, batch = a.rows, cfg.train.batch_size
    sets = "".join(f" --set {x}" for x in a.set)
    lengths = " ".join(map(str, a.lengths))
    out = {"command": f"python eval/activation_memory.py --config {a.config}{sets} --lengths {lengths}",
           "size": cfg.model.size,
           "copy_head": cfg.model.copy_head, "target_length": cfg.data.max_target_length, "rows_measured": rows,
           "batch_size": batch, "gib": {}}
    for n in a.lengths:
        gib = saved_bytes(model, rows, n, cfg.data.max_target_length, vocab) / 2**30
        out["gib"][str(n)] = {f"{rows}_rows": round(gib, 3), f"{batch}_rows": round(gib * batch / rows, 1)}
        print(f"source {n:>5}: {gib:.3f} GiB for {rows} rows -> {gib * batch / rows:.1f} GiB for {batch}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
