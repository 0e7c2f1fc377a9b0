"""The backends by name, as the pipeline loads them: ``load_analyzer`` / ``load_swapper`` /
``available_analyzers`` with stand-in ONNX models placed in a real data home's ``models/`` folder, the
execution-provider and restoration settings from the environment, and what each backend reports through
``model_files()`` to the licence check. Swap outputs are written nowhere (the people did not consent).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

import standin_models as standin
from likeness.errors import LicenceRefused, ModelMissing, UsageError
from likeness.faces.backends import available_analyzers, load_analyzer
from likeness.faces.types import Analyzer
from likeness.licences import check_model_licences
from likeness.media.image import load_image
from likeness.swap.backends import load_swapper
from likeness.swap.types import Swapper

pytest.importorskip("insightface")

OBAMA_BOX = (366, 136, 624, 394)  # where the face is in obama/1.jpg (configures the stand-in detector)


def _install_standins(home, faces_dir: Path, *, swapper: bool = True) -> None:
    """A stand-in buffalo_l pack (detector configured for obama/1.jpg) and inswapper in ``home``."""
    picture = load_image(faces_dir / "obama" / "1.jpg")
    face = standin.StandinFace.for_image((picture.width, picture.height), OBAMA_BOX)
    standin.build_buffalo_pack(home.models_dir, [face])
    if swapper:
        standin.build_inswapper(home.models_dir / "inswapper_128.onnx")


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every outgoing connection attempt is recorded and refused (the network edge)."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.slow
def test_insightface_by_name_runs_the_whole_chain_from_the_data_home(
    home, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIKENESS_PROVIDERS", "cpu")
    _install_standins(home, faces_dir)
    target = load_image(faces_dir / "obama" / "1.jpg")

    analyzer = load_analyzer("insightface", home)
    swapper = load_swapper("insightface", home)

    assert isinstance(analyzer, Analyzer) and isinstance(swapper, Swapper)
    assert analyzer.name == "insightface" and swapper.name == "inswapper"
    assert analyzer.describe()["providers"] == "CPUExecutionProvider"
    assert analyzer.describe()["provider_reason"].startswith("CPU requested")
    assert swapper.describe()["providers"] == "CPUExecutionProvider"
    [face] = analyzer.analyze(target.pixels)
    assert np.allclose(face.box, OBAMA_BOX, atol=2)
    assert face.embedding.shape == (512,) and face.embedding_space.startswith("arcface_w600k_r50_")

    # The stand-in detector reports its configured box (in detector pixels) on any photo: on biden/1.jpg
    # that is some region of the photo, enough for a source embedding the swapper can use.
    source = load_image(faces_dir / "biden" / "1.jpg")
    [source_face] = analyzer.analyze(source.pixels)
    out = swapper.swap(target.pixels, face, source.pixels, source_face)
    changed = np.abs(out.astype(np.int16) - target.pixels.astype(np.int16)).max(axis=2) > 0
    x1, y1, x2, y2 = face.box
    assert changed[y1:y2, x1:x2].mean() > 0.3
    assert not changed[:, : x1 - 60].any() and not changed[y2 + 60 :, :].any()

    files = [use.name for use in analyzer.model_files() + swapper.model_files()]
    assert files == [
        "insightface_det_10g",
        "insightface_landmarks_106",
        "insightface_arcface_r50",
        "inswapper_128",
    ]


def test_missing_models_are_a_clear_error_and_nothing_is_downloaded(home, no_network) -> None:
    with pytest.raises(ModelMissing) as analyzer_error:
        load_analyzer("insightface", home)
    reason = analyzer_error.value.reason
    assert "det_10g.onnx" in reason and "w600k_r50.onnx" in reason
    assert str(home.models_dir / "buffalo_l" / "det_10g.onnx") in reason
    assert "likeness models fetch buffalo_l" in (analyzer_error.value.hint or "")
    with pytest.raises(ModelMissing) as swapper_error:
        load_swapper("insightface", home)
    assert str(home.models_dir / "inswapper_128.onnx") in swapper_error.value.reason
    assert no_network == []
    assert not (home.models_dir / "buffalo_l").exists()


def test_settings_from_the_environment_are_checked(
    home, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_standins(home, faces_dir)
    monkeypatch.setenv("LIKENESS_PROVIDERS", "gpu")
    with pytest.raises(UsageError, match="LIKENESS_PROVIDERS"):
        load_analyzer("insightface", home)
    monkeypatch.setenv("LIKENESS_PROVIDERS", "cuda")
    info = load_analyzer("insightface", home).describe()
    assert info["providers"].split(",")[-1] == "CPUExecutionProvider"  # CUDA where it runs, else CPU
    if info["providers"] == "CPUExecutionProvider":
        assert "cuda was requested" in info["provider_reason"]
    monkeypatch.delenv("LIKENESS_PROVIDERS")

    standin.build_restorer(home.models_dir / "restore" / "gfpgan_1.4.onnx")
    assert [use.name for use in load_swapper("insightface", home).model_files()] == [
        "inswapper_128",
        "gfpgan_1.4",
    ]
    monkeypatch.setenv("LIKENESS_RESTORE", "none")
    assert [use.name for use in load_swapper("insightface", home).model_files()] == ["inswapper_128"]
    monkeypatch.setenv("LIKENESS_RESTORE", "sharpen")
    with pytest.raises(UsageError, match="sharpen"):
        load_swapper("insightface", home)


@pytest.mark.slow
def test_available_analyzers_lists_dlib_and_insightface_when_its_pack_is_there(home, faces_dir: Path) -> None:
    assert [a.name for a in available_analyzers(home)] == ["dlib"]
    (home.models_dir / "buffalo_l").mkdir(parents=True)  # an empty folder is not a pack
    assert [a.name for a in available_analyzers(home)] == ["dlib"]

    _install_standins(home, faces_dir, swapper=False)
    analyzers = available_analyzers(home, providers="cpu")
    assert [a.name for a in analyzers] == ["dlib", "insightface"]
    assert len({a.embedding_space for a in analyzers}) == 2
    picture = load_image(faces_dir / "obama" / "1.jpg")
    embeddings = [a.analyze(picture.pixels)[0].embedding.shape for a in analyzers]
    assert embeddings == [(128,), (512,)]


@pytest.mark.slow
def test_available_analyzers_refuses_a_broken_pack_instead_of_skipping_it(home, faces_dir: Path) -> None:
    _install_standins(home, faces_dir, swapper=False)
    available_analyzers(home, providers="cpu")  # first verified use records the hashes
    pack = home.models_dir / "buffalo_l"
    standin.build_recognizer(pack / "w600k_r50.onnx", seed=77)  # replaced behind likeness's back
    with pytest.raises(ModelMissing) as caught:
        available_analyzers(home, providers="cpu")
    assert str(pack / "w600k_r50.onnx") in caught.value.reason and "not loaded" in caught.value.reason

    (pack / "w600k_r50.onnx").unlink()  # a pack with a required file missing
    with pytest.raises(ModelMissing, match=r"w600k_r50\.onnx"):
        available_analyzers(home, providers="cpu")


@pytest.mark.slow
def test_model_files_feed_the_licence_check(home, faces_dir: Path) -> None:
    dlib_files = load_analyzer("dlib", home).model_files() + load_swapper("dlib", home).model_files()
    assert {use.name: use.commercial_use for use in dlib_files} == {
        "dlib_landmarks_68": False,
        "dlib_landmarks_5": True,
        "dlib_resnet_v1": True,
    }
    with pytest.raises(LicenceRefused, match="dlib_landmarks_68"):
        check_model_licences("film", dlib_files, home)

    _install_standins(home, faces_dir)
    insightface_files = (
        load_analyzer("insightface", home, providers="cpu").model_files()
        + load_swapper("insightface", home, providers="cpu").model_files()
    )
    with pytest.raises(LicenceRefused) as caught:
        check_model_licences("advertising", insightface_files, home)
    for use in insightface_files:
        assert use.name in caught.value.reason
    uses = check_model_licences("education", insightface_files, home)
    assert [use.basis for use in uses] == ["non-commercial purpose"] * len(insightface_files)
    assert all(use.model.sha256 and len(use.model.sha256) == 64 for use in uses)
