"""How far a mean of batch means of the training loss moves with the batching, at the same weights.

Averaged batch by batch, length-grouped batches (unpacked) weigh a batch of few target tokens as much as one of
many, since each holds examples of one length; packed rows mix lengths, so each packed batch's mean is close to
the epoch's token mean (which training logs, for either kind of batch). With the per-example losses of one model
on one epoch's instances, this computes the three means at the same weights:

* grouped: the mean over the epoch's length-grouped batches (``--batch`` examples, default 128: the unpacked
  recipe's) of each batch's token mean;
* packed: the same over batches of ``--rows`` packed rows;
* tokens: the epoch's token mean.

With ``--sample N`` the losses are of N instances drawn from the epoch (seeded), and both kinds of batches are
made from them alone as training makes them from the whole epoch (a CPU can score a few thousand).

    python eval/experiments/loss_weighting.py --model runs/X --config configs/multitask-small.yaml \\
        [--set KEY.PATH=VALUE ...] [--epoch 0] [--rows 26] [--batch 128] [--sample N] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys

import torch
import torch.nn.functional as F

from instructie.config import load_config
from instructie.data.packing import pack_rows
from instructie.data.sources import Tokenized, build_epoch, collate, epoch_batches, load_sources, seq_lengths
from instructie.hints.memory import training_memory
from instructie.model.loading import load_trained
from instructie.prompts.instructions import load_templates


@torch.no_grad()
def example_losses(model, tok, pad_id: int, batch_size: int = 64) -> list[tuple[float, int]]:
    """(summed token loss, target tokens) of every instance of ``tok``, in its order."""
    order = sorted(range(len(tok.source_ids)), key=lambda i: len(tok.source_ids[i]))  # little padding
    out: list[tuple[float, int]] = [(0.0, 0)] * len(order)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        b = collate(idx, tok, pad_id, 1)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).logits
        # the copy head returns log-probabilities, on which log_softmax changes nothing
        nll = F.cross_entropy(logits.float().transpose(1, 2), b["labels"], ignore_index=-100, reduction="none")
        sums, counts = nll.sum(1).tolist(), (b["labels"] != -100).sum(1).tolist()
        for i, s, n in zip(idx, sums, counts):
            out[i] = (s, n)
    return out


def mean_of_batch_means(batches: list[list[int]], losses: list[tuple[float, int]]) -> float:
    means = []
    for batch in batches:
        s = sum(losses[i][0] for i in batch)
        n = sum(losses[i][1] for i in batch)
        if n:
            means.append(s / n)
    return statistics.fmean(means)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained model directory")
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--epoch", type=int, default=0)
    ap.add_argument("--rows", type=int, default=26, help="packed rows per batch")
    ap.add_argument("--batch", type=int, default=128, help="examples per length-grouped batch")
    ap.add_argument("--sample", type=int, help="score this many of the epoch's instances, drawn at random")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.set)
    d, t = cfg.data, cfg.train
    model, tokenizer = load_trained(a.model, device="cpu")
    sources = load_sources(d.train, False, "data.train")
    fold_memory, _ = training_memory(sources, cfg.hints)
    tok = build_epoch(sources, d, load_templates(d.templates), t.seed, a.epoch, fold_memory, tokenizer)
    if a.sample and a.sample < len(tok.source_ids):
        keep = sorted(random.Random(f"{t.seed}:sample").sample(range(len(tok.source_ids)), a.sample))
        tok = Tokenized([tok.source_ids[i] for i in keep], [tok.target_ids[i] for i in keep], 0, 0)
    losses = example_losses(model, tok, tokenizer.pad_token_id)
    grouped = epoch_batches(tok, a.batch, t.seed, a.epoch, True)
    rows = pack_rows(seq_lengths(tok.source_ids), seq_lengths(tok.target_ids),
                     t.pack_source_length or d.max_source_length, t.pack_target_length or d.max_target_length,
                     random.Random(f"{t.seed}:rows:{a.epoch}"))
    packed = [[i for row in rows[s : s + a.rows] for i in row] for s in range(0, len(rows), a.rows)]
    result = {"model": a.model, "instances": len(losses), "grouped_batch": a.batch, "packed_rows": a.rows,
              "grouped": round(mean_of_batch_means(grouped, losses), 4),
              "packed": round(mean_of_batch_means(packed, losses), 4),
              "tokens": round(sum(s for s, _ in losses) / sum(n for _, n in losses), 4)}
    print(json.dumps(result))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
