"""The training loop shared by fine-tuning and pretraining: accelerate, the optimizer and schedule, gradient
accumulation, micro-batches, skipped non-finite updates, the wall-clock budget, loss logging and checkpoints.

A recipe hands ``run_loop`` a model and a function that builds one epoch of batches (``Epoch``); the loop
trains until ``total_steps`` optimizer steps or ``train.max_time_s`` seconds of this call, whichever comes
first, and can be resumed at the exact batch of the epoch it stopped in.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import TrainConfig
from ..core.io import ConfigError, TrainingError
from ..data.epochs import Epoch
from ..data.sources import round_up
from ..model.packing import PackedSeq2Seq
from .checkpoint import STATE_FILE, last_checkpoint_hint, save_checkpoint
from .logs import log
from .optim import Adafactor, build_optimizer, lr_lambda

MAX_SKIPPED_IN_A_ROW = 10  # non-finite updates in a row that end a run (fewer are skipped and counted)


# ---------------------------------------------------------------- accelerate
def make_accelerator(t: TrainConfig) -> tuple[Any, str]:
    """(Accelerator, precision actually used); seeds every RNG with ``t.seed``. Settings the distributed setup
    cannot run are a ConfigError here."""
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
    if t.bf16_weights:  # bf16 weights compute in bf16 without autocast
        precision = "bf16 weights"
    accelerator = Accelerator(cpu=cpu, mixed_precision="bf16" if precision == "bf16" else "no",
                              gradient_accumulation_steps=t.grad_accum, step_scheduler_with_optimizer=False)
    check_distributed(accelerator, t)  # before a recipe reads its data
    set_seed(t.seed)
    return accelerator, precision


# ---------------------------------------------------------------- the loop
def run_loop(accelerator, model, t: TrainConfig, out: Path, total_steps: int, make_epoch: Callable[[int], Epoch],
             resume_from: Path | None = None, on_eval: Callable[[Any, dict], None] | None = None,
             desc: str = "train") -> tuple[Any, dict, bool]:
    """Optimizer, schedule and accelerate preparation, then epochs of ``make_epoch(epoch)`` batches until
    ``total_steps`` optimizer steps or ``t.max_time_s`` seconds (this call) have passed. Checkpoints every
    ``t.save_every`` steps, when the budget ends the call, and at the end; ``on_eval(model, state)`` every
    ``t.eval_every`` steps before the last. Returns (prepared model, state, stopped_early)."""
    from tqdm.auto import tqdm

    main = accelerator.is_main_process
    model = training_model(model, t)
    optimizer = build_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t, total_steps))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    forward = training_forward(accelerator, model, t, out)

    state = new_state(total_steps)
    if resume_from is not None:
        state = resume(accelerator, resume_from, total_steps)
        # a dev evaluation that failed (and ended the run after saving) is made now, before training goes on
        if on_eval is not None and t.eval_every and 0 < state["step"] < total_steps \
                and state["step"] % t.eval_every == 0 and all(e["step"] != state["step"] for e in state["evals"]):
            on_eval(model, state)

    bar = tqdm(total=total_steps, initial=state["step"], disable=not main, desc=desc, unit="step",
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
    clock = Clock(t.max_time_s, state["train_time_s"], accelerator)
    losses = LossWindow()
    skipped = SkippedUpdates()
    settled_at = state["step"]  # skips up to this step are counted in the state
    stopped_early = False
    compiled = False  # with train.compile: the first step compiles (its time is logged)

    def settle() -> None:
        """Reads the skip counts (one host-device wait where the optimizer skips on the device): skips counted
        on the device go into the state and one log line, and too many in a row end the run."""
        nonlocal settled_at
        new, in_a_row = skipped.settle()
        if new:
            state["skipped_steps"] = state.get("skipped_steps", 0) + new
            if main:
                steps = f"step {state['step']}" if settled_at + 1 == state["step"] \
                    else f"steps {settled_at + 1}-{state['step']}"
                log(f"{steps}: {new} update(s) skipped for a non-finite gradient norm "
                    f"({state['skipped_steps']} so far)")
        settled_at = state["step"]
        if in_a_row >= MAX_SKIPPED_IN_A_ROW:
            # A NaN loss on any rank gives NaN all-reduced gradients, so this count is the same on every
            # rank. This many non-finite updates in a row: the model is broken, not unlucky.
            raise TrainingError(f"loss or gradients not finite for {in_a_row} updates in a row (up to "
                                f"step {state['step']}): lower train.lr or use optimizer: adafactor "
                                f"(random-init T5 diverges with a high AdamW rate). " + last_checkpoint_hint(out))

    model.train()
    # epochs of batches; a resumed run rebuilds its epoch and skips the batches already done
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
            started = time.time()
            loss, update = train_batch(accelerator, model, forward, optimizer, scheduler, data.collate(rank_batch),
                                       t, state, out)
            if t.compile and not compiled:
                compiled = True
                if main:
                    log(f"the first step, compiling the training step, took {time.time() - started:.1f} s")
            losses.add(loss, sum(data.target_tokens[i] for i in rank_batch))
            state["batch_in_epoch"] = b + 1
            state["examples"] += data.count_examples(batches[b])
            state["target_tokens"] += sum(data.target_tokens[i] for i in batches[b])
            if update is None:  # inside an accumulation: no optimizer step yet
                continue
            skipped.add(update)
            state["step"] += 1
            bar.update(1)
            elapsed = clock.elapsed()
            evaluating = on_eval is not None and t.eval_every and state["step"] % t.eval_every == 0 \
                and state["step"] < total_steps
            # skips decided on the host are read every step; on the device, when a line is logged, before an
            # evaluation (its failure saves a checkpoint), before a checkpoint (below) and every
            # MAX_SKIPPED_IN_A_ROW steps
            if not skipped.on_device or state["step"] % t.log_every == 0 or evaluating \
                    or state["step"] % MAX_SKIPPED_IN_A_ROW == 0:  # a diverged run stops within that many steps
                settle()
            if state["step"] % t.log_every == 0 or state["step"] == total_steps:
                avg = losses.flush(accelerator)
                if avg is not None:  # a window of only non-finite batches logs nothing
                    state["history"].append({"step": state["step"], "loss": avg, "lr": scheduler.get_last_lr()[0],
                                             "time_s": round(elapsed, 2)})
                    bar.set_postfix(loss=f"{avg:.4f}")
            if evaluating:
                try:
                    on_eval(model, state)
                except BaseException:
                    # A failing evaluation ends the run: keep the steps trained since the last save. One process
                    # only: saving waits for every rank, and a failure on some ranks would hang at that barrier.
                    if accelerator.num_processes == 1:
                        state["train_time_s"] = elapsed
                        save_checkpoint(accelerator, out, state, t.keep_checkpoints)
                    raise
            out_of_time = clock.out_of_time(state["step"]) and state["step"] < total_steps
            if (t.save_every and state["step"] % t.save_every == 0) or out_of_time:
                settle()
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
    settle()
    state["train_time_s"] = clock.elapsed()
    if stopped_early:
        if main:
            log(f"time budget reached at step {state['step']}/{total_steps}: checkpoint saved; "
                f"continue with --resume")
    else:
        save_checkpoint(accelerator, out, state, t.keep_checkpoints)
    return model, state, stopped_early


def training_model(model, t: TrainConfig):
    """The model as the loop trains it: weights in bf16 (``train.bf16_weights``), activations recomputed in the
    backward pass (``train.gradient_checkpointing``), and wrapped to train on packed rows (``train.packing``,
    model/packing.py; compiled there block by block with ``train.compile``)."""
    if t.bf16_weights:
        model = model.to(torch.bfloat16)
    if t.packing:
        return PackedSeq2Seq(model, attention=t.attention, checkpointing=t.gradient_checkpointing,
                             compile=t.compile)
    if t.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def trained_model(accelerator, model):
    """The seq2seq model inside what the loop trained (for evaluation and saving)."""
    model = accelerator.unwrap_model(model)
    return model.model if isinstance(model, PackedSeq2Seq) else model


def training_forward(accelerator, model, t: TrainConfig, out: Path):
    """What the loop calls with a batch: the prepared model, compiled with ``train.compile``. Only the training
    forward is compiled (evaluation generates with the plain module)."""
    if not t.compile:
        return model
    # compiled kernels are kept with the run: a resumed run (on a fresh machine too) compiles from this cache
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(out.resolve() / "compile_cache"))
    if isinstance(accelerator.unwrap_model(model), PackedSeq2Seq):
        return model  # one shape: compiled block by block when first called
    if hasattr(accelerator.unwrap_model(model), "warm_up"):
        accelerator.unwrap_model(model).warm_up()  # one eager call first: no graph breaks (copy_head.py)
    # dynamic=True: padded lengths vary per batch; a static graph would recompile for each
    return torch.compile(model, dynamic=True)


def new_state(total_steps: int) -> dict:
    return {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [], "evals": [], "train_time_s": 0.0,
            "examples": 0, "target_tokens": 0, "total_steps": total_steps}


def resume(accelerator, resume_from: Path, total_steps: int) -> dict:
    """Model, optimizer, scheduler and RNG states from the checkpoint; the state (data position, history) it saved."""
    accelerator.load_state(str(resume_from))
    state = json.loads((resume_from / STATE_FILE).read_text())
    state["total_steps"] = total_steps
    if accelerator.is_main_process:
        log(f"resumed from {resume_from.name}: step {state['step']}, epoch {state['epoch']}, "
            f"batch {state['batch_in_epoch']}")
    return state


def check_distributed(accelerator, t: TrainConfig) -> None:
    """Settings the distributed setup cannot run, as a ConfigError before any work."""
    if t.max_batch_tokens and accelerator.distributed_type == "DEEPSPEED":
        # DeepSpeed's engine steps the optimizer after every backward: parts would be separate updates
        raise ConfigError("train.max_batch_tokens does not work under DeepSpeed: leave it unset and use a smaller "
                          "train.batch_size with train.grad_accum")
    if t.optimizer == "adafactor" and accelerator.distributed_type in ("FSDP", "DEEPSPEED"):
        # its factored moments average whole rows and columns of a weight: FSDP holds each process's shard only
        # (the step fails), DeepSpeed hands it flat 1-D shards (it would run unfactored, one RMS per shard)
        raise ConfigError(f"train.optimizer adafactor does not run on {accelerator.distributed_type}'s sharded "
                          f"weights: use configs/accelerate/ddp.yaml, or train.optimizer: adamw")


def skips_on_device(accelerator, optimizer) -> bool:
    """Whether ``optimizer`` (as prepared by accelerate) can skip an update itself, told by a device flag as
    torch's GradScaler tells it (``found_inf``), so that the host need not read the gradient norm: the stacked
    Adafactor and fused AdamW can, on one process or DDP (FSDP and DeepSpeed step their own way)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    able = isinstance(inner, Adafactor) or (isinstance(inner, torch.optim.AdamW) and bool(inner.defaults.get("fused")))
    # a GradScaler (fp16) sets and clears found_inf itself
    return able and accelerator.distributed_type in ("NO", "MULTI_GPU") and getattr(accelerator, "scaler", None) is None


def train_batch(accelerator, model, forward, optimizer, scheduler, batch: dict[str, torch.Tensor], t: TrainConfig,
                state: dict, out: Path) -> tuple[torch.Tensor, bool | torch.Tensor | None]:
    """Forward and backward of one rank's batch (in parts of at most ``t.max_batch_tokens``), then, at the end of
    an accumulation, the optimizer step. Returns (the batch's loss, whether an update was made: None inside an
    accumulation, False when its gradient norm was not finite and the update was skipped; where the optimizer
    skips on the device (``skips_on_device``), a 0-dim device tensor instead, 1.0 when the update was skipped,
    read by nobody here, counted by ``SkippedUpdates``)."""
    # split on the CPU (no device sync), then moved part by part
    parts = micro_batches(batch, t.max_batch_tokens, t.pad_to_multiple)
    update = None
    with accelerator.accumulate(model):
        try:
            loss = 0.0
            for k, (part, share) in enumerate(parts):
                inputs = {key: to_device(v, accelerator.device) for key, v in part.items()}
                # gradients of all parts are summed locally and all-reduced once, after the last; inside a
                # non-final accumulation step accumulate() has already turned syncing off
                last = k == len(parts) - 1
                sync = contextlib.nullcontext() if last or not accelerator.sync_gradients \
                    else accelerator.no_sync(model)
                with sync:
                    # use_cache=False: training needs no key/value cache (5.x builds one per forward, and
                    # torch 2.11's compile breaks the graph on its config deepcopy)
                    part_loss = forward(**inputs, use_cache=False).loss * share
                    accelerator.backward(part_loss)
                loss = loss + part_loss.detach()
            if accelerator.sync_gradients:
                # An inf/NaN gradient norm would write NaN into every weight (clipping multiplies by
                # clip/inf): skip that update, as AMP's GradScaler does, and count it. The norm is of
                # the all-reduced gradients, so every rank decides alike; with grad_clip 0 it is still
                # measured (max_norm inf scales nothing).
                norm = accelerator.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf"))
                if norm is not None and skips_on_device(accelerator, optimizer):
                    # the optimizer reads the flag on the device: no wait for the norm here
                    update = (~torch.isfinite(torch.as_tensor(norm, device=accelerator.device))).float()
                else:
                    update = norm is None or bool(torch.isfinite(torch.as_tensor(norm)))
            if torch.is_tensor(update):
                inner = getattr(optimizer, "optimizer", optimizer)
                inner.found_inf = update
                try:
                    optimizer.step()
                finally:
                    del inner.found_inf
            elif update is not False:
                optimizer.step()
            else:
                state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                if accelerator.is_main_process:
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
                f"max_target_length; other processes on the GPU count too. {last_checkpoint_hint(out)}"
            ) from None
        scheduler.step() if accelerator.sync_gradients else None
        optimizer.zero_grad(set_to_none=True)
    return loss, update


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """``tensor`` on ``device`` without waiting for the GPU: a blocking copy to the GPU returns only once the GPU
    has run everything queued before it (every step, the previous step's optimizer); a non-blocking copy from
    pinned memory is queued like a kernel, so the host prepares the next step while the GPU runs this one."""
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def micro_batches(batch: dict[str, torch.Tensor], max_tokens: int | None,
                  pad_multiple: int = 1) -> list[tuple[dict, float]]:
    """``batch`` as (part, share) pairs of at most ``max_tokens`` padded source tokens each (``None``: whole;
    packed rows are split by rows and keep their width).

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
        if "attention_mask" not in part:  # packed rows keep their one shape
            parts.append((part, int((part["labels"] != -100).sum()) / max(1, n_target)))
            continue
        src_len = min(width, round_up(int(part["attention_mask"].sum(1).max()), pad_multiple))
        tgt_len = min(batch["labels"].shape[1],
                      round_up(max(1, int((part["labels"] != -100).sum(1).max())), pad_multiple))
        part["input_ids"], part["attention_mask"] = part["input_ids"][:, :src_len], part["attention_mask"][:, :src_len]
        part["labels"] = part["labels"][:, :tgt_len]
        part = {k: v.contiguous() for k, v in part.items()}  # T5's loss .view()s the labels
        parts.append((part, int((part["labels"] != -100).sum()) / max(1, n_target)))
    return parts


class Clock:
    """Training time of the run (the time recorded before this call plus this call's) and the per-call budget
    ``max_time_s``. Each rank has its own clock: with several processes they agree to stop when any is out, at
    the call's first step and at steps that are a multiple of ``AGREE_EVERY`` (agreeing means waiting for every
    rank's GPU work, so not at every step)."""

    AGREE_EVERY = 10

    def __init__(self, max_time_s: float | None, recorded_s: float, accelerator):
        self.max_time_s, self.recorded_s, self.accelerator = max_time_s, recorded_s, accelerator
        self.start = time.time()
        self.first_step: int | None = None

    def elapsed(self) -> float:
        return self.recorded_s + time.time() - self.start

    def out_of_time(self, step: int) -> bool:
        if self.max_time_s is None:
            return False
        out = time.time() - self.start >= self.max_time_s
        if self.accelerator.num_processes > 1:  # one rank stopping alone would hang the others
            if self.first_step is None:
                self.first_step = step
            if step % self.AGREE_EVERY and step != self.first_step:
                return False
            flag = torch.tensor([1.0 if out else 0.0], device=self.accelerator.device)
            out = bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)
        return out


class SkippedUpdates:
    """Updates skipped for a non-finite gradient norm: how many in a row up to the last step, and how many the
    optimizer skipped on the device since the last ``settle`` (a skip decided on the host is counted and logged
    by ``train_batch``). A step's outcome is ``train_batch``'s: a bool decided on the host, or a device flag
    (1.0 = skipped), which is added up on the device and read only when settled."""

    def __init__(self):
        self.in_a_row: int | torch.Tensor = 0
        self.new: int | torch.Tensor = 0

    def add(self, update: bool | torch.Tensor) -> None:
        if torch.is_tensor(update):
            self.in_a_row = (self.in_a_row + 1) * update  # a step made (flag 0) ends the run of skips
            self.new = self.new + update
        else:
            self.in_a_row = 0 if update else self.in_a_row + 1

    @property
    def on_device(self) -> bool:
        return torch.is_tensor(self.in_a_row) or torch.is_tensor(self.new)

    def settle(self) -> tuple[int, int]:
        """(skipped on the device since the last settle, skipped in a row), read in one host-device wait."""
        if self.on_device:
            device = (self.new if torch.is_tensor(self.new) else self.in_a_row).device
            both = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=device)
                                for v in (self.new, self.in_a_row)])
            self.new, self.in_a_row = (int(v) for v in both.tolist())
        new, self.new = self.new, 0
        return new, self.in_a_row


class LossWindow:
    """The finite batch losses since the last log line; their mean over all ranks and target tokens is what is
    logged. Weighted by tokens, the logged loss means the same for length-grouped and packed batches: a mean of
    batch means weighs a batch of short answers like one of long ones, which length-grouped batches keep apart
    (eval/experiments/loss_weighting.py measures how far the two means differ). The sums stay on the loss's
    device until a log line reads them: reading a GPU loss every step would make the host wait for the GPU."""

    def __init__(self):
        self.total, self.n = 0.0, 0.0

    def add(self, loss: torch.Tensor | float, tokens: int) -> None:
        """``loss``: the batch's mean token loss; ``tokens``: its target tokens."""
        loss = loss.detach() if torch.is_tensor(loss) else torch.tensor(float(loss))
        loss = loss.to(torch.float64)
        finite = torch.isfinite(loss) & (tokens > 0)  # a non-finite batch (its update skipped) is left out
        self.total = self.total + torch.where(finite, loss * tokens, 0.0)
        self.n = self.n + torch.where(finite, float(tokens), 0.0)

    def flush(self, accelerator) -> float | None:
        sums = torch.stack([torch.as_tensor(self.total, dtype=torch.float64),
                            torch.as_tensor(self.n, dtype=torch.float64)]).to(accelerator.device)
        totals = accelerator.reduce(sums, reduction="sum")
        total, n = totals.tolist()
        self.total, self.n = 0.0, 0.0
        return total / n if n else None
