"""Bad configs fail up front with a ConfigError naming the dotted key; the CLI turns that
into one line on stderr and exit code 2, before any work (no output directory, no model)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from instructie.cli.main import main as cli_main
from instructie.config import RunConfig, load_config, parse_override
from instructie.core.io import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def base(tmp_path: Path) -> dict:
    return {
        "model": {"init": "random", "size": "tiny", "vocab_size": 1000},
        "data": {
            "tasks": ["NER"],
            "train": [{"adapter": "ie_instructions", "path": str(FIXTURES / "ie_instructions"), "split": "train"}],
        },
        "train": {"output_dir": str(tmp_path / "run"), "max_steps": 2},
    }


def write(tmp_path: Path, cfg: dict, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def error_of(tmp_path: Path, cfg: dict, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, cfg), list(overrides))
    return str(e.value)


def test_good_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, base(tmp_path)))
    assert isinstance(cfg, RunConfig)
    assert cfg.train.max_steps == 2 and cfg.data.train[0].adapter == "ie_instructions"


def test_shipped_quickstart_config_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)  # its dataset paths are relative to the repository
    cfg = load_config("configs/quickstart.yaml")
    assert cfg.model.init == "random" and cfg.data.train


@pytest.mark.parametrize("section, patch, expect", [
    ("train", {"lrr": 1.0}, "train.lrr"),                               # unknown key
    ("model", {"sise": "tiny"}, "model.sise"),
    ("train", {"batch_size": "big"}, "train.batch_size: expected an integer"),  # wrong type
    ("train", {"batch_size": True}, "train.batch_size: expected an integer"),
    ("train", {"compile": "yes"}, "train.compile: expected true/false"),
    ("train", {"lr": "fast"}, "train.lr: expected a number"),
    ("train", {"betas": [0.9]}, "train.betas: expected a list of 2 values"),
    ("data", {"tasks": "NER"}, "data.tasks: expected a list"),
    ("train", {"optimizer": "sgd"}, "train.optimizer must be adamw or adafactor"),  # bad enums
    ("train", {"schedule": "step"}, "train.schedule must be"),
    ("model", {"init": "scratch"}, "model.init must be"),
    ("model", {"size": "huge"}, "model.size must be"),
    ("data", {"tasks": ["NER", "XYZ"]}, "data.tasks: unknown task 'XYZ'"),  # unknown task
    ("train", {"log_every": 0}, "train.log_every must be >= 1"),  # impossible numbers
    ("train", {"batch_size": 0}, "train.batch_size must be >= 1"),
    ("train", {"lr": 0}, "train.lr must be > 0"),
    ("train", {"max_time_s": -5}, "train.max_time_s must be > 0"),
    ("data", {"mention_replacement": 1.5}, "data.mention_replacement"),
    ("data", {"max_source_length": 0}, "data.max_source_length must be >= 1"),
    ("eval", {"option_order": "random"}, "eval.option_order must be sorted or schema, got 'random'"),
    ("data", {"train": [{"adapter": "ie_instructions", "path": str(FIXTURES / "ie_instructions"), "split": "train",
                         "max_records": 0}]}, "data.train[0].max_records must be >= 1"),
    ("data", {"shuffle_options": False}, "eval.option_order sorted asks the options in an order"),
])
def test_bad_values_name_the_dotted_key(tmp_path, section, patch, expect):
    cfg = base(tmp_path)
    cfg.setdefault(section, {}).update(patch)
    msg = error_of(tmp_path, cfg)
    assert expect in msg
    assert msg.startswith(str(tmp_path / "cfg.yaml") + ": ")  # and the file


def test_fp16_is_rejected_with_the_reason(tmp_path):
    cfg = base(tmp_path)
    cfg["train"]["precision"] = "fp16"
    msg = error_of(tmp_path, cfg)
    assert "train.precision" in msg and "'fp16'" in msg and "overflow" in msg


def test_unknown_top_level_key(tmp_path):
    cfg = base(tmp_path)
    cfg["trian"] = {}
    msg = error_of(tmp_path, cfg)
    assert "unknown key(s) trian" in msg and "allowed: data, eval, hints, model, train" in msg


def test_dataset_errors_name_the_list_item(tmp_path):
    cfg = base(tmp_path)
    cfg["data"]["eval"] = [{"adapter": "ie_instructions", "path": str(tmp_path / "nope"), "split": "dev"}]
    assert "data.eval[0].path" in error_of(tmp_path, cfg) and "does not exist" in error_of(tmp_path, cfg)

    cfg = base(tmp_path)
    cfg["data"]["train"].append({"adapter": "conll", "path": str(FIXTURES)})
    msg = error_of(tmp_path, cfg)
    assert "data.train[1].adapter: unknown adapter 'conll'" in msg and "ie_instructions" in msg

    cfg = base(tmp_path)
    cfg["data"]["train"][0]["tasks"] = ["NER", "POS"]
    assert "data.train[0].tasks: unknown task 'POS'" in error_of(tmp_path, cfg)

    cfg = base(tmp_path)
    cfg["data"]["train"][0]["weigth"] = 2
    assert "unknown key(s) data.train[0].weigth" in error_of(tmp_path, cfg)

    cfg = base(tmp_path)
    del cfg["data"]["train"][0]["path"]
    assert "data.train[0]: missing required key(s) path" in error_of(tmp_path, cfg)

    cfg = base(tmp_path)
    cfg["data"]["train"] = []
    assert "data.train: at least one training dataset" in error_of(tmp_path, cfg)


def test_missing_and_broken_config_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_config(p)
    assert f'in "{p}", line' in str(e.value) and "<unicode string>" not in str(e.value)
    p.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="the config file is empty"):
        load_config(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(p)


# ---------------------------------------------------------------- --set
def test_parse_override():
    assert parse_override("train.lr=1e-3") == (["train", "lr"], "1e-3")  # YAML 1.1: a string, coerced later
    assert parse_override("train.batch_size=8") == (["train", "batch_size"], 8)
    assert parse_override("data.tasks=[NER, RE]") == (["data", "tasks"], ["NER", "RE"])
    assert parse_override("train.compile=true") == (["train", "compile"], True)
    assert parse_override("train.output_dir=runs/a=b") == (["train", "output_dir"], "runs/a=b")
    assert parse_override("data.train[0].options.schema=s.json") == (["data", "train", 0, "options", "schema"],
                                                                      "s.json")
    assert parse_override("data.train.1.weight=2") == (["data", "train", 1, "weight"], 2)
    assert parse_override("data.train[+]={adapter: duie}") == (["data", "train", "+"], {"adapter": "duie"})
    for bad in ("train.lr", "train..lr=1", "train.lr[x]=1", "=3"):
        with pytest.raises(ConfigError, match="--set"):
            parse_override(bad)


def test_overrides_apply_and_are_validated(tmp_path):
    p = write(tmp_path, base(tmp_path))
    cfg = load_config(p, ["train.lr=1e-3", "train.batch_size=8", "data.tasks=[NER, ES]",
                          "data.train[0].weight=2", "eval.num_beams=2", "train.betas=[0.9, 0.98]"])
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)
    assert cfg.train.batch_size == 8 and cfg.data.tasks == ["NER", "ES"]
    assert cfg.data.train[0].weight == 2.0 and cfg.eval.num_beams == 2 and cfg.train.betas == (0.9, 0.98)
    with pytest.raises(ConfigError, match="train.optimizer must be"):
        load_config(p, ["train.optimizer=sgd"])
    with pytest.raises(ConfigError, match="max_steps is not a section"):
        load_config(p, ["train.max_steps.value=1"])
    with pytest.raises(ConfigError, match="train.lr: expected a number"):  # a key absent from the file
        load_config(p, ["train.lr.value=1"])
    with pytest.raises(ConfigError, match=r"no list item \[3\]"):
        load_config(p, ["data.train[3].weight=2"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(p, ["train.learning_rate=1"])


def test_an_override_appends_a_dataset_to_the_mix(tmp_path):
    raw = base(tmp_path)
    p = write(tmp_path, raw)
    first = dict(raw["data"]["train"][0])
    cfg = load_config(p, ["data.train[+]=" + json.dumps({**first, "weight": 3}), "data.eval[+]=" + json.dumps(first)])
    assert len(cfg.data.train) == len(raw["data"]["train"]) + 1 and cfg.data.train[-1].weight == 3.0
    assert cfg.data.train[0].weight != 3.0 and len(cfg.data.eval) == len(raw["data"].get("eval") or []) + 1
    with pytest.raises(ConfigError, match=r"\[\+\] appends to a list and must end the key"):
        load_config(p, ["data.train[+].weight=2"])
    with pytest.raises(ConfigError, match=r"\[\+\] appends to a list"):
        load_config(p, ["train[+]=1"])
    with pytest.raises(ConfigError, match="missing required key"):  # the new item is validated like the others
        load_config(p, ["data.train[+]={adapter: duie}"])


# ---------------------------------------------------------------- ${VAR:-default}
def test_env_var_expansion(tmp_path, monkeypatch):
    cfg = base(tmp_path)
    cfg["data"]["train"][0]["path"] = "${INSTRUCTIE_TEST_DATA:-" + str(FIXTURES) + "}/ie_instructions"
    cfg["train"]["output_dir"] = "${INSTRUCTIE_TEST_OUT:-" + str(tmp_path) + "}/run"
    p = write(tmp_path, cfg)
    monkeypatch.delenv("INSTRUCTIE_TEST_DATA", raising=False)
    monkeypatch.delenv("INSTRUCTIE_TEST_OUT", raising=False)
    got = load_config(p)
    assert got.data.train[0].path == str(FIXTURES / "ie_instructions")
    assert got.train.output_dir == str(tmp_path / "run")

    alt = tmp_path / "data"
    (alt / "ie_instructions").mkdir(parents=True)
    monkeypatch.setenv("INSTRUCTIE_TEST_DATA", str(alt))
    assert load_config(p).data.train[0].path == str(alt / "ie_instructions")


def test_unset_env_var_without_default_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("INSTRUCTIE_SURELY_UNSET", raising=False)
    cfg = base(tmp_path)
    cfg["data"]["train"][0]["path"] = "${INSTRUCTIE_SURELY_UNSET}/ie_instructions"
    msg = error_of(tmp_path, cfg)
    assert "INSTRUCTIE_SURELY_UNSET" in msg and "not set" in msg and "data.train[0].path" in msg


# ---------------------------------------------------------------- the CLI
def test_cli_bad_config_exits_2_with_one_line_before_any_work(tmp_path, capsys):
    cfg = base(tmp_path)
    cfg["train"]["optimizer"] = "sgd"
    p = write(tmp_path, cfg)
    assert cli_main(["train", "--config", str(p)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("instructie train: error: ") and "train.optimizer" in lines[0]
    assert "Traceback" not in err and not out
    assert not (tmp_path / "run").exists()  # nothing was started

    # CLI flags become overrides and are validated the same way
    assert cli_main(["train", "--config", str(write(tmp_path, base(tmp_path), "ok.yaml")), "--max-steps", "0"]) == 2
    assert "train.max_steps must be >= 1" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(p), "--set", "nonsense"]) == 2
    assert "--set 'nonsense'" in capsys.readouterr().err


def test_cli_subprocess_bad_config(tmp_path):
    cfg = base(tmp_path)
    cfg["train"]["precision"] = "fp16"
    p = write(tmp_path, cfg, "bad.yaml")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), str(ROOT),
                                                                     os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-m", "instructie", "train", "--config", str(p)], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("instructie train: error: ") and "train.precision" in lines[0] and "fp16" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- numeric ranges, duplicate keys
@pytest.mark.parametrize("section, patch, expect", [
    ("train", {"betas": [1.5, -2]}, "train.betas[0] must be in [0, 1)"),
    ("train", {"betas": [0.9, 1.0]}, "train.betas[1] must be in [0, 1)"),
    ("train", {"grad_clip": -1}, "train.grad_clip is the largest gradient norm, > 0 (0 or null: no clipping), got -1"),
    ("train", {"weight_decay": -0.01}, "train.weight_decay must be >= 0, got -0.01"),
    ("train", {"lr": float("inf")}, "train.lr: expected a finite number, got inf"),
    ("train", {"lr": float("nan")}, "train.lr: expected a finite number, got nan"),
    ("train", {"epochs": float("inf"), "max_steps": None}, "train.epochs: expected a finite number"),
    ("train", {"seed": -1}, "train.seed must be from 0 to 4294967295, got -1"),
    ("train", {"seed": 2**32}, "train.seed must be from 0 to 4294967295"),
    ("train", {"prefetch_min_build_s": -1}, "train.prefetch_min_build_s must be >= 0"),
    ("model", {"vocab_size": -5}, "model.vocab_size must be >= 1"),
    ("model", {"vocab_size": 0}, "model.vocab_size must be >= 1"),
    ("data", {"template": -1}, "data.template -1: the templates are numbered 0 to"),
    ("data", {"template": 99}, "data.template 99: the templates are numbered 0 to"),
    ("data", {"train": [{"adapter": "ie_instructions", "path": str(FIXTURES / "ie_instructions"), "weight": -1}]},
     "data.train[0].weight must be > 0, got -1"),
])
def test_numbers_out_of_range_name_the_dotted_key(tmp_path, section, patch, expect):
    cfg = base(tmp_path)
    cfg.setdefault(section, {}).update(patch)
    msg = error_of(tmp_path, cfg)
    assert expect in msg
    assert msg.startswith(str(tmp_path / "cfg.yaml") + ": ")


@pytest.mark.parametrize("grad_clip", [0, None, 0.5])
def test_grad_clip_zero_or_null_turns_clipping_off(tmp_path, grad_clip):
    cfg = base(tmp_path)
    cfg["train"]["grad_clip"] = grad_clip
    assert load_config(write(tmp_path, cfg)).train.grad_clip == grad_clip


def test_output_dir_naming_a_file_fails_before_any_work(tmp_path, capsys):
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    cfg = base(tmp_path)
    cfg["train"]["output_dir"] = str(taken)
    assert "train.output_dir: " + str(taken) + " is a file, not a folder" in error_of(tmp_path, cfg)
    cfg["train"]["output_dir"] = str(taken / "run")
    assert f"is a file, not a folder (in {taken / 'run'})" in error_of(tmp_path, cfg)
    assert cli_main(["train", "--config", str(write(tmp_path, base(tmp_path))), "--output-dir", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.output_dir" in err and "Traceback" not in err
    assert taken.read_text() == "mine\n"


@pytest.mark.parametrize("patch", [["train.betas=[1.5, -2]"], ["model.vocab_size=-5"], ["train.lr=.inf"],
                                   ["train.grad_clip=-1"]])
def test_cli_rejects_bad_numbers_before_any_work(tmp_path, capsys, patch):
    p = write(tmp_path, base(tmp_path))
    assert cli_main(["train", "--config", str(p), "--set", *patch]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("instructie train: error: ") and "Traceback" not in err
    assert patch[0].split("=")[0] in err
    assert not (tmp_path / "run").exists()


def test_a_key_given_twice_names_the_file_and_the_second_line(tmp_path):
    text = yaml.safe_dump(base(tmp_path), sort_keys=False)
    p = tmp_path / "twice.yaml"
    p.write_text(text + "train:\n  lr: 0.1\n", encoding="utf-8")  # a second train: block would drop the first
    second = text.count("\n") + 1
    first = text.splitlines().index("train:") + 1
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (f"{p}:{second}: key 'train' is given twice in one mapping (first on line {first}); "
                            "YAML would keep only the last")
    p.write_text(text.replace("  max_steps: 2\n", "  max_steps: 2\n  max_steps: 3\n"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"twice.yaml:\d+: key 'max_steps' is given twice"):
        load_config(p)


def test_a_merge_may_still_override_keys(tmp_path):
    from instructie.core.io import read_yaml
    p = tmp_path / "merge.yaml"
    p.write_text("defaults: &d {max_steps: 2, lr: 0.01}\ntrain:\n  <<: *d\n  lr: 0.02\n", encoding="utf-8")
    assert read_yaml(p)["train"] == {"max_steps": 2, "lr": 0.02}


def test_the_zero_shot_recipe_is_the_recipe_without_crossner_training():
    """configs/multitask-small-zeroshot.yaml measures transfer to CrossNER: it must train as the recipe does in
    everything else, or its scores compare two recipes, not seen against unseen."""
    root = Path(__file__).resolve().parents[1] / "configs"
    recipe, zero = (yaml.safe_load((root / name).read_text(encoding="utf-8"))
                    for name in ("multitask-small.yaml", "multitask-small-zeroshot.yaml"))
    crossner = [d for d in recipe["data"]["train"] if any(n.startswith("CrossNER")
                                                         for n in (d.get("options") or {}).get("datasets", []))]
    assert crossner and not any("CrossNER" in json.dumps(d) for d in zero["data"]["train"])
    recipe["data"]["train"] = [d for d in recipe["data"]["train"] if d not in crossner]
    recipe["train"]["output_dir"] = zero["train"]["output_dir"]
    assert zero == recipe
