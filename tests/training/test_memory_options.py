"""Training on packed rows and the memory options (bf16 weights with Kahan-compensated AdamW, gradient
checkpointing) through ``instructie train`` on the tiny model, and the Flan-T5-large/XL configs on a tiny stand-in
checkpoint (CPU: compiling is left to the GPU, ``train.compile`` is turned off here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from instructie.cli.main import main as cli_main

from helpers import FIXTURES, ROOT, tiny_config


def state_of(out: Path, step: int) -> dict:
    return json.loads((out / "checkpoints" / f"step-{step}" / "trainer_state.json").read_text())


# ---------------------------------------------------------------- the optimizer
def test_kahan_adamw_keeps_the_updates_bf16_weights_round_away():
    """Fine-tuning steps (~lr) are far below the spacing of bf16 values near 1 (2**-8): plain AdamW on bf16
    weights never moves them; the compensated one moves them as fp32 weights move."""
    from instructie.training.optim import KahanAdamW

    lr, steps = 1e-4, 50

    def train(weight, opt_cls, **kw):
        opt = opt_cls([weight], lr=lr, **kw)
        for _ in range(steps):
            weight.grad = torch.ones_like(weight)  # Adam's step is then lr for every weight
            opt.step()
        return opt

    ref = torch.nn.Parameter(torch.ones(64))
    train(ref, torch.optim.AdamW, weight_decay=0.0)
    plain = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
    train(plain, torch.optim.AdamW, weight_decay=0.0)
    kahan = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
    opt = train(kahan, KahanAdamW)

    moved = lr * steps
    assert float(ref.detach()[0]) == pytest.approx(1 - moved, rel=1e-6)
    assert (plain == 1.0).all()  # every update rounded away
    # the weight and what rounding kept aside: the fp32 movement to within 1% (the aside is itself bf16)
    held = kahan.detach().float() + opt.state[kahan]["compensation"].float()
    torch.testing.assert_close(held, ref.detach(), rtol=0, atol=0.01 * moved)
    assert (kahan.float() - ref).abs().max() <= 2**-8  # the bf16 weight itself is the nearest bf16 value or next


def test_kahan_adamw_on_fp32_weights_is_adamw():
    from instructie.training.optim import KahanAdamW

    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(8, 8))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a = torch.optim.AdamW([a], lr=1e-2, weight_decay=0.1)
    opt_b = KahanAdamW([b], lr=1e-2, weight_decay=0.1)
    for k in range(5):
        g = torch.randn(8, 8)
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_kahan_adamw_buckets_do_not_change_the_step():
    """Weights are updated in buckets (bounded fp32 temporaries): one weight per bucket or all in one give the
    same weights and state, bf16 and fp32 alike."""
    from instructie.training.optim import KahanAdamW

    for dtype in (torch.bfloat16, torch.float32):
        torch.manual_seed(0)
        one = [torch.nn.Parameter(torch.randn(*s).to(dtype)) for s in ((16, 8), (8,), (32, 16))]
        each = [torch.nn.Parameter(p.detach().clone()) for p in one]
        start = [p.detach().clone() for p in one]
        opt_one = KahanAdamW(one, lr=1e-3, weight_decay=0.1)
        opt_each = KahanAdamW(each, lr=1e-3, weight_decay=0.1, bucket_elements=1)
        for _ in range(4):
            for a, b in zip(one, each):
                a.grad = torch.randn_like(a)
                b.grad = a.grad.clone()
            opt_one.step()
            opt_each.step()
        for a, b in zip(one, each):
            assert torch.equal(a, b)
            for key in ("exp_avg", "exp_avg_sq", "compensation"):
                assert torch.equal(opt_one.state[a][key], opt_each.state[b][key])
        assert all(not torch.equal(a, s) for a, s in zip(one, start))  # the steps moved every weight


# ---------------------------------------------------------------- instructie train on packed rows
@pytest.mark.parametrize("bf16_weights", [False, True])
def test_packed_training_logs_its_rows_and_resumes_at_the_exact_batch(tmp_path, capsys, bf16_weights):
    """... with either optimizer: a resumed KahanAdamW keeps its fp32 moments (torch casts loaded state to the
    weights' dtype)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    # rows of 512/96 tokens hold several of the tiny config's examples (cut at 128/48)
    options = dict(packing=True, pack_source_length=512, pack_target_length=96, batch_size=2, max_steps=12,
                   save_every=0, bf16_weights=bf16_weights)
    assert cli_main(["train", "--config", str(tiny_config(tmp_path, full, **options))]) == 0
    log = capsys.readouterr().out
    assert "packed rows of 512/96 source/target tokens" in log and "examples per row" in log
    ref = state_of(full, 12)
    assert ref["examples"] > 2 * 12  # rows hold several examples each

    cfg = tiny_config(tmp_path, cut, **options)
    assert cli_main(["train", "--config", str(cfg), "--max-time", "0.001"]) == 3
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0
    final = state_of(cut, 12)
    for k in ("epoch", "batch_in_epoch", "examples", "target_tokens"):
        assert final[k] == ref[k], k
    ref_loss = {h["step"]: h["loss"] for h in ref["history"]}
    assert [h["step"] for h in final["history"]] == list(range(1, 13))
    for h in final["history"]:
        assert h["loss"] == pytest.approx(ref_loss[h["step"]], rel=1e-5), h["step"]


@pytest.mark.parametrize("optimizer", ["adamw", "adafactor"])
def test_memory_options_train_save_and_load(tmp_path, capsys, optimizer):
    from safetensors.torch import load_file

    from instructie.inference.extractor import Extractor

    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, packing=True, batch_size=2, max_steps=4, save_every=0, bf16_weights=True,
                      gradient_checkpointing=True, lr=1e-3, optimizer=optimizer)
    assert cli_main(["train", "--config", str(cfg), "--set", "model.copy_head=true"]) == 0
    log = capsys.readouterr().out
    assert "precision bf16 weights" in log
    assert [h["step"] for h in state_of(out, 4)["history"]] == [1, 2, 3, 4]
    weights = load_file(str(out / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.bfloat16}  # saved as trained: half the size
    assert all(torch.isfinite(w.float()).all() for w in weights.values())
    assert "copy_gate.weight" in weights
    ex = Extractor.from_pretrained(out, device="cpu")
    assert list(ex.extract(["Barack Obama visited Paris."], tasks=["NER"], max_new_tokens=4))


def test_bad_memory_and_packing_settings_are_refused(tmp_path, capsys):
    cfg = tiny_config(tmp_path, tmp_path / "run")
    assert cli_main(["train", "--config", str(cfg), "--set", "train.packing=true",
                     "--set", "train.pack_source_length=64"]) == 2
    err = capsys.readouterr().err
    assert "train.pack_source_length 64 is shorter than data.max_source_length 128" in err
    assert cli_main(["train", "--config", str(cfg), "--set", "train.attention=flash"]) == 2
    assert "train.attention must be sdpa, efficient, eager or flex" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(cfg), "--set", "train.packing=true", "--set", "train.attention=flex",
                     "--set", "train.compile=false"]) == 2
    assert "train.attention flex needs train.compile: true" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(cfg), "--set", "train.packing=true", "--set", "train.attention=efficient",
                     "--set", "train.pack_target_length=50"]) == 2
    assert "train.attention efficient needs rows of a multiple of 16 tokens, got train.pack_target_length 50" \
        in capsys.readouterr().err


# ---------------------------------------------------------------- the Flan-T5-large and XL configs
@pytest.mark.parametrize("name", ["flan-t5-large", "flan-t5-xl"])
def test_the_large_model_configs_train_on_a_tiny_stand_in(name, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The config as shipped (packed rows; XL with bf16 weights, the compensated Adafactor and flex_attention), its
    model and data swapped for a tiny saved T5 and the test fixtures, a few steps, uncompiled with SDPA attention
    (flex_attention's backward needs a GPU: tests/model/test_packing.py checks it there)."""
    from instructie.config import load_config

    shipped = load_config(ROOT / "configs" / f"{name}.yaml") if (ROOT.parent / "shared" / "data").exists() else None
    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text(encoding="utf-8"))
    t = raw["train"]
    assert t["packing"] and t["compile"]
    xl = name == "flan-t5-xl"
    assert t["bf16_weights"] == xl and not t.get("gradient_checkpointing")
    # InstructUIE's AdamW at 5e-5 for large; T5's Adafactor fine-tuning (RMS-scaled steps, 1e-3) for XL
    assert (t.get("optimizer", "adamw"), t["lr"]) == (("adafactor", 1e-3) if xl else ("adamw", 5e-5))
    assert t.get("attention", "sdpa") == ("flex" if xl else "sdpa")
    assert t["schedule"] == "constant" and t["warmup_steps"] == 0
    assert t["batch_size"] * t["grad_accum"] == 64  # rows of ~4.2 examples: InstructUIE's ~256 per update
    assert (raw["data"]["max_source_length"], raw["data"]["max_target_length"]) == (512, 50)
    if shipped is not None:
        assert shipped.train.pack_source_length == 512
    raw["model"]["name_or_path"] = str(tiny_model_dir)
    raw["data"]["train"] = [{"adapter": "ie_instructions", "path": str(FIXTURES / "ie_instructions"),
                             "split": "train", "options": {"datasets": ["CoNLL2003"]}}]
    raw["data"]["eval"], raw["data"]["test"] = [], []
    t.update(output_dir=str(tmp_path / "run"), compile=False, attention="sdpa", batch_size=2, grad_accum=2,
             max_steps=3, save_every=0, log_every=1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    import instructie.training.loop as loop
    from instructie.training.optim import build_optimizer
    built = []  # the optimizer the run trains with
    monkeypatch.setattr(loop, "build_optimizer", lambda *a: built.append(build_optimizer(*a)) or built[-1])
    assert cli_main(["train", "--config", str(path)]) == 0
    assert [type(o).__name__ for o in built] == (["Adafactor"] if xl else ["AdamW"])
    log = capsys.readouterr().out
    assert "packed rows of 512/64" in log
    assert ("precision bf16 weights" in log) == (name == "flan-t5-xl")
    assert [h["step"] for h in state_of(tmp_path / "run", 3)["history"]] == [1, 2, 3]
    assert (tmp_path / "run" / "model.safetensors").is_file()
