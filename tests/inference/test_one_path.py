"""One prediction path: the same model and the same texts give the same prompts, answers and items (with
their offsets) through ``instructie test`` (the scores users read) and through ``Extractor.extract`` (what
users run), with answers scripted to name words of the text and with the random model's own answers."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from instructie.cli.main import main as cli_main
from instructie.core.records import Record
from instructie.data_adapters import get_adapter
from instructie.decoding import generation
from instructie.inference.extractor import Extractor, Schema

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "ie_instructions"


def _one_sentence_records(ex: Extractor) -> list[Record]:
    """CoNLL2003 test records whose text extraction asks whole (one sentence within the prompt budget, not cut
    into sentences or windows)."""
    recs = list(get_adapter("ie_instructions")(str(FIX / "NER" / "CoNLL2003"), split="test"))
    return [r for r in recs
            if {p.text for _, _, p in ex._plan([("0", r.text)], ["NER"], Schema(ner=r.options), "en")[2]} == {r.text}]


def _config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    cfg["data"]["test"] = [{"adapter": "ie_instructions", "path": str(FIX / "NER" / "CoNLL2003"), "split": "test"}]
    cfg["data"]["train"] = [{"adapter": "ie_instructions", "path": str(FIX), "split": "train"}]
    cfg["data"]["max_source_length"] = 192  # as the model's card says
    cfg["eval"]["max_new_tokens"] = 12
    path = tmp_path / "one_path.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def _answer_capitalised(source: str) -> str:
    """A deterministic answer naming the prompt text's capitalised words with the first option."""
    text = source[source.index("\nText: ") + 7: source.rindex("\nAnswer:")]
    option = re.search(r"^Option: ([^,\n]*)", source, re.M).group(1)
    words = [w for w in re.findall(r"\b[A-Z][a-z]+\b", text)]
    return "; ".join(f"{w} | {option}" for w in words) or "None"


def _both(tmp_path, model_dir, records, answers_of=None, monkeypatch=None):
    """(items per record id through `instructie test`, through `Extractor.extract`, prompts asked by each)."""
    asked = {"test": [], "extract": []}
    real = generation.generate
    side = ["test"]

    def spy(model, tokenizer, sources, **kw):
        asked[side[0]].extend(sources)
        if answers_of is None:
            return real(model, tokenizer, sources, **kw)
        out = []
        for s in sources:
            text = answers_of(s)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(generation.Generated(tokenizer.decode(ids, skip_special_tokens=True), ids, [-0.1] * len(ids)))
        return out

    monkeypatch.setattr(generation, "generate", spy)
    preds = tmp_path / "p.jsonl"
    assert cli_main(["test", "--model", str(model_dir), "--config", str(_config(tmp_path)), "--device", "cpu",
                     "--predictions", str(preds)]) == 0
    by_test = {}
    for row in map(json.loads, preds.read_text(encoding="utf-8").splitlines()):
        by_test[row["id"]] = sorted((e["text"], e["label"], e["start"], e["end"]) for e in row["entities"]
                                    if e["start"] is not None)
    side[0] = "extract"
    ex = Extractor.from_pretrained(model_dir, device="cpu")
    by_extract = {}
    for rec in records:
        doc = next(ex.extract([rec.text], ["NER"], labels=rec.options, max_new_tokens=12))
        by_extract[rec.id] = sorted((e.text, e.label, e.start, e.end) for e in doc.entities)
    return by_test, by_extract, asked


def test_test_and_extract_give_the_same_items(tiny_model_dir, tmp_path, monkeypatch):
    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    records = _one_sentence_records(ex)
    assert len(records) >= 5
    by_test, by_extract, asked = _both(tmp_path, tiny_model_dir, records, _answer_capitalised, monkeypatch)
    ids = [r.id for r in records]
    assert sorted(set(asked["test"]) & set(asked["extract"])) == sorted(set(asked["extract"]))  # same prompts
    assert sum(len(by_extract[i]) for i in ids) >= 10  # answers that name real spans, located in the text
    assert {i: by_test[i] for i in ids} == by_extract


def test_the_models_own_answers_read_alike_through_both(tiny_model_dir, tmp_path, monkeypatch):
    """The random model's garbage answers: whatever they hold is read the same way through both."""
    ex = Extractor.from_pretrained(tiny_model_dir, device="cpu")
    records = _one_sentence_records(ex)[:6]
    by_test, by_extract, asked = _both(tmp_path, tiny_model_dir, records, None, monkeypatch)
    assert set(asked["extract"]) <= set(asked["test"])
    assert {r.id: by_test[r.id] for r in records} == by_extract


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
