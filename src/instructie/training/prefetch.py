"""The next training epoch, built in a background process while this one trains.

Building an epoch of the multitask mix (instances re-sampled with memory hints and mention replacement, then
tokenized) is ~12 s of Python on the H100 machine's CPU, and the GPU waited for it at every epoch boundary
(11-15 s stalls at each boundary). A thread would contend for the GIL with the training loop, whose
steps are bound by kernel launches from Python, so a spawned process builds it (spawn, not fork: the parent
holds CUDA and tokenizer threads). The worker gets the records, memory and tokenizer once; each epoch's ids
come back as flat arrays (``data.Ragged``). Building is seeded by (seed, epoch), so the epoch is the one the
loop would have built itself. Whatever goes wrong in the worker (it cannot start, pickle, build, or it dies),
``get`` returns None, ``failure`` says why, and the caller builds the epoch inline.

Like any spawned process (a DataLoader's workers too), the worker imports the script that started training:
a script calling ``train`` must do so under ``if __name__ == "__main__":`` (the ``instructie`` command does).
"""
from __future__ import annotations

import multiprocessing
from typing import Any

from ..data.sources import Source, Tokenized, build_epoch


def _serve(conn, args: tuple) -> None:
    """The worker: build each epoch number received, send back ("ok", Tokenized) or ("error", message)."""
    sources, data, templates, seed, memory, tokenizer = args
    while True:
        try:
            epoch = conn.recv()
        except EOFError:
            return
        if epoch is None:
            return
        try:
            conn.send(("ok", build_epoch(sources, data, templates, seed, epoch, memory, tokenizer)))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


class EpochPrefetcher:
    """``request(e)`` starts building epoch ``e`` in the worker (one at a time: a request while another is
    pending is ignored); ``get(e)`` waits for it (None if nothing was requested, or the worker failed; asked
    for another epoch than the one building, it gives up). ``close()`` stops the worker at once."""

    def __init__(self, sources: list[Source], data, templates: dict, seed: int, memory, tokenizer):
        self._args = (sources, data, templates, seed, memory, tokenizer)
        self._proc: Any = None
        self._conn: Any = None
        self._pending: int | None = None
        self._closed = False
        self.failure: str | None = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self._args), daemon=True, name="instructie-epochs")
        try:
            proc.start()  # pickles the records, memory and tokenizer for the worker
        except BaseException:
            conn.close()
            raise
        finally:
            child.close()
        self._proc, self._conn = proc, conn

    def request(self, epoch: int) -> None:
        if self._closed or self.failure is not None or self._pending is not None:
            return
        try:
            if self._proc is None:
                self._start()
            self._conn.send(epoch)
            self._pending = epoch
        except Exception as e:
            self._fail(f"{type(e).__name__}: {e}")

    def get(self, epoch: int) -> Tokenized | None:
        if self.failure is not None or self._pending is None:
            return None
        if self._pending != epoch:  # epochs come in order: a different one means the caller lost track
            self._fail(f"asked for epoch {epoch} while epoch {self._pending} was being built")
            return None
        self._pending = None
        try:
            status, value = self._conn.recv()
        except Exception as e:  # EOFError: the worker died (killed, or it could not import the main script)
            self._fail(f"the worker stopped ({type(e).__name__}: {e})")
            return None
        if status != "ok":
            self._fail(value)
            return None
        return value

    def _fail(self, why: str) -> None:
        self.failure = why
        self.close()

    def close(self) -> None:
        """Stop the worker now, mid-build too (a finished run must not wait for an epoch nobody needs)."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._pending = None
