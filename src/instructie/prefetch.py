"""The next training epoch, built in a background process while this one trains.

Building an epoch of the multitask mix (instances re-sampled with memory hints and mention replacement, then
tokenized) is ~14 s of Python on a CPU core, and the GPU waited for it at every epoch boundary: 12-20 s per
~165-s epoch on the H100 (session-8 logs). A thread would contend for the GIL with the training loop, whose
steps are bound by kernel launches from Python, so a spawned process builds it (spawn, not fork: the parent
holds CUDA and tokenizer threads). The worker gets the records, memory and tokenizer once; each epoch's ids
come back as flat arrays (``data.Ragged``). Building is seeded by (seed, epoch), so the epoch is the one the
loop would have built itself; if the worker fails, ``get`` returns None (``failure`` says why) and the caller
builds inline.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from .data import Source, Tokenized, build_epoch

_WORKER: dict[str, Any] = {}


def _init(args: tuple) -> None:
    _WORKER["args"] = args


def _build(epoch: int) -> Tokenized:
    sources, data, templates, seed, memory, tokenizer = _WORKER["args"]
    return build_epoch(sources, data, templates, seed, epoch, memory, tokenizer)


class EpochPrefetcher:
    """``request(e)`` starts building epoch ``e`` in the worker; ``get(e)`` waits for it (None if never
    requested or the worker failed). ``close()`` stops the worker."""

    def __init__(self, sources: list[Source], data, templates: dict, seed: int, memory, tokenizer):
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init,
                                         initargs=((sources, data, templates, seed, memory, tokenizer),))
        self._pending: dict[int, Future] = {}
        self.failure: str | None = None

    def request(self, epoch: int) -> None:
        if self.failure is None and epoch not in self._pending:
            self._pending[epoch] = self._pool.submit(_build, epoch)

    def get(self, epoch: int) -> Tokenized | None:
        fut = self._pending.pop(epoch, None)
        if fut is None or self.failure is not None:
            return None
        try:
            return fut.result()
        except Exception as e:  # a broken worker must not end the run: the caller builds the epoch itself
            self.failure = f"{type(e).__name__}: {e}"
            self.close()
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
