"""Helpers shared by test modules (the tests directory is on sys.path through its conftest)."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MAX_STEPS = 40
SAVE_EVERY = 7  # never a multiple of the 10 batches/epoch: checkpoints fall mid-epoch
# what the tiny model's tokenizer is trained on (conftest.tiny_model_dir)
TINY_TEXTS = [
    "Barack Obama visited Paris on Monday . Obama met Emmanuel Macron in Paris .",
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn works for the European Commission in Brussels .",
    "Japan beat China 2-1 in the Asian Cup on Friday .",
    "国乒2大新星0-3遭日本横扫！一轮游出局 主力缺阵谁灭伊藤美诚？",
    "今晨5点08分，武汉大学查全性院士因病离世，享年95岁。",
    "《邪少兵王》是冰火未央写的网络小说连载于旗峰天下",
    "王小明毕业于北京大学，他的妻子是李华。",
    "person | organization | location | miscellaneous ; None \\ =",
]


def tiny_config(tmp_path: Path, out: Path, **train) -> Path:
    """configs/quickstart.yaml made small: fewer records, tasks and tokens, tiny dev/test sets."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    caps = {"duie": 10, "fin_negative": 6}
    for sect in ("train", "eval", "test"):
        for ds in cfg["data"].get(sect) or []:
            ds["path"] = str(ROOT / ds["path"])
            ds["options"] = {k: str(ROOT / v) if isinstance(v, str) and v.startswith("tests/") else v
                             for k, v in (ds.get("options") or {}).items()}
            if sect == "train" and ds["adapter"] in caps:
                ds["max_records"] = caps[ds["adapter"]]
            if sect != "train":
                ds["max_records"] = 3
    cfg["model"]["vocab_size"] = 1000
    cfg["data"].update(tasks=["NER", "RE", "EE", "NEG"], max_options=8, max_source_length=128,
                       max_target_length=48, max_eval_records=3)
    cfg["train"].update(output_dir=str(out), warmup_steps=2, batch_size=4, epochs=1, save_every=SAVE_EVERY,
                        log_every=1, eval_every=0, keep_checkpoints=2, max_steps=MAX_STEPS)
    cfg["train"].update(train)
    cfg["eval"].update(batch_size=16, max_new_tokens=8)
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def fixture_records():
    from instructie.config import DatasetConfig
    from instructie.data.sources import load_records
    dsets = [DatasetConfig("ie_instructions", str(FIXTURES / "ie_instructions"), split=s)
             for s in ("train", "dev", "test")]
    dsets.append(DatasetConfig("duie", str(FIXTURES / "duie" / "duie_train_excerpt.json"),
                               options={"schema": str(FIXTURES / "duie" / "duie_schema.json")}))
    return [r for d in dsets for r in load_records(d)]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``instructie ARGV...`` in this process: (exit status, stdout, stderr)."""
    from instructie.cli.main import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def read_jsonl(path: Path) -> list[dict]:
    """Every line of a JSON-lines file, parsed (a blank line is an error, as in the files the CLI writes)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
