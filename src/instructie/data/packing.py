"""Packed rows: several training examples per fixed-length row, so that every batch has one shape and next to no
padding (T5's own codebase trains so: seqio's encoder-decoder feature converter with ``pack=True``).

A row holds up to ``source_length`` source tokens and ``target_length`` target tokens. Each example in it is a
segment, numbered 1, 2, ... along the row in both its source and its target; padding is segment 0. The model
keeps segments apart (model/packing.py): attention never crosses them, the decoder's inputs are shifted right
within each segment, and the copy head copies from its own segment only.

Rows are filled window by window: examples in a seeded random order, each window sorted longest source first
and placed into the first row where both its source and its target still fit (first-fit decreasing). Rows are
then shuffled, so batches stay random while the rows are nearly full.
"""
from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

WINDOW = 4096  # examples placed together: larger fills rows better, smaller keeps the order more random


def pack_rows(source_lengths: Sequence[int], target_lengths: Sequence[int], source_length: int,
              target_length: int, rng: random.Random, window: int = WINDOW) -> list[list[int]]:
    """Example indices per row, rows in random order. Every example is placed once; an example longer than a
    row in its source or target is a ValueError (examples are cut to the data's max lengths before packing)."""
    src = np.asarray(source_lengths, dtype=np.int64)
    tgt = np.asarray(target_lengths, dtype=np.int64)
    too_long = np.nonzero((src > source_length) | (tgt > target_length))[0]
    if len(too_long):
        i = int(too_long[0])
        raise ValueError(f"example {i} ({src[i]} source, {tgt[i]} target tokens) does not fit a packed row of "
                         f"{source_length} source and {target_length} target tokens")
    order = list(range(len(src)))
    rng.shuffle(order)
    rows: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -src[i])
        free_src = np.zeros(len(chunk), dtype=np.int64)  # per open row: source and target slots left
        free_tgt = np.zeros(len(chunk), dtype=np.int64)
        members: list[list[int]] = []
        for i in chunk:
            n = len(members)
            fits = np.flatnonzero((free_src[:n] >= src[i]) & (free_tgt[:n] >= tgt[i]))
            r = int(fits[0]) if len(fits) else n
            if r == n:
                free_src[r], free_tgt[r] = source_length, target_length
                members.append([])
            free_src[r] -= src[i]
            free_tgt[r] -= tgt[i]
            members[r].append(i)
        rows.extend(members)
    rng.shuffle(rows)
    return rows


def collate_packed(rows: Sequence[Sequence[int]], source_ids: Sequence[Sequence[int]],
                   target_ids: Sequence[Sequence[int]], source_length: int, target_length: int, pad_id: int,
                   decoder_start_id: int) -> dict[str, torch.Tensor]:
    """Packed rows -> model inputs, every tensor (rows, source_length) or (rows, target_length):

    input_ids, source_segments; labels (-100 on padding), target_segments, and decoder_input_ids: each segment's
    target shifted right by one, starting with ``decoder_start_id`` (T5's pad), as the model would shift it alone."""
    n = len(rows)
    input_ids = np.full((n, source_length), pad_id, dtype=np.int64)
    source_segments = np.zeros((n, source_length), dtype=np.int64)
    labels = np.full((n, target_length), -100, dtype=np.int64)
    decoder_input_ids = np.full((n, target_length), pad_id, dtype=np.int64)
    target_segments = np.zeros((n, target_length), dtype=np.int64)
    for r, row in enumerate(rows):
        s = t = 0
        for seg, i in enumerate(row, start=1):
            a, b = source_ids[i], target_ids[i]
            input_ids[r, s : s + len(a)] = a
            source_segments[r, s : s + len(a)] = seg
            labels[r, t : t + len(b)] = b
            target_segments[r, t : t + len(b)] = seg
            if len(b):
                decoder_input_ids[r, t] = decoder_start_id
                decoder_input_ids[r, t + 1 : t + len(b)] = b[:-1]
            s += len(a)
            t += len(b)
    return {k: torch.from_numpy(v) for k, v in (
        ("input_ids", input_ids), ("source_segments", source_segments), ("labels", labels),
        ("decoder_input_ids", decoder_input_ids), ("target_segments", target_segments))}


def fill(rows: Sequence[Sequence[int]], source_lengths: Sequence[int], target_lengths: Sequence[int],
         source_length: int, target_length: int) -> tuple[float, float]:
    """The share of the rows' source and target slots that hold tokens (1.0: no padding at all)."""
    if not rows:
        return 0.0, 0.0
    s = sum(source_lengths[i] for row in rows for i in row)
    t = sum(target_lengths[i] for row in rows for i in row)
    return s / (len(rows) * source_length), t / (len(rows) * target_length)
