"""One epoch of training data as the training loop consumes it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass
class Epoch:
    """Built afresh per epoch and deterministic in (seed, epoch): a resumed run rebuilds the same batches and
    skips those already done. An item is an example, or a packed row of several (``examples`` says how many)."""
    batches: list[list[int]]  # global batches (all ranks) of item indices, in training order
    collate: Callable[[list[int]], dict[str, torch.Tensor]]  # one rank's share -> model inputs on the CPU
    target_tokens: Sequence[int]  # per item: its target tokens (the token count in the state)
    note: str = ""  # logged when the epoch starts (e.g. how many examples were truncated)
    examples: Sequence[int] | None = None  # per item: the examples it holds (None: one each)

    def count_examples(self, items: Sequence[int]) -> int:
        return len(items) if self.examples is None else sum(self.examples[i] for i in items)
