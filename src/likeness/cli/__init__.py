"""Command-line interface; the entry point is ``likeness.cli:main``."""

from likeness.cli.main import main

__all__ = ["main"]
