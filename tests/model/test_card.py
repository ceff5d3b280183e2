"""The model card: what training writes is what extraction reads, and a card written before a key
existed reads as that version behaved."""
import json

import pytest

from instructie.core.io import ConfigError
from instructie.model.card import ModelCard


def test_a_card_round_trips_and_keeps_what_it_does_not_name(tmp_path):
    card = ModelCard(instructie_version="1", tasks=["NER"], labels={"d": {"NER": ["person"]}}, max_options=None,
                     option_order="sorted", memory_hints=True, hint_bias={"NER": 2.0},
                     extra={"steps": 10, "train_config": {"seed": 0}})
    card.save(tmp_path)
    raw = json.loads((tmp_path / "instructie.json").read_text(encoding="utf-8"))
    assert raw["steps"] == 10 and raw["max_options"] is None and "unhinted_floor" not in raw
    assert ModelCard.load(tmp_path) == card


def test_an_older_card_reads_as_its_version_behaved(tmp_path):
    (tmp_path / "instructie.json").write_text(json.dumps({"tasks": ["NER"], "templates": {"NER": ["x"]}}))
    card = ModelCard.load(tmp_path)
    assert card.option_order == "schema" and card.max_options == 16 and not card.memory_hints
    assert card.tuned() == {}


def test_a_directory_without_a_card_or_with_a_broken_one_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not an instructie model directory"):
        ModelCard.load(tmp_path)
    (tmp_path / "instructie.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="instructie.json: not a readable model card"):
        ModelCard.load(tmp_path)
