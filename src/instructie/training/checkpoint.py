"""A run's directory: its checkpoints (model, optimizer, scheduler, RNG states and the data position), the files
written when it starts, and the checks that keep a resumed run the run it was.

A checkpoint is ``checkpoints/step-N/``: accelerate's ``save_state`` (weights as safetensors; optimizer, scheduler
and RNG states as torch files that ``load_state`` reads with ``torch.load(weights_only=True)``) plus
``trainer_state.json`` (step, epoch, batch in the epoch, history), written last: a folder without it is
incomplete and ignored.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from ..core.io import ConfigError, write_json
from ..model.loading import quiet_logs, share_written_files
from .logs import log

STATE_FILE = "trainer_state.json"
# What shapes the model's weights: a resumed run with other values cannot load its checkpoint.
SHAPE_KEYS = ("init", "size", "vocab_size", "extend_vocab", "copy_head")


def checkpoints(out: Path) -> list[Path]:
    """The complete checkpoints of the run in ``out``, oldest first."""
    d = out / "checkpoints"
    if not d.exists():
        return []
    done = [p for p in d.iterdir() if p.name.startswith("step-") and p.name[5:].isdigit()
            and (p / STATE_FILE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def last_checkpoint_hint(out: Path) -> str:
    ckpts = checkpoints(out)
    return (f"the last checkpoint is {ckpts[-1].name}: continue with --resume" if ckpts
            else "no checkpoint was written yet")


def save_checkpoint(accelerator, out: Path, state: dict, keep: int) -> None:
    """Write to a temporary folder, then rename: a kill mid-write leaves the last one intact."""
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


def resume_epoch(resume_from: Path | None) -> int:
    """The epoch a resumed run continues in (0 for a fresh one)."""
    return json.loads((resume_from / STATE_FILE).read_text())["epoch"] if resume_from is not None else 0


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


def write_run_files(out: Path, resume_from: Path | None, tokenizer, cfg, model_report: dict) -> None:
    """The run's tokenizer (on a fresh start: a resume must reuse the first one), config and model report."""
    out.mkdir(parents=True, exist_ok=True)
    if resume_from is None:
        tokenizer.save_pretrained(str(out / "tokenizer"))
    write_json(out / "run_config.json", cfg.to_dict())
    write_json(out / "model_report.json", model_report)
