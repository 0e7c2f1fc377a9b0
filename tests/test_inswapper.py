"""The inswapper swapper and paste-back, on stand-in models and real photos.

Proves: the model is fed exactly what insightface's own INSwapper feeds it (same aligned crop, same
latent through the last-initializer emap, same output), the result is pasted back only inside the face,
the source's embedding changes the result, a malformed or missing model is refused, and the optional
restoration hook runs a GFPGAN-shaped model when its file is present. Not proven: how good a real
inswapper_128 swap looks (the stand-in only tints the face by the latent).
Outputs are written nowhere: these people did not consent to being swapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import standin_models as standin
from likeness.errors import ModelMissing, UsageError
from likeness.faces.types import Face
from likeness.media.image import load_image
from likeness.swap import paste_back

pytest.importorskip("insightface")

from likeness.faces.insightface_backend import InsightfaceAnalyzer
from likeness.swap.inswapper import InswapperSwapper

OBAMA_BOX = (366, 136, 624, 394)
BIDEN_BOX = (436, 213, 769, 547)


def _analyze(root: Path, picture, box, **options) -> Face:
    face = standin.StandinFace.for_image((picture.width, picture.height), box)
    standin.build_buffalo_pack(root, [face], **options)
    [found] = InsightfaceAnalyzer.load(root).analyze(picture.pixels)
    return found


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path):
    """Target obama/1.jpg and source biden/1.jpg analysed with stand-ins (once per module)."""
    root = tmp_path_factory.mktemp("analysed")
    target = load_image(faces_dir / "obama" / "1.jpg")
    source = load_image(faces_dir / "biden" / "1.jpg")
    return (
        target,
        _analyze(root / "target", target, OBAMA_BOX),
        source,
        _analyze(root / "source", source, BIDEN_BOX),
    )


@pytest.fixture()
def scene(analysed, tmp_path: Path):
    """The analysed photos plus a fresh models directory holding a stand-in inswapper."""
    models = tmp_path / "swap"
    standin.build_inswapper(models / "inswapper_128.onnx")
    return (*analysed, models)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=2) > 0


def test_model_input_and_output_match_insightfaces_own_inswapper(scene) -> None:
    import cv2
    from insightface.app.common import Face as InsightFace
    from insightface.model_zoo import get_model
    from insightface.utils.face_align import estimate_norm

    target, target_face, _, source_face, models = scene
    ours = InswapperSwapper.load(models, providers="cpu")
    swapped, crop, matrix = ours.generate(target.pixels, target_face, source_face)

    theirs = get_model(str(models / "inswapper_128.onnx"), providers=["CPUExecutionProvider"])
    their_target = InsightFace(kps=target_face.landmarks5.astype(np.float32))
    their_source = InsightFace(embedding=source_face.embedding)
    bgr = cv2.cvtColor(target.pixels, cv2.COLOR_RGB2BGR)
    with pytest.warns(FutureWarning):  # scikit-image deprecation inside insightface's face_align
        their_bgr, _ = theirs.get(bgr, their_target, their_source, paste_back=False)

    with pytest.warns(FutureWarning):  # scikit-image deprecation inside insightface
        their_matrix = estimate_norm(target_face.landmarks5, 128)
    assert np.allclose(matrix, their_matrix, atol=1e-4)
    assert np.allclose(ours.emap, theirs.emap)
    # insightface truncates its output to uint8 where ours stays float (up to 1 level), and the stand-in
    # passes half of the input crop through, whose warp may round one level apart (0.5 more).
    assert np.abs(swapped - their_bgr[:, :, ::-1].astype(np.float32)).max() <= 1.5 + 1e-3
    assert crop.shape == (128, 128, 3)


def test_paste_back_changes_only_the_face_region(scene) -> None:
    target, target_face, source, source_face, models = scene
    before = target.pixels.copy()
    swapper = InswapperSwapper.load(models)
    out = swapper.swap(target.pixels, target_face, source.pixels, source_face)

    assert np.array_equal(target.pixels, before)  # input untouched
    assert out.shape == target.pixels.shape and out.dtype == np.uint8
    changed = _changed(target.pixels, out)
    x1, y1, x2, y2 = target_face.box
    margin = int(0.1 * (x2 - x1))
    outside = np.ones_like(changed)
    outside[y1 - margin : y2 + margin, x1 - margin : x2 + margin] = False
    assert not changed[outside].any()
    inner = changed[y1 + (y2 - y1) // 4 : y2 - (y2 - y1) // 4, x1 + (x2 - x1) // 4 : x2 - (x2 - x1) // 4]
    assert inner.mean() > 0.9
    # The mask follows the landmark hull, not the square crop: the box's top corners keep the target.
    assert not changed[y1 : y1 + 10, x1 : x1 + 10].any() and not changed[y1 : y1 + 10, x2 - 10 : x2].any()


def test_the_source_identity_changes_the_result(scene, tmp_path: Path, faces_dir: Path) -> None:
    target, target_face, _, source_face, models = scene
    other = load_image(faces_dir / "obama" / "2.jpg")
    other_face = _analyze(tmp_path / "other", other, (164, 302, 474, 611))
    swapper = InswapperSwapper.load(models, colour="none")
    one, _, _ = swapper.generate(target.pixels, target_face, source_face)
    two, _, _ = swapper.generate(target.pixels, target_face, other_face)
    assert np.abs(one - two).mean() > 1.0
    again, _, _ = swapper.generate(target.pixels, target_face, source_face)
    assert np.array_equal(one, again)


def test_colour_matching_pulls_the_face_towards_the_target(scene) -> None:
    target, target_face, source, source_face, models = scene
    raw = InswapperSwapper.load(models, colour="none").swap(
        target.pixels, target_face, source.pixels, source_face
    )
    matched = InswapperSwapper.load(models, colour="lab").swap(
        target.pixels, target_face, source.pixels, source_face
    )
    x1, y1, x2, y2 = target_face.box
    region = (slice(y1 + 60, y2 - 60), slice(x1 + 60, x2 - 60))
    original_mean = target.pixels[region].reshape(-1, 3).mean(axis=0)
    raw_error = np.abs(raw[region].reshape(-1, 3).mean(axis=0) - original_mean).sum()
    matched_error = np.abs(matched[region].reshape(-1, 3).mean(axis=0) - original_mean).sum()
    assert matched_error < raw_error / 2


def test_a_face_from_another_embedding_space_is_refused(scene) -> None:
    target, target_face, source, source_face, models = scene
    dlib_like = Face(
        box=source_face.box,
        landmarks=np.empty((0, 2), np.float32),
        landmarks5=source_face.landmarks5,
        embedding=np.ones(128, np.float32),
        score=1.0,
        embedding_space="dlib_resnet_v1",
    )
    swapper = InswapperSwapper.load(models)
    with pytest.raises(UsageError, match="insightface backend"):
        swapper.swap(target.pixels, target_face, source.pixels, dlib_like)


def test_an_inswapper_whose_emap_is_not_the_last_initializer_is_refused(tmp_path: Path) -> None:
    path = standin.build_inswapper(tmp_path / "inswapper_128.onnx", emap_last=False)
    with pytest.raises(ModelMissing) as caught:
        InswapperSwapper.load(tmp_path)
    assert "last initializer" in caught.value.reason
    assert str(path) in caught.value.reason


def test_missing_inswapper_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as caught:
        InswapperSwapper.load(tmp_path)
    assert str(tmp_path / "inswapper_128.onnx") in caught.value.reason
    assert "likeness models verify inswapper_128" in (caught.value.hint or "")


def test_a_changed_inswapper_is_refused(scene) -> None:
    _, _, _, _, models = scene
    InswapperSwapper.load(models)
    path = models / "inswapper_128.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ModelMissing, match="not loaded"):
        InswapperSwapper.load(models)


def test_restoration_runs_when_its_model_is_present_and_only_on_the_face(scene) -> None:
    target, target_face, source, source_face, models = scene
    plain = InswapperSwapper.load(models)
    assert plain.restorer is None and "no restoration model" in plain.describe()["restoration"]
    with pytest.raises(ModelMissing, match="codeformer"):
        InswapperSwapper.load(models, restore="codeformer")

    standin.build_restorer(models / "restore" / "gfpgan_1.4.onnx")
    restoring = InswapperSwapper.load(models)
    assert "gfpgan_1.4.onnx" in restoring.describe()["restoration"]
    assert [use.name for use in restoring.model_files()] == ["inswapper_128", "gfpgan_1.4"]
    without = plain.swap(target.pixels, target_face, source.pixels, source_face)
    restored = restoring.swap(target.pixels, target_face, source.pixels, source_face)
    changed = _changed(without, restored)
    x1, y1, x2, y2 = target_face.box
    margin = int(0.15 * (x2 - x1))
    outside = np.ones_like(changed)
    outside[y1 - margin : y2 + margin, x1 - margin : x2 + margin] = False
    assert changed.any() and not changed[outside].any()
    assert InswapperSwapper.load(models, restore="none").restorer is None


def test_without_dense_landmarks_the_mask_is_an_ellipse_from_five_points(
    tmp_path: Path, faces_dir: Path
) -> None:
    target = load_image(faces_dir / "obama" / "1.jpg")
    source = load_image(faces_dir / "biden" / "1.jpg")
    target_face = _analyze(tmp_path / "t", target, OBAMA_BOX, with_landmarks=False)
    source_face = _analyze(tmp_path / "s", source, BIDEN_BOX, with_landmarks=False)
    assert target_face.landmarks.shape == (0, 2)
    standin.build_inswapper(tmp_path / "m" / "inswapper_128.onnx")
    out = InswapperSwapper.load(tmp_path / "m").swap(target.pixels, target_face, source.pixels, source_face)
    changed = _changed(target.pixels, out)
    x1, y1, x2, y2 = target_face.box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    assert changed[cy - 20 : cy + 20, cx - 20 : cx + 20].all()
    outside = np.ones_like(changed)
    outside[y1 - 60 : y2 + 60, x1 - 60 : x2 + 60] = False
    assert not changed[outside].any()


def test_similarity_matrix_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 200, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = scale * points @ rotation.T + shift
    matrix = paste_back.similarity_matrix(points, moved)
    assert np.allclose(matrix[:, :2], scale * rotation) and np.allclose(matrix[:, 2], shift)


def test_paste_with_an_empty_mask_changes_nothing(faces_dir: Path) -> None:
    image = load_image(faces_dir / "obama" / "1.jpg").pixels
    matrix = paste_back.similarity_matrix(standin.default_kps(OBAMA_BOX), paste_back.arcface_template(128))
    crop = np.full((128, 128, 3), 255.0, np.float32)
    assert np.array_equal(paste_back.paste(image, crop, np.zeros((128, 128), np.float32), matrix), image)
    full = paste_back.paste(image, crop, np.ones((128, 128), np.float32), matrix)
    assert _changed(image, full).sum() > 0.5 * (OBAMA_BOX[2] - OBAMA_BOX[0]) ** 2
