"""Memory hints as one plug-in. The prediction path (``inference.predict``) knows three hooks:

* ``line(record, fits)``: the prompt line with what the training data says about the text (and the
  items it proposes, kept as the prompt's metadata);
* ``logits_factory(...)``: decoding's lean toward the proposed items (``bias.HintBiasProcessor``),
  reading each row's items and bias from the prompt's metadata;
* ``keeps(prompt, item, confidence)``: after decoding, an item the hint did not propose stays only with
  at least the unhinted floor's confidence.

A model trained with ``hints.memory`` carries its memory (``memory.json``) and its tuned bias and floor
(its card) in its directory; ``HintSettings.resolve`` is the one place that says which value wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..config import check_bias, check_floor
from ..core.io import ConfigError
from ..core.records import Record
from ..model.card import ModelCard
from ..prompts.targets import NONE, split_items
from .bias import FLOORLESS_TASKS, floor_for, hint_bias_factory, is_hinted, setting_for
from .memory import HINT_PREFIX, HINT_TASKS, Memory

_RC_LEVELS = ("pair", "tail", "head")


@dataclass
class HintSettings:
    """Hint bias and unhinted floor: each a number or ``{task (or TASK/DATASET): number}``."""
    bias: float | dict = 0.0
    floor: float | dict = 0.0

    @classmethod
    def resolve(cls, *, given_bias=None, given_floor=None, card: dict | None = None, config=None,
                has_memory: bool, names: tuple[str, str] = ("hint_bias", "unhinted_floor")) -> "HintSettings":
        """The settings to decode with: a value given (a flag, an API argument) wins over the model card's
        tuned value, which wins over the config's (``config.HintsConfig``), else 0. Values are validated;
        a non-zero value for a model without a memory is an error. ``names``: what the given values are
        called where they were given (API arguments, command-line flags), for error messages."""
        card = card or {}
        out = []
        for name, given, check, key, cfg_key in ((names[0], given_bias, check_bias, "hint_bias", "bias"),
                                                 (names[1], given_floor, check_floor, "unhinted_floor",
                                                  "unhinted_floor")):
            if given is not None:
                value, source = given, name
            elif has_memory and key in card:
                value, source = card[key], f"the model card's {key}"
            else:
                value, source = (getattr(config, cfg_key) if config is not None else 0.0), f"hints.{cfg_key}"
            try:
                value = check(value)
            except ValueError as e:
                raise ConfigError(f"{source}: {e}") from None
            if value and not has_memory:
                raise ConfigError(f"{source} needs a model trained with memory hints (hints.memory); this one "
                                  f"has no hint to act on")
            out.append(value)
        return cls(*out)


def hint_budget(max_source_length: int) -> int:
    """Tokens a hint line may take in a prompt of ``max_source_length``: the text keeps the rest."""
    return min(64, max_source_length // 4)


class Hints:
    """The plug-in for one model: its memory and the settings to decode with."""

    def __init__(self, memory: Memory, settings: HintSettings | None = None, budget: int | None = None):
        self.memory = memory
        self.settings = settings or HintSettings()
        self.budget = budget  # tokens a hint line may take in a prompt (``hint_budget``; None: no limit)

    @classmethod
    def load(cls, model_dir: str | Path, card: ModelCard, settings: HintSettings | None = None,
             budget: int | None = None) -> "Hints | None":
        """The plug-in of a model directory: None for a model trained without hints."""
        if not card.memory_hints:
            return None
        path = Path(model_dir) / "memory.json"
        if not path.exists():
            raise ConfigError(f"{model_dir}: the model was trained with memory hints but memory.json is missing")
        return cls(Memory.load(path), settings, budget)

    # ------------------------------------------------------------ prompt hook
    def line(self, record: Record, length: Callable[[str], int] | None = None
             ) -> tuple[str | None, tuple[tuple[str, ...], ...]]:
        """The prompt line for ``record`` (None for a task that takes no hint), cut to whole items within the
        token budget, and the answer items it proposes."""
        fits = None if self.budget is None or length is None else (lambda s: length(s) <= self.budget)
        text = self.memory.hint(record, fits=fits)
        if text is None:
            return None, ()
        return text, proposed_items(text, record.task)

    # ------------------------------------------------------------ decoding hook
    def bias_of(self, task: str, dataset: str = "") -> float:
        return setting_for(self.settings.bias, task, dataset) if task in HINT_TASKS else 0.0

    def logits_factory(self, tokenizer, vocab_size: int, vocab=None):
        """A ``generation.generate`` factory leaning each row toward its prompt's items, or None when the
        bias is 0 everywhere. Rows are ``inference.predict.Prompt``s."""
        bias = self.settings.bias
        if not (any(bias.values()) if isinstance(bias, dict) else bias):
            return None
        return hint_bias_factory(tokenizer, vocab_size, vocab,
                                 row_items=lambda p: p.hint,
                                 row_bias=lambda p: self.bias_of(p.task, p.dataset),
                                 row_is_rc=lambda p: p.task == "RC")

    # ------------------------------------------------------------ keep-filter hook
    def keeps(self, task: str, dataset: str, hint: Sequence[tuple[str, ...]], item: str, confidence: float,
              floor: float | dict | None = None) -> bool:
        """Whether an answer item (its text) stays: the hint proposed it, or the model's confidence in it
        reaches the floor (``floor``: another setting than the plug-in's, for tuning from one generation)."""
        f = floor_for(self.settings.floor if floor is None else floor, task, dataset)
        return not f or confidence >= f or any(is_hinted(fields, hint) for fields in split_items(item))


def proposed_items(line: str, task: str) -> tuple[tuple[str, ...], ...]:
    """The answer items a hint line proposes: its items, or for RC (``pair | mother; tail | child``) its
    relations, each once."""
    body = line[len(HINT_PREFIX):] if line.startswith(HINT_PREFIX) else line
    if body.strip() == NONE:
        return ()
    items = [tuple(f) for f in split_items(body.strip()) if any(f)]
    if task == "RC":
        labels = [it[1] for it in items if len(it) == 2 and it[0] in _RC_LEVELS]
        items = [(lab,) for lab in dict.fromkeys(labels)]
    return tuple(items)


__all__ = ["Hints", "HintSettings", "hint_budget", "proposed_items", "FLOORLESS_TASKS"]
