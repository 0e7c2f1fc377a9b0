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
