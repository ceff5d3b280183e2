"""instructie: instruction-tuned information extraction."""
from __future__ import annotations

from ._version import __version__
from .core.records import Argument, Entity, Event, Record, Relation  # noqa: E402

__all__ = ["Argument", "Entity", "Event", "Record", "Relation", "Extractor", "__version__"]


def __getattr__(name):
    # Extractor pulls in torch/transformers: import it only when asked for.
    if name == "Extractor":
        from .inference.extractor import Extractor
        return Extractor
    raise AttributeError(name)
