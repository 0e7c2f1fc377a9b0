"""Shared fixtures: where the real test photos are, and a fresh data home per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LIKENESS_SHARED", REPO.parent / "shared"))
FACES = SHARED / "testdata" / "faces"
DEMO = REPO / "src" / "likeness" / "demo_assets"


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of converted models (``LIKENESS_CACHE``) for the whole run, commands run by the tests
    included: the 68-point model is converted once, not in every test, and never into the user's."""
    folder = tmp_path_factory.mktemp("model-cache")
    previous = os.environ.get("LIKENESS_CACHE")
    os.environ["LIKENESS_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("LIKENESS_CACHE", None)
    else:
        os.environ["LIKENESS_CACHE"] = previous


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


# -- test tiers (tests/README.md) ---------------------------------------------------------------
# `pytest -m "not slow"` is the fast tier; plain `pytest` (CI, scripts/test.sh) runs everything.
# Tests are marked here by what they use, so a new test that uses a browser, a PostgreSQL server
# or generated video lands in the right tier without remembering to mark it.

HEAVY = ("browser", "video", "kill", "postgres")
"""Markers that imply ``slow``: each of these tests needs a heavy resource or a whole process."""

BROWSER_FIXTURES = {"browser", "page"}
POSTGRES_FIXTURES = {"postgres_server", "postgres_home"}
VIDEO_FIXTURES = {"clip", "clips", "scene_clip", "small_clip", "sealed_720p", "noisy_clips"}
VIDEO_MODULES = {"test_video_io.py", "test_video_swap.py", "test_video_verify.py", "test_tracking.py"}
"""Modules whose every test encodes or decodes generated clips through PyAV."""


def _tier_markers(item: pytest.Item) -> set[str]:
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    params = set(map(str, callspec.params.values())) if callspec is not None else set()
    found = {m for m in HEAVY if item.get_closest_marker(m) is not None}
    if names & BROWSER_FIXTURES:
        found.add("browser")
    # store_home-style fixtures parametrised ["sqlite", "postgres"]: the postgres case only
    if names & POSTGRES_FIXTURES or "postgres" in params:
        found.add("postgres")
    if names & VIDEO_FIXTURES or item.path.name in VIDEO_MODULES:
        found.add("video")
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        found = _tier_markers(item)
        for name in sorted(found):
            if item.get_closest_marker(name) is None:
                item.add_marker(getattr(pytest.mark, name))
        if found and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
