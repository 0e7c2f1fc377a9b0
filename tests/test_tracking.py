"""Face tracking on generated clips of real photos, analysed by the real dlib backend.

Clips go through a real H.264 encode and likeness's own decoder, so the tracker sees compressed
frames as it would in a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import video_fixtures as vf
from likeness.faces import tracking
from likeness.faces.tracking import FaceTracker, OneEuroFilter, SmoothingParams, TrackerSettings, TrackUpdate
from likeness.faces.types import Face
from likeness.media.video import iter_frames

FPS = 25


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory: pytest.TempPathFactory):
    from likeness.home import Home

    return vf.dlib_analyzer(Home(root=tmp_path_factory.mktemp("home")).ensure())


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return vf.scene_photos(faces_dir)


@dataclass
class Run:
    updates: list[TrackUpdate]
    detected_on: list[int]
    ended_at_finish: list


def decoded(path: Path) -> list[tuple[int, float, np.ndarray]]:
    return [(f.index, f.time, f.pixels) for f in iter_frames(path)]


def track_clip(
    frames: Sequence[tuple[int, float, np.ndarray]],
    analyze,
    settings: TrackerSettings,
    distance=None,
) -> Run:
    tracker = FaceTracker(settings, distance=distance)
    updates, detected_on = [], []
    for index, time, pixels in frames:
        detections = None
        if tracker.wants_detection(index):
            detections = analyze(index, pixels)
            detected_on.append(index)
        updates.append(tracker.update(index, time, pixels, detections))
    return Run(updates, detected_on, tracker.finish())


def clip_of(path: Path, frames: list[np.ndarray]) -> list[tuple[int, float, np.ndarray]]:
    return decoded(
        vf.write_clip(path, frames, fps=FPS, audio=None, options={"preset": "veryfast", "crf": "16"})
    )


# -- identities --------------------------------------------------------------------------------------------


def test_two_people_keep_their_ids_and_the_newcomer_opens_a_track(analyzer, photos, tmp_path: Path) -> None:
    a, b = photos
    scene = vf.Scene(a, b, b_enters=20, b_leaves=45, count=60)
    frames = clip_of(tmp_path / "scene.mp4", list(scene.frames()))
    run = track_clip(frames, lambda i, px: analyzer.analyze(px), TrackerSettings(detect_every=5))

    started = [(u.frame_index, t) for u in run.updates for t in u.started]
    assert len(started) == 2, started
    (a_at, a_track), (b_at, b_track) = started
    assert a_at == 0
    assert 21 <= b_at <= 30  # B is fully in view from frame 25 (detections every 5 frames)
    assert b_track.track_id != a_track.track_id
    # A is followed in every frame under the same id, left of B whenever both are shown.
    for update in run.updates:
        ids = [f.track_id for f in update.faces]
        assert ids[0] == a_track.track_id, (update.frame_index, ids)
        if 30 <= update.frame_index < 45:
            assert ids == [a_track.track_id, b_track.track_id]
    # B's track ends soon after B leaves; A's only at the end of the clip.
    ended = [(u.frame_index, t) for u in run.updates for t in u.ended]
    assert [t.track_id for _, t in ended] == [b_track.track_id]
    assert 45 <= ended[0][0] <= 50 and ended[0][1].end_reason
    assert [t.track_id for t in run.ended_at_finish] == [a_track.track_id]
    assert not any(
        b_track.track_id in [f.track_id for f in u.faces] for u in run.updates if u.frame_index > 50
    )
    # A moves 1 px a frame to the right: the tracked box follows.
    centres = [u.faces[0].face.center_x for u in run.updates]
    expected = [30 + i + scene.face_px / 2 for i in range(len(run.updates))]
    assert np.abs(np.array(centres) - np.array(expected)).max() < 12


def test_a_different_person_in_the_same_place_never_inherits_the_track(
    analyzer, photos, tmp_path: Path
) -> None:
    a, b = photos
    face_a, face_b = vf.resize(a, 150, 150), vf.resize(b, 150, 150)
    background = np.full((300, 400, 3), 96, np.uint8)
    images = []
    for i in range(24):  # hard cut from A to B at frame 12, same spot
        frame = background.copy()
        frame[70:220, 120:270] = face_a if i < 12 else face_b
        images.append(frame)
    frames = clip_of(tmp_path / "cut.mp4", images)
    cache: dict[int, list[Face]] = {}

    def analyze(index: int, pixels: np.ndarray) -> list[Face]:
        if index not in cache:
            cache[index] = analyzer.analyze(pixels)
        return cache[index]

    # Box overlap alone would carry A's track (and A's consent decision) onto B.
    naive = track_clip(frames, analyze, TrackerSettings(detect_every=5))
    assert len([t for u in naive.updates for t in u.started]) == 1
    # With the identity check, B gets a new track, which the caller must gate.
    checked = track_clip(
        frames, analyze, TrackerSettings(detect_every=5, identity_threshold=0.5), analyzer.distance
    )
    started = [(u.frame_index, t.track_id) for u in checked.updates for t in u.started]
    ended = [(u.frame_index, t) for u in checked.updates for t in u.ended]
    assert [s[1] for s in started] == [1, 2] and 12 <= started[1][0] <= 15
    assert ended[0][1].track_id == 1 and "identity changed" in ended[0][1].end_reason
    for update in checked.updates:
        assert all(f.track_id == (1 if update.frame_index < 12 else 2) for f in update.faces), (
            update.frame_index
        )


def test_a_face_that_vanishes_ends_its_track(analyzer, photos, tmp_path: Path) -> None:
    a, _ = photos
    face = vf.resize(a, 150, 150)
    yy, xx = np.mgrid[0:300, 0:400]
    background = np.stack([60 + xx // 5, 70 + yy // 5, 90 + 0 * xx], -1).astype(np.uint8)
    images = []
    for i in range(20):
        frame = background.copy()
        if i < 8:
            frame[70:220, 120 + i : 270 + i] = face
        images.append(frame)
    frames = clip_of(tmp_path / "vanish.mp4", images)
    run = track_clip(frames, lambda i, px: analyzer.analyze(px), TrackerSettings(detect_every=5))
    shown = [u.frame_index for u in run.updates if u.faces]
    assert shown == list(range(8))  # never drawn on the empty background
    ended = [(u.frame_index, t) for u in run.updates for t in u.ended]
    assert len(ended) == 1 and ended[0][0] <= 10 and "lost" in ended[0][1].end_reason


# -- flicker ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_clips(analyzer, photos, tmp_path_factory: pytest.TempPathFactory):
    """A still photo with fresh noise in every frame, and the same photo panning 4 px a frame; the
    analyzer's landmarks on every frame (the 'raw' reference)."""
    a, _ = photos
    face = vf.resize(a, 140, 140)
    rng = np.random.default_rng(1)
    count = 20

    def frame(x: int) -> np.ndarray:
        image = np.full((300, 400, 3), 90, np.uint8)
        image[80:220, x : x + 140] = face
        return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)

    folder = tmp_path_factory.mktemp("noisy")
    still = clip_of(folder / "still.mp4", [frame(120) for _ in range(count)])
    pan = clip_of(folder / "pan.mp4", [frame(40 + 4 * i) for i in range(count)])
    detections = {
        name: [analyzer.analyze(pixels) for _, _, pixels in frames]
        for name, frames in (("still", still), ("pan", pan))
    }
    assert all(len(found) == 1 for found in detections["still"] + detections["pan"])
    return still, pan, detections


def _jitter(points: np.ndarray) -> float:
    """Mean distance of each landmark from its own average position (px)."""
    return float(np.linalg.norm(points - points.mean(axis=0), axis=-1).mean())


def _pan_error(points: np.ndarray) -> float:
    """Mean distance from the true motion (4 px a frame to the right), after the first 5 frames."""
    shift = (4 * np.arange(len(points)))[:, None, None] * np.array([1.0, 0.0])
    shape = (points - shift).mean(axis=0)
    return float(np.linalg.norm(points - (shape + shift), axis=-1)[5:].mean())


def _tracked_landmarks(frames, detections, settings: TrackerSettings) -> np.ndarray:
    run = track_clip(frames, lambda i, px: detections[i], settings)
    assert all(len(u.faces) == 1 for u in run.updates)
    return np.stack([u.faces[0].face.landmarks for u in run.updates])


def test_tracking_and_smoothing_cut_landmark_jitter_without_lagging(noisy_clips) -> None:
    still, pan, detections = noisy_clips
    raw_still = np.stack([found[0].landmarks for found in detections["still"]])
    raw_pan = np.stack([found[0].landmarks for found in detections["pan"]])
    rows = [("raw detections, every frame", _jitter(raw_still), _pan_error(raw_pan))]
    for label, settings in [
        ("smoothing only, detect every frame", TrackerSettings(detect_every=1, detection_weight=1.0)),
        ("tracker defaults (detect every 5)", TrackerSettings()),
        ("tracker, smoothing off", TrackerSettings(smoothing=None)),
        ("tracker, detections taken half way", TrackerSettings(detection_weight=0.5)),
    ]:
        rows.append(
            (
                label,
                _jitter(_tracked_landmarks(still, detections["still"], settings)[5:]),
                _pan_error(_tracked_landmarks(pan, detections["pan"], settings)),
            )
        )
    print("\nlandmark jitter on a noisy still / error against a 4 px-a-frame pan (px):")
    for label, jitter, error in rows:
        print(f"  {label:38s} jitter {jitter:.3f}   pan error {error:.3f}")
    raw_jitter, raw_error = rows[0][1], rows[0][2]
    _, default_jitter, default_error = rows[2]
    assert default_jitter < 0.5 * raw_jitter
    assert default_error < 1.25 * raw_error  # steadier, and no lag behind real motion
    assert rows[1][1] < 0.6 * raw_jitter  # the filter alone already helps


def test_flow_reads_only_around_the_face_and_moves_points_as_on_the_whole_frame(
    analyzer, photos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a 720p frame, flow runs on a region around each face (a third of the pixels here); the
    points it moves are those the whole frame gives, through a slow pan and a 40 px-a-frame dash."""
    a, _ = photos
    face = vf.resize(a, 150, 150)
    rng = np.random.default_rng(3)
    background = rng.integers(60, 120, (720, 1280, 3), dtype=np.uint8)  # texture outside the face too
    steps = [3] * 10 + [40] * 5 + [-3] * 10
    x, images = 200, []
    for step in [0, *steps]:
        x += step
        frame = background.copy()
        frame[250:400, x : x + 150] = face
        images.append(frame)
    frames = clip_of(tmp_path / "dash.mp4", images)
    first = analyzer.analyze(frames[0][2])
    assert len(first) == 1
    x0, y0, x1, y1 = tracking.flow_region(first[0].box, frames[0][2].shape)
    assert (x1 - x0) * (y1 - y0) < 0.4 * 1280 * 720

    settings = TrackerSettings(detect_every=1000, smoothing=None)  # flow alone after the first frame

    def follow() -> np.ndarray:
        run = track_clip(frames, lambda i, px: first, settings)
        assert all(len(u.faces) == 1 for u in run.updates)
        return np.stack([u.faces[0].face.landmarks for u in run.updates])

    cropped = follow()
    monkeypatch.setattr(tracking, "flow_region", lambda box, shape: (0, 0, shape[1], shape[0]))
    whole = follow()
    diff = np.abs(cropped - whole)  # measured: ≤ 0.01 px a frame, 0.06 px after 25 frames of flow alone
    assert diff.max(axis=(1, 2))[:6].max() < 0.02 and diff.max() < 0.1 and diff.mean() < 0.005
    moved = cropped[:, :, 0].mean(axis=1) - cropped[0, :, 0].mean()
    assert np.abs(moved - (np.array([0, *np.cumsum(steps)]))).max() < 2.0  # it followed the dash


def test_one_euro_follows_a_step_quickly_and_holds_still_input() -> None:
    flt = OneEuroFilter(SmoothingParams())
    still = np.array([[10.0, 10.0], [20.0, 20.0]])
    assert np.array_equal(flt(still, 0.0, 100.0), still)
    for i in range(1, 5):
        assert np.allclose(flt(still, i / FPS, 100.0), still)
    moved = still + np.array([30.0, 0.0])  # a 0.3 face-size jump
    outputs = [flt(moved, (5 + i) / FPS, 100.0) for i in range(10)]
    assert outputs[0][0, 0] > 10.0 and outputs[0][0, 0] < 40.0  # smoothed, not ignored
    assert abs(outputs[-1][0, 0] - 40.0) < 1.0  # caught up within 10 frames (0.4 s)
