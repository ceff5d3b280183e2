"""Dataset adapters: one small module per source format, each yielding ``Record``s.

An adapter is a function registered by name::

    @register("duie")
    def read(path, *, split="", on_error=None, stats=None, **options) -> Iterator[Record]

``on_error`` receives an ``InputError`` per bad record (raise to stop, or count and go
on: see ``instructie.core.io.SkipCounter``); ``stats`` is a Counter the adapter fills with
what it had to resolve (spans located twice, not found, truncated texts, ...).
The rest of the system never sees the raw formats.
"""
from __future__ import annotations

import importlib
from typing import Callable

ADAPTERS: dict[str, Callable] = {}
_MODULES = ("duie", "fewrel", "ie_instructions", "fin_negative", "doccano", "label_studio")


def register(name: str):
    def wrap(fn):
        ADAPTERS[name] = fn
        return fn
    return wrap


def check_options(adapter: str, options: dict, known: set[str]) -> None:
    """Unknown adapter options are a ConfigError naming them (a typo must not be ignored)."""
    unknown = set(options) - known
    if unknown:
        from instructie.core.io import ConfigError
        raise ConfigError(f"{adapter}: unknown option(s) {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")


def get_adapter(name: str) -> Callable:
    for m in _MODULES:  # import lazily so an adapter's bug cannot break the others
        if m == name and name not in ADAPTERS:
            importlib.import_module(f"instructie.data_adapters.{m}")
    if name not in ADAPTERS:
        raise KeyError(f"unknown dataset adapter {name!r}; known: {', '.join(_MODULES)}")
    return ADAPTERS[name]


def adapter_names() -> list[str]:
    return list(_MODULES)
