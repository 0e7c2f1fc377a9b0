"""Choosing a swapper by backend name: the one place that maps ``--backend`` to a swapper."""

from __future__ import annotations

from likeness.errors import UsageError
from likeness.home import Home
from likeness.swap.types import Swapper

SWAPPERS = {"dlib": "classical", "classical": "classical", "insightface": "inswapper"}


def load_swapper(name: str, home: Home | None = None) -> Swapper:
    """The swapper for backend ``name``: ``dlib`` (or ``classical``) gives the classical swapper."""
    if name in ("dlib", "classical"):
        from likeness.swap.classical import ClassicalSwapper

        return ClassicalSwapper()
    if name in ("insightface", "inswapper"):
        raise UsageError(
            "the insightface/inswapper backend is not available in this version of likeness",
            hint="use --backend dlib (the classical swapper)",
        )
    raise UsageError(f"unknown swap backend {name!r}", hint="choose one of: dlib, insightface")
