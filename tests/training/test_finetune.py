"""The training recipe end to end on a tiny random-init model (CPU, seconds per run):
the saved model directory, resume after SIGKILL at the exact batch, the wall-clock
budget, mention replacement offsets, length-grouped batches and bucketed padding."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from instructie import __version__
from instructie.cli.main import main as cli_main

from helpers import MAX_STEPS, SAVE_EVERY, fixture_records, tiny_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def state_of(out: Path, step: int | None = None) -> dict:
    from instructie.training.checkpoint import STATE_FILE, checkpoints
    ckpt = out / "checkpoints" / f"step-{step}" if step is not None else checkpoints(out)[-1]
    return json.loads((ckpt / STATE_FILE).read_text())


def assert_same_run(out: Path, reference: Path) -> None:
    """``out`` trained the same data, batch for batch, as ``reference`` (uninterrupted, inline-built epochs):
    the same position in the same epoch, the same examples and target tokens seen (a restarted epoch would
    differ), and -- same seed, same CPU -- the same losses."""
    final, ref = state_of(out, MAX_STEPS), state_of(reference, MAX_STEPS)
    for k in ("step", "epoch", "batch_in_epoch", "examples", "target_tokens"):
        assert final[k] == ref[k], (k, final[k], ref[k])
    ref_loss = {h["step"]: h["loss"] for h in ref["history"]}
    for h in final["history"]:
        assert h["loss"] == pytest.approx(ref_loss[h["step"]], rel=1e-3), h["step"]


def env() -> dict:
    e = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), e.get("PYTHONPATH")]))
    return e


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted run: the model directory under test, and the reference for resume."""
    tmp = tmp_path_factory.mktemp("full")
    out = tmp / "run"
    cfg = tiny_config(tmp, out)
    assert cli_main(["train", "--config", str(cfg)]) == 0
    return out


# ---------------------------------------------------------------- the model directory
def test_model_dir_is_complete_and_loads_offline(full_run, monkeypatch):
    out = full_run
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "instructie.json", "metrics.json", "training.png", "run_config.json"):
        assert (out / name).is_file(), name
    pickled = [p.name for p in out.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    assert not pickled, f"model directory holds pickle files: {pickled}"

    from safetensors.torch import load_file
    weights = load_file(str(out / "model.safetensors"))
    assert "lm_head.weight" in weights and "shared.weight" in weights

    card = json.loads((out / "instructie.json").read_text(encoding="utf-8"))
    assert card["instructie_version"] == __version__
    assert {"NER", "RE", "EE", "NEG"} <= set(card["tasks"])
    assert "person" in card["labels"]["CoNLL2003"]["NER"]
    assert card["templates"]["NER"] and card["steps"] == MAX_STEPS

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == MAX_STEPS and metrics["examples"] > 0
    assert "dev" in metrics and "test" in metrics

    png = (out / "training.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    run_cfg = json.loads((out / "run_config.json").read_text())
    assert run_cfg["train"]["max_steps"] == MAX_STEPS and run_cfg["model"]["size"] == "tiny"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from instructie.inference.extractor import Extractor
    ex = Extractor.from_pretrained(out, device="cpu")
    assert ex.card.tasks == card["tasks"]
    docs = list(ex.extract(["Barack Obama visited Paris."], tasks=["NER"], max_new_tokens=8))
    assert len(docs) == 1 and docs[0].text == "Barack Obama visited Paris."


def test_test_predictions_are_written_and_rescore_to_the_reported_scores(full_run, tmp_path, capsys):
    from instructie.evaluation.evaluate import evaluate_files
    metrics = json.loads((full_run / "metrics.json").read_text())
    written = [json.loads(x) for x in (full_run / "test_predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "predictions" not in metrics["test"] and len(written) == metrics["test"]["records"]
    assert {"id", "dataset", "task", "answer", "entities"} <= set(written[0])
    # instructie test writes the same rows, and the scored records beside them
    pred, gold, rep = tmp_path / "p.jsonl", tmp_path / "g.jsonl", tmp_path / "r.json"
    assert cli_main(["test", "--model", str(full_run), "--config", str(full_run.parent / f"{full_run.name}.yaml"),
                     "--device", "cpu", "--predictions", str(pred), "--gold-out", str(gold), "--json", str(rep)]) == 0
    assert [json.loads(x) for x in pred.read_text(encoding="utf-8").splitlines()] == written
    again = evaluate_files(str(gold), str(pred))
    report = json.loads(rep.read_text())["unconstrained"]
    assert again["missing_predictions"] == 0 and "predictions" not in report
    assert again["summary"] == report["summary"] == metrics["test"]["summary"]
    assert again["scores"] == report["scores"]
    # several decoding modes: one file each, named after the mode
    assert cli_main(["test", "--model", str(full_run), "--config", str(full_run.parent / f"{full_run.name}.yaml"),
                     "--device", "cpu", "--constrained", "both", "--predictions", str(pred)]) == 0
    assert (tmp_path / "p.unconstrained.jsonl").is_file() and (tmp_path / "p.constrained.jsonl").is_file()


# ---------------------------------------------------------------- resume after SIGKILL
def test_resume_after_sigkill_continues_at_the_exact_batch(full_run, tmp_path, capsys):
    from instructie.training.checkpoint import STATE_FILE, checkpoints

    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out)
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "instructie", "train", "--config", str(cfg)],
                            cwd=tmp_path, env=env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while True:
            done = checkpoints(out)
            if done and int(done[-1].name.split("-")[1]) >= 2 * SAVE_EVERY:
                break
            assert proc.poll() is None, f"training ended before it could be killed:\n" \
                                        f"{(tmp_path / 'killed.log').read_text()[-3000:]}"
            assert time.time() < deadline, "no second checkpoint within 180 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()

    # What survives the kill: complete checkpoints only (a .tmp-* folder is a half-written one).
    last = checkpoints(out)[-1]
    for name in ("model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", STATE_FILE):
        assert (last / name).is_file(), name
    killed = json.loads((last / STATE_FILE).read_text())
    assert SAVE_EVERY * 2 <= killed["step"] < MAX_STEPS
    assert killed["batch_in_epoch"] > 0 and killed["epoch"] >= 1, killed  # resumes inside a later epoch
    # decoys: a half-written save and a folder without trainer_state.json must be ignored
    (out / "checkpoints" / ".tmp-step-999").mkdir(exist_ok=True)
    (out / "checkpoints" / ".tmp-step-999" / STATE_FILE).write_text(json.dumps({"step": 999}))
    (out / "checkpoints" / "step-998").mkdir()
    assert checkpoints(out)[-1] == last

    capsys.readouterr()
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0
    logged = capsys.readouterr().out
    assert (f"resumed from {last.name}: step {killed['step']}, epoch {killed['epoch']}, "
            f"batch {killed['batch_in_epoch']}") in logged
    assert not list((out / "checkpoints").glob(".tmp-*")), "stale half-written checkpoint left behind"

    assert json.loads((out / "metrics.json").read_text())["step"] == MAX_STEPS
    steps = [h["step"] for h in state_of(out, MAX_STEPS)["history"]]
    assert steps == list(range(1, MAX_STEPS + 1)), "history has a gap or a restarted stretch"
    assert_same_run(out, full_run)  # the losses after the resume point follow the uninterrupted run
    assert (out / "model.safetensors").is_file() and (out / "instructie.json").is_file()
    assert (out / "training.png").is_file() and (out / "tokenizer.json").is_file()


# ---------------------------------------------------------------- epochs built in a background process
def test_epochs_built_in_a_background_process_train_the_same_batches(full_run, tmp_path, capsys, monkeypatch):
    # prefetch_min_build_s 0: every epoch after the first comes from the worker (prefetch.py); batch for batch
    # it is the uninterrupted inline run. Then, as after a crash, the run resumes inside epoch 1, which it builds
    # first (the probe that sizes the run) instead of an epoch 0 it would not train on.
    import shutil

    from instructie.training.prefetch import EpochPrefetcher
    from instructie.training.checkpoint import checkpoints

    real_get, served = EpochPrefetcher.get, []

    def spy(self, epoch):
        tok = real_get(self, epoch)
        served.append((epoch, tok is not None))
        return tok

    monkeypatch.setattr(EpochPrefetcher, "get", spy)
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, prefetch_min_build_s=0, keep_checkpoints=10)
    assert cli_main(["train", "--config", str(cfg)]) == 0
    logged = capsys.readouterr().out
    assert "the next is built in a background process" in logged and "epoch builder failed" not in logged
    assert served == [(1, True), (2, True), (3, True)]  # 40 steps of 10 batches: epochs 1-3 from the worker

    assert_same_run(out, full_run)
    for c in checkpoints(out):  # the run "crashed" after step 14 (epoch 1, batch 4)
        if int(c.name.split("-")[1]) > 2 * SAVE_EVERY:
            shutil.rmtree(c)
    (out / "model.safetensors").unlink()
    served.clear()
    import instructie.training.finetune as train_module
    built, real_build = [], train_module.build_epoch

    def counted(*args, **kw):
        built.append(args[4])  # (sources, data, templates, seed, epoch, ...)
        return real_build(*args, **kw)

    monkeypatch.setattr(train_module, "build_epoch", counted)
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0
    assert "resumed from step-14: step 14, epoch 1, batch 4" in capsys.readouterr().out
    # the epoch it resumes in is the probe, built here at the start; epoch 0 is not built at all
    assert built == [1] and served == [(2, True), (3, True)]
    assert_same_run(out, full_run)


def test_the_epoch_worker_builds_what_the_loop_would_and_fails_soft(tmp_path):
    import threading

    from instructie.config import load_config
    from instructie.data.sources import build_epoch, load_sources
    from instructie.hints.memory import training_memory
    from instructie.prompts.instructions import load_templates
    from instructie.model.loading import ModelSpec, load_model_and_tokenizer
    from instructie.training.prefetch import EpochPrefetcher

    cfg = load_config(tiny_config(tmp_path, tmp_path / "run"), ["hints.memory=true",
                                                                "data.mention_replacement=0.5",
                                                                "data.max_source_length=2048"])
    sources, templates = load_sources(cfg.data.train), load_templates(None)
    fold_memory, _ = training_memory(sources, cfg.hints)
    _, tok, _ = load_model_and_tokenizer(ModelSpec(init="random", size="tiny", vocab_size=400),
                                         [r.text for s in sources for r in s.records])
    pre = EpochPrefetcher(sources, cfg.data, templates, 3, fold_memory, tok)
    try:
        assert pre.get(1) is None and pre.failure is None  # never requested: nothing to wait for
        pre.request(2)
        got, want = pre.get(2), build_epoch(sources, cfg.data, templates, 3, 2, fold_memory, tok)
        assert pre.failure is None and got is not None
        assert [list(x) for x in got.source_ids] == [list(x) for x in want.source_ids]
        assert [list(x) for x in got.target_ids] == [list(x) for x in want.target_ids]
        assert any("Memory:" in tok.decode(list(x)) for x in got.source_ids)  # hints went through the worker
    finally:
        pre.close()

    # no tokenizer: building fails in the worker; the caller is told and builds the epoch itself
    pre = EpochPrefetcher(sources, cfg.data, templates, 0, None, None)
    pre.request(1)
    assert pre.get(1) is None and "TypeError" in pre.failure
    pre.request(2)  # a failed worker takes no more work
    assert pre.get(2) is None
    # inputs that cannot be sent to a worker: the same, not an exception in the training loop
    pre = EpochPrefetcher(sources, cfg.data, templates, 0, threading.Lock(), tok)
    pre.request(1)
    assert pre.get(1) is None and "pickle" in pre.failure


def test_ragged_token_ids_read_like_lists_and_pickle_as_two_arrays():
    import pickle

    from instructie.data.sources import Ragged, Tokenized, collate, epoch_batches, seq_lengths

    seqs = [[5, 6, 7, 1], [], [8, 1], list(range(3, 300)) + [1]]
    r = Ragged.from_lists(seqs)
    assert len(r) == 4 and [list(x) for x in r] == seqs and list(r[-1]) == seqs[-1]
    assert seq_lengths(r) == [4, 0, 2, 298] == seq_lengths(seqs)
    with pytest.raises(IndexError):
        r[4]
    back = pickle.loads(pickle.dumps(r))
    assert [list(x) for x in back] == seqs
    with pytest.raises(ValueError):
        r[0][0] = 9  # items are read-only views of the epoch's data
    assert back.flat.dtype.name == "int32" and back.flat.size == sum(map(len, seqs))  # one buffer, not ints
    as_lists, as_ragged = Tokenized(seqs, seqs, 0, 0), Tokenized(r, r, 0, 0)
    assert epoch_batches(as_lists, 2, 0, 1, True) == epoch_batches(as_ragged, 2, 0, 1, True)
    a, b = collate([0, 2, 3], as_lists, 0, 16), collate([0, 2, 3], as_ragged, 0, 16)
    assert all(a[k].dtype == b[k].dtype and a[k].equal(b[k]) for k in a)


# ---------------------------------------------------------------- --max-time
def test_max_time_stops_with_checkpoint_and_exit_3_then_resume_completes(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=12, save_every=0)
    # a budget far below one step: the run stops after its first step, deterministically
    assert cli_main(["train", "--config", str(cfg), "--max-time", "0.001"]) == 3
    assert "time budget reached at step 1/12" in capsys.readouterr().out
    stopped = state_of(out)
    assert stopped["step"] == 1
    assert not (out / "model.safetensors").exists()

    # The budget is per invocation (a --resume gets it afresh): with a long recorded training time,
    # --max-time 600 still completes, and the recorded time keeps adding up.
    from instructie.training.checkpoint import STATE_FILE, checkpoints
    p = checkpoints(out)[-1] / STATE_FILE
    p.write_text(json.dumps({**stopped, "train_time_s": 1e6}))
    assert cli_main(["train", "--config", str(cfg), "--resume", "--max-time", "600"]) == 0
    final = state_of(out, 12)
    assert final["train_time_s"] >= 1e6
    assert [h["step"] for h in final["history"]] == list(range(1, 13))
    assert json.loads((out / "metrics.json").read_text())["step"] == 12


def test_an_adapters_complaint_names_the_config_entry(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=1, save_every=0)
    assert cli_main(["train", "--config", str(cfg), "--set", "data.test[0].split=validation"]) == 2
    err = capsys.readouterr().err
    assert "data.test[0]: ie_instructions: split must be one of" in err and "Traceback" not in err


def test_resume_under_another_model_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=12, save_every=0)
    assert cli_main(["train", "--config", str(cfg), "--max-time", "0.001"]) == 3
    capsys.readouterr()
    assert cli_main(["train", "--config", str(cfg), "--resume", "--set", "model.size=small",
                     "--set", "model.copy_head=true"]) == 2
    err = capsys.readouterr().err
    assert "step-1 was trained with another model than this config says" in err
    assert "model.size 'tiny' -> 'small'; model.copy_head False -> True" in err and "Traceback" not in err
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0  # the run's own config goes on


def test_max_time_reached_on_the_last_step_is_a_complete_run(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=1, save_every=0)
    assert cli_main(["train", "--config", str(cfg), "--max-time", "0.001"]) == 0
    assert (out / "model.safetensors").is_file()


def test_training_warns_when_the_source_limit_cuts_a_datasets_prompts(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=1, save_every=0)
    assert cli_main(["train", "--config", str(cfg), "--set", "data.max_source_length=40"]) == 0
    log = capsys.readouterr().out
    warning = next(x for x in log.splitlines() if "WARNING: data.max_source_length 40 cuts" in x)
    assert "duie/RE" in warning and "Raise data.max_source_length" in warning
    assert cli_main(["train", "--config", str(cfg), "--set", "data.max_source_length=4096",
                     "--output-dir", str(tmp_path / "run2")]) == 0
    assert "WARNING: data.max_source_length" not in capsys.readouterr().out


# ---------------------------------------------------------------- mention replacement
def _spans(rec):
    out = list(rec.entities)
    for r in rec.relations:
        out += [r.head, r.tail, *r.slots]
    for ev in rec.events:
        out += [ev.trigger, *ev.arguments]
    return out


def test_mention_replacement_keeps_offsets_valid():
    from instructie.data.augment import build_pool, replace_mentions

    records = fixture_records()
    assert {r.dataset for r in records} >= {"CoNLL2003", "DuEE", "duie"}
    pool = build_pool(records)
    changed = Counter()
    for seed in range(3):
        rng = random.Random(seed)
        for rec in records:
            new = replace_mentions(rec, pool, rng, p=1.0)
            assert (new.id, new.task, new.options) == (rec.id, rec.task, rec.options)
            old_spans, new_spans = _spans(rec), _spans(new)
            assert len(old_spans) == len(new_spans)
            renamed: dict[str, str] = {}
            for a, b in zip(old_spans, new_spans):
                if b.start is None:
                    assert b == a
                    continue
                assert 0 <= b.start <= b.end <= len(new.text)
                assert new.text[b.start:b.end] == b.text, (rec.id, b)
                if b.text != a.text:  # one surface string -> one replacement throughout the record
                    assert renamed.setdefault(a.text, b.text) == b.text
            if new.text != rec.text:
                changed[rec.dataset] += 1
                assert renamed, "text changed but no annotated span did"
    # p=1.0 does replace names in both languages (records with overlapping spans are kept as they are)
    assert changed["CoNLL2003"] > 0 and changed["duie"] > 0
    # p=0 and NEG records are returned untouched
    assert all(replace_mentions(r, pool, random.Random(0), p=0.0) is r for r in records)


def test_mention_novel_sets_the_share_of_unseen_strings_swapped_in(tmp_path):
    """data.mention_novel: at 0 every swapped-in name is a training name; at 1 swaps put in strings the training
    data does not hold."""
    from instructie.config import load_config
    from instructie.data.sources import load_sources, make_instances
    from instructie.prompts.instructions import load_templates
    from instructie.core.io import ConfigError

    def names(novel: float) -> tuple[int, int]:
        """(entity mentions of the epoch's NER instances, those whose text is no span of the training data)"""
        cfg = load_config(tiny_config(tmp_path, tmp_path / "run"),
                          ["data.mention_replacement=1.0", f"data.mention_novel={novel}"])
        sources = load_sources(cfg.data.train)
        known = {x.text for s in sources for r in s.records for x in r.spans()}
        got = [e.text for i in make_instances(sources, cfg.data, load_templates(None), seed=0, epoch=1)
               if i.task == "NER" for e in i.record.entities]
        return len(got), sum(t not in known for t in got)

    total, unseen = names(0.0)
    assert total > 20 and unseen == 0
    total, unseen = names(1.0)
    assert unseen > total // 4
    with pytest.raises(ConfigError, match="mention_novel"):
        load_config(tiny_config(tmp_path, tmp_path / "run"), ["data.mention_novel=1.5"])


def test_mention_replacement_instances_are_seeded_per_epoch(tmp_path):
    from instructie.config import load_config
    from instructie.data.sources import load_sources, make_instances
    from instructie.prompts.instructions import load_templates

    cfg = load_config(tiny_config(tmp_path, tmp_path / "run"), ["data.mention_replacement=1.0"])
    sources, templates = load_sources(cfg.data.train), load_templates(None)
    a = [i.source for i in make_instances(sources, cfg.data, templates, seed=0, epoch=1)]
    b = [i.source for i in make_instances(sources, cfg.data, templates, seed=0, epoch=1)]
    c = [i.source for i in make_instances(sources, cfg.data, templates, seed=0, epoch=2)]
    assert a == b and a != c


# ---------------------------------------------------------------- batches and padding
def _padding(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_make_batches_length_grouping():
    from instructie.data.sources import make_batches

    rng = random.Random(1)
    lengths = [rng.randint(5, 300) for _ in range(3000)]  # several 64-batch chunks at batch size 16
    grouped = make_batches(lengths, 16, random.Random(7), group_by_length=True)
    plain = make_batches(lengths, 16, random.Random(7), group_by_length=False)
    for batches in (grouped, plain):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))  # every index exactly once
        assert all(1 <= len(b) <= 16 for b in batches)
    assert _padding(grouped, lengths) < 0.2 * _padding(plain, lengths)
    # grouped batches are still in random order, not sorted by length over the epoch
    maxima = [max(lengths[i] for i in b) for b in grouped]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    # seeded: the same epoch gives the same batches (resume depends on it)
    assert make_batches(lengths, 16, random.Random(7), True) == grouped


def test_collate_pads_to_multiples_and_masks_labels():
    from instructie.data.sources import Tokenized, collate

    tok = Tokenized(source_ids=[[5, 6, 7, 1], [8, 1], list(range(3, 20)) + [1]],
                    target_ids=[[9, 1], [4, 4, 4, 1], [1]], n_truncated_source=0, n_truncated_target=0)
    b = collate([0, 1, 2], tok, pad_id=0, pad_multiple=16)
    assert b["input_ids"].shape == (3, 32)  # longest source 18 -> 32
    assert b["labels"].shape == (3, 16)  # longest target 4 -> 16
    for r, i in enumerate([0, 1, 2]):
        s, t = tok.source_ids[i], tok.target_ids[i]
        assert b["input_ids"][r, : len(s)].tolist() == s
        assert (b["input_ids"][r, len(s):] == 0).all()
        assert b["attention_mask"][r].tolist() == [1] * len(s) + [0] * (32 - len(s))
        assert b["labels"][r, : len(t)].tolist() == t
        assert (b["labels"][r, len(t):] == -100).all()
    assert collate([1], tok, pad_id=0, pad_multiple=1)["input_ids"].shape == (1, 2)
    fixed = collate([1], tok, pad_id=0, pad_multiple=16, fixed_source=64, fixed_target=8)
    assert fixed["input_ids"].shape == (1, 64) and fixed["labels"].shape == (1, 8)


def test_a_fresh_run_refuses_an_earlier_runs_checkpoints(tmp_path, capsys):
    """Pruning would keep the old run's higher-numbered checkpoints and --resume would
    continue the wrong run: a fresh run into such a folder stops with a clear line."""
    from instructie.cli.main import main as _main

    ckpt = tmp_path / "out" / "checkpoints" / "step-24"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    args = ["train", "--config", "configs/quickstart.yaml", "--output-dir", str(tmp_path / "out"), "--max-steps", "1"]
    assert _main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert ckpt.exists()


def fused_adamw(monkeypatch):
    """Training builds torch's fused AdamW, as it does on a GPU (fused AdamW runs on the CPU too)."""
    import torch
    from instructie.training import loop

    real = loop.build_optimizer

    def build(model, cfg):
        groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in real(model, cfg).param_groups]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=True)

    monkeypatch.setattr(loop, "build_optimizer", build)


# adamw (unfused, as on a CPU) skips on the host: the step's norm is read and logged; adafactor and fused AdamW
# are told to skip by a device flag, and the skips are counted when the loop next reads them
@pytest.mark.parametrize("optimizer, skipped_line", [
    ("adamw", "step 3: gradient norm inf: update skipped (1 so far)"),
    ("adafactor", "step 3: 1 update(s) skipped for a non-finite gradient norm (1 so far)"),
    ("fused adamw", "step 3: 1 update(s) skipped for a non-finite gradient norm (1 so far)"),
])
def test_an_update_with_a_non_finite_gradient_norm_is_skipped_and_counted(tmp_path, capsys, monkeypatch, optimizer,
                                                                          skipped_line):
    # A NaN/inf gradient norm would turn every weight into NaN (clipping scales by clip/inf): that step's
    # update is skipped, counted in the state, and the run goes on to a finite model.
    from accelerate import Accelerator
    import torch
    from safetensors.torch import load_file

    real = Accelerator.clip_grad_norm_
    calls = []

    def flaky(self, params, max_norm, *a, **k):
        calls.append(1)
        params = list(params)
        norm = real(self, params, max_norm, *a, **k)
        if len(calls) == 3:  # what an overflow leaves behind: NaN gradients, an inf norm
            for p in params:
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
            return torch.tensor(float("inf"))
        return norm

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", flaky)
    if optimizer == "fused adamw":
        fused_adamw(monkeypatch)
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=5, save_every=5, optimizer=optimizer.split()[-1])
    assert cli_main(["train", "--config", str(cfg)]) == 0
    assert skipped_line in capsys.readouterr().out
    state = state_of(out, 5)
    assert state["skipped_steps"] == 1 and state["step"] == 5
    weights = load_file(str(out / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


# Skips on the host are read every step, so the run stops at the step the tenth skip in a row is made; on the
# device (adafactor), at the next step the counts are read: a logged step or a checkpoint, which every step is with
# log_every 1. A checkpoint holds the skips up to its step either way.
@pytest.mark.parametrize("optimizer, log_every, in_a_row, stop, logged, skipped_line", [
    ("adamw", 1, 10, 14, [1, 2, 3, 4], "step 14: gradient norm nan: update skipped (10 so far)"),
    ("adafactor", 1, 10, 14, [1, 2, 3, 4], "step 14: 1 update(s) skipped for a non-finite gradient norm (10 so far)"),
    ("adafactor", 5, 11, 15, [5], "steps 13-15: 3 update(s) skipped for a non-finite gradient norm (11 so far)"),
])
def test_a_loss_gone_nan_stops_with_one_line_naming_the_checkpoint(tmp_path, capsys, monkeypatch, optimizer,
                                                                  log_every, in_a_row, stop, logged, skipped_line):
    # A diverged model (every batch's loss NaN from step 5 on) ends the run after MAX_SKIPPED_IN_A_ROW
    # skipped updates with one clear line (exit 1), not a traceback; the NaN updates were skipped, so the
    # checkpoints stay usable and the NaN batches stay out of the logged loss.
    from instructie.training.loop import MAX_SKIPPED_IN_A_ROW
    from transformers import T5ForConditionalGeneration

    real = T5ForConditionalGeneration.forward
    calls = []

    def nan_after_four(self, *a, **k):
        out = real(self, *a, **k)
        if self.training and out.loss is not None:
            calls.append(1)
            if len(calls) > 4:
                out["loss"] = out.loss * float("nan")
        return out

    monkeypatch.setattr(T5ForConditionalGeneration, "forward", nan_after_four)
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=30, save_every=4, optimizer=optimizer, log_every=log_every)
    assert cli_main(["train", "--config", str(cfg)]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert in_a_row >= MAX_SKIPPED_IN_A_ROW
    assert f"error: loss or gradients not finite for {in_a_row} updates in a row (up to step {stop})" in err
    assert "the last checkpoint is step-12: continue with --resume" in err and "Traceback" not in err
    assert skipped_line in captured.out
    state = state_of(out, 12)
    assert state["skipped_steps"] == 8 and [h["step"] for h in state["history"]] == logged
    from safetensors.torch import load_file
    import torch
    w = load_file(str(out / "checkpoints" / "step-12" / "model.safetensors"))
    assert all(torch.isfinite(x).all() for x in w.values())


def test_training_forwards_build_no_key_value_cache(tmp_path, monkeypatch):
    # a cache is for generation: the training loop asks for none (transformers 5.x would build one per forward)
    from transformers import T5ForConditionalGeneration

    real, seen = T5ForConditionalGeneration.forward, []

    def spy(self, *a, **k):
        out = real(self, *a, **k)
        if self.training:
            seen.append(out.past_key_values)
        return out

    monkeypatch.setattr(T5ForConditionalGeneration, "forward", spy)
    cfg = tiny_config(tmp_path, tmp_path / "run", max_steps=3, save_every=0)
    assert cli_main(["train", "--config", str(cfg), "--set", "data.test=[]", "--set", "data.eval=[]"]) == 0
    assert len(seen) >= 3 and all(c is None for c in seen)


def test_a_failing_dev_evaluation_first_saves_the_steps_trained_since_the_last_checkpoint_and_is_made_on_resume(
        tmp_path, monkeypatch):
    import instructie.evaluation.evaluate as evaluate

    def broken(*a, **k):
        raise RuntimeError("scorer bug")

    monkeypatch.setattr(evaluate, "evaluate_sources", broken)
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, max_steps=20, save_every=0, eval_every=6)
    with pytest.raises(RuntimeError, match="scorer bug"):
        cli_main(["train", "--config", str(cfg)])
    state = state_of(out)
    assert state["step"] == 6 and [h["step"] for h in state["history"]] == list(range(1, 7))
    monkeypatch.undo()
    assert cli_main(["train", "--config", str(cfg), "--resume"]) == 0
    # the evaluation that failed is made on resuming, then the others as due
    assert [e["step"] for e in state_of(out, 20)["evals"]] == [6, 12, 18]
    assert (out / "metrics" / "step-6.json").exists()


# ---------------------------------------------------------------- option chunks in training
def test_tokenize_counts_cut_prompts_per_dataset_and_task():
    """A prompt cut to the limit loses its end (hint, 'Answer:'): training names the datasets it happens to."""
    from instructie.data.sources import tokenize
    from instructie.prompts.instructions import Instance
    from instructie.model.tokenizer import train_tokenizer

    tok = train_tokenizer(["short text", "a much longer text " * 20], vocab_size=300)
    short, long_ = "Text: short text\nAnswer:", "Text: " + "a much longer text " * 20 + "\nAnswer:"
    insts = [Instance(f"{i}", task, ds, src, "None", None) for i, (ds, task, src) in enumerate(
        [("DuEE", "EE", long_), ("DuEE", "EE", short), ("CoNLL2003", "NER", short), ("CoNLL2003", "NER", short),
         ("CoNLL2003", "NER", long_)] + [("CoNLL2003", "NER", short)] * 30)]
    t = tokenize(insts, tok, max_source=32, max_target=8)
    assert t.n_truncated_source == 2
    assert t.source_cuts == {"CoNLL2003/NER": (1, 33), "DuEE/EE": (1, 2)}
    assert t.longest_source > 32 and all(len(s) <= 32 and s[-1] == tok.eos_token_id for s in t.source_ids)
    assert t.heavy_cuts(0.05) == {"DuEE/EE": (1, 2)}  # 1 of 33 CoNLL prompts is under 5%
    assert tokenize(insts, tok, max_source=4096, max_target=8).source_cuts == {}


@pytest.mark.parametrize("copy_head", [False, True])
def test_micro_batches_make_the_same_update_as_the_whole_batch(copy_head):
    """train.max_batch_tokens runs a batch of long prompts in parts: the summed part losses
    and gradients must be the whole batch's (else the setting would change what is learned)."""
    import torch

    from instructie.data.sources import Tokenized, collate
    from instructie.model.loading import build_random_t5
    from instructie.training.loop import micro_batches

    torch.manual_seed(0)
    model = build_random_t5("tiny", 64, copy_head=copy_head)
    model.eval()  # no dropout: both passes must see the same network
    rng = random.Random(3)
    srcs = [[rng.randint(3, 63) for _ in range(rng.randint(4, 30))] + [1] for _ in range(7)]
    tgts = [[rng.randint(3, 63) for _ in range(rng.randint(1, 9))] + [1] for _ in range(7)]
    batch = collate(list(range(7)), Tokenized(srcs, tgts, 0, 0), pad_id=0, pad_multiple=1)
    width = batch["input_ids"].shape[1]

    def run(parts):
        model.zero_grad()
        total = 0.0
        for part, share in parts:
            loss = model(**part).loss * share
            loss.backward()
            total += float(loss.detach())
        return total, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    assert micro_batches(batch, None) == [(batch, 1.0)]
    assert micro_batches(batch, 7 * width) == [(batch, 1.0)]  # fits: untouched
    parts = micro_batches(batch, 3 * width)
    assert [p["input_ids"].shape[0] for p, _ in parts] == [3, 3, 1]
    assert sum(share for _, share in parts) == pytest.approx(1.0)
    # each part is cut to its own longest source and target
    for part, _ in parts:
        assert part["attention_mask"][:, -1].any() and (part["labels"][:, -1] != -100).any()
    for part, _ in micro_batches(batch, 3 * width, pad_multiple=8):  # widths rounded as collate rounds
        assert part["input_ids"].shape[1] in (width, *range(8, width, 8))
    whole_loss, whole_grads = run([(batch, 1.0)])
    split_loss, split_grads = run(parts)
    assert split_loss == pytest.approx(whole_loss, rel=1e-5)
    assert len(split_grads) == len(whole_grads)
    for a, b in zip(whole_grads, split_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_max_batch_tokens_is_refused_under_deepspeed(tmp_path):
    """DeepSpeed's engine steps the optimizer after every backward, so parts would be separate updates:
    a clear error instead of a silently different training."""
    from types import SimpleNamespace

    from instructie.config import TrainConfig
    from instructie.core.io import ConfigError
    from instructie.training.loop import check_distributed

    acc = SimpleNamespace(is_main_process=True, distributed_type="DEEPSPEED")
    with pytest.raises(ConfigError, match="max_batch_tokens does not work under DeepSpeed"):
        check_distributed(acc, TrainConfig(max_batch_tokens=4096))


@pytest.mark.parametrize("sharding", ["FSDP", "DEEPSPEED"])
def test_adafactor_is_refused_under_sharding_before_the_data_is_read(tmp_path, monkeypatch, sharding):
    """Adafactor's factored moments average whole rows and columns, which sharded weights do not hold (FSDP: the
    step fails; DeepSpeed: flat shards, silently unfactored): the run stops with a clear error at once, not after
    minutes of data and tokenizer work."""
    from types import SimpleNamespace

    from instructie.config import load_config
    from instructie.core.io import ConfigError
    from instructie.training import finetune

    import accelerate

    # the Accelerator that make_accelerator builds, as a launch with a sharding config would give it
    monkeypatch.setattr(accelerate, "Accelerator",
                        lambda **kw: SimpleNamespace(is_main_process=True, distributed_type=sharding, num_processes=2))
    monkeypatch.setattr(finetune, "load_sources", lambda *a: pytest.fail("the data was read first"))
    cfg = load_config(None, ["model.init=random", f"train.output_dir={tmp_path / 'run'}", "train.optimizer=adafactor",
                             f"data.train=[{{adapter: duie, path: {FIXTURES / 'duie' / 'duie_train_excerpt.json'}}}]"])
    with pytest.raises(ConfigError, match=f"adafactor does not run on {sharding}'s sharded weights"):
        finetune.train(cfg)


def test_steps_per_second_leaves_out_a_slow_start(tmp_path, capsys):
    """eval/experiments/steps_per_second.py (eval/experiments/throughput_probe.sh): the rate of the last half of the logged steps, so a
    compile's or start-up's slow first steps do not count; a history too short for a rate is a clear error."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("steps_per_second",
                                                  Path(__file__).resolve().parents[2] / "eval" / "experiments" / "steps_per_second.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # steps 10-20 slow (a recompile: 100 s), then 10 steps every 2.5 s; over the whole history the rate would be
    # 190 steps / 145 s = 1.31
    history = [{"step": 10 * k, "loss": 1.0, "lr": 1e-3, "time_s": 240.0 + (100 if k > 1 else 0) + 2.5 * (k - 2)}
               for k in range(1, 21)]
    history[0]["time_s"] = 240.0
    r = mod.steady_rate(history)
    assert r["steps_per_s"] == 4.0 and r["to_step"] == 200 and r["from_step"] == 110
    assert r["first_logged_step"] == 10 and r["first_logged_s"] == 240.0
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"history": history[:1]}), encoding="utf-8")
    assert mod.main([str(state)]) == 2
    assert str(state) in capsys.readouterr().err
    state.write_text(json.dumps({"history": history}), encoding="utf-8")
    assert mod.main([str(state), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps_per_s"] == 4.0


def test_collect_run_files_a_three_call_run_under_the_names_earlier_runs_keep(tmp_path, capsys):
    """eval/collect_run.py: logs renamed per call, the NAME_ prefix dropped, the predictions archive unpacked to
    gzipped JSONL that reads back line for line, a later call's file winning, and nothing overwritten unasked."""
    import gzip
    import importlib.util
    import io
    import tarfile
    spec = importlib.util.spec_from_file_location("collect_run", Path(__file__).resolve().parents[2] / "eval" / "collect_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fetched = tmp_path / "fetched"
    for n, text in ((1, "first"), (2, "second"), (3, "third")):
        (fetched / f"call{n}").mkdir(parents=True)
        (fetched / f"call{n}" / f"r1_{n}.log").write_text(text)
        (fetched / f"call{n}" / "reply.txt").write_text("the device tool's reply")
    (fetched / "call1" / "r1_p.log").write_text("pretraining")
    (fetched / "call2" / "r1_metrics.json").write_text('{"old": 1}')
    (fetched / "call3" / "r1_metrics.json").write_text('{"new": 1}')
    rows = b'{"id": "a"}\n{"id": "b"}\n'
    with tarfile.open(fetched / "call3" / "r1_predictions.tgz", "w:gz") as tar:
        for member in ("./r1_test_hint_predictions.floor.jsonl", "./notes.txt"):
            info = tarfile.TarInfo(member)
            info.size = len(rows)
            tar.addfile(info, io.BytesIO(rows))
    dest = tmp_path / "runs" / "r1"
    assert mod.main(["r1", str(fetched), "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["metrics.json", "pretrain.log",
                                                      "test_hint_predictions.floor.jsonl.gz", "train_1.log",
                                                      "train_2.log", "train_3.log"]
    assert (dest / "train_2.log").read_text() == "second" and (dest / "metrics.json").read_text() == '{"new": 1}'
    err = capsys.readouterr().err
    assert "metrics.json from call3 replaces the one from call2" in err and "notes.txt, not a prediction file" in err
    with gzip.open(dest / "test_hint_predictions.floor.jsonl.gz") as f:
        assert f.read() == rows
    with pytest.raises(SystemExit, match="already holds"):
        mod.main(["r1", str(fetched), "--dest", str(dest)])
    assert mod.main(["r1", str(fetched), "--dest", str(dest), "--force"]) == 0
    with pytest.raises(SystemExit, match="no r2_"):
        mod.main(["r2", str(fetched), "--dest", str(tmp_path / "r2")])


def test_the_decoder_kept_for_evaluation_is_let_go_before_training_goes_on(tmp_path, monkeypatch):
    """Dev evaluation decodes with the static decoder, which keeps buffers (and on a GPU graphs) per model:
    none of them may stay allocated through the training steps after it."""
    from transformers import T5ForConditionalGeneration

    from instructie.decoding.static_decoder import _DECODERS

    real = T5ForConditionalGeneration.forward
    held = []

    def forward(self, *a, **k):
        if self.training and k.get("labels") is not None:
            held.append(self in _DECODERS)
        return real(self, *a, **k)

    monkeypatch.setattr(T5ForConditionalGeneration, "forward", forward)
    cfg = tiny_config(tmp_path, tmp_path / "run", max_steps=6, save_every=0, eval_every=2)
    assert cli_main(["train", "--config", str(cfg)]) == 0
    assert len(held) >= 6 and not any(held)
