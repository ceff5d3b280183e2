"""The training recipe, top to bottom: config -> data -> model -> loop -> eval -> save.

A short accelerate loop rather than Seq2SeqTrainer, because the recipe needs three
things the Trainer makes awkward: resume at the exact batch of an epoch whose
instances are re-sampled per epoch, a wall-clock budget that ends a run with a
checkpoint (device calls are capped at 10 minutes), and bucketed padding that keeps
the number of tensor shapes small. accelerate still does what it does well: device
placement, DDP/FSDP/DeepSpeed, bf16 autocast, gradient accumulation and
save/load of model, optimizer, scheduler and RNG state.

``run_loop`` (the loop, its checkpoints and budget) is shared with ``instructie pretrain``
(pretrain.py), which feeds it span-corruption batches instead of instruction instances.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .._version import __version__
from ..config import RunConfig, TrainConfig
from ..data.sources import (Source, build_epoch, collate, epoch_batches, load_sources, round_up, seq_lengths,
                            training_texts)
from ..hints.memory import training_memory
from ..hints.plugin import Hints, HintSettings, hint_budget
from ..prompts.instructions import load_templates
from ..core.io import ConfigError, TrainingError, atomic_write, write_json, write_jsonl
from ..model.loading import quiet_logs, share_written_files

STATE_FILE = "trainer_state.json"
MAX_SKIPPED_IN_A_ROW = 10  # non-finite updates in a row that end a run (fewer are skipped and counted)


def _last_checkpoint_hint(out: Path) -> str:
    ckpts = checkpoints(out)
    return (f"the last checkpoint is {ckpts[-1].name}: continue with --resume" if ckpts
            else "no checkpoint was written yet")


def log(msg: str) -> None:
    print(f"[instructie] {msg}", flush=True)


# ---------------------------------------------------------------- optimizer / schedule
def build_optimizer(model, cfg) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adafactor":
        # Adafactor's steps scale with each tensor's RMS: the remedy for random-init T5's
        # very differently sized weights (see shared notes, nanoT5).
        from transformers.optimization import Adafactor
        return Adafactor(groups, lr=cfg.lr, scale_parameter=True, relative_step=False, warmup_init=False)
    fused = torch.cuda.is_available()
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused)


def lr_lambda(cfg, total_steps: int):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


# ---------------------------------------------------------------- checkpoints
def checkpoints(out: Path) -> list[Path]:
    d = out / "checkpoints"
    if not d.exists():
        return []
    done = [p for p in d.iterdir() if p.name.startswith("step-") and p.name[5:].isdigit()
            and (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def truncation_note(epoch: int, n_sources: int, max_source: int, n_targets: int, max_target: int) -> str:
    """The epoch's log line on what was cut to fit, or "" when nothing was."""
    cut = [f"{n} {what} to {limit} tokens" for n, what, limit in
           ((n_sources, "sources", max_source), (n_targets, "targets", max_target)) if n]
    return f"epoch {epoch}: truncated " + " and ".join(cut) if cut else ""


def save_checkpoint(accelerator, out: Path, state: dict, keep: int) -> None:
    """Write to a temporary folder, then rename: a kill mid-write leaves the last one intact.
    Weights are safetensors; optimizer/scheduler/RNG states are accelerate's torch.save files, which its
    load_state reads with ``torch.load(weights_only=True)`` (no arbitrary unpickling)."""
    final = out / "checkpoints" / f"step-{state['step']}"
    tmp = out / "checkpoints" / f".tmp-step-{state['step']}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    # T5's encoder/decoder embeddings are `shared` itself: safetensors stores it once and loading re-ties them
    # (the resume tests continue exactly), so accelerate's "Removed shared tensor" warning is noise here.
    with quiet_logs("Removed shared tensor", loggers=("accelerate.utils.other",)):
        accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        share_written_files(tmp, 0)  # the weights' safetensors file is written private
    accelerator.wait_for_everyone()  # every rank's random_states_<rank>.pkl is in tmp before the rename
    if accelerator.is_main_process:
        write_json(tmp / STATE_FILE, state)  # written last: marks the checkpoint complete
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in final.parent.glob(".tmp-step-*"):  # left by a run killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------- the recipe
def train(cfg: RunConfig, resume: bool = False, skip_invalid: bool = False) -> dict:
    from ..evaluation.evaluate import evaluate_sources
    from ..model.loading import ModelSpec, load_model_and_tokenizer, save_model

    t = cfg.train
    out = Path(t.output_dir)
    check_output_dir(out, resume)
    accelerator, precision = make_accelerator(t)
    main = accelerator.is_main_process

    # 1. data: records are read once; instances are re-sampled per epoch (seeded).
    templates = load_templates(cfg.data.templates)
    train_sources = load_sources(cfg.data.train, skip_invalid, "data.train")
    eval_sources = load_sources(cfg.data.eval, skip_invalid, "data.eval")
    test_sources = load_sources(cfg.data.test, skip_invalid, "data.test")
    n_records = sum(len(s.records) for s in train_sources)
    if not n_records:
        raise ConfigError("data.train: the training datasets hold no records")
    if main:
        for s in train_sources:
            log(f"train {s.config.adapter}:{s.config.path} [{s.config.split}] -> {len(s.records)} records")

    # 2. model and tokenizer (a tokenizer is trained on the training texts when none is given).
    resume_from = find_resume(out, resume, main)
    if resume_from is not None:
        check_same_model(out, cfg, resume_from)
    spec = ModelSpec(**dataclasses.asdict(cfg.model))
    if resume_from is not None:
        spec.tokenizer = str(out / "tokenizer")  # the tokenizer the run started with
    texts = list(training_texts(train_sources, templates))
    model, tokenizer, model_report = load_model_and_tokenizer(spec, texts)
    if main:
        write_run_files(out, resume_from, tokenizer, cfg, model_report)
        log(f"model: {model_report.get('summary', '')}")

    # 3. total steps, and one epoch of batches: instances re-sampled, tokenized, length-grouped.
    fold_memory, memory = training_memory(train_sources, cfg.hints)
    if memory is not None and main:
        memory.save(out / "memory.json")
        log(f"memory hints: {len(memory)} training entries; training hints from {cfg.hints.folds} folds")
    # dev and test are asked as extraction asks: the hints plug-in with the whole training memory
    eval_hints = Hints(memory, HintSettings(cfg.hints.bias, cfg.hints.unhinted_floor),
                       hint_budget(cfg.data.max_source_length)) if memory is not None else None
    # The probe epoch sizes the run. A run resumed inside a later epoch with its steps fixed (train.max_steps)
    # builds that epoch here instead of epoch 0, which it would only throw away: on the shared mix an epoch takes
    # ~20 s of each resumed 10-minute call. (With steps from train.epochs, epoch 0 sizes the run, as it did.)
    resume_epoch = json.loads((resume_from / STATE_FILE).read_text())["epoch"] if resume_from is not None else 0
    probe_epoch = resume_epoch if t.max_steps else 0
    build_s = time.time()
    probe = build_epoch(train_sources, cfg.data, templates, t.seed, probe_epoch, fold_memory, tokenizer)
    build_s = time.time() - build_s
    n_inst = len(probe.source_ids)
    batches_per_epoch = math.ceil(n_inst / (t.batch_size * accelerator.num_processes))
    per_epoch = math.ceil(batches_per_epoch / t.grad_accum)
    total_steps = t.max_steps or max(1, int(per_epoch * t.epochs))
    if main:
        log(f"{n_inst} training instances/epoch, {per_epoch} steps/epoch, {total_steps} steps, "
            f"precision {precision}, {accelerator.num_processes} process(es)")
        if heavy := probe.heavy_cuts():
            cuts = ", ".join(f"{k} {c}/{n} ({c / n:.0%})" for k, (c, n) in heavy.items())
            log(f"WARNING: data.max_source_length {cfg.data.max_source_length} cuts the training prompts of {cuts}: "
                f"a cut prompt loses its end (memory hint, 'Answer:') and its answer may name text the model "
                f"never saw. Raise data.max_source_length (the longest prompt has {probe.longest_source} "
                f"tokens) or lower data.max_options.")
    prefetcher = None
    if t.prefetch_min_build_s is not None and build_s >= t.prefetch_min_build_s and total_steps > per_epoch:
        from .prefetch import EpochPrefetcher
        prefetcher = EpochPrefetcher(train_sources, cfg.data, templates, t.seed, fold_memory, tokenizer)
        if main:
            log(f"an epoch takes {build_s:.1f} s to build: the next is built in a background process while one trains")
        if resume_epoch != probe_epoch:  # the epoch to resume in: built there meanwhile
            prefetcher.request(resume_epoch)

    # Epochs are deterministic in (seed, epoch): the probe is used once and then let go.
    first_epoch = {probe_epoch: probe}
    del probe

    def make_epoch(epoch: int) -> Epoch:
        nonlocal prefetcher
        tok = first_epoch.pop(epoch, None)
        first_epoch.clear()
        if tok is None and prefetcher is not None:
            tok = prefetcher.get(epoch)
            if prefetcher.failure is not None:
                if main:
                    log(f"the background epoch builder failed ({prefetcher.failure}): epochs are built here")
                prefetcher = None
        if tok is None:
            tok = build_epoch(train_sources, cfg.data, templates, t.seed, epoch, fold_memory, tokenizer)
        # the next epoch, if the run gets to it (accumulation carries across epoch boundaries)
        if prefetcher is not None and (epoch + 1) * batches_per_epoch // t.grad_accum < total_steps:
            prefetcher.request(epoch + 1)
        batches = epoch_batches(tok, t.batch_size * accelerator.num_processes, t.seed, epoch, t.length_grouping)
        note = truncation_note(epoch, tok.n_truncated_source, cfg.data.max_source_length, tok.n_truncated_target,
                               cfg.data.max_target_length)
        return Epoch(batches, lambda idx: collate(idx, tok, tokenizer.pad_token_id, t.pad_to_multiple),
                     seq_lengths(tok.target_ids), note)

    def run_eval(model, sources: list[Source], name: str) -> dict:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        rep = evaluate_sources(unwrapped, tokenizer, sources, cfg, templates, limit=(
            cfg.data.max_eval_records if name == "dev" else None), hints=eval_hints, keep_predictions=name == "test")
        unwrapped.train()
        return rep

    def dev_eval(model, state: dict) -> None:
        record_eval(out, state, run_eval(model, eval_sources, "dev"), main)

    # 4. the loop (shared with pretraining): resumable, budgeted, checkpointed.
    try:
        model, state, stopped_early = run_loop(accelerator, model, t, out, total_steps, make_epoch, resume_from,
                                               on_eval=dev_eval if eval_sources else None)
    finally:
        if prefetcher is not None:
            prefetcher.close()
    if stopped_early:
        return {"status": "incomplete", "step": state["step"], "total_steps": total_steps}

    # 5. final evaluation and the model directory.
    final = {}
    if eval_sources:
        final["dev"] = run_eval(model, eval_sources, "dev")
        record_eval(out, state, final["dev"], main)
    if test_sources:
        final["test"] = run_eval(model, test_sources, "test")
        rows = final["test"].pop("predictions")
        if main:  # what the model answered per test record, for error analysis (`instructie eval` rescores it)
            write_jsonl(out / "test_predictions.jsonl", rows)
            log("test scores:\n" + final["test"]["table"])
    if main:
        unwrapped = accelerator.unwrap_model(model)
        save_model(unwrapped, tokenizer, out)
        write_json(out / "instructie.json", model_card(cfg, templates, train_sources, state))
        write_json(out / "metrics.json", {"step": state["step"], "train_time_s": state["train_time_s"],
                                          "examples": state["examples"], "target_tokens": state["target_tokens"],
                                          **{k: v for k, v in final.items()}})
        plot_history(out, state)
        log(f"saved model to {out} (step {state['step']}, {state['train_time_s']:.0f} s of training)")
    accelerator.wait_for_everyone()
    return {"status": "done", "step": state["step"], "metrics": final}


# ---------------------------------------------------------------- the loop (train and pretrain)
@dataclass
class Epoch:
    """One epoch of data as ``run_loop`` consumes it. Built afresh per epoch and deterministic in
    (seed, epoch): a resumed run rebuilds the same batches and skips those already done."""
    batches: list[list[int]]  # global batches (all ranks) of example indices, in training order
    collate: Callable[[list[int]], dict[str, torch.Tensor]]  # one rank's share -> model inputs on the CPU
    target_tokens: Sequence[int]  # per example: its target length (the token count in the state)
    note: str = ""  # logged when the epoch starts (e.g. how many examples were truncated)


def make_accelerator(t: TrainConfig) -> tuple[Any, str]:
    """(Accelerator, precision actually used); seeds every RNG with ``t.seed``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    precision = t.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    # Without CUDA, a torchrun-style launch (accelerate launch, configs/accelerate/cpu2.yaml) sets LOCAL_RANK,
    # which accelerate only turns into a process group (gloo) when told to use the CPU: otherwise every
    # process would train alone, all writing to the same output_dir.
    cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    # step_scheduler_with_optimizer=False: the schedule counts optimizer steps of the whole run (total_steps
    # already divides by the number of processes); accelerate's default steps a prepared scheduler
    # num_processes times per step, which ran the schedule to its end halfway through a 2-process run.
    accelerator = Accelerator(cpu=cpu, mixed_precision="bf16" if precision == "bf16" else "no",
                              gradient_accumulation_steps=t.grad_accum, step_scheduler_with_optimizer=False)
    set_seed(t.seed)
    return accelerator, precision


def write_run_files(out: Path, resume_from: Path | None, tokenizer, cfg, model_report: dict) -> None:
    """The run's tokenizer (on a fresh start: a resume must reuse the first one), config and model report."""
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        tokenizer.save_pretrained(str(out / "tokenizer"))
    write_json(out / "run_config.json", cfg.to_dict())
    write_json(out / "model_report.json", model_report)


# What shapes the model's weights: a resumed run with other values cannot load its checkpoint.
SHAPE_KEYS = ("init", "size", "vocab_size", "extend_vocab", "copy_head")


def check_same_model(out: Path, cfg, resume_from: Path) -> None:
    """A resume under a config whose model differs from the run's (run_config.json) is one clear error,
    not torch's pages of size mismatches."""
    saved = out / "run_config.json"
    if not saved.exists():
        return
    was = json.loads(saved.read_text(encoding="utf-8")).get("model", {})
    now = dataclasses.asdict(cfg.model)
    diff = [f"model.{k} {was[k]!r} -> {now[k]!r}" for k in SHAPE_KEYS if k in was and was[k] != now.get(k)]
    if diff:
        raise ConfigError(f"{resume_from} was trained with another model than this config says ({'; '.join(diff)}): "
                          f"resume with the config the run started with, or start over with --overwrite")


def check_output_dir(out: Path, resume: bool) -> None:
    """A fresh run must not mix its checkpoints with an earlier run's (pruning would keep
    the old, higher-numbered ones and a later --resume would continue the wrong run)."""
    if not resume and checkpoints(out):
        raise ConfigError(f"{out} holds checkpoints of an earlier run (last: {checkpoints(out)[-1].name}): "
                          "continue it with --resume, start over with --overwrite, or choose another "
                          "train.output_dir")


def find_resume(out: Path, resume: bool, main: bool = True) -> Path | None:
    """The last complete checkpoint to resume from (None: start fresh)."""
    done = checkpoints(out) if resume else []
    if resume and not done and main:
        log(f"--resume: no checkpoint in {out}/checkpoints, starting fresh")
    return done[-1] if done else None


def run_loop(accelerator, model, t: TrainConfig, out: Path, total_steps: int, make_epoch: Callable[[int], Epoch],
             resume_from: Path | None = None, on_eval: Callable[[Any, dict], None] | None = None,
             desc: str = "train") -> tuple[Any, dict, bool]:
    """Optimizer, schedule and accelerate preparation, then epochs of ``make_epoch(epoch)`` batches until
    ``total_steps`` optimizer steps or ``t.max_time_s`` seconds (this call) have passed. Checkpoints every
    ``t.save_every`` steps, when the budget ends the call, and at the end; ``on_eval(model, state)`` every
    ``t.eval_every`` steps before the last. Returns (prepared model, state, stopped_early)."""
    from tqdm.auto import tqdm

    main = accelerator.is_main_process
    if t.max_batch_tokens and accelerator.distributed_type == "DEEPSPEED":
        # DeepSpeed's engine steps the optimizer after every backward: parts would be separate updates
        raise ConfigError("train.max_batch_tokens does not work under DeepSpeed: leave it unset and use a smaller "
                          "train.batch_size with train.grad_accum")
    optimizer = build_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t, total_steps))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    # Compile only the training forward (evaluation generates with the plain module).
    # dynamic=True: padded lengths vary per batch; a static graph would recompile for each.
    if t.compile and hasattr(accelerator.unwrap_model(model), "warm_up"):
        accelerator.unwrap_model(model).warm_up()  # one eager call first: no graph breaks (copy_head.py)
    forward = torch.compile(model, dynamic=True) if t.compile else model

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [], "evals": [], "train_time_s": 0.0,
             "examples": 0, "target_tokens": 0, "total_steps": total_steps}
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = json.loads((resume_from / STATE_FILE).read_text())
        state["total_steps"] = total_steps
        if main:
            log(f"resumed from {resume_from.name}: step {state['step']}, epoch {state['epoch']}, "
                f"batch {state['batch_in_epoch']}")
        # a dev evaluation that failed (and ended the run after saving) is made now, before training goes on
        if on_eval is not None and t.eval_every and 0 < state["step"] < total_steps \
                and state["step"] % t.eval_every == 0 and all(e["step"] != state["step"] for e in state["evals"]):
            on_eval(model, state)

    # epochs of batches; a resumed run rebuilds its epoch and skips the batches already done.
    bar = tqdm(total=total_steps, initial=state["step"], disable=not main, desc=desc, unit="step",
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
    t_start = time.time()
    t_budget_start = state["train_time_s"]
    loss_acc, loss_n = 0.0, 0  # finite batch losses since the last log
    skipped_in_a_row = 0  # updates skipped for a non-finite gradient norm, since the last one made
    stopped_early = False
    model.train()
    while state["step"] < total_steps:
        data = make_epoch(state["epoch"])
        batches = data.batches
        if not batches:
            raise ConfigError(f"epoch {state['epoch']} has no training examples")
        if main and state["batch_in_epoch"] == 0 and data.note:
            log(data.note)
        for b in range(state["batch_in_epoch"], len(batches)):
            if len(batches[b]) < accelerator.num_processes:
                # Some rank would get no examples: skipping it on that rank alone would pair up different
                # batches in DDP's gradient all-reduce. Every rank skips it (never happens with 1 process).
                state["batch_in_epoch"] = b + 1
                continue
            rank_batch = batches[b][accelerator.process_index :: accelerator.num_processes]
            # split on the CPU (no device sync), then moved part by part
            parts = micro_batches(data.collate(rank_batch), t.max_batch_tokens, t.pad_to_multiple)
            with accelerator.accumulate(model):
                try:
                    loss = 0.0
                    for k, (part, share) in enumerate(parts):
                        batch = {key: v.to(accelerator.device) for key, v in part.items()}
                        # gradients of all parts are summed locally and all-reduced once, after the last; inside a
                        # non-final accumulation step accumulate() has already turned syncing off
                        last = k == len(parts) - 1
                        sync = contextlib.nullcontext() if last or not accelerator.sync_gradients \
                            else accelerator.no_sync(model)
                        with sync:
                            # use_cache=False: training needs no key/value cache (5.x builds one per forward, and
                            # torch 2.11's compile breaks the graph on its config deepcopy)
                            part_loss = forward(**batch, use_cache=False).loss * share
                            accelerator.backward(part_loss)
                        loss = loss + part_loss.detach()
                    finite = True
                    if accelerator.sync_gradients:
                        # An inf/NaN gradient norm would write NaN into every weight (clipping multiplies by
                        # clip/inf): skip that update, as AMP's GradScaler does, and count it. The norm is of
                        # the all-reduced gradients, so every rank decides alike; with grad_clip 0 it is still
                        # measured (max_norm inf scales nothing).
                        norm = accelerator.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf"))
                        finite = norm is None or bool(torch.isfinite(torch.as_tensor(norm)))
                        skipped_in_a_row = 0 if finite else skipped_in_a_row + 1
                    if finite:
                        optimizer.step()
                    else:
                        state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                        if main:
                            log(f"step {state['step'] + 1}: gradient norm {float(norm)}: update skipped "
                                f"({state['skipped_steps']} so far)")
                except torch.cuda.OutOfMemoryError:
                    width = {key: tuple(v.shape) for key, v in part.items() if key in ("input_ids", "labels")}
                    where = f"part {k + 1} of {len(parts)}, " if len(parts) > 1 else ""
                    raise TrainingError(
                        f"out of GPU memory at step {state['step'] + 1} ({where}batch {width}, train.max_batch_tokens "
                        f"{t.max_batch_tokens}): set or lower train.max_batch_tokens "
                        f"(long batches run in parts, same update) or lower train.batch_size (train.grad_accum "
                        f"keeps the effective batch) or data.max_source_length / "
                        f"max_target_length; other processes on the GPU count too. {_last_checkpoint_hint(out)}"
                    ) from None
                scheduler.step() if accelerator.sync_gradients else None
                optimizer.zero_grad(set_to_none=True)
            loss_value = float(loss.detach())
            if math.isfinite(loss_value):  # a non-finite batch (its update skipped above) is left out
                loss_acc += loss_value
                loss_n += 1
            state["batch_in_epoch"] = b + 1
            state["examples"] += len(batches[b])
            state["target_tokens"] += sum(data.target_tokens[i] for i in batches[b])
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            bar.update(1)
            elapsed = t_budget_start + time.time() - t_start
            if skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
                # A NaN loss on any rank gives NaN all-reduced gradients, so this count is the same on every
                # rank. This many non-finite updates in a row: the model is broken, not unlucky.
                raise TrainingError(f"loss or gradients not finite for {skipped_in_a_row} updates in a row (up to "
                                    f"step {state['step']}): lower train.lr or use optimizer: adafactor "
                                    f"(random-init T5 diverges with a high AdamW rate). " + _last_checkpoint_hint(out))
            if state["step"] % t.log_every == 0 or state["step"] == total_steps:
                # summed over ranks: the logged loss is a global average of the finite batch losses
                totals = accelerator.reduce(torch.tensor([loss_acc, loss_n], dtype=torch.float64,
                                                         device=accelerator.device), reduction="sum")
                loss_acc, loss_n = totals[0].item(), int(totals[1].item())
                if loss_n:  # a window of only non-finite batches logs nothing
                    avg = loss_acc / loss_n
                    state["history"].append({"step": state["step"], "loss": avg, "lr": scheduler.get_last_lr()[0],
                                             "time_s": round(elapsed, 2)})
                    bar.set_postfix(loss=f"{avg:.4f}")
                loss_acc, loss_n = 0.0, 0
            if on_eval is not None and t.eval_every and state["step"] % t.eval_every == 0 \
                    and state["step"] < total_steps:
                try:
                    on_eval(model, state)
                except BaseException:
                    # A failing evaluation ends the run: keep the steps trained since the last save. One process
                    # only: saving waits for every rank, and a failure on some ranks would hang at that barrier.
                    if accelerator.num_processes == 1:
                        state["train_time_s"] = elapsed
                        save_checkpoint(accelerator, out, state, t.keep_checkpoints)
                    raise
            out_of_time = (t.max_time_s is not None and time.time() - t_start >= t.max_time_s
                           and state["step"] < total_steps)
            if t.max_time_s is not None and accelerator.num_processes > 1:
                # each rank has its own clock: one rank stopping alone would hang the others
                flag = torch.tensor([1.0 if out_of_time else 0.0], device=accelerator.device)
                out_of_time = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
            if (t.save_every and state["step"] % t.save_every == 0) or out_of_time:
                state["train_time_s"] = elapsed
                save_checkpoint(accelerator, out, state, t.keep_checkpoints)
            if out_of_time:
                stopped_early = True
                break
            if state["step"] >= total_steps:
                break
        if stopped_early:
            break
        if state["batch_in_epoch"] >= len(batches):
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    bar.close()
    state["train_time_s"] = t_budget_start + time.time() - t_start
    if stopped_early:
        if main:
            log(f"time budget reached at step {state['step']}/{total_steps}: checkpoint saved; "
                f"continue with --resume")
    else:
        save_checkpoint(accelerator, out, state, t.keep_checkpoints)
    return model, state, stopped_early


def micro_batches(batch: dict[str, torch.Tensor], max_tokens: int | None,
                  pad_multiple: int = 1) -> list[tuple[dict, float]]:
    """``batch`` as (part, share) pairs of at most ``max_tokens`` padded source tokens each (``None``: whole).

    Both model heads' losses are means over the target tokens of what they are given, so the
    parts' losses weighted by their share of the batch's target tokens sum to the whole
    batch's loss, and their summed gradients make the same update. Each part is cut to the
    longest source and target it holds, rounded up to ``pad_multiple`` as collate rounds (length-grouped
    batches are rarely all one length)."""
    rows, width = batch["input_ids"].shape
    if not max_tokens or rows * width <= max_tokens:
        return [(batch, 1.0)]
    size = max(1, max_tokens // width)
    n_target = int((batch["labels"] != -100).sum())
    parts = []
    for start in range(0, rows, size):
        part = {k: v[start : start + size] for k, v in batch.items()}
        src_len = min(width, round_up(int(part["attention_mask"].sum(1).max()), pad_multiple))
        tgt_len = min(batch["labels"].shape[1],
                      round_up(max(1, int((part["labels"] != -100).sum(1).max())), pad_multiple))
        part["input_ids"], part["attention_mask"] = part["input_ids"][:, :src_len], part["attention_mask"][:, :src_len]
        part["labels"] = part["labels"][:, :tgt_len]
        part = {k: v.contiguous() for k, v in part.items()}  # T5's loss .view()s the labels
        parts.append((part, int((part["labels"] != -100).sum()) / max(1, n_target)))
    return parts


def record_eval(out: Path, state: dict, rep: dict, main: bool) -> None:
    summary = rep.get("summary", {})
    state["evals"].append({"step": state["step"], **summary})
    if main:
        write_json(out / "metrics" / f"step-{state['step']}.json", rep)
        log(f"eval at step {state['step']}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))


def model_card(cfg: RunConfig, templates: dict, sources: list[Source], state: dict) -> dict:
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
    return {
        "instructie_version": __version__,
        "tasks": sorted({t for d in labels.values() for t in d} | set(cfg.data.tasks or [])),
        "labels": labels,
        "roles": roles,
        "languages": languages,
        "templates": templates,
        "max_options": cfg.data.max_options,
        "option_order": cfg.eval.option_order,  # as its tests asked; extract asks so too
        "max_source_length": cfg.data.max_source_length,
        "max_target_length": cfg.data.max_target_length,
        "memory_hints": cfg.hints.memory,  # memory.json holds the memory
        "steps": state["step"],
        "train_config": cfg.to_dict(),
    }


def plot_history(out: Path, state: dict) -> None:
    """loss and dev F1 over steps -> training.png (skipped quietly without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no training.png")
        return
    hist = state["history"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if hist:
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], label="train loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    keys = sorted({k for e in state["evals"] for k in e if k != "step"})
    for k in (k for k in keys if "loss" in k):  # held-out losses (pretraining) share the loss axis
        pts = [(e["step"], e[k]) for e in state["evals"] if k in e]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k, color="tab:orange")
    scores = [k for k in keys if "loss" not in k]
    if scores:
        ax2 = ax.twinx()
        for k in scores:
            pts = [(e["step"], e[k]) for e in state["evals"] if k in e]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
        ax2.set_ylabel("dev score")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="upper right", fontsize=7)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_write(out / "training.png", "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
