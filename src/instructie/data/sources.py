"""Datasets from a config -> records -> instances -> token ids -> length-grouped batches."""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import torch

from instructie.data_adapters import get_adapter

from ..config import DataConfig, DatasetConfig
from ..prompts.instructions import Instance, expand_tasks, to_instance
from ..core.io import ConfigError, SkipCounter
from ..core.records import MAIN_TASKS, Record


def load_records(ds: DatasetConfig, skip_invalid: bool = False, stats: Counter | None = None) -> list[Record]:
    """All records of one configured dataset (capped by ``max_records``, first come first kept)."""
    read = get_adapter(ds.adapter)
    out = []
    for rec in read(ds.path, split=ds.split, on_error=SkipCounter(skip_invalid), stats=stats, **ds.options):
        if ds.name:
            rec = replace(rec, dataset=ds.name)
        out.append(rec)
        if ds.max_records and len(out) >= ds.max_records:
            break
    return out


def weighted_sample(records: list[Record], weight: float, rng: random.Random) -> list[Record]:
    """``weight`` copies of the records per epoch: whole copies plus a random part."""
    whole, frac = int(weight), weight - int(weight)
    out = records * whole
    if frac:
        out += rng.sample(records, round(len(records) * frac))
    return out


@dataclass
class Source:
    """A configured dataset with its records loaded once."""
    config: DatasetConfig
    records: list[Record]

    def tasks(self, default: Sequence[str] | None) -> list[str] | None:
        return self.config.tasks or (list(default) if default else None)


def load_sources(dsets: list[DatasetConfig], skip_invalid: bool = False, where: str | None = None) -> list[Source]:
    """The records of each dataset; ``where`` ("data.train"): the config key an adapter's complaint is about."""
    out = []
    for i, ds in enumerate(dsets):
        try:
            out.append(Source(ds, load_records(ds, skip_invalid)))
        except ConfigError as e:
            if where is None:
                raise
            raise ConfigError(f"{where}[{i}]: {e}") from None
    return out


def make_instances(sources: list[Source], data: DataConfig, templates: dict, seed: int,
                   epoch: int = 0, train: bool = True, memory=None) -> list[Instance]:
    """Instances for one epoch. Training samples options/templates per epoch (seeded);
    evaluation uses template 0, every option in schema order, main tasks only.
    ``memory``: hints for the prompts (``training_memory`` for training)."""
    rng = random.Random(f"{seed}:epoch:{epoch}")
    out: list[Instance] = []
    pool = None
    if train and data.mention_replacement > 0:
        from .augment import build_pool
        pool = build_pool(r for s in sources for r in s.records)
    for src in sources:
        recs = weighted_sample(src.records, src.config.weight, rng) if train else src.records
        inserted: dict[int, frozenset[str]] = {}  # names mention replacement put in (kept out of hints)
        if pool is not None:
            from .augment import replace_mentions
            new = [replace_mentions(r, pool, rng, data.mention_replacement, data.mention_novel) for r in recs]
            if memory is not None:
                for a, b in zip(recs, new):
                    if a is not b:
                        inserted[id(b)] = frozenset(x.text for x in b.spans()) - {x.text for x in a.spans()}
            recs = new
        tasks = src.tasks(data.tasks) if train else None
        for k, rec in enumerate(expand_tasks(recs, tasks)):
            if not train and rec.task not in MAIN_TASKS:
                continue
            if train:
                out.append(to_instance(rec, templates, template=data.template, seed=seed + epoch,
                                       max_options=data.max_options, shuffle_options=data.shuffle_options,
                                       suffix=f"#{k}", memory=memory,
                                       hint_exclude=inserted.get(id(rec), frozenset())))
            else:
                out.append(to_instance(rec, templates, template=0, seed=seed, max_options=None, memory=memory))
    return out


class Ragged(Sequence):
    """Token-id sequences of varying length in one flat array (``offsets[i]:offsets[i + 1]`` is sequence
    ``i``; items are numpy views). An epoch's ~26M ids take 4 bytes each instead of a Python int object each,
    and cross a process boundary (prefetch.py) as two buffers: unpickling 69k lists of ints took ~4 s."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]]) -> "Ragged":
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs)), out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        item = self.flat[self.offsets[i] : self.offsets[i + 1]]
        item.flags.writeable = False  # a view: writing to it would change the epoch's data
        return item


def seq_lengths(seqs: Sequence[Sequence[int]]) -> list[int]:
    return seqs.lengths().tolist() if isinstance(seqs, Ragged) else [len(s) for s in seqs]


@dataclass
class Tokenized:
    source_ids: Sequence[Sequence[int]]  # Ragged from ``tokenize``; lists work alike
    target_ids: Sequence[Sequence[int]]
    n_truncated_source: int
    n_truncated_target: int
    # "dataset/task" -> (sources cut, instances): a prompt cut to the limit loses its end (the memory hint and
    # "Answer:"), and its answer may name text the model never saw -- it learns to invent spans.
    source_cuts: dict[str, tuple[int, int]] = field(default_factory=dict)
    longest_source: int = 0  # tokens, before any cut

    def heavy_cuts(self, share: float = 0.05) -> dict[str, tuple[int, int]]:
        """The dataset/task pairs with more than ``share`` of their sources cut."""
        return {k: (c, n) for k, (c, n) in self.source_cuts.items() if c > share * n}


def cut_ids(seqs: list[list[int]], limit: int, eos: int | None) -> tuple[list[list[int]], list[bool]]:
    """Sequences over ``limit`` tokens keep their first ``limit - 1`` and ``</s>`` (so a cut target
    still teaches the model to stop); also: which were cut. Training and generation cut alike."""
    cut = [len(s) > limit for s in seqs]
    tail = [] if eos is None else [eos]
    return [s[: limit - len(tail)] + tail if c else s for s, c in zip(seqs, cut)], cut


def tokenize(instances: Sequence[Instance], tokenizer, max_source: int, max_target: int) -> Tokenized:
    # verbose=False: no "longer than the maximum length" warning -- long sequences are cut below
    src = tokenizer([i.source for i in instances], add_special_tokens=True, verbose=False)["input_ids"]
    tgt = tokenizer([i.target for i in instances], add_special_tokens=True, verbose=False)["input_ids"]
    longest = max((len(s) for s in src), default=0)
    src, src_cut = cut_ids(src, max_source, tokenizer.eos_token_id)
    tgt, tgt_cut = cut_ids(tgt, max_target, tokenizer.eos_token_id)
    per_key: dict[str, list[int]] = {}
    for inst, was_cut in zip(instances, src_cut):
        c = per_key.setdefault(f"{inst.dataset}/{inst.task}", [0, 0])
        c[0] += was_cut
        c[1] += 1
    return Tokenized(Ragged.from_lists(src), Ragged.from_lists(tgt), sum(src_cut), sum(tgt_cut),
                     {k: (c, n) for k, (c, n) in sorted(per_key.items()) if c}, longest)


def build_epoch(sources: list[Source], data: DataConfig, templates: dict, seed: int, epoch: int, memory,
                tokenizer) -> Tokenized:
    """One training epoch's token ids: instances re-sampled for ``epoch`` (seeded), then tokenized. The same
    in any process (prefetch.py builds the next one in another while this one trains)."""
    return tokenize(make_instances(sources, data, templates, seed, epoch, memory=memory), tokenizer,
                    data.max_source_length, data.max_target_length)


def make_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                 group_by_length: bool) -> list[list[int]]:
    """Index batches for one epoch. With grouping, examples are sorted by length inside
    random mega-chunks of 64 batches, so padding is small but order stays random."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if group_by_length:
        chunk = batch_size * 64
        idx = [i for s in range(0, len(idx), chunk)
               for i in sorted(idx[s : s + chunk], key=lambda j: lengths[j])]
    batches = [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def epoch_batches(tok: Tokenized, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """One training epoch's index batches (``make_batches`` on source + target lengths), seeded by
    (seed, epoch) so that a resumed run rebuilds the same batches."""
    lengths = [a + b for a, b in zip(seq_lengths(tok.source_ids), seq_lengths(tok.target_ids))]
    return make_batches(lengths, batch_size, random.Random(f"{seed}:batches:{epoch}"), group_by_length)


def round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple) if multiple > 1 else n


def collate(batch: list[int], tok: Tokenized, pad_id: int, pad_multiple: int,
            fixed_source: int | None = None, fixed_target: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch (dynamic, rounded up to ``pad_multiple``; or to fixed lengths for the
    plain baseline). Label padding is -100 so it is ignored by the loss."""
    srcs = [tok.source_ids[i] for i in batch]
    tgts = [tok.target_ids[i] for i in batch]
    ls = fixed_source or round_up(max(map(len, srcs)), pad_multiple)
    lt = fixed_target or round_up(max(map(len, tgts)), pad_multiple)
    input_ids = torch.full((len(batch), ls), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), ls), dtype=torch.long)
    labels = torch.full((len(batch), lt), -100, dtype=torch.long)
    for r, (s, t) in enumerate(zip(srcs, tgts)):
        input_ids[r, : len(s)] = torch.tensor(s)  # a copy: Ragged items are read-only views
        attn[r, : len(s)] = 1
        labels[r, : len(t)] = torch.tensor(t)
    return {"input_ids": input_ids, "attention_mask": attn, "labels": labels}


def training_texts(sources: Iterable[Source], templates: dict[str, list[str]] | None = None) -> Iterable[str]:
    """Texts a tokenizer is trained on, or checked for characters it cannot write: everything the model reads
    or writes. Every record's text, options and answer (the spans, labels and roles it must write, in the
    answer grammar with its escapes), the instruction ``templates``, and the grammar's own characters (an
    escape may be needed by a text that is not in this data). Memory hints are written in the same grammar
    from the same spans and labels."""
    from ..prompts.targets import NONE, render, render_items

    for src in sources:
        for rec in src.records:
            yield rec.text
            yield " ".join(rec.options)
            yield render(rec)
    for ts in (templates or {}).values():
        yield from ts
    yield render_items([("\\;|\n\t\r", NONE)]) + " role=value"
