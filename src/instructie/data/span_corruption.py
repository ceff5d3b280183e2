"""T5's span corruption (``random_spans_noise_mask``) and the token stream it is cut from: the examples of
``instructie pretrain``.

Texts are concatenated in a seeded order per epoch and cut into chunks whose corrupted input is exactly
``data.max_source_length`` tokens (T5's packing; ``data.pack: false`` keeps one text per example and splits long
ones). Each chunk is corrupted as in T5: inputs keep the clean tokens with one sentinel per masked span, targets
list each sentinel followed by its span, both end in ``</s>``. The noise is drawn from a generator seeded by
(seed, epoch, example): resuming rebuilds the same batches.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..config import PretrainDataConfig
from ..core.io import ConfigError
from .epochs import Epoch
from .sources import make_batches, round_up

SENTINEL = "<extra_id_{}>"
EVAL_EPOCH = 2**31 - 1  # the generator key of the held-out examples (never a training epoch)


def noise_counts(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a sequence of ``length`` tokens, as T5's ``random_spans_noise_mask``:
    round(length * density) noise tokens (at least 1, at most length - 1) in round(noise / mean_span) spans
    (at least 1; never more spans than there are noise or clean tokens)."""
    n_noise = min(max(int(round(length * density)), 1), length - 1)
    n_spans = max(int(round(n_noise / mean_span)), 1)
    return n_noise, min(n_spans, n_noise, length - n_noise)


def corrupted_lengths(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(input length, target length) after corrupting ``length`` tokens, both counting the final </s>."""
    n_noise, n_spans = noise_counts(length, density, mean_span)
    return length - n_noise + n_spans + 1, n_noise + n_spans + 1


def chunk_length(max_source_length: int, density: float, mean_span: float) -> int:
    """The longest chunk whose corrupted input fits ``max_source_length`` (T5's ``random_spans_helper``)."""
    n = max(2, max_source_length // 2)
    while corrupted_lengths(n + 1, density, mean_span)[0] <= max_source_length:
        n += 1
    while n > 2 and corrupted_lengths(n, density, mean_span)[0] > max_source_length:
        n -= 1
    return n


def _random_segmentation(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of ``n_segments`` non-empty parts of ``n_items``, uniformly at random (T5's algorithm)."""
    first = np.arange(n_items - 1) < (n_segments - 1)
    rng.shuffle(first)
    segment_id = np.cumsum(np.concatenate([[False], first]))
    return np.bincount(segment_id, minlength=n_segments)


def _span_lengths(length: int, density: float, mean_span: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clean span lengths, noise span lengths), alternating clean first (T5's draw, in T5's order)."""
    n_noise, n_spans = noise_counts(length, density, mean_span)
    noise_lengths = _random_segmentation(n_noise, n_spans, rng)
    clean_lengths = _random_segmentation(length - n_noise, n_spans, rng)
    return clean_lengths, noise_lengths


def random_spans_noise_mask(length: int, density: float, mean_span: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Boolean mask, True = noise: clean and noise spans alternate, starting with clean and ending with noise,
    span lengths random (T5 ``random_spans_noise_mask``). ``length`` >= 2."""
    clean, noise = _span_lengths(length, density, mean_span, rng)
    return np.repeat(np.tile([False, True], len(clean)), np.stack([clean, noise], axis=1).reshape(-1))


def corrupt_array(tokens: np.ndarray, sentinels: np.ndarray, eos_id: int, density: float, mean_span: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``span_corrupt`` on numpy arrays (int64 in, int64 out): the data loader's fast path."""
    length = len(tokens)
    if length < 2:
        raise ValueError("span corruption needs at least 2 tokens")
    clean, noise = _span_lengths(length, density, mean_span, rng)
    n_spans = len(clean)
    if n_spans > len(sentinels):
        raise ConfigError(f"{n_spans} masked spans but only {len(sentinels)} sentinel tokens: lower "
                          "data.max_source_length or raise data.mean_span_length / data.sentinels")
    sent = sentinels[:n_spans]
    mask = np.repeat(np.tile([False, True], n_spans), np.stack([clean, noise], axis=1).reshape(-1))
    steps = np.arange(n_spans)
    # inputs: clean span k, then sentinel k; targets: sentinel k, then noise span k; both end in </s>
    inputs = np.empty(length - len(mask.nonzero()[0]) + n_spans + 1, dtype=np.int64)
    at = np.cumsum(clean) + steps
    keep = np.ones(len(inputs), dtype=bool)
    keep[at] = False
    keep[-1] = False
    inputs[at] = sent
    inputs[keep] = tokens[~mask]
    inputs[-1] = eos_id
    targets = np.empty(int(noise.sum()) + n_spans + 1, dtype=np.int64)
    at = np.cumsum(noise) - noise + steps
    keep = np.ones(len(targets), dtype=bool)
    keep[at] = False
    keep[-1] = False
    targets[at] = sent
    targets[keep] = tokens[mask]
    targets[-1] = eos_id
    return inputs, targets


def span_corrupt(tokens: Sequence[int] | np.ndarray, sentinels: Sequence[int], eos_id: int, density: float,
                 mean_span: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(inputs, targets) of T5's span corruption. inputs: the clean tokens, each masked span replaced by the
    next sentinel, then </s>; targets: each sentinel followed by the tokens it replaced, then </s>."""
    inputs, targets = corrupt_array(np.asarray(tokens, dtype=np.int64), np.asarray(sentinels, dtype=np.int64),
                                    eos_id, density, mean_span, rng)
    return inputs.tolist(), targets.tolist()


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The noise generator of one example: the same (seed, epoch, example) gives the same corruption."""
    return np.random.default_rng([seed % 2**63, epoch, index])


# ---------------------------------------------------------------- sentinels
def sentinel_ids(tokenizer: Any, n: int) -> list[int] | None:
    """Ids of ``<extra_id_0>``..``<extra_id_{n-1}>``; None if the tokenizer lacks any of them."""
    names = [SENTINEL.format(i) for i in range(n)]
    vocab = tokenizer.get_vocab()
    if not all(s in vocab for s in names):
        return None
    return [vocab[s] for s in names]


def add_sentinels(tokenizer: Any, n: int) -> int:
    """Add the sentinels a tokenizer lacks as special tokens (not split, skipped when decoding with
    ``skip_special_tokens``; saved in tokenizer.json). Returns how many were added."""
    vocab = tokenizer.get_vocab()
    missing = [SENTINEL.format(i) for i in range(n) if SENTINEL.format(i) not in vocab]
    if not missing:
        return 0
    import inspect

    kwargs = {}
    if "replace_extra_special_tokens" in inspect.signature(tokenizer.add_special_tokens).parameters:
        kwargs["replace_extra_special_tokens"] = False  # 5.x: keep special tokens the tokenizer already has
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, **kwargs)


# ---------------------------------------------------------------- the token stream
@dataclass
class Corpus:
    """Every text's token ids (no special tokens) in one flat array; text k is ``ids[offsets[k]:offsets[k+1]]``."""
    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: Any, batch: int = 4096) -> "Corpus":
        parts, lengths = [], []
        for s in range(0, len(texts), batch):
            enc = tokenizer(list(texts[s : s + batch]), add_special_tokens=False, verbose=False)["input_ids"]
            for ids in enc:
                parts.append(np.asarray(ids, dtype=np.int32))
                lengths.append(len(ids))
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return cls(ids, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def subset(self, docs: Sequence[int]) -> "Corpus":
        parts = [self.ids[self.offsets[d] : self.offsets[d + 1]] for d in docs]
        lengths = [len(p) for p in parts]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return Corpus(ids, np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]))


def make_chunks(corpus: Corpus, chunk: int, pack: bool, rng: random.Random | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token stream, starts, ends) of one epoch's examples. pack: the texts in ``rng``'s order (corpus
    order without one), concatenated and cut every ``chunk`` tokens; else each text alone, a long one split
    into near-equal pieces of at most ``chunk`` tokens. Pieces shorter than 2 tokens are dropped."""
    if pack:
        order = list(range(len(corpus)))
        if rng is not None:
            rng.shuffle(order)
        stream = corpus.subset(order).ids
        starts = np.arange(0, len(stream), chunk, dtype=np.int64)
        ends = np.minimum(starts + chunk, len(stream))
    else:
        stream = corpus.ids
        lengths = np.diff(corpus.offsets)
        pieces = np.maximum(1, -(-lengths // chunk))
        starts_l, ends_l = [], []
        for off, n, k in zip(corpus.offsets[:-1].tolist(), lengths.tolist(), pieces.tolist()):
            bounds = [off + (n * j) // k for j in range(k + 1)]
            starts_l += bounds[:-1]
            ends_l += bounds[1:]
        starts, ends = np.asarray(starts_l, dtype=np.int64), np.asarray(ends_l, dtype=np.int64)
    keep = ends - starts >= 2
    return stream, starts[keep], ends[keep]


def corrupted_epoch(corpus: Corpus, d: PretrainDataConfig, chunk: int, seed: int, epoch: int, batch_size: int,
                    length_grouping: bool, sentinels: list[int], eos_id: int, pad_id: int,
                    pad_multiple: int) -> Epoch:
    """One epoch of span-corruption examples for ``run_loop`` (``EVAL_EPOCH``: the fixed held-out set)."""
    order_rng = None if epoch == EVAL_EPOCH else random.Random(f"{seed}:pretrain-order:{epoch}")
    stream, starts, ends = make_chunks(corpus, chunk, d.pack, order_rng)
    sizes = (ends - starts).tolist()
    cache: dict[int, tuple[int, int]] = {}
    for n in set(sizes):
        cache[n] = corrupted_lengths(n, d.noise_density, d.mean_span_length)
    lengths = [sum(cache[n]) for n in sizes]
    batches = make_batches(lengths, batch_size, random.Random(f"{seed}:batches:{epoch}"),
                           length_grouping and not d.pack)

    sent = np.asarray(sentinels, dtype=np.int64)

    def collate_batch(idx: list[int]) -> dict[str, torch.Tensor]:
        pairs = [corrupt_array(stream[starts[i] : ends[i]].astype(np.int64), sent, eos_id, d.noise_density,
                               d.mean_span_length, example_rng(seed, epoch, i)) for i in idx]
        return pad_batch(pairs, pad_id, pad_multiple)

    return Epoch(batches, collate_batch, [cache[n][1] for n in sizes])


def pad_batch(pairs: list[tuple[np.ndarray, np.ndarray]], pad_id: int, pad_multiple: int) -> dict[str, torch.Tensor]:
    """(inputs, targets) arrays -> input_ids / attention_mask / labels (-100 past each target), padded as
    ``data.collate`` pads (to a multiple of ``pad_multiple``) but filled with numpy, not row by row in torch."""
    ls = round_up(max(len(a) for a, _ in pairs), pad_multiple)
    lt = round_up(max(len(b) for _, b in pairs), pad_multiple)
    input_ids = np.full((len(pairs), ls), pad_id, dtype=np.int64)
    attn = np.zeros((len(pairs), ls), dtype=np.int64)
    labels = np.full((len(pairs), lt), -100, dtype=np.int64)
    for r, (a, b) in enumerate(pairs):
        input_ids[r, : len(a)] = a
        attn[r, : len(a)] = 1
        labels[r, : len(b)] = b
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attn),
            "labels": torch.from_numpy(labels)}
