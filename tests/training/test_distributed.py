"""The distributed path in CI: ``accelerate launch`` with 2 CPU processes (gloo) on the tiny
model -- per-rank batch slicing, a batch too small to split, a wall-clock stop agreed by
both ranks, a checkpoint holding both ranks' RNG states, resume, and one model directory."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ACCEL_CFG = ROOT / "configs" / "accelerate" / "cpu2.yaml"
BATCH = 4  # per process: global batches of 8


def tiny_config(tmp_path: Path, out: Path) -> Path:
    """quickstart.yaml made small; no dev/test sets (evaluation is not what runs distributed here).
    One fin_negative record makes 33 instances: 4 batches of 8 and one of a single example,
    which cannot be split over 2 processes."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    caps = {"duie": 10, "fin_negative": 1}
    for ds in cfg["data"]["train"]:
        ds["path"] = str(ROOT / ds["path"])
        ds["options"] = {k: str(ROOT / v) if isinstance(v, str) and v.startswith("tests/") else v
                         for k, v in (ds.get("options") or {}).items()}
        if ds["adapter"] in caps:
            ds["max_records"] = caps[ds["adapter"]]
    cfg["model"]["vocab_size"] = 1000
    cfg["data"].update(tasks=["NER", "RE", "EE", "NEG"], max_options=8, max_source_length=128,
                       max_target_length=48, eval=[], test=[])
    cfg["train"].update(output_dir=str(out), warmup_steps=2, batch_size=BATCH, epochs=1, save_every=4,
                        log_every=1, eval_every=0)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def launch(cfg: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCEL_CFG),
           "-m", "instructie", "train", "--config", str(cfg), "--max-steps", "6", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_two_cpu_processes_train_checkpoint_resume_and_save_once(tmp_path):
    pytest.importorskip("accelerate")
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch without gloo")
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out)

    # 1. a budget below one step: both ranks agree to stop after step 1 (exit 3 -> the launcher fails)
    r = launch(cfg, tmp_path, "--max-time", "0.001")
    log = r.stdout + r.stderr
    assert "2 process(es)" in log, log[-4000:]
    assert "time budget reached at step 1/6" in log, log[-4000:]
    assert r.returncode != 0
    ckpt = out / "checkpoints" / "step-1"
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
                 "random_states_1.pkl", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    assert not (out / "model.safetensors").exists()
    m = re.search(r"(\d+) training instances/epoch", log)
    assert m and int(m.group(1)) % (2 * BATCH) == 1, "fixture drift: no single-example batch any more"

    # 2. resume on both ranks to the end; rank 0 alone writes the model directory
    r = launch(cfg, tmp_path, "--resume")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    assert "2 process(es)" in log and "resumed from step-1: step 1" in log
    assert log.count("saved model to") == 1
    state = json.loads((out / "checkpoints" / "step-6" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["epoch"] == 1  # 4 trainable batches per epoch
    # every step saw a full global batch of 8: the single-example batch was skipped by both ranks
    assert state["examples"] == 6 * 2 * BATCH
    assert [h["step"] for h in state["history"]] == [1, 2, 3, 4, 5, 6]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["examples"] == state["examples"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "instructie.json", "training.png"):
        assert (out / name).is_file(), name
    assert not list((out / "checkpoints").glob(".tmp-*"))


def test_two_cpu_processes_train_on_packed_rows(tmp_path):
    """Packed rows split over 2 processes: every global batch is filled up with empty rows to one shape, so a
    process may get only empty rows at an epoch's end (no loss there, no gradient): the run still trains every
    example, logs finite losses and saves once."""
    pytest.importorskip("accelerate")
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch without gloo")
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out)
    c = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    c["train"].update(packing=True, pack_source_length=256, pack_target_length=64, batch_size=2)
    cfg.write_text(yaml.safe_dump(c, allow_unicode=True), encoding="utf-8")
    r = launch(cfg, tmp_path)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    m = re.search(r"(\d+) training instances/epoch in (\d+) packed rows", log)
    assert m and "2 process(es)" in log, log[-4000:]
    rows = int(m.group(2))
    assert rows % 4 == 1, "fixture drift: the epoch's last global batch no longer leaves a process only empty rows"
    assert "update skipped" not in log
    state = json.loads((out / "checkpoints" / "step-6" / "trainer_state.json").read_text())
    assert len(state["history"]) == 6 and all(math.isfinite(h["loss"]) for h in state["history"])
    steps_per_epoch = -(-rows // 4)
    assert state["examples"] > int(m.group(1)) and state["epoch"] == 6 // steps_per_epoch
    assert log.count("saved model to") == 1
