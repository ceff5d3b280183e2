"""The model card: what a trained model directory says about how to ask the model (``instructie.json``).

Training writes it; ``Extractor.from_pretrained``, ``instructie test`` and the hint tuning read it. Keys a
card from an older version lacks take the value that version behaved as.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.io import ConfigError, write_json

CARD_FILE = "instructie.json"


@dataclass
class ModelCard:
    instructie_version: str = ""
    kind: str = "extractor"                    # "pretrained": a span-corruption base, not an extractor
    tasks: list[str] = field(default_factory=list)
    labels: dict[str, dict[str, list[str]]] = field(default_factory=dict)   # dataset -> task -> labels
    roles: dict[str, dict[str, list[str]]] = field(default_factory=dict)    # dataset -> type -> roles
    languages: dict[str, str] = field(default_factory=dict)                 # dataset -> language
    templates: dict[str, list[str]] = field(default_factory=dict)
    max_options: int | None = 16               # None: every label in one prompt, as trained
    option_order: str = "schema"               # a card from before sorted asking was scored in schema order
    max_source_length: int = 256
    max_target_length: int = 128
    memory_hints: bool = False                 # memory.json beside it holds the memory
    hint_bias: Any = None                      # tuned on dev sets (eval/tune_hint_bias.py); None: not tuned
    unhinted_floor: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # what else the card holds (steps, train_config, ...)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        known = {f.name for f in fields(cls)} - {"extra"}
        if not isinstance(d, dict):
            raise TypeError(f"expected a JSON object, got {type(d).__name__}")
        return cls(**{k: v for k, v in d.items() if k in known}, extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def load(cls, model_dir: str | Path) -> "ModelCard":
        p = Path(model_dir) / CARD_FILE
        if not p.exists():
            raise ConfigError(f"{model_dir}: not an instructie model directory (no {CARD_FILE}); train one with "
                              f"`instructie train`")
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{p}: not a readable model card ({e})") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        for k in ("hint_bias", "unhinted_floor"):
            if d[k] is None:
                d.pop(k)
        return {**d, **extra}

    def save(self, model_dir: str | Path) -> None:
        write_json(Path(model_dir) / CARD_FILE, self.to_dict())

    def tuned(self) -> dict:
        """The hint settings tuned into the card, as ``hints.HintSettings.resolve`` reads them."""
        return {k: getattr(self, k) for k in ("hint_bias", "unhinted_floor") if getattr(self, k) is not None}
