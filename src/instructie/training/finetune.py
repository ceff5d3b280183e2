"""The fine-tuning recipe (``instructie train``), top to bottom: set up the data, the model, the epochs of
batches; train (the shared loop); evaluate; save the model directory.

A short accelerate loop rather than Seq2SeqTrainer, because the recipe needs three
things the Trainer makes awkward: resume at the exact batch of an epoch whose
instances are re-sampled per epoch, a wall-clock budget that ends a run with a
checkpoint, and bucketed padding that keeps the number of tensor shapes small.
accelerate still does what it does well: device placement, DDP/FSDP/DeepSpeed, bf16
autocast, gradient accumulation and save/load of model, optimizer, scheduler and RNG state.

The loop, checkpoints and budget (loop.py, checkpoint.py) are shared with ``instructie pretrain``.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from pathlib import Path

from .._version import __version__
from ..config import RunConfig
from ..core.io import ConfigError, write_json, write_jsonl
from ..data.packing import collate_packed, fill, pack_rows
from ..data.sources import Source, build_epoch, collate, epoch_batches, load_sources, seq_lengths, training_texts
from ..decoding.static_decoder import release
from ..hints.memory import training_memory
from ..hints.plugin import Hints, HintSettings, hint_budget
from ..model.card import ModelCard
from ..model.loading import ModelSpec, load_model_and_tokenizer, save_model
from ..prompts.instructions import load_templates
from .checkpoint import (check_output_dir, check_same_model, find_resume, resume_epoch, write_run_files)
from .logs import log, plot_history
from .loop import Epoch, make_accelerator, run_loop, trained_model
from .prefetch import EpochPrefetcher



def truncation_note(epoch: int, n_sources: int, max_source: int, n_targets: int, max_target: int) -> str:
    """The epoch's log line on what was cut to fit, or "" when nothing was."""
    cut = [f"{n} {what} to {limit} tokens" for n, what, limit in
           ((n_sources, "sources", max_source), (n_targets, "targets", max_target)) if n]
    return f"epoch {epoch}: truncated " + " and ".join(cut) if cut else ""

def train(cfg: RunConfig, resume: bool = False, skip_invalid: bool = False) -> dict:
    """Fine-tune a model as ``cfg`` says. Returns {"status": "done" | "incomplete", "step", ...}."""
    t = cfg.train
    out = Path(t.output_dir)
    check_output_dir(out, resume)
    accelerator, precision = make_accelerator(t)
    main = accelerator.is_main_process
    resume_from = find_resume(out, resume, main)
    if resume_from is not None:
        check_same_model(out, cfg, resume_from)

    # 1. data: records are read once; instances are re-sampled per epoch (seeded)
    templates = load_templates(cfg.data.templates)
    train_sources = load_sources(cfg.data.train, skip_invalid, "data.train")
    eval_sources = load_sources(cfg.data.eval, skip_invalid, "data.eval")
    test_sources = load_sources(cfg.data.test, skip_invalid, "data.test")
    if not sum(len(s.records) for s in train_sources):
        raise ConfigError("data.train: the training datasets hold no records")
    if main:
        for s in train_sources:
            log(f"train {s.config.adapter}:{s.config.path} [{s.config.split}] -> {len(s.records)} records")

    # 2. model and tokenizer (a tokenizer is trained on the training texts when none is given)
    spec = ModelSpec(**dataclasses.asdict(cfg.model))
    if resume_from is not None:
        spec.tokenizer = str(out / "tokenizer")  # the tokenizer the run started with
    model, tokenizer, model_report = load_model_and_tokenizer(spec, list(training_texts(train_sources, templates)))
    if main:
        write_run_files(out, resume_from, tokenizer, cfg, model_report)
        log(f"model: {model_report.get('summary', '')}")

    # 3. epochs of batches, and the run's length in optimizer steps
    fold_memory, memory = training_memory(train_sources, cfg.hints)
    if memory is not None and main:
        memory.save(out / "memory.json")
        log(f"memory hints: {len(memory)} training entries; training hints from {cfg.hints.folds} folds")
    # dev and test are asked as extraction asks: the hints plug-in with the whole training memory
    eval_hints = Hints(memory, HintSettings(cfg.hints.bias, cfg.hints.unhinted_floor),
                       hint_budget(cfg.data.max_source_length)) if memory is not None else None
    epochs = InstructionEpochs(cfg, train_sources, templates, fold_memory, tokenizer, accelerator.num_processes,
                               resume_epoch(resume_from), main)
    if main:
        log(f"{epochs.n_instances} training instances/epoch{epochs.rows_note}, {epochs.steps_per_epoch} steps/epoch, "
            f"{epochs.total_steps} steps, precision {precision}, {accelerator.num_processes} process(es)")

    def evaluate(model, sources: list[Source], name: str) -> dict:
        from ..evaluation.evaluate import evaluate_sources  # looked up per call: tests replace it

        unwrapped = trained_model(accelerator, model)
        unwrapped.eval()
        rep = evaluate_sources(unwrapped, tokenizer, sources, cfg, templates, limit=(
            cfg.data.max_eval_records if name == "dev" else None), hints=eval_hints, keep_predictions=name == "test")
        release(unwrapped)  # the decoder's buffers and graphs (GBs at large sizes) must not stay through training
        unwrapped.train()
        return rep

    def dev_eval(model, state: dict) -> None:
        record_eval(out, state, evaluate(model, eval_sources, "dev"), main)

    # 4. train: resumable, budgeted, checkpointed
    try:
        model, state, stopped_early = run_loop(accelerator, model, t, out, epochs.total_steps, epochs.make,
                                               resume_from, on_eval=dev_eval if eval_sources else None)
    finally:
        epochs.close()
    if stopped_early:
        return {"status": "incomplete", "step": state["step"], "total_steps": epochs.total_steps}

    # 5. final evaluation
    final = {}
    if eval_sources:
        final["dev"] = evaluate(model, eval_sources, "dev")
        record_eval(out, state, final["dev"], main)
    if test_sources:
        final["test"] = evaluate(model, test_sources, "test")
        rows = final["test"].pop("predictions")
        if main:  # what the model answered per test record, for error analysis (`instructie eval` rescores it)
            write_jsonl(out / "test_predictions.jsonl", rows)
            log("test scores:\n" + final["test"]["table"])

    # 6. the model directory
    if main:
        save_model(trained_model(accelerator, model), tokenizer, out)
        model_card(cfg, templates, train_sources, state).save(out)
        write_json(out / "metrics.json", {"step": state["step"], "train_time_s": state["train_time_s"],
                                          "examples": state["examples"], "target_tokens": state["target_tokens"],
                                          **final})
        plot_history(out, state)
        log(f"saved model to {out} (step {state['step']}, {state['train_time_s']:.0f} s of training)")
    accelerator.wait_for_everyone()
    return {"status": "done", "step": state["step"], "metrics": final}


class InstructionEpochs:
    """The training epochs of instruction instances: ``make(epoch)`` gives the loop one epoch of batches.

    Each epoch re-samples the instances (options, templates, memory hints, mention replacement), seeded by
    (seed, epoch), and tokenizes them; batches are length-grouped examples, or, with ``train.packing``, packed
    rows (data/packing.py). A probe epoch, built first, sizes the run; an epoch slow to build is built in a
    background process while the one before trains (prefetch.py)."""

    def __init__(self, cfg: RunConfig, sources: list[Source], templates: dict, memory, tokenizer, n_proc: int,
                 resume_epoch: int, main: bool):
        t, self.data = cfg.train, cfg.data
        self.t, self.sources, self.templates, self.memory, self.tokenizer = t, sources, templates, memory, tokenizer
        self.main, self.n_proc = main, n_proc
        # The probe epoch sizes the run. A run resumed inside a later epoch with its steps fixed (train.max_steps)
        # builds that epoch here instead of epoch 0, which it would only throw away: on the shared mix an epoch
        # takes ~20 s of each resumed 10-minute call. (With steps from train.epochs, epoch 0 sizes the run.)
        probe_epoch = resume_epoch if t.max_steps else 0
        build_s = time.time()
        probe = self._build(probe_epoch)
        build_s = time.time() - build_s
        self.n_instances = len(probe.source_ids)
        self.rows_note = ""
        items = self.n_instances
        rows = None
        if t.packing:  # the loop's items are rows
            self.row_shape = (t.pack_source_length or self.data.max_source_length,
                              t.pack_target_length or self.data.max_target_length)
            rows = self._rows(probe, probe_epoch)
            items = len(rows)
            src_fill, tgt_fill = fill(rows, seq_lengths(probe.source_ids), seq_lengths(probe.target_ids),
                                      *self.row_shape)
            self.rows_note = (f" in {items} packed rows of {self.row_shape[0]}/{self.row_shape[1]} source/target "
                              f"tokens ({src_fill:.0%}/{tgt_fill:.0%} filled, {self.n_instances / items:.2f} "
                              f"examples per row)")
        self.batches_per_epoch = math.ceil(items / (t.batch_size * n_proc))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / t.grad_accum)
        self.total_steps = t.max_steps or max(1, int(self.steps_per_epoch * t.epochs))
        if main:
            warn_cut_prompts(probe, self.data)
        self.prefetcher = None
        if (t.prefetch_min_build_s is not None and build_s >= t.prefetch_min_build_s
                and self.total_steps > self.steps_per_epoch):
            self.prefetcher = EpochPrefetcher(sources, self.data, templates, t.seed, memory, tokenizer)
            if main:
                log(f"an epoch takes {build_s:.1f} s to build: the next is built in a background process while one "
                    f"trains")
            if resume_epoch != probe_epoch:  # the epoch to resume in: built there meanwhile
                self.prefetcher.request(resume_epoch)
        # epochs are deterministic in (seed, epoch): the probe (and its packed rows) is used once and then let go
        self._first = {probe_epoch: (probe, rows)}

    def _build(self, epoch: int):
        return build_epoch(self.sources, self.data, self.templates, self.t.seed, epoch, self.memory, self.tokenizer)

    def make(self, epoch: int) -> Epoch:
        tok, rows = self._first.pop(epoch, (None, None))
        self._first.clear()
        if tok is None and self.prefetcher is not None:
            tok = self.prefetcher.get(epoch)
            if self.prefetcher.failure is not None:
                if self.main:
                    log(f"the background epoch builder failed ({self.prefetcher.failure}): epochs are built here")
                self.prefetcher = None
        if tok is None:
            tok = self._build(epoch)
        # the next epoch, if the run gets to it (accumulation carries across epoch boundaries)
        if self.prefetcher is not None and (epoch + 1) * self.batches_per_epoch // self.t.grad_accum < self.total_steps:
            self.prefetcher.request(epoch + 1)
        t = self.t
        note = truncation_note(epoch, tok.n_truncated_source, self.data.max_source_length, tok.n_truncated_target,
                               self.data.max_target_length)
        pad_id = self.tokenizer.pad_token_id
        if t.packing:
            return self._packed_epoch(tok, epoch, note, rows)
        batches = epoch_batches(tok, t.batch_size * self.n_proc, t.seed, epoch, t.length_grouping)
        return Epoch(batches, lambda idx: collate(idx, tok, pad_id, t.pad_to_multiple), seq_lengths(tok.target_ids),
                     note)

    def _rows(self, tok, epoch: int) -> list[list[int]]:
        return pack_rows(seq_lengths(tok.source_ids), seq_lengths(tok.target_ids), *self.row_shape,
                         random.Random(f"{self.t.seed}:rows:{epoch}"))

    def _packed_epoch(self, tok, epoch: int, note: str, rows: list[list[int]] | None = None) -> Epoch:
        """Batches of ``batch_size`` packed rows per process (``rows``: the epoch's, when already packed); the last
        one is filled up with empty rows, so that every batch has the one shape the step was compiled for."""
        rows = self._rows(tok, epoch) if rows is None else rows
        per_batch = self.t.batch_size * self.n_proc
        real = len(rows)
        rows.append([])  # the empty row: all padding, no loss
        batches = [[min(i, real) for i in range(s, s + per_batch)] for s in range(0, real, per_batch)]
        tgt = seq_lengths(tok.target_ids)
        start_id = self.tokenizer.pad_token_id  # T5 starts decoding from its pad token
        return Epoch(batches, lambda idx: collate_packed([rows[i] for i in idx], tok.source_ids, tok.target_ids,
                                                         *self.row_shape, self.tokenizer.pad_token_id, start_id),
                     [sum(tgt[i] for i in row) for row in rows], note, examples=[len(row) for row in rows])

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()


def warn_cut_prompts(tok, data) -> None:
    if heavy := tok.heavy_cuts():
        cuts = ", ".join(f"{k} {c}/{n} ({c / n:.0%})" for k, (c, n) in heavy.items())
        log(f"WARNING: data.max_source_length {data.max_source_length} cuts the training prompts of {cuts}: "
            f"a cut prompt loses its end (memory hint, 'Answer:') and its answer may name text the model "
            f"never saw. Raise data.max_source_length (the longest prompt has {tok.longest_source} "
            f"tokens) or lower data.max_options.")


def record_eval(out: Path, state: dict, rep: dict, main: bool) -> None:
    summary = rep.get("summary", {})
    state["evals"].append({"step": state["step"], **summary})
    if main:
        write_json(out / "metrics" / f"step-{state['step']}.json", rep)
        log(f"eval at step {state['step']}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))


def model_card(cfg: RunConfig, templates: dict, sources: list[Source], state: dict) -> ModelCard:
    """What ``Extractor.from_pretrained`` needs besides weights and tokenizer."""
    labels: dict[str, dict[str, list[str]]] = {}
    roles: dict[str, dict[str, list[str]]] = {}
    languages: dict[str, str] = {}
    for s in sources:
        for r in s.records:
            d = labels.setdefault(r.dataset, {})
            if r.task != "NEG":
                known = d.setdefault(r.task, [])
                for o in r.options:
                    if o not in known:
                        known.append(o)
            else:
                d.setdefault("NEG", [])
            if r.roles:
                roles.setdefault(r.dataset, {}).update(r.roles)
            languages[r.dataset] = r.language
    return ModelCard(
        instructie_version=__version__,
        tasks=sorted({t for d in labels.values() for t in d} | set(cfg.data.tasks or [])),
        labels=labels,
        roles=roles,
        languages=languages,
        templates=templates,
        max_options=cfg.data.max_options,
        option_order=cfg.eval.option_order,  # as its tests asked; extract asks so too
        max_source_length=cfg.data.max_source_length,
        max_target_length=cfg.data.max_target_length,
        memory_hints=cfg.hints.memory,  # memory.json holds the memory
        extra={"steps": state["step"], "train_config": cfg.to_dict()},
    )
