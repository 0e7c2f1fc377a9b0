"""Calibrating the gate on a real labelled folder (a subset of testdata/faces laid out the same way).

The folder holds six people (24 photos) plus what a real folder also holds: an ignored ``_`` folder,
a top-level file, and a person folder of unusable files (no face, two faces, a duplicate, a text
file, a zero-byte "photo"). Rates are checked against distances recomputed here, and the choice
against its stated rule — never against numbers copied from a run.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from likeness.cli.main import main
from likeness.consent.calibration import (
    GRID_STEP,
    MIN_GENUINE_PAIRS,
    LabelledFaces,
    calibrate,
    embed_folder,
    store,
    trials_needed,
    upper_bound,
)
from likeness.consent.registry import Registry
from likeness.errors import BadInput
from likeness.faces.backends import load_analyzer
from likeness.home import Home

PEOPLE = ["John_Salley", "John_Savage", "John_Schneider", "John_Shimkus", "John_Simm", "deepface_person_07"]
SPACE = "dlib_resnet_v1"


def labelled_folder(faces_dir: Path, root: Path, people: list[str], *, junk: bool) -> Path:
    root.mkdir(parents=True)
    for person in people:
        (root / person).symlink_to(faces_dir / person, target_is_directory=True)
    if junk:
        (root / "_not_a_person").symlink_to(faces_dir / "_noface", target_is_directory=True)
        (root / "SOURCES.md").write_text("where the photos come from\n")
        odd = root / "unusable"
        odd.mkdir()
        shutil.copy(faces_dir / "_noface" / "dog.jpg", odd / "dog.jpg")
        shutil.copy(faces_dir / "_multi" / "kit_with_rose.jpg", odd / "two.jpg")
        shutil.copy(faces_dir / "John_Simm" / "1.jpg", odd / "copy.jpg")
        (odd / "notes.txt").write_text("not a photo")
        (odd / "empty.jpg").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory):
    return load_analyzer("dlib", Home(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def folder(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_folder(faces_dir, tmp_path_factory.mktemp("cal") / "faces", PEOPLE, junk=True)


@pytest.fixture(scope="module")
def small_folder(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return labelled_folder(faces_dir, tmp_path_factory.mktemp("cal") / "few", PEOPLE[:2], junk=False)


@pytest.fixture(scope="module")
def faces(folder: Path, analyzer) -> LabelledFaces:
    return embed_folder(folder, analyzer)


@pytest.fixture()
def registry(home: Home):
    with Registry.open(home) as opened:
        yield opened


@pytest.mark.slow
def test_embed_folder_uses_one_face_photos_and_reports_the_rest(faces: LabelledFaces, folder: Path) -> None:
    assert faces.embedding_space == SPACE and faces.model["backend"] == "dlib"
    assert faces.identities == sorted(PEOPLE)
    expected = sum(1 for person in PEOPLE for _ in (folder / person).iterdir())
    assert len(faces.faces) == expected
    skipped = {s.photo: s.reason for s in faces.skipped}
    assert set(skipped) == {
        f"unusable/{n}" for n in ("dog.jpg", "two.jpg", "copy.jpg", "notes.txt", "empty.jpg")
    }
    assert skipped["unusable/dog.jpg"] == "no face found"
    assert skipped["unusable/two.jpg"].startswith("2 faces")
    assert skipped["unusable/copy.jpg"] == "the same file as John_Simm/1.jpg"
    assert "not an image" in skipped["unusable/notes.txt"]
    assert (
        "unusable/empty.jpg" in skipped["unusable/empty.jpg"]
        and str(folder) not in skipped["unusable/empty.jpg"]
    )
    assert not any(s.startswith("_") for s in skipped), "_ folders are not people"
    assert len(faces.listing_sha256()) == 64


@pytest.mark.slow
def test_rates_per_threshold_match_the_distances(faces: LabelledFaces, registry: Registry) -> None:
    point = registry.operating_point(SPACE)
    result = calibrate(faces, point)
    genuine, impostor = [], []
    for a, b in itertools.combinations(faces.faces, 2):
        distance = float(np.linalg.norm(a.embedding.astype(np.float64) - b.embedding))
        (genuine if a.identity == b.identity else impostor).append(distance)
    counts = {p: sum(1 for f in faces.faces if f.identity == p) for p in PEOPLE}
    assert len(genuine) == sum(n * (n - 1) // 2 for n in counts.values())
    assert (result.genuine.count, result.impostor.count) == (len(genuine), len(impostor))
    assert math.isclose(result.impostor.minimum, min(impostor), abs_tol=1e-6)
    thresholds = [row.threshold for row in result.rows]
    assert thresholds == sorted(thresholds) and point.threshold in thresholds
    assert all(math.isclose(b - a, GRID_STEP) for a, b in itertools.pairwise(thresholds))
    for row in result.rows:
        assert row.false_accepts == sum(d <= row.threshold for d in impostor)
        assert row.false_rejects == sum(d > row.threshold for d in genuine)
        assert row.far_upper >= row.far and row.frr_upper >= row.frr
        ident = row.identification
        assert ident.genuine_probes == len(faces.faces) == ident.open_set_probes
        assert ident.correct + ident.refused + ident.wrong_identity == ident.genuine_probes
    for lower, higher in itertools.pairwise(result.rows):
        assert lower.far <= higher.far and lower.frr >= higher.frr
    # at a threshold below every distance nothing matches; far above, strangers are accepted
    assert result.rows[0].identification.open_set_accepted == 0


@pytest.mark.slow
def test_the_choice_follows_its_rule(faces: LabelledFaces, registry: Registry) -> None:
    point = registry.operating_point(SPACE)
    result = calibrate(faces, point)
    chosen = result.chosen
    assert chosen is not None and result.problem is None
    assert chosen.far <= result.target_far and chosen.identification.false_accepts == 0
    # 240-odd impostor pairs cannot show FAR <= 1/1000: the policy's threshold caps the choice
    assert not result.far_demonstrated and chosen.threshold <= point.threshold
    assert result.frr_met and chosen.frr <= result.target_frr
    stricter = [row for row in result.rows if row.threshold < chosen.threshold]
    assert all(row.frr > result.target_frr for row in stricter), (
        "the strictest threshold meeting the FRR target"
    )
    assert (result.margin, result.same_person_max) == (point.margin, point.same_person_max)
    text = " ".join(result.notes)
    assert f"{trials_needed(result.target_far)} impostor pairs" in text and "optimistic" in text
    assert "→" in result.table() and f"{chosen.threshold:.3f}" in result.describe()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["chosen"]["threshold"] == chosen.threshold and len(data["rows"]) == len(result.rows)

    # A stricter policy default below every threshold that meets the FRR target: the choice stays
    # at the cap (the data cannot show a looser one is safe) and says the FRR target is missed.
    cap = max(row.threshold for row in result.rows if row.frr > result.target_frr)
    capped = calibrate(faces, replace(point, threshold=cap))
    assert capped.chosen is not None and capped.chosen.threshold == cap
    assert capped.capped and not capped.frr_met
    assert "NOT met" in " ".join(capped.notes) and f"capped at the policy default {cap:.3f}" in " ".join(
        capped.notes
    )


def test_upper_bound_is_clopper_pearson() -> None:
    for n in (300, 2457, 10_000):
        assert math.isclose(upper_bound(0, n), 1 - 0.05 ** (1 / n))
        assert math.isclose(upper_bound(0, n), 3 / n, rel_tol=0.01 + 3 / n)
    assert upper_bound(0, 100) < upper_bound(1, 100) < upper_bound(5, 100) < 1
    assert upper_bound(1, 100) > 1 / 100
    assert upper_bound(0, 0) == 1.0
    assert upper_bound(0, trials_needed(0.001)) <= 0.001 < upper_bound(0, trials_needed(0.001) - 1)


def test_too_little_data_is_never_stored(small_folder: Path, analyzer, registry: Registry) -> None:
    few = embed_folder(small_folder, analyzer)
    result = calibrate(few, registry.operating_point(SPACE))
    assert result.genuine.count < MIN_GENUINE_PAIRS
    assert result.problem is not None and "too little data" in result.problem
    with pytest.raises(BadInput, match="nothing stored"):
        store(registry, result, operator="tester")
    assert registry.list_calibrations() == [] and registry.ledger_entries("calibration") == []


@pytest.mark.slow
def test_calibrate_command_stores_the_operating_point(
    folder: Path, small_folder: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    done = runner.invoke(main, ["--home", str(home), "calibrate", "--faces", str(folder), "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["embedding_space"] == SPACE and data["stored"]["source"].startswith("calibration cal_")
    assert data["stored"]["threshold"] == data["chosen"]["threshold"]
    assert {s["photo"] for s in data["skipped"]} >= {"unusable/dog.jpg", "unusable/two.jpg"}
    with Registry.open(Home(home)) as registry:
        point = registry.operating_point(SPACE)
        assert point.threshold == data["chosen"]["threshold"] and point.source == data["stored"]["source"]
        (entry,) = registry.ledger_entries("calibration")
        assert entry.payload["threshold"] == point.threshold and entry.payload["impostor_pairs"] > 200
        assert (
            entry.payload["evidence"]["model"]["recognition"] and entry.payload["evidence"]["dataset_sha256"]
        )
        assert registry.verify_ledger().ok

    refused = runner.invoke(main, ["--home", str(home), "calibrate", "--faces", str(small_folder)])
    assert refused.exit_code == 4
    assert "not storable: too little data" in refused.stdout and "nothing stored" in refused.stderr
    missing = runner.invoke(main, ["--home", str(home), "calibrate", "--faces", str(tmp_path / "nope")])
    assert missing.exit_code == 4 and "not a folder" in missing.stderr
    with Registry.open(Home(home)) as registry:
        assert len(registry.list_calibrations()) == 1, "the refused runs stored nothing"
