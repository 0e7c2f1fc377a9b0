"""The insightface analyzer on stand-in models (see ``standin_models``) and real photos.

What these tests prove without the real weights: the guarded loading (missing or changed files give
``ModelMissing`` before insightface is asked, and nothing touches the network), that files with the
real signatures are routed to the right tasks by insightface's own shape rules, and the whole analyze
chain on real photos — detection output decoded by insightface, boxes and keypoints mapped back from
the downscaled detection copy, 106 landmarks around the box, alignment and a unit-length embedding from
the full-resolution pixels, left-to-right order. What they cannot prove: that the real detector finds
real faces or that real ArcFace embeddings separate people (the stand-in detector reports the box it
was configured with; the stand-in recogniser is a fixed random projection of the aligned pixels).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

import standin_models as standin
from likeness.errors import ModelMissing, UsageError
from likeness.media.image import load_image
from likeness.model_store import RECORDED, ModelStore, model_file

pytest.importorskip("insightface")

from likeness.faces.insightface_backend import InsightfaceAnalyzer

OBAMA_BOX = (366, 136, 624, 394)  # where the face is in obama/1.jpg (configures the stand-in detector)
BIDEN_BOX = (436, 213, 769, 547)  # biden/1.jpg
TWO_PEOPLE = ((244, 62, 394, 211), (792, 95, 941, 244))  # _multi/two_people.jpg, left and right


def _size(pixels: np.ndarray) -> tuple[int, int]:
    return pixels.shape[1], pixels.shape[0]


def _pack_for(root: Path, size: tuple[int, int], boxes, *, peaks=None, **options) -> Path:
    """A stand-in buffalo_l pack under ``root`` whose detector finds ``boxes`` in an image of ``size``."""
    peaks = peaks or [0.9] * len(boxes)
    faces = [
        standin.StandinFace.for_image(size, box, peak=peak) for box, peak in zip(boxes, peaks, strict=True)
    ]
    standin.build_buffalo_pack(root, faces, **options)
    return root


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


def test_missing_pack_names_the_file_where_and_how_without_touching_the_network(
    tmp_path: Path, no_network
) -> None:
    with pytest.raises(ModelMissing) as caught:
        InsightfaceAnalyzer.load(tmp_path)
    error = caught.value
    assert "det_10g.onnx" in error.reason
    assert str(tmp_path / "buffalo_l" / "det_10g.onnx") in error.reason
    assert "likeness models fetch buffalo_l" in (error.hint or "")
    assert error.exit_code == 4
    assert no_network == []
    assert not (tmp_path / "buffalo_l").exists()  # insightface's downloader left no empty folder


def test_empty_or_partial_pack_is_a_clear_error_not_an_assertion(tmp_path: Path, no_network) -> None:
    (tmp_path / "buffalo_l").mkdir(parents=True)
    with pytest.raises(ModelMissing, match=r"det_10g\.onnx"):
        InsightfaceAnalyzer.load(tmp_path)
    standin.build_detector(tmp_path / "buffalo_l" / "det_10g.onnx", [])
    with pytest.raises(ModelMissing, match=r"w600k_r50\.onnx"):
        InsightfaceAnalyzer.load(tmp_path)
    assert no_network == []


def test_standins_are_routed_to_their_tasks_by_insightface(tmp_path: Path) -> None:
    from insightface.app import FaceAnalysis
    from insightface.model_zoo import get_model

    pack = standin.build_buffalo_pack(tmp_path, [])
    swapper = standin.build_inswapper(tmp_path / "inswapper_128.onnx")
    cpu = ["CPUExecutionProvider"]
    routed = {path.name: get_model(str(path), providers=cpu).taskname for path in sorted(pack.glob("*.onnx"))}
    assert routed == {
        "2d106det.onnx": "landmark_2d_106",
        "det_10g.onnx": "detection",
        "genderage.onnx": "genderage",
        "w600k_r50.onnx": "recognition",
    }
    assert type(get_model(str(swapper), providers=cpu)).__name__ == "INSwapper"
    app = FaceAnalysis(name=str(pack), providers=cpu)
    assert sorted(app.models) == ["detection", "genderage", "landmark_2d_106", "recognition"]


def test_full_chain_on_a_real_photo(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    _pack_for(tmp_path, _size(picture.pixels), [OBAMA_BOX])
    analyzer = InsightfaceAnalyzer.load(tmp_path)

    [face] = analyzer.analyze(picture.pixels)

    assert np.allclose(face.box, OBAMA_BOX, atol=2)
    expected_kps = standin.default_kps(OBAMA_BOX)
    assert np.allclose(face.landmarks5, expected_kps, atol=2)
    assert face.landmarks.shape == (106, 2) and face.landmarks.dtype == np.float32
    x1, y1, x2, y2 = OBAMA_BOX
    assert (face.landmarks[:, 0] > x1 - 40).all() and (face.landmarks[:, 0] < x2 + 40).all()
    assert (face.landmarks[:, 1] > y1 - 40).all() and (face.landmarks[:, 1] < y2 + 40).all()
    assert face.embedding.shape == (512,) and face.embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    assert face.score > 0.5

    recogniser_sha = ModelStore(tmp_path).check(model_file("insightface_arcface_r50")).sha256
    assert face.embedding_space == f"arcface_w600k_r50_{recogniser_sha[:12]}"
    assert analyzer.distance(face.embedding, analyzer.analyze(picture.pixels)[0].embedding) < 1e-6

    other = load_image(faces_dir / "biden" / "1.jpg")
    other_analyzer = InsightfaceAnalyzer.load(_pack_for(tmp_path / "biden", _size(other.pixels), [BIDEN_BOX]))
    [other_face] = other_analyzer.analyze(other.pixels)
    assert other_face.embedding_space == face.embedding_space  # same recogniser file, same space
    assert analyzer.distance(face.embedding, other_face.embedding) > 0.1


def test_large_image_is_detected_on_a_downscaled_copy_and_embedded_at_full_size(
    tmp_path: Path, faces_dir: Path
) -> None:
    import cv2

    picture = load_image(faces_dir / "obama" / "1.jpg")
    big = cv2.resize(picture.pixels, (picture.width * 4, picture.height * 4), interpolation=cv2.INTER_CUBIC)
    big_box = tuple(4 * v for v in OBAMA_BOX)
    small_analyzer = InsightfaceAnalyzer.load(
        _pack_for(tmp_path / "small", _size(picture.pixels), [OBAMA_BOX])
    )
    big_analyzer = InsightfaceAnalyzer.load(_pack_for(tmp_path / "big", _size(big), [big_box]))

    [small_face] = small_analyzer.analyze(picture.pixels)
    [big_face] = big_analyzer.analyze(big)

    assert np.allclose(big_face.box, big_box, atol=8)  # 8 px = 1 detector pixel at this scale
    assert np.allclose(big_face.landmarks5, 4 * small_face.landmarks5, atol=8)
    # The aligned 112 px crops of the two sizes hold the same face: nearly the same embedding.
    assert small_analyzer.distance(small_face.embedding, big_face.embedding) < 0.02


def test_faces_are_sorted_left_to_right(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "_multi" / "two_people.jpg")
    # The right face scores higher, so insightface itself lists it first.
    _pack_for(tmp_path, _size(picture.pixels), list(TWO_PEOPLE), peaks=[0.7, 0.95])
    faces = InsightfaceAnalyzer.load(tmp_path).analyze(picture.pixels)
    assert len(faces) == 2
    assert faces[0].center_x < faces[1].center_x
    assert np.allclose(faces[0].box, TWO_PEOPLE[0], atol=2)
    assert np.allclose(faces[1].box, TWO_PEOPLE[1], atol=2)
    assert faces[0].score < faces[1].score


def test_no_face_gives_an_empty_list(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    standin.build_buffalo_pack(tmp_path, [])
    assert InsightfaceAnalyzer.load(tmp_path).analyze(picture.pixels) == []


def test_without_the_landmark_model_faces_have_no_dense_landmarks(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    _pack_for(tmp_path, _size(picture.pixels), [OBAMA_BOX], with_landmarks=False, with_genderage=False)
    analyzer = InsightfaceAnalyzer.load(tmp_path)
    [face] = analyzer.analyze(picture.pixels)
    assert face.landmarks.shape == (0, 2)
    assert face.landmarks5.shape == (5, 2)
    assert "landmark_2d_106" not in analyzer.describe()


def test_a_changed_model_file_is_never_loaded(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    pack = _pack_for(tmp_path, _size(picture.pixels), [OBAMA_BOX]) / "buffalo_l"
    InsightfaceAnalyzer.load(tmp_path)  # first verified use records the hashes
    assert ModelStore(tmp_path).check(model_file("insightface_det_10g")).state == RECORDED

    standin.build_detector(
        pack / "det_10g.onnx", [standin.StandinFace.for_image((910, 1137), (0, 0, 300, 300))]
    )
    with pytest.raises(ModelMissing) as caught:
        InsightfaceAnalyzer.load(tmp_path)
    assert str(pack / "det_10g.onnx") in caught.value.reason
    assert "not loaded" in caught.value.reason


def test_different_recognisers_never_share_an_embedding_space(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    one = InsightfaceAnalyzer.load(_pack_for(tmp_path / "one", _size(picture.pixels), [OBAMA_BOX]))
    pack_two = _pack_for(tmp_path / "two", _size(picture.pixels), [OBAMA_BOX])
    standin.build_recognizer(pack_two / "buffalo_l" / "w600k_r50.onnx", seed=4321)
    two = InsightfaceAnalyzer.load(tmp_path / "two")
    assert one.embedding_space != two.embedding_space
    assert one.embedding_space.startswith("arcface_w600k_r50_")


def test_provider_request_falls_back_to_cpu_with_a_reason(tmp_path: Path, faces_dir: Path) -> None:
    from likeness.onnx_runtime import CPU, CUDA, choose_providers

    picture = load_image(faces_dir / "obama" / "1.jpg")
    analyzer = InsightfaceAnalyzer.load(
        _pack_for(tmp_path, _size(picture.pixels), [OBAMA_BOX]), providers="cuda"
    )
    info = analyzer.describe()
    choice = choose_providers("cuda")
    if choice.device == "cuda":  # a machine where CUDA really works
        assert info["providers"].startswith(CUDA)
        return
    assert info["providers"] == CPU
    assert "cuda was requested" in info["provider_reason"]
    assert "CUDAExecutionProvider" in info["provider_reason"]
    assert len(analyzer.analyze(picture.pixels)) == 1


def test_a_listed_but_unusable_cuda_provider_is_caught_by_running_it() -> None:
    from likeness.onnx_runtime import CPU, CUDA, choose_providers

    choice = choose_providers("auto")
    if CUDA in choice.providers:
        pytest.skip("CUDA works on this machine; the fallback needs a CPU-only onnxruntime")
    # The CPU-only build is told CUDA is listed: the test session shows it does not run there.
    pretend = choose_providers("auto", available=[CUDA, CPU])
    assert pretend.providers == (CPU,)
    assert "did not bind CUDAExecutionProvider" in pretend.reason or "failed" in pretend.reason


def test_distance_is_cosine_and_refuses_other_spaces(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    analyzer = InsightfaceAnalyzer.load(_pack_for(tmp_path, _size(picture.pixels), [OBAMA_BOX]))
    a = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    assert analyzer.distance(a, a) == pytest.approx(0.0)
    assert analyzer.distance(a, np.array([0.0, 2.0, 0.0])) == pytest.approx(1.0)
    assert analyzer.distance(a, -a) == pytest.approx(2.0)
    with pytest.raises(UsageError):
        analyzer.distance(np.ones(512), np.ones(128))


def test_describe_names_models_hashes_licences_and_providers(tmp_path: Path, faces_dir: Path) -> None:
    picture = load_image(faces_dir / "obama" / "1.jpg")
    analyzer = InsightfaceAnalyzer.load(_pack_for(tmp_path, _size(picture.pixels), [OBAMA_BOX]))
    info = analyzer.describe()
    sha = ModelStore(tmp_path).check(model_file("insightface_det_10g")).sha256
    assert info["backend"] == "insightface"
    assert f"det_10g.onnx sha256:{sha}" in info["detection"]
    assert "non-commercial" in info["recognition_licence"]
    assert info["providers"] and info["provider_reason"]
    assert all(isinstance(value, str) for value in info.values())
    files = {use.name: use for use in analyzer.model_files()}
    assert set(files) == {"insightface_det_10g", "insightface_arcface_r50", "insightface_landmarks_106"}
    assert files["insightface_det_10g"].sha256 == sha and files["insightface_det_10g"].file == "det_10g.onnx"
    assert all(use.state == "recorded now" and not use.commercial_use for use in files.values())
    assert all("non-commercial" in use.licence for use in files.values())
