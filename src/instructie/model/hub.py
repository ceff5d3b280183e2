"""Names that are local paths or Hugging Face hub ids, and the one error both kinds of failure give."""
from __future__ import annotations

import os

from ..core.io import ConfigError


def is_local(name: str) -> bool:
    """A path-looking name is never sent to the hub (hub ids are 'name' or 'org/name')."""
    return (os.path.exists(name) or os.path.isabs(name) or name.startswith((".", "~"))
            or name.count("/") > 1 or os.sep != "/" and os.sep in name)


def hub_error(what: str, name: str, err: Exception) -> ConfigError:
    if is_local(name):
        reason = "directory not found" if not os.path.exists(name) else f"{type(err).__name__}: {err}"
        return ConfigError(f"{what} {name!r} could not be loaded from the local path: {reason}")
    reason = " ".join(str(err).split())[:400].rstrip(".")
    return ConfigError(f"{what} {name!r} is not a local directory and could not be loaded from the Hugging "
                       f"Face hub (offline?): {type(err).__name__}: {reason}. Give a local path or use init: random")
