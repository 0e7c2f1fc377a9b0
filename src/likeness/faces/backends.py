"""Choosing a face backend by name: the one place that maps ``--backend`` to an analyzer."""

from __future__ import annotations

from likeness.errors import UsageError
from likeness.faces.types import Analyzer
from likeness.home import Home

BACKENDS = ("dlib", "insightface")


def load_analyzer(name: str, home: Home | None = None) -> Analyzer:
    """Load the analyzer called ``name`` with its verified model files (load once, reuse it)."""
    if name == "dlib":
        from likeness.faces.dlib_backend import DlibAnalyzer

        return DlibAnalyzer(home)
    if name == "insightface":
        raise UsageError(
            "the insightface backend is not available in this version of likeness",
            hint="use --backend dlib (the embedded default)",
        )
    raise UsageError(f"unknown face backend {name!r}", hint=f"choose one of: {', '.join(BACKENDS)}")
