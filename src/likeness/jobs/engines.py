"""Loaded models for a job: every job kind (stills, footage) takes already-loaded engines.

Loading verifies and reads the model files (about 0.7 s for dlib); a long-running caller such as
the app keeps them in a pool (:class:`likeness.webapp.engines.EnginePool`) and lends them to every
job; the CLI loads them once per job, dlib's 68-point model in a helper process meanwhile
(:mod:`likeness.faces.landmark_helper`), and a job given no engines defers what detection does not
need (``defer_models``) so that its inputs are detected while the rest loads (:mod:`likeness.jobs.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from likeness.faces.backends import load_analyzer
from likeness.faces.types import Analyzer, Face
from likeness.home import Home
from likeness.media.image import DEFAULT_MAX_PIXELS, Picture, load_image
from likeness.swap.backends import load_swapper
from likeness.swap.types import Swapper


@dataclass(frozen=True)
class Engines:
    """One backend's loaded analyzer and swapper."""

    backend: str
    analyzer: Analyzer
    swapper: Swapper


def load_engines(backend: str, home: Home, *, defer_models: bool = False) -> Engines:
    """The backend's analyzer and swapper (``defer_models``: see
    :func:`likeness.faces.backends.load_analyzer`)."""
    return Engines(
        backend=backend,
        analyzer=load_analyzer(backend, home, defer_models=defer_models),
        swapper=load_swapper(backend, home),
    )


def engines_for(backend: str, home: Home, engines: Engines | None, *, defer_models: bool = False) -> Engines:
    """``engines`` when they are the backend's, else freshly loaded ones."""
    if engines is not None and engines.backend == backend:
        return engines
    return load_engines(backend, home, defer_models=defer_models)


def detect_faces(
    path: Path,
    *,
    home: Home,
    backend: str = "dlib",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    engines: Engines | None = None,
) -> tuple[Picture, list[Face]]:
    """Load an image and return its faces, left to right."""
    picture = load_image(path, max_pixels=max_pixels)
    analyzer = (
        engines.analyzer
        if engines is not None and engines.backend == backend
        else load_analyzer(backend, home)
    )
    return picture, analyzer.analyze(picture.pixels)
