"""The command line: thin commands that parse arguments and call the library."""
from .main import main

__all__ = ["main"]
