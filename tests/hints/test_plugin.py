"""The hints plug-in's settings: one rule says which value decodes -- a value given (a flag, an API
argument) over the model's tuned one over the config's -- for `instructie test`, `extract` and the API."""
import pytest

from instructie.config import HintsConfig
from instructie.core.io import ConfigError
from instructie.hints.plugin import HintSettings


def test_given_beats_tuned_beats_config():
    cfg = HintsConfig(memory=True, bias=1.0, unhinted_floor=0.2)
    tuned = {"hint_bias": {"NER": 4.0}, "unhinted_floor": 0.5}
    assert HintSettings.resolve(card=tuned, config=cfg, has_memory=True) == HintSettings({"NER": 4.0}, 0.5)
    assert HintSettings.resolve(given_bias=0, card=tuned, config=cfg, has_memory=True) == HintSettings(0.0, 0.5)
    assert HintSettings.resolve(card={}, config=cfg, has_memory=True) == HintSettings(1.0, 0.2)
    assert HintSettings.resolve(has_memory=False) == HintSettings(0.0, 0.0)


def test_bad_or_pointless_settings_are_named_where_they_were_given():
    with pytest.raises(ConfigError, match="--hint-bias: a hint bias is a number >= 0"):
        HintSettings.resolve(given_bias=-1, has_memory=True, names=("--hint-bias", "--unhinted-floor"))
    with pytest.raises(ConfigError, match="unhinted_floor: an unhinted-item floor is a number from 0 to 1"):
        HintSettings.resolve(given_floor=2, has_memory=True)
    with pytest.raises(ConfigError, match="hint_bias needs a model trained with memory hints"):
        HintSettings.resolve(given_bias=2, has_memory=False)
    # a tuned value in the card of a model without hints is not read
    assert HintSettings.resolve(card={"hint_bias": 3.0}, has_memory=False) == HintSettings(0.0, 0.0)
