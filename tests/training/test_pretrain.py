"""`instructie pretrain`: T5 span corruption (exact properties), reading unlabeled text, a tiny pretraining
run on fixture texts (model directory, sentinels, resume after a --max-time stop), `train` starting from its
output, and bad configs. CPU, one thread, well under a minute."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from instructie.cli.main import main as cli_main
from instructie.core.io import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MAX_STEPS = 10
SENT = list(range(1000, 1100))  # fake sentinel ids, outside the fake token range
EOS = 1


# ---------------------------------------------------------------- span corruption
def reconstruct(inputs: list[int], targets: list[int]) -> list[int]:
    """Put each sentinel's span (from the targets) back in its place in the inputs."""
    assert inputs[-1] == EOS and targets[-1] == EOS
    spans: dict[int, list[int]] = {}
    cur = None
    for tok in targets[:-1]:
        if tok in SENT:
            cur = tok
            assert cur not in spans
            spans[cur] = []
        else:
            assert cur is not None, "targets must start with a sentinel"
            spans[cur].append(tok)
    out = []
    for tok in inputs[:-1]:
        out += spans.pop(tok) if tok in SENT else [tok]
    assert not spans, "a target span has no sentinel in the inputs"
    return out


def test_span_corruption_is_t5s_and_reversible():
    from instructie.data.span_corruption import corrupted_lengths, example_rng, noise_counts, span_corrupt

    rng = np.random.default_rng(0)
    noise = total = spans = 0
    for k, length in enumerate([2, 3, 5, 10, 31, 64, 141, 284, 568] * 20):
        tokens = rng.integers(2, 999, size=length).tolist()
        inp, tgt = span_corrupt(tokens, SENT, EOS, 0.15, 3.0, example_rng(7, 0, k))
        assert reconstruct(inp, tgt) == tokens
        used_in, used_tgt = [t for t in inp if t in SENT], [t for t in tgt if t in SENT]
        assert used_in == used_tgt == SENT[: len(used_in)], "sentinels in order, once each, same in both"
        assert tgt[0] == SENT[0] and inp[0] not in SENT  # T5: a clean span first, a noise span last
        assert inp[-2] == used_in[-1]
        n_noise, n_spans = noise_counts(length, 0.15, 3.0)
        assert len(tgt) - 1 - len(used_tgt) == n_noise and len(used_in) == n_spans
        assert n_noise == min(max(round(length * 0.15), 1), length - 1)
        assert (len(inp), len(tgt)) == corrupted_lengths(length, 0.15, 3.0)
        if length >= 64:
            noise, total, spans = noise + n_noise, total + length, spans + n_spans
    assert noise / total == pytest.approx(0.15, abs=0.005)
    assert noise / spans == pytest.approx(3.0, rel=0.05)

    # deterministic per (seed, epoch, example), and different across them
    tokens = list(range(2, 202))
    a = span_corrupt(tokens, SENT, EOS, 0.15, 3.0, example_rng(0, 1, 5))
    assert a == span_corrupt(tokens, SENT, EOS, 0.15, 3.0, example_rng(0, 1, 5))
    for other in (example_rng(0, 1, 6), example_rng(0, 2, 5), example_rng(1, 1, 5)):
        assert span_corrupt(tokens, SENT, EOS, 0.15, 3.0, other) != a
    # other densities and span lengths keep the invariants
    for density, mean in ((0.5, 1.0), (0.3, 8.0), (0.05, 2.0)):
        inp, tgt = span_corrupt(tokens, SENT, EOS, density, mean, example_rng(0, 0, 0))
        assert reconstruct(inp, tgt) == tokens
        assert len(tgt) - 1 - len([t for t in tgt if t in SENT]) == round(200 * density)


def test_chunk_length_fills_max_source_length():
    from instructie.data.span_corruption import chunk_length, corrupted_lengths

    for max_src, density, mean in ((512, 0.15, 3.0), (256, 0.15, 3.0), (128, 0.3, 2.0), (64, 0.15, 3.0)):
        n = chunk_length(max_src, density, mean)
        assert corrupted_lengths(n, density, mean)[0] <= max_src < corrupted_lengths(n + 1, density, mean)[0]
    assert chunk_length(512, 0.15, 3.0) == 568  # T5's inputs_length 512 -> 568 tokens, targets 114
    assert corrupted_lengths(568, 0.15, 3.0) == (512, 114)


def test_packed_chunks_cover_the_stream_and_split_long_texts():
    from instructie.data.span_corruption import Corpus, make_chunks
    import random

    corpus = Corpus(np.arange(100, dtype=np.int32), np.array([0, 10, 11, 70, 100]))
    stream, starts, ends = make_chunks(corpus, 16, True, random.Random(0))
    assert sorted(stream.tolist()) == list(range(100)) and starts[0] == 0 and ends[-1] == 100
    assert all(e - s == 16 for s, e in zip(starts[:-1], ends[:-1]))
    stream, starts, ends = make_chunks(corpus, 16, False, None)
    pieces = [(int(s), int(e)) for s, e in zip(starts, ends)]
    # text 1 (one token) is dropped; 59 tokens -> 4 pieces of 14-15; 30 -> 2 of 15
    assert pieces == [(0, 10), (11, 25), (25, 40), (40, 55), (55, 70), (70, 85), (85, 100)]


# ---------------------------------------------------------------- reading texts
def test_read_texts_formats_filters_and_errors(tmp_path):
    from instructie.config import PretrainDataConfig
    from instructie.data.texts import read_texts

    (tmp_path / "a.txt").write_text("first text is long enough\n\nshort\nsecond text, 第二个文本也够长了吗\n",
                                    encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "first text is long enough"}) + "\n"
                                      + json.dumps({"body": "x", "text": "a jsonl text of some length"}) + "\n",
                                      encoding="utf-8")
    (tmp_path / "c.csv").write_text('id,text\n1,"a csv text,\nover two lines"\n2,another csv text here\n',
                                    encoding="utf-8")
    d = PretrainDataConfig(files=[str(tmp_path / "*.txt"), str(tmp_path / "b.jsonl"), str(tmp_path / "c.csv")],
                           min_chars=10)
    got = read_texts(d)
    assert got.texts == ["first text is long enough", "second text, 第二个文本也够长了吗",
                         "a jsonl text of some length", "a csv text,\nover two lines", "another csv text here"]
    per = {Path(s["source"]).name: s for s in got.report["sources"]}
    assert per["a.txt"]["too_short"] == 1 and per["b.jsonl"]["duplicates"] == 1
    # a CSV field longer than the csv module's default limit (131,072 characters) is a text, not an error
    long = "a long csv text " * 10_000
    (tmp_path / "long.csv").write_text(f'id,text\n1,"{long}"\n', encoding="utf-8")
    assert read_texts(PretrainDataConfig(files=[str(tmp_path / "long.csv")], min_chars=10)).texts == [long.strip()]
    # the folder form and the adapters
    d = PretrainDataConfig(files=[str(tmp_path)], min_chars=10, max_texts=3)
    assert len(read_texts(d).texts) == 3

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jsonl").write_text('{"text": "a fine line of jsonl text"}\n{"text": oops}\n{"title": "no text"}\n',
                                 encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.jsonl:2: malformed JSON"):
        read_texts(PretrainDataConfig(files=[str(bad / "x.jsonl")]))
    got = read_texts(PretrainDataConfig(files=[str(bad / "x.jsonl")]), skip_invalid=True)
    assert got.texts == ["a fine line of jsonl text"] and got.report["skipped_invalid"] == 2
    (bad / "y.txt").write_bytes(b"good line of text here\nbad \xff byte line\n")
    with pytest.raises(InputError, match=r"y\.txt:2: not valid UTF-8"):
        read_texts(PretrainDataConfig(files=[str(bad / "y.txt")]))
    (bad / "z.csv").write_text("id,title\n1,x\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"z\.csv:1: no column 'text'"):
        read_texts(PretrainDataConfig(files=[str(bad / "z.csv")]))


# ---------------------------------------------------------------- a tiny run
def tiny_config(tmp_path: Path, out: Path, **train) -> Path:
    """configs/pretrain-quickstart.yaml made smaller: absolute paths, short chunks, few steps."""
    cfg = yaml.safe_load((ROOT / "configs" / "pretrain-quickstart.yaml").read_text(encoding="utf-8"))
    d = cfg["data"]
    d["files"] = [str(ROOT / f) for f in d["files"]]
    for ds in d["adapters"]:
        ds["path"] = str(ROOT / ds["path"])
        ds["options"] = {k: str(ROOT / v) if isinstance(v, str) and v.startswith("tests/") else v
                         for k, v in (ds.get("options") or {}).items()}
    d.update(max_source_length=48, eval_texts=4)
    cfg["model"]["vocab_size"] = 600
    cfg["train"].update(output_dir=str(out), batch_size=8, max_steps=MAX_STEPS, warmup_steps=2, save_every=4,
                        eval_every=5, log_every=1)
    cfg["train"].update(train)
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def state_of(out: Path, step: int) -> dict:
    from instructie.training.checkpoint import STATE_FILE
    return json.loads((out / "checkpoints" / f"step-{step}" / STATE_FILE).read_text())


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    out = tmp / "base"
    assert cli_main(["pretrain", "--config", str(tiny_config(tmp, out))]) == 0
    return out


def test_pretrain_writes_a_base_model_directory(pretrained):
    from transformers import AutoTokenizer

    from instructie.model.loading import load_trained
    from instructie.data.span_corruption import SENTINEL, sentinel_ids

    out = pretrained
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "instructie.json",
                 "metrics.json", "training.png", "run_config.json", "data_report.json", "tokenizer/tokenizer.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "instructie.json").read_text())
    assert card["kind"] == "pretrained" and card["objective"] == "t5_span_corruption"
    assert card["steps"] == MAX_STEPS and card["max_source_length"] <= 48 and card["sentinels"] == 100
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == MAX_STEPS and np.isfinite(metrics["eval_loss"]) and metrics["target_tokens"] > 0
    assert [e["step"] for e in metrics["evals"]] == [5, MAX_STEPS]
    assert metrics["evals"][-1]["eval_loss"] == metrics["eval_loss"]
    state = state_of(out, MAX_STEPS)
    assert [h["step"] for h in state["history"]] == list(range(1, MAX_STEPS + 1))
    assert state["history"][-1]["loss"] < state["history"][0]["loss"]

    # The sentinels survive save/load with the ids used in training; the model has rows for all of them.
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = sentinel_ids(tok, 100)
    assert ids is not None and len(set(ids)) == 100
    run_tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    assert sentinel_ids(run_tok, 100) == ids and len(run_tok) == len(tok)
    model, tok2 = load_trained(out, device="cpu")
    assert model.get_input_embeddings().num_embeddings >= len(tok) > max(ids)
    enc = tok2(f"hello {SENTINEL.format(7)} world")["input_ids"]
    assert ids[7] in enc and enc[-1] == tok2.eos_token_id
    assert tok2.decode(enc, skip_special_tokens=True).split() == ["hello", "world"]
    report = json.loads((out / "model_report.json").read_text())
    assert report["tokenizer_len"] == len(tok) and "trained on the texts" in report["tokenizer"]


def test_resume_after_max_time_stop_continues_to_max_steps(pretrained, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, save_every=0)
    assert cli_main(["pretrain", "--config", str(cfg), "--max-time", "0.001"]) == 3
    assert f"time budget reached at step 1/{MAX_STEPS}" in capsys.readouterr().out
    assert state_of(out, 1)["step"] == 1 and not (out / "model.safetensors").exists()

    assert cli_main(["pretrain", "--config", str(cfg), "--resume"]) == 0
    assert "resumed from step-1: step 1, epoch 0, batch 1" in capsys.readouterr().out
    final, ref = state_of(out, MAX_STEPS), state_of(pretrained, MAX_STEPS)
    assert [h["step"] for h in final["history"]] == list(range(1, MAX_STEPS + 1))
    for k in ("step", "epoch", "batch_in_epoch", "examples", "target_tokens"):
        assert final[k] == ref[k], k
    ref_loss = {h["step"]: h["loss"] for h in ref["history"]}
    for h in final["history"]:  # the same batches, the same corruption, the same RNG for dropout
        assert h["loss"] == pytest.approx(ref_loss[h["step"]], rel=1e-3), h["step"]
    assert json.loads((out / "metrics.json").read_text())["step"] == MAX_STEPS


def test_train_starts_from_the_pretrained_directory(pretrained, tmp_path):
    from transformers import AutoTokenizer

    from instructie.data.span_corruption import sentinel_ids

    out = tmp_path / "ft"
    cfg = {
        "model": {"name_or_path": str(pretrained), "init": "pretrained"},
        "data": {"tasks": ["NER"], "max_source_length": 128, "max_target_length": 32,
                 "train": [{"adapter": "ie_instructions", "path": str(FIXTURES / "ie_instructions"),
                            "split": "train", "options": {"datasets": ["CoNLL2003"]}}]},
        "train": {"output_dir": str(out), "max_steps": 3, "batch_size": 4, "warmup_steps": 1, "save_every": 0,
                  "log_every": 1},
        "eval": {"max_new_tokens": 4},
    }
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert cli_main(["train", "--config", str(path)]) == 0
    report = json.loads((out / "model_report.json").read_text())
    base_tok = AutoTokenizer.from_pretrained(str(pretrained))
    # the pretrained tokenizer as it is: not retrained, no characters added, sentinels kept
    assert report["source"] == str(pretrained) and report["tokenizer"] == str(pretrained)
    assert report["tokenizer_len"] == len(base_tok) and not report.get("added_chars")
    ft_tok = AutoTokenizer.from_pretrained(str(out))
    assert ft_tok.get_vocab() == base_tok.get_vocab() and sentinel_ids(ft_tok, 100) == sentinel_ids(base_tok, 100)
    from instructie.inference.extractor import Extractor
    ex = Extractor.from_pretrained(out, device="cpu")
    assert list(ex.extract(["Barack Obama visited Paris."], tasks=["NER"], max_new_tokens=4))


def test_continued_pretraining_adds_missing_sentinels(tiny_model_dir, tmp_path):
    """init: pretrained from a model whose tokenizer has no sentinels (a `train` output, or conftest's tiny
    model): they are added as special tokens and the embeddings grown; the tokenizer is otherwise kept."""
    from transformers import AutoTokenizer

    from instructie.model.loading import load_trained
    from instructie.data.span_corruption import sentinel_ids

    base_tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert sentinel_ids(base_tok, 1) is None
    out = tmp_path / "cont"
    cfg = yaml.safe_load(tiny_config(tmp_path, out, max_steps=2, eval_every=0).read_text(encoding="utf-8"))
    cfg["model"] = {"name_or_path": str(tiny_model_dir), "init": "pretrained"}
    path = tmp_path / "cont.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    assert cli_main(["pretrain", "--config", str(path)]) == 0
    report = json.loads((out / "model_report.json").read_text())
    assert report["sentinels_added"] == 100 and report["source"] == str(tiny_model_dir)
    model, tok = load_trained(out, device="cpu")
    assert len(tok) == len(base_tok) + 100 and sentinel_ids(tok, 100) == list(range(len(base_tok), len(tok)))
    assert {k: v for k, v in tok.get_vocab().items() if not k.startswith("<extra_id_")} == base_tok.get_vocab()
    assert model.get_input_embeddings().num_embeddings >= len(tok)
    assert model.get_output_embeddings().weight.shape[0] == model.get_input_embeddings().num_embeddings


# ---------------------------------------------------------------- two processes
def test_two_cpu_processes_pretrain_with_one_schedule(tmp_path):
    """accelerate launch, 2 CPU processes: the tokenizer is trained once and shared, the held-out loss is
    reduced over both ranks, the model directory written once, and the lr schedule runs once over the run
    (accelerate steps a prepared scheduler once per process unless told not to: lr reached 0 halfway)."""
    import os
    import subprocess
    import sys

    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch without gloo")
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, out, eval_every=3, optimizer="adamw", lr=1e-3)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                        str(ROOT / "configs" / "accelerate" / "cpu2.yaml"), "-m", "instructie", "pretrain",
                        "--config", str(cfg)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    assert "2 process(es)" in log and log.count("saved pretrained model") == 1
    state = state_of(out, MAX_STEPS)
    lrs = [h["lr"] for h in state["history"]]
    assert lrs[4] > 0.4e-3 and lrs[-1] == pytest.approx(0.0, abs=1e-9), lrs
    losses = [e["eval_loss"] for e in json.loads((out / "metrics.json").read_text())["evals"]]
    assert len(losses) == 4 and len(set(losses)) == 4 and losses[-1] < losses[0], losses


# ---------------------------------------------------------------- configs
def test_bad_pretrain_configs_fail_with_the_key(tmp_path, capsys):
    from instructie.config import load_pretrain_config

    cfg = yaml.safe_load(tiny_config(tmp_path, tmp_path / "out").read_text(encoding="utf-8"))

    def error(**patch):
        data = json.loads(json.dumps(cfg))
        for key, value in patch.items():
            section, name = key.split("__")
            if value is None:
                data[section].pop(name)
            else:
                data[section][name] = value
        p = tmp_path / "bad.yaml"
        p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_pretrain_config(p)
        return str(e.value)

    assert "data.files[1]: " in error(data__files=[cfg["data"]["files"][0], str(tmp_path / "nope.txt")])
    assert "data.files[0]: the pattern" in error(data__files=[str(tmp_path / "*.nothing")])
    assert "not a .txt" in error(data__files=[str(ROOT / "configs" / "quickstart.yaml")])
    assert "at least one source of text" in error(data__files=[], data__adapters=[])
    assert "data.adapters[0].path" in error(data__adapters=[{"adapter": "duie", "path": str(tmp_path / "x")}])
    assert "data.noise_density" in error(data__noise_density=1.5)
    assert "data.mean_span_length" in error(data__mean_span_length=0.5)
    assert "data.max_source_length must be >= 8" in error(data__max_source_length=4)
    assert "data.max_target_length" in error(data__max_target_length=64)  # unknown key: it is derived
    assert "train.optimizer" in error(train__optimizer="sgd")
    assert "model.name_or_path is required" in error(model__init="pretrained")

    # the CLI: exit code 2 and one line, before any work
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**cfg, "data": {**cfg["data"], "noise_density": 0}}))
    assert cli_main(["pretrain", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "data.noise_density" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_pretrain_configs_are_valid(monkeypatch):
    from instructie.config import load_pretrain_config

    monkeypatch.chdir(ROOT)
    cfg = load_pretrain_config("configs/pretrain-quickstart.yaml")
    assert cfg.model.init == "random" and cfg.data.adapters
    data = Path(__import__("os").environ.get("INSTRUCTIE_DATA", ROOT.parent / "shared" / "data"))
    if not (data / "fin_negative" / "Test_Data.csv").exists():
        pytest.skip("shared data not here")
    cfg = load_pretrain_config("configs/pretrain-small.yaml")
    assert cfg.model.size == "small" and cfg.train.precision in ("auto", "bf16")


def test_extractor_refuses_a_pretrained_base(tmp_path):
    """A span-corruption base is not an extraction model: a clear error, not garbage output."""
    import json

    import pytest

    from instructie.inference.extractor import Extractor
    from instructie.core.io import ConfigError

    (tmp_path / "instructie.json").write_text(json.dumps({"kind": "pretrained"}))
    with pytest.raises(ConfigError, match="fine-tune it"):
        Extractor.from_pretrained(tmp_path)
