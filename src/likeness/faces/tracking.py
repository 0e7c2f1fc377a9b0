"""Following faces through a video: stable track ids, optical flow between detections, smoothing.

The caller owns the analyzer and decides when it runs (:meth:`FaceTracker.wants_detection`): every
``detect_every`` frames, and on the next frame whenever optical flow lost a face (or on that same
frame, when :meth:`FaceTracker.update` is given ``redetect``). Between detections
each track's landmarks are carried by pyramidal Lucas–Kanade flow (``cv2.calcOpticalFlowPyrLK``,
forward–backward checked, on the region of the frame around the face: :func:`flow_region`) and its
box by the similarity transform the tracked points agree on.

Identity, fail-closed. A track is one person from the detection that opened it (:attr:`Track.face`:
run the consent gate on it) until it ends. :attr:`TrackUpdate.started` lists new tracks — a person
entering, or a person the tracker could not vouch for — so the caller gates each before swapping it.
Detections are matched to tracks by box overlap (Hungarian assignment on IoU); with
``identity_threshold`` set, a detection whose embedding is farther than that from the track's first
embedding is *not* that track: the track ends ("identity changed") and the detection opens a new
one, so two people crossing never inherit each other's consent decision. A track ends when it goes
unmatched for more than ``max_missed`` detection rounds or flow loses it and the next detection does
not find it. Lost tracks are never revived: a returning person gets a new id and a fresh gate.

Steadiness comes from two things. (1) At a detection frame a flow-carried track moves only a quarter
of the way toward the detection (``detection_weight``): flow is steady but drifts, the detector does
not drift but jitters, and the blend keeps most of both virtues. (2) A One-Euro filter (Casiez et al., CHI
2012) on every landmark, run on each frame's own time so VFR clips are filtered correctly. Its cutoff
is ``min_cutoff + beta × face speed + beta_local × point speed``, speeds in *face sizes per second*
(the box's shorter side) so one set of parameters fits a 100 px face at 480p and an 800 px face at
4K. The face speed is the mean velocity of all its points, where per-point noise averages out; that
lets ``beta`` be large (no lag when the head moves) without letting jitter through at rest.
Defaults: ``min_cutoff=0.5`` Hz, ``beta=64``, ``beta_local=4``, ``d_cutoff=1`` Hz, ``detect_every=5``,
``detection_weight=0.25``.

Measured (tests/test_tracking.py, dlib backend, a real photo with σ=8 noise added to every frame,
through H.264 CRF 16 and likeness's decoder; px, 140 px face, 25 fps):

==========================================  ==============  ===========================
                                            jitter (still)  error vs a 4 px/frame pan
==========================================  ==============  ===========================
raw detections on every frame               0.42            0.42
One-Euro only (detect every frame)          0.12            0.41
tracker, smoothing off (detect every 5)     0.09            0.11
tracker defaults (detect every 5)           0.07            0.13
tracker, detection_weight 0.5               0.12            0.22
==========================================  ==============  ===========================

In the video swap (bench/swap_video.py --flicker, a static 720p shot) lowering the weight from 0.5
to 0.25 cut the mean landmark step between consecutive frames from 0.08 to 0.04 px: the small jumps at
detection frames are what the swapped face's residual shimmer comes from.

"jitter" is each landmark's mean distance from its own average position over the clip; "error" the
mean distance from the known true motion. In a sweep on the same frames before encoding, per-point speed
(the classic One-Euro) needed ``beta`` so high to follow the pan that jitter rose to 0.25 px.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from likeness.faces.types import Face

Distance = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class SmoothingParams:
    """One-Euro filter settings (speeds in face sizes per second, cutoffs in Hz).

    ``min_cutoff``: the cutoff at rest — lower is steadier, but slower to follow slow drifts.
    ``beta``: how fast the cutoff rises with the *whole face's* speed (its mean point velocity, where
    per-point noise averages out) — higher means less lag when the head moves.
    ``beta_local``: the same for each point's speed relative to the face (mouth, eyes, brows), so
    expressions are followed without letting per-point noise through. ``d_cutoff`` smooths the speeds.
    """

    min_cutoff: float = 0.5
    beta: float = 64.0
    beta_local: float = 4.0
    d_cutoff: float = 1.0


@dataclass(frozen=True)
class TrackerSettings:
    detect_every: int = 5
    """Run the analyzer on every N-th frame (and on the frame after flow loses a face)."""
    iou_match: float = 0.3
    """Minimum box overlap for a detection to continue a track."""
    max_missed: int = 1
    """Detection rounds a track may go undetected (carried by flow) before it ends."""
    identity_threshold: float | None = None
    """Embedding distance above which a detection is a different person (needs ``distance``)."""
    flow_min_fraction: float = 0.5
    """Share of landmarks that must pass the forward–backward flow check for a frame to count."""
    flow_max_error: float = 0.03
    """Forward–backward error allowed per point, in face sizes (min 1 px)."""
    detection_weight: float = 0.25
    """At a detection frame, how far a flow-carried track moves toward the detection (1 = all the
    way). Below 1 averages detector noise away while still removing flow drift; a detection more
    than 0.1 face sizes from the flow estimate is taken as is. 0.25 was steadier and closer to the
    true motion than 0.35 and 0.5 in the measurements in the module docstring."""
    smoothing: SmoothingParams | None = field(default_factory=SmoothingParams)
    """``None`` turns smoothing off (the raw landmarks are returned)."""


@dataclass(frozen=True)
class Track:
    """One person followed through the clip. ``face`` is the detection that opened the track."""

    track_id: int
    face: Face
    first_frame: int
    first_time: float
    last_frame: int
    detections: int = 1
    end_reason: str | None = None

    @property
    def ended(self) -> bool:
        return self.end_reason is not None


@dataclass(frozen=True)
class TrackedFace:
    """A track's face in one frame. ``face`` carries the smoothed box and landmarks with the track's
    first embedding (hand it to the swapper); ``raw_landmarks`` are before smoothing."""

    track_id: int
    frame_index: int
    time: float
    face: Face
    raw_landmarks: np.ndarray = field(repr=False)
    source: Literal["detected", "tracked"]
    detection: Face | None = field(default=None, repr=False)
    """The analyzer's face for this frame when it was matched here (fresh embedding), else ``None``."""


@dataclass(frozen=True)
class TrackUpdate:
    frame_index: int
    faces: list[TrackedFace]
    """Faces shown this frame, left to right. A track whose flow failed this frame is left out."""
    started: list[Track]
    """Tracks opened this frame: gate each one before swapping it."""
    ended: list[Track]


class OneEuroFilter:
    """One-Euro low-pass filter over an (N, 2) array of points; see the module docstring."""

    def __init__(self, params: SmoothingParams) -> None:
        self.params = params
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float, scale: float) -> np.ndarray:
        """Filter points ``x`` (N, 2) seen at ``t`` seconds; ``scale`` is the face size in pixels."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._dx is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x
        dt = t - self._t
        if dt <= 0:
            return self._x.copy()
        p = self.params
        dx = (x - self._x) / dt
        a_d = self._alpha(dt, p.d_cutoff)
        dx_hat = a_d * dx + (1 - a_d) * self._dx
        scale = max(scale, 1.0)
        face_velocity = dx_hat.mean(axis=0)
        face_speed = float(np.linalg.norm(face_velocity)) / scale
        local_speed = np.linalg.norm(dx_hat - face_velocity, axis=-1, keepdims=True) / scale
        a = self._alpha(dt, p.min_cutoff + p.beta * face_speed + p.beta_local * local_speed)
        x_hat = a * x + (1 - a) * self._x
        self._x, self._dx, self._t = x_hat, dx_hat, t
        return x_hat.copy()


@dataclass
class _State:
    """A live track's mutable state (never handed out)."""

    track: Track
    points: np.ndarray  # raw landmarks then landmarks5, float32 (N, 2)
    n_main: int
    box: np.ndarray  # float64 [l, t, r, b]
    filter: OneEuroFilter | None
    box_filter: OneEuroFilter | None
    missed: int = 0
    flow_ok: bool = True
    source: Literal["detected", "tracked"] = "detected"
    detection: Face | None = None

    @property
    def size(self) -> float:
        return float(max(1.0, min(self.box[2] - self.box[0], self.box[3] - self.box[1])))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceTracker:
    """Follow faces across frames. One tracker per clip; feed every frame in order.

    ``distance`` (e.g. ``analyzer.distance``) enables the identity check when
    ``settings.identity_threshold`` is set.
    """

    def __init__(
        self,
        settings: TrackerSettings | None = None,
        *,
        distance: Distance | None = None,
        first_track_id: int = 1,
    ) -> None:
        self.settings = settings or TrackerSettings()
        if self.settings.detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        if self.settings.identity_threshold is not None and distance is None:
            raise ValueError("identity_threshold needs a distance function (pass analyzer.distance)")
        self.distance = distance
        self._states: list[_State] = []
        self._next_id = first_track_id
        self._prev_gray: np.ndarray | None = None
        self._last_detection: int | None = None
        self._need_detection = True

    @property
    def active(self) -> list[Track]:
        return [state.track for state in self._states]

    def wants_detection(self, frame_index: int) -> bool:
        """Should the caller run the analyzer on this frame?"""
        if self._need_detection or self._last_detection is None:
            return True
        return frame_index - self._last_detection >= self.settings.detect_every

    def update(
        self,
        frame_index: int,
        time: float,
        pixels: np.ndarray,
        detections: Sequence[Face] | None,
        *,
        redetect: Callable[[np.ndarray], Sequence[Face]] | None = None,
    ) -> TrackUpdate:
        """Advance to this frame. ``detections`` are the analyzer's faces, or ``None`` between detections.

        ``redetect`` (e.g. ``analyzer.analyze``): when flow loses a face on a frame without
        detections, run it on this same frame instead of waiting for the next one, so the face is
        not missing from this frame's :attr:`TrackUpdate.faces` (a swap would flash the original).
        """
        import cv2

        gray = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
        if self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            for state in self._states:
                state.flow_ok = self._flow(state, self._prev_gray, gray)
                state.source, state.detection = "tracked", None
        if detections is None and redetect is not None and any(not s.flow_ok for s in self._states):
            detections = list(redetect(pixels))
        started: list[Track] = []
        ended: list[Track] = []
        if detections is not None:
            self._last_detection = frame_index
            self._need_detection = False
            self._associate(frame_index, time, list(detections), started, ended)
        else:
            self._need_detection = any(not state.flow_ok for state in self._states)
        self._prev_gray = gray

        faces = [self._emit(state, frame_index, time) for state in self._states if state.flow_ok]
        faces.sort(key=lambda tracked: tracked.face.center_x)
        return TrackUpdate(frame_index=frame_index, faces=faces, started=started, ended=ended)

    def split(self, track_id: int, reason: str) -> list[Track]:
        """End the track now (its identity is no longer confirmed) and detect on the next frame, so
        the face there opens a new track that the caller gates afresh. Returns the ended track."""
        ended = [replace(s.track, end_reason=reason) for s in self._states if s.track.track_id == track_id]
        self._states = [s for s in self._states if s.track.track_id != track_id]
        if ended:
            self._need_detection = True
        return ended

    def finish(self) -> list[Track]:
        """End every live track (end of clip) and return them."""
        ended = [replace(state.track, end_reason="clip ended") for state in self._states]
        self._states = []
        return ended

    # -- detection rounds --------------------------------------------------------------------------

    def _associate(
        self, frame_index: int, time: float, detections: list[Face], started: list[Track], ended: list[Track]
    ) -> None:
        settings = self.settings
        states = self._states
        overlap = np.zeros((len(states), len(detections)))
        for i, state in enumerate(states):
            for j, face in enumerate(detections):
                overlap[i, j] = iou(state.box, face.box)
        different = np.zeros_like(overlap, dtype=bool)
        if settings.identity_threshold is not None and self.distance is not None:
            for i, state in enumerate(states):
                for j, face in enumerate(detections):
                    if overlap[i, j] >= settings.iou_match and _has_embedding(state.track.face, face):
                        dist = self.distance(state.track.face.embedding, face.embedding)
                        different[i, j] = dist > settings.identity_threshold
        pairs: list[tuple[int, int]] = []
        if states and detections:
            cost = np.where(different, 2.0, 1.0 - overlap)
            rows, cols = assign(cost)
            pairs = [
                (r, c)
                for r, c in zip(rows, cols, strict=True)
                if overlap[r, c] >= settings.iou_match and not different[r, c]
            ]
        matched_states = {r for r, _ in pairs}
        matched_dets = {c for _, c in pairs}
        for r, c in pairs:
            state, face = states[r], detections[c]
            self._correct(state, face)
            state.missed, state.flow_ok = 0, True
            state.source, state.detection = "detected", face
            state.track = replace(state.track, last_frame=frame_index, detections=state.track.detections + 1)

        survivors: list[_State] = []
        for i, state in enumerate(states):
            if i in matched_states:
                survivors.append(state)
                continue
            reason = None
            if different[i].any():
                reason = "identity changed: a different person is at this track's position"
            elif not state.flow_ok:
                reason = "lost: optical flow failed and the detector did not find the face again"
            else:
                state.missed += 1
                if state.missed > settings.max_missed:
                    reason = f"not detected for {state.missed} detection rounds"
            if reason is None:
                survivors.append(state)
            else:
                ended.append(replace(state.track, end_reason=reason))
        self._states = survivors

        for j, face in enumerate(detections):
            if j in matched_dets:
                continue
            track = Track(
                track_id=self._next_id,
                face=face,
                first_frame=frame_index,
                first_time=time,
                last_frame=frame_index,
            )
            self._next_id += 1
            smoothing = settings.smoothing
            self._states.append(
                _State(
                    track=track,
                    points=_face_points(face),
                    n_main=len(face.landmarks),
                    box=np.asarray(face.box, dtype=np.float64),
                    filter=OneEuroFilter(smoothing) if smoothing else None,
                    box_filter=OneEuroFilter(smoothing) if smoothing else None,
                    detection=face,
                )
            )
            started.append(track)

    def _correct(self, state: _State, face: Face) -> None:
        """Move a matched track toward its detection: part way if flow carried it here and agrees
        (fusing flow's steadiness with the detector's lack of drift), all the way otherwise."""
        points = _face_points(face)
        box = np.asarray(face.box, dtype=np.float64)
        weight = self.settings.detection_weight
        if state.flow_ok and state.points.shape == points.shape and weight < 1.0:
            gap = float(np.linalg.norm(points - state.points, axis=1).mean())
            if gap <= 0.1 * state.size:
                points = state.points + weight * (points - state.points)
                box = state.box + weight * (box - state.box)
        state.points = points.astype(np.float32)
        state.n_main = len(face.landmarks)
        state.box = box

    # -- between detections ------------------------------------------------------------------------

    def _flow(self, state: _State, prev: np.ndarray, gray: np.ndarray) -> bool:
        """Move ``state`` from ``prev`` to ``gray`` by optical flow; False if the face was lost."""
        import cv2

        if not state.flow_ok or len(state.points) < 3:
            return False
        x0, y0, x1, y1 = flow_region(state.box, gray.shape)
        offset = np.array([x0, y0], dtype=np.float32)
        p0 = state.points.reshape(-1, 1, 2).astype(np.float32) - offset
        before, after = prev[y0:y1, x0:x1], gray[y0:y1, x0:x1]
        params = {
            "winSize": (FLOW_WINDOW, FLOW_WINDOW),
            "maxLevel": FLOW_LEVELS,
            "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
        }
        p1, status, _ = cv2.calcOpticalFlowPyrLK(before, after, p0, None, **params)
        if p1 is None:
            return False
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(after, before, p1, None, **params)
        p0, p1, back = p0 + offset, p1 + offset, back + offset
        error = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
        limit = max(1.0, self.settings.flow_max_error * state.size)
        good = (status.ravel() == 1) & (status_back.ravel() == 1) & (error < limit)
        if good.sum() < max(3, self.settings.flow_min_fraction * len(good)):
            return False
        old, new = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
        matrix, _ = cv2.estimateAffinePartial2D(
            old, new, method=cv2.RANSAC, ransacReprojThreshold=max(2.0, 0.02 * state.size)
        )
        if matrix is None:
            return False
        predicted = cv2.transform(state.points.reshape(-1, 1, 2).astype(np.float64), matrix).reshape(-1, 2)
        points = predicted.copy()
        points[good] = p1.reshape(-1, 2)[good]
        corners = np.array([[state.box[0], state.box[1]], [state.box[2], state.box[3]]], dtype=np.float64)
        moved = cv2.transform(corners.reshape(-1, 1, 2), matrix).reshape(-1, 2)
        state.points = points.astype(np.float32)
        state.box = np.array([moved[0, 0], moved[0, 1], moved[1, 0], moved[1, 1]], dtype=np.float64)
        return True

    # -- output ------------------------------------------------------------------------------------

    def _emit(self, state: _State, frame_index: int, time: float) -> TrackedFace:
        raw = state.points.astype(np.float64)
        smooth = state.filter(raw, time, state.size) if state.filter is not None else raw
        box = state.box
        if state.box_filter is not None:
            box = state.box_filter(box.reshape(2, 2), time, state.size).reshape(4)
        reference = state.track.face
        face = Face(
            box=tuple(round(v) for v in box),  # type: ignore[arg-type]
            landmarks=smooth[: state.n_main].astype(np.float32),
            landmarks5=smooth[state.n_main :].astype(np.float32),
            embedding=reference.embedding,
            score=state.detection.score if state.detection is not None else reference.score,
            embedding_space=reference.embedding_space,
        )
        return TrackedFace(
            track_id=state.track.track_id,
            frame_index=frame_index,
            time=time,
            face=face,
            raw_landmarks=raw[: state.n_main].astype(np.float32),
            source=state.source,
            detection=state.detection,
        )


FLOW_WINDOW = 21
"""Side of the Lucas–Kanade window (px, at each pyramid level)."""
FLOW_LEVELS = 3
"""Pyramid levels above the frame's own (each halves it): motions up to about ``FLOW_WINDOW × 2**FLOW_LEVELS``
px a frame are followed."""


def flow_region(box: Sequence[float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The part of a frame (x0, y0, x1, y1) that optical flow reads to move a face with this box.

    Flow reads each point's window at every pyramid level, so a point's answer depends only on the
    pixels within ``FLOW_WINDOW × 2**FLOW_LEVELS`` (168 px) of it and of where it moves to. The region
    is the box with that margin plus half the face's size (landmarks on the jaw and brows reach past
    the box; a fast move), clipped to the frame: at 1080p a 215 px face's region is a quarter of the
    frame, and flow there costs a third of the whole frame's (its pyramids and gradients are built
    over the region only). Points move as they would on the whole frame to within about 0.005 px a
    frame (the region's edge changes the coarsest pyramid levels a little): on a 720p clip with a
    40 px-a-frame dash, 0.06 px apart after 25 frames of flow alone (tests/test_tracking.py)."""
    height, width = shape[:2]
    left, top, right, bottom = (float(v) for v in box)
    margin = FLOW_WINDOW * 2**FLOW_LEVELS + 0.5 * max(1.0, min(right - left, bottom - top))
    x0, y0 = max(0, math.floor(left - margin)), max(0, math.floor(top - margin))
    x1, y1 = min(width, math.ceil(right + margin) + 1), min(height, math.ceil(bottom + margin) + 1)
    if x1 - x0 < FLOW_WINDOW or y1 - y0 < FLOW_WINDOW:  # a box (almost) outside the frame
        return 0, 0, width, height
    return x0, y0, x1, y1


BRUTE_FORCE_ORDERS = 720
"""Assignments with at most this many possible orders (e.g. 3 tracks × 6 faces) are searched
exhaustively."""


def assign(cost: np.ndarray) -> tuple[list[int], list[int]]:
    """Rows and columns of a minimum-cost assignment (as ``scipy.optimize.linear_sum_assignment``).

    A shot rarely holds more than a few faces: up to :data:`BRUTE_FORCE_ORDERS` possible assignments
    every one is tried (under a millisecond), which spares each job the import of ``scipy.optimize``
    (≈ 0.1–0.35 s); larger problems go to scipy.
    """
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = cost.shape
    if min(rows, cols) == 0:
        return [], []
    if math.perm(max(rows, cols), min(rows, cols)) > BRUTE_FORCE_ORDERS:
        from scipy.optimize import linear_sum_assignment

        found_rows, found_cols = linear_sum_assignment(cost)
        return [int(r) for r in found_rows], [int(c) for c in found_cols]
    transposed = rows > cols
    matrix = cost.T if transposed else cost
    best: tuple[float, tuple[int, ...]] | None = None
    for order in itertools.permutations(range(matrix.shape[1]), matrix.shape[0]):
        total = float(matrix[range(matrix.shape[0]), order].sum())
        if best is None or total < best[0] - 1e-12:
            best = (total, order)
    assert best is not None
    pairs = sorted((c, r) for r, c in enumerate(best[1])) if transposed else list(enumerate(best[1]))
    return [r for r, _ in pairs], [c for _, c in pairs]


def _face_points(face: Face) -> np.ndarray:
    parts = [
        np.asarray(face.landmarks, dtype=np.float32).reshape(-1, 2),
        np.asarray(face.landmarks5, dtype=np.float32).reshape(-1, 2),
    ]
    return np.concatenate(parts, axis=0)


def _has_embedding(a: Face, b: Face) -> bool:
    return (
        a.embedding is not None
        and b.embedding is not None
        and np.size(a.embedding) > 0
        and np.size(a.embedding) == np.size(b.embedding)
        and a.embedding_space == b.embedding_space
    )
