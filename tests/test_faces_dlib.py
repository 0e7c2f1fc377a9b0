"""The embedded dlib backend on real photos: detection, order, landmarks, embeddings, size limits."""

from __future__ import annotations

import gc
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from changed_models import write_changed_dlib_model
from likeness.errors import BadInput, ModelMissing, UsageError
from likeness.faces.backends import load_analyzer
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.faces.types import Analyzer
from likeness.media.image import load_image
from likeness.models import model


@pytest.fixture(scope="module")
def analyzer() -> DlibAnalyzer:
    return DlibAnalyzer()


def faces_in(analyzer: DlibAnalyzer, path: Path):
    return analyzer.analyze(load_image(path).pixels)


@pytest.fixture(scope="module")
def references(analyzer: DlibAnalyzer, faces_dir: Path) -> dict[str, np.ndarray]:
    return {
        name: faces_in(analyzer, faces_dir / name / "1.jpg")[0].embedding
        for name in ("obama", "biden", "kit_harington", "rose_leslie")
    }


def test_load_analyzer_by_name(analyzer: DlibAnalyzer) -> None:
    loaded = load_analyzer("dlib")
    assert isinstance(loaded, DlibAnalyzer)
    assert isinstance(loaded, Analyzer)
    assert loaded.name == "dlib" and loaded.embedding_space == "dlib_resnet_v1"
    with pytest.raises(UsageError, match="insightface"):
        load_analyzer("insightface")
    with pytest.raises(UsageError, match="unknown face backend"):
        load_analyzer("opencv")


def test_describe_names_models_and_hashes(analyzer: DlibAnalyzer) -> None:
    described = analyzer.describe()
    assert all(isinstance(value, str) for value in described.values())
    assert described["embedding_space"] == "dlib_resnet_v1"
    for key, name in (
        ("landmarks_68", "dlib_landmarks_68"),
        ("landmarks_5", "dlib_landmarks_5"),
        ("recognition", "dlib_resnet_v1"),
    ):
        entry = model(name)
        assert entry.filename in described[key] and entry.sha256[:12] in described[key]


@pytest.mark.parametrize(
    "photo",
    [
        "obama/1.jpg",  # 910×1137 portrait
        "biden/2.jpg",  # 1200×1200
        "kit_harington/2.jpg",  # small image, head turned
        "alex_lacamoire/1.png",  # PNG, 424×394: scanned with upsampling
        "John_Salley/1.jpg",  # 150×150 face chip
        "deepface_person_01/2.jpg",  # 2500×1728: detected on a downscaled copy
        "_hard/obama_240p_small.jpg",  # 62 px face in a 427×240 frame
    ],
)
def test_one_face_in_solo_photos(analyzer: DlibAnalyzer, faces_dir: Path, photo: str) -> None:
    pixels = load_image(faces_dir / photo).pixels
    faces = analyzer.analyze(pixels)
    assert len(faces) == 1
    face = faces[0]
    left, top, right, bottom = face.box
    assert 0 <= left < right < pixels.shape[1] and 0 <= top < bottom < pixels.shape[0]
    assert face.landmarks.shape == (68, 2) and face.landmarks5.shape == (5, 2)
    assert face.embedding.shape == (128,) and face.embedding.dtype == np.float32
    assert np.isfinite(face.embedding).all() and face.score > 0
    assert face.embedding_space == "dlib_resnet_v1"
    # The eyes (landmarks 36–47) lie inside the detected box.
    eyes = face.landmarks[36:48]
    assert (eyes[:, 0] > left).all() and (eyes[:, 0] < right).all()
    assert (eyes[:, 1] > top).all() and (eyes[:, 1] < bottom).all()


@pytest.mark.parametrize(
    ("photo", "count"),
    [
        ("_multi/t1.jpg", 6),
        ("_multi/two_people.jpg", 2),
        ("_multi/kit_with_rose.jpg", 2),
        ("_multi/voc_2008_002506.jpg", 3),
        ("_multi/obama_and_biden.jpg", 3),
    ],
)
def test_group_photos_left_to_right(analyzer: DlibAnalyzer, faces_dir: Path, photo: str, count: int) -> None:
    faces = faces_in(analyzer, faces_dir / photo)
    assert len(faces) == count
    centres = [face.center_x for face in faces]
    assert centres == sorted(centres)
    boxes = {face.box for face in faces}
    assert len(boxes) == count  # no duplicate detections


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        ("_multi/two_people.jpg", ["obama", "biden", None]),
        ("_multi/obama_and_biden.jpg", ["biden", "obama", None]),
        ("_multi/kit_with_rose.jpg", ["rose_leslie", "kit_harington", None]),
    ],
)
def test_group_faces_are_who_stands_there(
    analyzer: DlibAnalyzer, faces_dir: Path, references: dict[str, np.ndarray], photo: str, expected
) -> None:
    """Order and embeddings together: each known person is found at their place from the left."""
    faces = faces_in(analyzer, faces_dir / photo)
    for face, who in zip(faces, expected, strict=False):
        nearest, distance = min(
            ((name, analyzer.distance(face.embedding, ref)) for name, ref in references.items()),
            key=lambda item: item[1],
        )
        if who is None:
            assert distance > 0.6  # a bystander matches nobody enrolled here
        else:
            assert nearest == who and distance < 0.5


def test_no_faces_in_photos_without_people(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    photos = sorted((faces_dir / "_noface").iterdir())
    assert len(photos) >= 8
    found = {photo.name: len(faces_in(analyzer, photo)) for photo in photos}
    assert found == dict.fromkeys(found, 0)


def test_tiny_faces_are_skipped_and_counted(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    # Seven annotated faces of about 37 px: found (with upsampling) but under the 40 px minimum.
    analysis = analyzer.analyze_detailed(load_image(faces_dir / "_multi/voc_2008_004176.jpg").pixels)
    assert analysis.upsample == 1
    assert analysis.faces == []
    assert len(analysis.skipped) == 7
    assert all("minimum" in skipped.reason for skipped in analysis.skipped)
    # With the minimum lowered they become faces: the skip is a decision, not a miss.
    lenient = DlibAnalyzer(min_face=30)
    assert len(lenient.analyze(load_image(faces_dir / "_multi/voc_2008_004176.jpg").pixels)) == 7


def test_small_face_embedding_matches_the_large_one(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    small = faces_in(analyzer, faces_dir / "_hard/obama_240p_small.jpg")[0]
    large = faces_in(analyzer, faces_dir / "obama/1.jpg")[0]
    assert small.size < 80 < large.size
    assert analyzer.distance(small.embedding, large.embedding) < 0.3


def test_exif_rotated_photo_is_analyzed_upright(
    analyzer: DlibAnalyzer, faces_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    sideways = Image.open(faces_dir / "obama/1.jpg").convert("RGB").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    sideways.save(tmp_path / "tagged.jpg", exif=exif.tobytes(), quality=92)
    sideways.save(tmp_path / "untagged.jpg", quality=92)

    upright = faces_in(analyzer, tmp_path / "tagged.jpg")
    assert len(upright) == 1
    original = faces_in(analyzer, faces_dir / "obama/1.jpg")[0]
    assert analyzer.distance(upright[0].embedding, original.embedding) < 0.15
    # Without the tag the face lies on its side, which the frontal HOG detector does not find.
    assert faces_in(analyzer, tmp_path / "untagged.jpg") == []


@pytest.mark.slow
def test_genuine_pairs_are_closer_than_impostor_pairs(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    people = ["obama", "biden", "kit_harington", "alex_lacamoire", "John_Simm", "deepface_person_03"]
    embeddings = []
    for person in people:
        for photo in sorted((faces_dir / person).iterdir())[:3]:
            embeddings.append((person, faces_in(analyzer, photo)[0].embedding))
    genuine, impostor = [], []
    for (who_a, a), (who_b, b) in itertools.combinations(embeddings, 2):
        (genuine if who_a == who_b else impostor).append(analyzer.distance(a, b))
    assert len(genuine) >= 12 and len(impostor) >= 100
    assert max(genuine) < min(impostor)
    assert max(genuine) < 0.6 < min(impostor)


def test_distance_is_euclidean_and_checks_lengths(analyzer: DlibAnalyzer) -> None:
    a, b = np.zeros(128, dtype=np.float32), np.zeros(128, dtype=np.float32)
    b[0], b[1] = 0.3, 0.4
    assert analyzer.distance(a, b) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="different lengths"):
        analyzer.distance(a, np.zeros(512))


def test_bad_arrays_are_refused(analyzer: DlibAnalyzer) -> None:
    with pytest.raises(BadInput, match="H×W×3 uint8"):
        analyzer.analyze(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(BadInput, match="H×W×3 uint8"):
        analyzer.analyze(np.zeros((100, 100, 3), dtype=np.float32))
    with pytest.raises(BadInput, match="too small"):
        analyzer.analyze(np.zeros((8, 8, 3), dtype=np.uint8))


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_sixty_megapixels_with_bounded_memory(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    import cv2

    original = load_image(faces_dir / "biden/2.jpg").pixels  # 1200×1200
    reference = analyzer.analyze(original)[0]
    big = cv2.resize(original, None, fx=6.5, fy=6.5, interpolation=cv2.INTER_LINEAR)  # 7800×7800
    assert big.shape[0] * big.shape[1] > 60_000_000
    gc.collect()
    before = _status_bytes("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark to the current RSS
    analysis = analyzer.analyze_detailed(big)
    growth = _status_bytes("VmHWM:") - before

    # Detection ran on a copy of at most 2048 px; landmarks and embedding read the full pixels in
    # place. A single extra full-size copy (183 MB) would break this bound; measured: about 74 MB.
    assert growth < 0.8 * big.nbytes, f"peak RSS grew by {growth / 1e6:.0f} MB"
    assert analysis.detect_scale < 0.3
    assert len(analysis.faces) == 1
    face = analysis.faces[0]
    expected = np.array(reference.box) * 6.5
    assert np.abs(np.array(face.box) - expected).max() < 0.05 * face.size
    assert analyzer.distance(face.embedding, reference.embedding) < 0.1


@pytest.mark.parametrize("key", ["dlib_landmarks_68", "dlib_landmarks_5"])
def test_a_changed_model_file_is_refused_before_dlib_reads_it(home, key: str, monkeypatch) -> None:
    # The 68-point model's hash runs in a thread while the other (checked) files load: it must still
    # fail closed, and dlib must never be handed the changed file.
    import dlib

    from likeness.fsutil import sha256_file

    entry = model(key)
    changed = write_changed_dlib_model(home, key)
    assert sha256_file(changed) != entry.sha256 and changed.stat().st_size == entry.size
    read: list[str] = []
    real = dlib.shape_predictor
    monkeypatch.setattr(dlib, "shape_predictor", lambda path: read.append(path) or real(path))
    with pytest.raises(ModelMissing, match=entry.filename):
        DlibAnalyzer(home)
    assert str(changed) not in read
    changed.unlink()  # the package's own copy is used again, and checked
    assert DlibAnalyzer(home).models[key].sha256 == entry.sha256


def _same_faces(found: list, expected: list) -> None:
    assert [f.box for f in found] == [f.box for f in expected]
    for face, other in zip(found, expected, strict=True):
        np.testing.assert_array_equal(face.landmarks, other.landmarks)
        np.testing.assert_array_equal(face.landmarks5, other.landmarks5)
        np.testing.assert_array_equal(face.embedding, other.embedding)
        assert face.score == other.score


def test_deferred_models_detect_first_then_load_once(
    analyzer: DlibAnalyzer, faces_dir: Path, monkeypatch
) -> None:
    """``defer_models=True``: the detector works before any model file is read; the models load once,
    in the thread that asks (here: while another thread detects, as a swap job does), and the faces
    are exactly those of an analyzer that loaded everything up front."""
    import threading

    import dlib

    read: list[str] = []
    real_shape, real_recogniser = dlib.shape_predictor, dlib.face_recognition_model_v1
    monkeypatch.setattr(dlib, "shape_predictor", lambda path: read.append(path) or real_shape(path))
    monkeypatch.setattr(
        dlib, "face_recognition_model_v1", lambda path: read.append(path) or real_recogniser(path)
    )
    deferred = DlibAnalyzer(defer_models=True)
    group = load_image(faces_dir / "_multi/obama_and_biden.jpg").pixels
    solo = load_image(faces_dir / "kit_harington/2.jpg").pixels
    found = deferred.find(group)
    assert read == [] and len(found.kept()) == 3  # detected without a model file

    portrait: list = []
    worker = threading.Thread(target=lambda: portrait.append(deferred.find(solo, portrait=True)))
    worker.start()
    deferred.load_models()
    worker.join()
    assert len(read) == 1  # the recogniser, once (the 5- and 68-point models: arrays)
    _same_faces(deferred.finish(found).faces, analyzer.analyze(group))
    _same_faces(deferred.finish(portrait[0]).faces, analyzer.analyze_portrait(solo))
    deferred.load_models()
    assert deferred.model_files() == analyzer.model_files() and len(read) == 1


def test_finding_and_identifying_faces_needs_no_68_point_model(
    analyzer: DlibAnalyzer, faces_dir: Path, monkeypatch
) -> None:
    """``likeness faces`` and re-embedding only find and identify faces: the 68-point model is not
    read, and the faces are the same but for their (empty) 68 landmarks."""
    import dlib

    from likeness.faces import dlib_backend

    read: list[str] = []
    real, real_trees = dlib.shape_predictor, dlib_backend.load_trees
    monkeypatch.setattr(dlib, "shape_predictor", lambda path: read.append(path) or real(path))
    monkeypatch.setattr(
        dlib_backend, "load_trees", lambda name, home: read.append(name) or real_trees(name, home)
    )
    light = load_analyzer("dlib", swapping=False)
    group = load_image(faces_dir / "_multi/obama_and_biden.jpg").pixels
    faces, expected = light.analyze(group), analyzer.analyze(group)
    assert [f.box for f in faces] == [f.box for f in expected] and len(faces) == 3
    for face, other in zip(faces, expected, strict=True):
        assert face.landmarks.shape == (0, 2)
        np.testing.assert_array_equal(face.landmarks5, other.landmarks5)
        np.testing.assert_array_equal(face.embedding, other.embedding)
    assert read == ["dlib_landmarks_5"]  # as arrays; the 68-point model neither as arrays nor by dlib
    assert [use.name for use in light.model_files()] == ["dlib_landmarks_5", "dlib_resnet_v1"]
    assert light.describe()["landmarks_68"] == "not loaded (not needed)"


def test_one_analyzer_detects_in_two_threads_at_once(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    """HOG runs without the GIL, so two threads can be inside it at once (a swap job reads its source
    and its target so): each gets its own detector (one detector run from two threads corrupted memory
    and aborted the process) and finds what a lone call finds."""
    import threading

    photos = [
        load_image(faces_dir / "_multi/obama_and_biden.jpg").pixels,
        load_image(faces_dir / "kit_harington/2.jpg").pixels,
    ]
    expected = [[c[:3] for c in analyzer.find(p).candidates] for p in photos]
    seen: list[list] = [[], []]

    def detect(index: int) -> None:
        for _ in range(4):
            seen[index].append([c[:3] for c in analyzer.find(photos[index]).candidates])

    threads = [threading.Thread(target=detect, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [[expected[0]] * 4, [expected[1]] * 4]


def test_a_changed_model_file_fails_closed_when_loading_is_deferred(
    analyzer: DlibAnalyzer, home, faces_dir: Path, monkeypatch
) -> None:
    import dlib

    entry = model("dlib_resnet_v1")
    write_changed_dlib_model(home, "dlib_resnet_v1", at=0.5)
    read: list[str] = []
    real = dlib.face_recognition_model_v1
    monkeypatch.setattr(dlib, "face_recognition_model_v1", lambda path: read.append(path) or real(path))
    deferred = DlibAnalyzer(home, defer_models=True)
    pixels = load_image(faces_dir / "obama/1.jpg").pixels
    found = deferred.find(pixels)  # detection needs no model file
    face = analyzer.detect(pixels)[0]
    for needs_models in (
        lambda: deferred.finish(found),
        deferred.model_files,
        lambda: deferred.analyze(pixels),
        lambda: deferred.embed(pixels, face),
    ):
        with pytest.raises(ModelMissing, match=entry.filename):
            needs_models()
    assert read == []


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, width) * max(0, height)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def test_portrait_analysis_finds_the_same_people_on_every_photo(
    analyzer: DlibAnalyzer, faces_dir: Path
) -> None:
    """``analyze_portrait`` (the source photo's rule: no upsampling unless that finds no face) against
    ``analyze`` on every test photo the two rules can differ on (long side ≤ ``upsample_below``)."""
    photos = sorted(p for p in faces_dir.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    compared = fast = 0
    for photo in photos:
        pixels = load_image(photo).pixels
        if max(pixels.shape[:2]) > analyzer.upsample_below:
            continue  # never upsampled: both rules run the same detection
        compared += 1
        full = analyzer.analyze(pixels)
        portrait = analyzer.analyze_portrait(pixels)
        name = photo.relative_to(faces_dir)
        # Never a face the full analysis does not find (no photo without people gets one) ...
        assert len(portrait) <= len(full), name
        for face in portrait:
            # ... each is one of the full analysis' faces: same place, same person.
            best = max(full, key=lambda other, face=face: _iou(face.box, other.box))
            assert _iou(face.box, best.box) > 0.45, name
            assert analyzer.distance(face.embedding, best.embedding) < 0.25, name
            assert face.landmarks.shape == (68, 2) and face.embedding.shape == (128,)
        # On every test photo the same people: no face of the full analysis is missing.
        assert len(portrait) == len(full), name
        fast += [f.box for f in portrait] != [f.box for f in full]
    assert compared >= 60
    print(f"portrait rule: {fast} of {compared} photos analysed without upsampling")
    assert fast >= 30  # the point of the rule: most photos skip the upsampled pass


def test_portrait_analysis_upsamples_only_when_faces_are_small(
    analyzer: DlibAnalyzer, faces_dir: Path
) -> None:
    pixels = load_image(faces_dir / "kit_harington/2.jpg").pixels  # 630×374: analyze upsamples
    assert analyzer.analyze_detailed(pixels).upsample == 1
    assert analyzer.analyze_detailed(pixels, upsample=False).upsample == 0
    portrait = analyzer.analyze_portrait(pixels)
    assert len(portrait) == 1 and portrait[0].size >= 120
    assert [f.box for f in portrait] == [
        f.box for f in analyzer.analyze_detailed(pixels, upsample=False).faces
    ]
    # A 62 px face gets a coarse 72 px box without upsampling (under 1.5 windows): the full rule runs.
    small = load_image(faces_dir / "_hard/obama_240p_small.jpg").pixels
    coarse = analyzer.analyze_detailed(small, upsample=False).faces
    assert len(coarse) == 1 and coarse[0].size < 120
    assert [f.box for f in analyzer.analyze_portrait(small)] == [f.box for f in analyzer.analyze(small)]


def test_the_portrait_rule_runs_one_detection_on_a_photo_too_large_to_upsample(
    analyzer: DlibAnalyzer, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over ``upsample_below`` the full pass is the no-upsampling pass again: a small face (or none)
    on a large photo is not looked for twice; on a small photo the upsampled pass still runs."""
    runs: list[int] = []
    detect = analyzer._detect

    def counted(pixels, chosen=None, *, upsample=True):
        found = detect(pixels, chosen, upsample=upsample)
        runs.append(found[2])
        return found

    monkeypatch.setattr(analyzer, "_detect", counted)
    small = load_image(faces_dir / "_hard/obama_240p_small.jpg").pixels
    canvas = np.full((1300, 1700, 3), 128, dtype=np.uint8)  # over upsample_below, with a 62 px face
    canvas[100 : 100 + small.shape[0], 200 : 200 + small.shape[1]] = small
    assert max(canvas.shape[:2]) > analyzer.upsample_below
    faces = analyzer.analyze_portrait(canvas)
    assert runs == [0], runs  # one detection, not upsampled
    assert [f.box for f in faces] == [f.box for f in analyzer.analyze(canvas)]
    runs.clear()
    analyzer.analyze_portrait(small)  # a small photo: the upsampled pass follows the coarse one
    assert runs == [0, 1], runs


def test_a_swap_source_is_found_by_the_portrait_rule(analyzer: DlibAnalyzer, faces_dir: Path) -> None:
    from likeness.jobs.selection import find_source_face

    solo = load_image(faces_dir / "kit_harington/2.jpg")
    found = find_source_face(analyzer, solo)
    assert found.box == analyzer.analyze_portrait(solo.pixels)[0].box
    assert found.box != analyzer.analyze(solo.pixels)[0].box  # not the upsampled analysis
    # Two people of ~100 px: each under 1.5 windows, so the full analysis runs and the photo is refused.
    with pytest.raises(BadInput, match="shows 2 faces"):
        find_source_face(analyzer, load_image(faces_dir / "_multi/kit_with_rose.jpg"))
