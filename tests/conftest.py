"""Shared fixtures: where the real test photos are, and a fresh data home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared"))
FACES = SHARED / "testdata" / "faces"
DEMO = REPO / "src" / "likeness" / "demo_assets"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES.is_dir():
        pytest.fail(f"test photos not found at {FACES}; set LIKENESS_SHARED to the shared/ folder")
    return FACES


@pytest.fixture()
def home(tmp_path: Path):
    from likeness.home import Home

    return Home(root=tmp_path / "home").ensure()


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory):
    """The dlib analyzer (its models are found in the installed packages)."""
    from likeness.faces.backends import load_analyzer
    from likeness.home import Home

    return load_analyzer("dlib", Home(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def face(faces_dir: Path, analyzer):
    """face('obama/3.jpg') → (Picture, Face), analysed once per photo (one face per photo)."""
    from likeness.media.image import load_image

    cache: dict = {}

    def analyse(name: str):
        if name not in cache:
            picture = load_image(faces_dir / name)
            (found,) = analyzer.analyze(picture.pixels)
            cache[name] = (picture, found)
        return cache[name]

    return analyse
