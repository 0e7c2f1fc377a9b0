"""Footage as a frame source: decode → detect every N frames → track → gate each person → transform.

:class:`FootageFrames` is the :class:`~likeness.media.frames.FrameSource` the road
(:mod:`likeness.jobs.road`) hands to the one sealing path for footage; a still is a one-frame source.

Who is replaced (``faces``):

* ``"consented"`` (default): a face is replaced only when the consent gate identifies it as an
  enrolled person who holds an in-force consent to be replaced (role ``target``) for this purpose
  and for video. Every other face — a bystander, an extra, the source actor appearing in the shot
  — is **left untouched**: the footage already showed them, likeness does not put anyone's
  likeness on them, and the outcome lists each such face with the reason it was left. This is what
  a film user needs (replace the double, not the crowd), and it keeps the image rule that every
  *replaced* face is consented. A face is tried again at each detection until it is identified
  (an actor walking in from the frame edge is often unidentifiable on the first frames); after
  ``IDENTIFY_ROUNDS`` tries, and for a bystander, on the re-check schedule below.
* ``"all"``: the image rule (every face replaced): a face that is not identified as a consenting
  target within ``IDENTIFY_ROUNDS`` detections, or is identified as someone whose consent does not
  cover this use, stops the job (:class:`~likeness.errors.ConsentRefused` naming the face, the
  frame and the time); nothing is written.

In both modes the source must pass the gate first (before any frame is read), a refusal is
logged to the ledger, and the output's ledger entry names every consent used, re-checked when the
output is recorded (a revocation while the job ran wins). Tracks keep their decision frame to
frame (the same person keeps the same swap). A swapped track's identity is confirmed again at
least every ``REVERIFY_EVERY_S`` (from that frame's detection, or re-identified from a crop around
the face between detections, whatever ``detect_every`` is), and at once when its appearance drifts
(``DRIFT_NCC``, looked at on every frame). This fails closed: a face that is not confirmed as the
track's identity is not swapped from that frame on, the track **splits** (its report says where and
why), and the face opens a new track that is gated afresh. Two people crossing never share a
decision: the face that takes over a track's place looks different (drift), so it is re-identified
on that frame; with an analyzer that embeds every detection, the tracker also ends a track whose
embedding jumps past the gate's threshold + margin.

Speed. Embeddings are most of an analysis' cost, so detections leave them out (with an analyzer that
can: :class:`~likeness.faces.types.LazyAnalyzer`) and one is computed only when a face is gated, tried
again, or re-checked as above; a bystander's track is re-checked on the same schedule. Detection runs
at the scale the followed faces allow (:mod:`likeness.faces.detect_scale`). Decoding runs in its own
thread and each frame's swap on a small pool, a few frames behind the detection, tracking and gating,
which stay in the caller's thread in frame order (every decision is made before the frame it applies
to is swapped); the sink encodes in its own thread. A detection's scan (dlib's HOG) starts in a
thread of its own once the frame before it is analysed, while finished frames are sealed
(:class:`_EarlyDetection`); its landmarks are found in the caller's thread. Every queue is bounded,
so memory stays flat.

If no face at all is replaced, the job fails (nothing written): an output that silently swapped
nobody is the "no output, no reason" failure users complain about elsewhere.

Known limits: faces smaller than the analyzer's minimum (40 px for dlib) are not seen, so they are
left untouched in both modes; a face entering between detections is untouched until the next
detection (``detect_every`` frames at most); a face turned too far for the swapper on some frames
is left untouched on those frames (counted in :attr:`TrackReport.swap_failures`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import numpy as np

from likeness.consent.gate import GateDecision, Involvement, Match, check_consent, identify
from likeness.consent.registry import Registry
from likeness.disclosure.footage_sink import VIDEO_WATERMARK_STRENGTH
from likeness.errors import BadInput, ConsentRefused, NoFace
from likeness.faces.detect_scale import DetectScale, misses
from likeness.faces.tracking import FaceTracker, Track, TrackedFace, TrackerSettings, iou
from likeness.faces.types import Analyzer, Face, LazyAnalyzer, SplitDetectAnalyzer, has_embedding
from likeness.jobs.inputs import FirstScan
from likeness.jobs.requests import TrackReport, VideoSwapRequest
from likeness.jobs.selection import SwapTransform
from likeness.media.background import close_pool
from likeness.media.frames import Frame, ResumePoint
from likeness.media.video import SkippedSpan, VideoInfo, open_frames
from likeness.progress import StageTimer

T = TypeVar("T")

IDENTIFY_ROUNDS = 3
"""``faces="all"``: detections a new face may take to become identifiable before the job stops."""
REVERIFY_EVERY_S = 0.5
"""A swapped track's identity is confirmed again at least this often (seconds), whatever
``detect_every`` says: between detections the face is re-identified from a crop around it."""
DRIFT_NCC = 0.97
"""Between confirmations, a swapped face whose 32×32 grey patch correlates less than this with the
patch at its last confirmation has drifted in appearance (a crossfade, another person stepping
into the same place) and is re-identified at once. The patch is a square of the confirmed size
around the landmarks' centre (:func:`_square`), not the box, whose size jumps at detections: on
bench/swap_video.py's drifting portrait the same face then stays ≥ 0.98 (box patches dipped to
0.945, each dip an embedding), so the threshold could rise from 0.95 and the crossfade in
tests/test_video_swap.py still splits before the frame is 60 % the other person."""
PATCH = 32
DECODE_AHEAD = 4
"""Frames the decoder thread may have ready ahead of the face work."""
SWAP_AHEAD = 3
"""Frames whose swap may still be running (on :data:`SWAP_WORKERS` threads) while later frames are
detected, tracked and gated; with the decoder's and the encoder's queues, what bounds memory."""
SWAP_WORKERS = 2


# -- per-track decisions -----------------------------------------------------------------------------------


@dataclass
class _TrackState:
    track_id: int
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    state: Literal["pending", "swap", "keep"] = "pending"
    reason: str = "not identified yet"
    identity_id: str | None = None
    consent_id: str | None = None
    rounds: int = 0
    verified_frame: int = -1
    """The frame where the track's identity was last confirmed (a detection or a re-identification)."""
    patch: np.ndarray | None = field(default=None, repr=False)
    """The face's normalised grey patch at that frame (see :data:`DRIFT_NCC`)."""
    patch_side: int = 0
    """The side of the square the patch was cut from; later patches are cut at the same size."""
    gated_embedding: np.ndarray | None = field(default=None, repr=False)
    """The embedding the consent gate decided on; a confirmation must stay within the gate's
    threshold of it (a gradual change of person cannot creep past the gate)."""
    frames_seen: int = 0
    frames_swapped: int = 0
    swap_failures: int = 0
    end_reason: str | None = None
    last_detection: Face | None = field(default=None, repr=False)

    def report(self) -> TrackReport:
        swapped = self.frames_swapped > 0
        reason = self.reason
        if swapped and self.state != "swap":
            reason = f"swapped while identified; then {reason}"
        return TrackReport(
            track_id=self.track_id,
            first_frame=self.first_frame,
            first_time=self.first_time,
            last_frame=self.last_frame,
            last_time=self.last_time,
            decision="swapped" if swapped else "untouched",
            reason=reason,
            identity_id=self.identity_id,
            consent_id=self.consent_id,
            frames_seen=self.frames_seen,
            frames_swapped=self.frames_swapped,
            swap_failures=self.swap_failures,
            end_reason=self.end_reason,
        )


def _match_json(match: Match) -> dict[str, Any]:
    """A match as kept in the job folder: ids and numbers, no names."""
    return {k: v for k, v in match.to_dict().items() if k != "identity_name"}


def _match_from_json(data: dict[str, Any]) -> Match:
    return Match(
        label=str(data["label"]),
        role=str(data["role"]),
        identity_id=str(data["identity_id"]),
        identity_name=str(data["identity_id"]),
        consent_id=str(data["consent_id"]),
        distance=float(data["distance"]),
        runner_up_distance=None
        if data.get("runner_up_distance") is None
        else float(data["runner_up_distance"]),
    )


class FootageFrames:
    """The transformed frames of one footage job (the :class:`~likeness.media.frames.FrameSource` the
    sealing path pulls from): decode → detect every N frames → track → gate new faces → transform."""

    def __init__(
        self,
        *,
        request: VideoSwapRequest,
        info: VideoInfo,
        registry: Registry,
        analyzer: Analyzer,
        transform: SwapTransform,
        source_matches: list[Match],
        timer: StageTimer,
        pipeline: bool = True,
        first_scan: FirstScan | None = None,
    ) -> None:
        self.request = request
        self.info = info
        self.registry = registry
        self.analyzer = analyzer
        self.transform = transform
        self.source_matches = list(source_matches)
        self.timer = timer
        self.point = registry.operating_point(analyzer.embedding_space)
        self.gallery = registry.gallery(analyzer.embedding_space)
        self._target_capable: dict[str, bool] = {}
        self._tracks: dict[int, _TrackState] = {}
        self._earlier: list[TrackReport] = []
        self._matches: dict[tuple[str, str], Match] = {}
        self._next_track_id = 1
        self._first_faces: list[tuple[int, int, int, int]] = []
        self.pipeline = pipeline
        """Decode and swap on other threads (the footage sink encodes on its own); ``False``: decode
        and swap in the caller's thread (the same frames, for tests and comparisons)."""
        self.first_scan = first_scan
        """The first frame's scan, made while the models loaded (:mod:`likeness.jobs.inputs`): taken
        by the first detection when that frame comes with the same pixels (pipelined only). Handed to
        the frames' run once and dropped here, so its frame is not kept for the whole job."""
        self.detect_scale = DetectScale()
        self._followed: list[Face] = []
        """The faces followed on the previous frame (their sizes set the detection scale)."""
        self._last_full: float | None = None
        """When the last full-scale detection ran (seconds into the clip)."""
        self._skipped_before: list[SkippedSpan] = []
        """Source frames an earlier run of this job dropped (from its checkpoint)."""
        self._skipped_now: list[SkippedSpan] = []
        """The list this run's reader adds the frames it drops to (:attr:`FrameReader.skipped`)."""

    # -- the FrameSource protocol ------------------------------------------------------------------

    def frames(self, start: ResumePoint) -> Iterator[Frame]:
        self._load(start.state)
        settings = TrackerSettings(
            detect_every=self.request.detect_every,
            identity_threshold=self.point.threshold + self.point.margin,
        )
        tracker = FaceTracker(settings, distance=self._distance, first_track_id=self._next_track_id)
        ahead = SWAP_AHEAD if self.pipeline else 0
        with (
            open_frames(
                self.request.target,
                info=self.info,
                after_pts=start.after_pts,
                first_index=start.first_index,
                on_corrupt=self.request.on_corrupt,
                prefetch=DECODE_AHEAD if self.pipeline else 0,
            ) as reader,
            _SwapPool(self.transform, SWAP_WORKERS if self.pipeline else 0) as pool,
            _EarlyDetection(
                self.analyzer if self.pipeline else None, self.timer, self._take_first_scan()
            ) as early,
        ):
            self._skipped_now = reader.skipped
            frames = iter(reader)
            pending: deque[_Pending] = deque()
            with self.timer.stage("decode"):
                frame = next(frames, None)
            while frame is not None:
                pending.append(self._analyse(tracker, frame, pool, early))
                with self.timer.stage("decode"):
                    frame = next(frames, None)
                keep = ahead
                if frame is not None and tracker.wants_detection(frame.index):
                    # scanned while the frames below are sealed: all but the newest, whose swap just began
                    keep = min(ahead, 1) if early.start(frame, self._scale(frame)) else ahead
                while len(pending) > keep:
                    yield self._finish(pending.popleft())
            while pending:
                yield self._finish(pending.popleft())
        for track in tracker.finish():
            self._end(track)
        self._next_track_id = max([self._next_track_id, *(t.track_id + 1 for t in self._tracks.values())])
        self._check_something_swapped()

    def checkpoint(self) -> dict[str, Any]:
        live = [
            dataclasses.replace(s.report(), end_reason=s.end_reason or "job interrupted here")
            for s in self._tracks.values()
        ]
        return {
            "tracks": [t.to_dict() for t in [*self._earlier, *live]],
            "matches": [_match_json(m) for m in self._matches.values()],
            "next_track_id": max([self._next_track_id, *(t.track_id + 1 for t in self._tracks.values())]),
            "skipped": [span.to_dict() for span in self.skipped()],
        }

    def first_faces(self) -> list[tuple[int, int, int, int]]:
        """The boxes of the faces in the first frame with any (the label is placed to cover none)."""
        return list(self._first_faces)

    def consent_ids(self) -> list[str]:
        """The source's consent(s), then every target consent a swapped face was made under."""
        return list(dict.fromkeys(m.consent_id for m in [*self.source_matches, *self._matches.values()]))

    def decision(self, source: GateDecision) -> GateDecision:
        """The source's gate decision with every target match made on the way."""
        return dataclasses.replace(source, matches=[*source.matches, *self._matches.values()])

    # -- results -------------------------------------------------------------------------------------

    @property
    def target_matches(self) -> list[Match]:
        return list(self._matches.values())

    def _take_first_scan(self) -> FirstScan | None:
        first, self.first_scan = self.first_scan, None
        return first

    def tracks(self) -> list[TrackReport]:
        return [*self._earlier, *(s.report() for s in self._tracks.values())]

    def skipped(self) -> list[SkippedSpan]:
        """The source frames this job dropped (damaged, with ``on_corrupt="skip"``, or with out-of-order
        timestamps), the spans an interrupted run found included. The reader runs a few frames ahead
        of the last finished segment, so a resumed run may find a span again: one with the same start
        and reason replaces the earlier run's (it has seen at least as much of it)."""
        spans = list(self._skipped_before)
        for span in list(self._skipped_now):  # a copy: the reader's thread may be adding to it
            key = (round(span.start, 4), span.reason)  # as a checkpoint keeps it
            same = [i for i, s in enumerate(spans) if (round(s.start, 4), s.reason) == key]
            if same:
                spans[same[0]] = span
            else:
                spans.append(span)
        return spans

    # -- one frame ------------------------------------------------------------------------------------

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.point.distances(a, np.asarray(b)[None])[0])

    def _find(self, pixels: np.ndarray, scale: float | None) -> list[Face]:
        """Faces in ``pixels``: without embeddings (added when needed) when the analyzer can."""
        if isinstance(self.analyzer, LazyAnalyzer):
            return self.analyzer.detect(pixels, scale=scale)
        return self.analyzer.analyze(pixels)

    def _scale(self, frame: Frame) -> float | None:
        """The scale to detect at on ``frame``, from the faces followed on the frame before it."""
        if not isinstance(self.analyzer, LazyAnalyzer):
            return None
        since = None if self._last_full is None else frame.time - self._last_full
        return self.detect_scale.choose([face.size for face in self._followed], since)

    def _detect(self, frame: Frame, early: _EarlyDetection) -> list[Face]:
        """A detection round, at the scale the followed faces allow (:mod:`likeness.faces.detect_scale`);
        its scan already made in the background when ``early`` started it for this frame and scale."""
        with self.timer.stage("detect"):
            followed = [face.box for face in self._followed]
            scale = self._scale(frame)
            faces = early.faces(frame, scale)
            if faces is None:
                faces = self._find(frame.pixels, scale)
            if scale is not None and misses(followed, [face.box for face in faces]):
                scale, faces = None, self._find(frame.pixels, None)
            if scale is None:
                self._last_full = frame.time
            return faces

    def _redetect(self, pixels: np.ndarray) -> list[Face]:
        """Flow lost a face between detections: look again on this frame, at full scale."""
        with self.timer.stage("detect"):
            return self._find(pixels, None)

    def _embedded(self, pixels: np.ndarray, face: Face) -> Face:
        """``face`` with its embedding (computed now if the detection left it out)."""
        if has_embedding(face) or not isinstance(self.analyzer, LazyAnalyzer):
            return face
        started = time.perf_counter()
        embedded = self.analyzer.embed(pixels, face)
        self.timer.add("embed", time.perf_counter() - started)
        return embedded

    def _analyse(
        self, tracker: FaceTracker, frame: Frame, pool: _SwapPool, early: _EarlyDetection
    ) -> _Pending:
        """Detect, track and gate ``frame`` here; its swap is handed to ``pool``."""
        detections = self._detect(frame, early) if tracker.wants_detection(frame.index) else None
        before = self.timer.seconds.get("detect", 0.0)
        started = time.perf_counter()
        update = tracker.update(frame.index, frame.time, frame.pixels, detections, redetect=self._redetect)
        redetected = self.timer.seconds.get("detect", 0.0) - before
        self.timer.add("track", time.perf_counter() - started - redetected)
        self._followed = [tracked.face for tracked in update.faces]
        if not self._first_faces:
            self._first_faces = [tracked.face.box for tracked in update.faces]
        for track in update.started:
            self._tracks[track.track_id] = _TrackState(
                track_id=track.track_id,
                first_frame=track.first_frame,
                first_time=track.first_time,
                last_frame=frame.index,
                last_time=frame.time,
            )
        with self.timer.stage("gate"):
            for tracked in update.faces:
                self._consider(tracker, tracked, frame)
        swapped: list[tuple[_TrackState, Face]] = []
        for tracked in update.faces:
            state = self._tracks[tracked.track_id]
            state.frames_seen += 1
            if state.state == "swap":
                swapped.append((state, tracked.face))
        future = pool.submit(frame.pixels, [face for _, face in swapped])
        for track in update.ended:
            self._end(track)
        return _Pending(frame=frame, swap=future, states=[state for state, _ in swapped])

    def _finish(self, pending: _Pending) -> Frame:
        """The frame with its faces swapped (waiting for the swap if it still runs)."""
        with self.timer.stage("swap"):
            pixels, done, seconds = pending.swap.result()
        self.timer.add("swap thread", seconds)
        for state, ok in zip(pending.states, done, strict=True):
            if ok:
                state.frames_swapped += 1
            else:
                state.swap_failures += 1  # e.g. turned too far this frame: left as it was
        return dataclasses.replace(pending.frame, pixels=pixels)

    # -- the gate, per track ------------------------------------------------------------------------------

    def _label(self, state: _TrackState) -> str:
        return (
            f"target face (track #{state.track_id}, first seen at {state.first_time:.2f} s, frame "
            f"{state.first_frame}) in {self.request.target.name}"
        )

    def _consider(self, tracker: FaceTracker, tracked: TrackedFace, frame: Frame) -> None:
        state = self._tracks[tracked.track_id]
        state.last_frame, state.last_time = frame.index, frame.time
        if state.state == "swap":
            self._recheck(tracker, state, tracked, frame)
            return
        detection = tracked.detection
        if detection is None:
            return
        settled = state.state == "keep" or state.rounds >= IDENTIFY_ROUNDS
        if settled and not self._due(state, tracked, frame)[0]:
            return  # a bystander, or a face tried often enough: looked at again on the schedule
        detection = self._embedded(frame.pixels, detection)
        state.last_detection = detection
        found = identify(detection.embedding, self.gallery, self.point)
        self._checked(state, tracked, frame)
        if state.state == "keep":
            if found.outcome != "match" or self._same_person(state, found, detection.embedding):
                return
            state.state, state.rounds = "pending", 0
        self._decide(state, detection, found)
        if state.state == "swap":
            state.gated_embedding = np.asarray(detection.embedding)

    # -- re-verification of swapped tracks -------------------------------------------------------------

    def _checked(self, state: _TrackState, tracked: TrackedFace, frame: Frame) -> None:
        """The track's identity was looked at on this frame (its embedding identified); for a swapped
        track, confirmed."""
        state.verified_frame = frame.index
        state.patch_side = max(8, tracked.face.size)
        state.patch = _patch(frame.pixels, _square(tracked.face, state.patch_side))

    def _due(self, state: _TrackState, tracked: TrackedFace, frame: Frame) -> tuple[bool, bool]:
        """(due, drifted): whether the track's identity must be checked on this frame, and whether
        that is because its appearance drifted since the last check."""
        every = max(1, round(REVERIFY_EVERY_S * max(self.info.fps or 25.0, 1.0)))
        patch = _patch(frame.pixels, _square(tracked.face, state.patch_side)) if state.patch_side else None
        drifted = state.patch is not None and patch is not None and _ncc(state.patch, patch) < DRIFT_NCC
        return drifted or frame.index - state.verified_frame >= every, drifted

    def _recheck(self, tracker: FaceTracker, state: _TrackState, tracked: TrackedFace, frame: Frame) -> None:
        """A swapped track: re-identify the face when it is due or its appearance drifted (from this
        frame's detection if there is one, else from a crop around the tracked face)."""
        due, drifted = self._due(state, tracked, frame)
        if not due:
            return
        found: Any = None
        embedding: np.ndarray | None = None
        if tracked.detection is not None:
            detection = self._embedded(frame.pixels, tracked.detection)
            state.last_detection = detection
            embedding = np.asarray(detection.embedding)
            found = identify(embedding, self.gallery, self.point)
        else:
            found, embedding = self._reidentify(frame.pixels, tracked.face)  # timed as part of "gate"
        if found is not None and embedding is not None and self._same_person(state, found, embedding):
            self._checked(state, tracked, frame)
            return
        self._split(tracker, state, frame, found, drifted=drifted)

    def _same_person(self, state: _TrackState, found: Any, embedding: np.ndarray) -> bool:
        """Still the identity the track was gated as: the gate's match, and within the gate's
        threshold of the embedding it decided on."""
        if found.outcome != "match" or found.best is None or found.best.identity_id != state.identity_id:
            return False
        if state.gated_embedding is None:
            return True
        return self._distance(state.gated_embedding, embedding) <= self.point.threshold

    def _reidentify(self, pixels: np.ndarray, face: Face) -> tuple[Any, np.ndarray | None]:
        """Identify the face inside a crop around its tracked box (``None``: no face found there)."""
        left, top, right, bottom = face.box
        pad = max(right - left, bottom - top) // 2
        height, width = pixels.shape[:2]
        x0, y0 = max(0, left - pad), max(0, top - pad)
        x1, y1 = min(width, right + pad), min(height, bottom + pad)
        crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        scale = self.detect_scale.choose([min(right - left, bottom - top)], 0.0)
        found = self._find(crop, scale)
        if scale is not None and not found:
            found = self._find(crop, None)
        if not found:
            return None, None
        shifted = (left - x0, top - y0, right - x0, bottom - y0)
        best = max(found, key=lambda f: iou(f.box, shifted))
        if iou(best.box, shifted) < 0.3:
            return None, None
        best = self._embedded(crop, best)
        return identify(best.embedding, self.gallery, self.point), np.asarray(best.embedding)

    def _split(
        self, tracker: FaceTracker, state: _TrackState, frame: Frame, found: Any, *, drifted: bool = False
    ) -> None:
        """End a swapped track whose identity is no longer confirmed: the face is not swapped from
        this frame on, and the next detection opens a new track that is gated afresh."""
        if found is None:
            why = "no face could be re-identified at the track's position"
        elif (
            found.outcome == "match"
            and found.best is not None
            and found.best.identity_id != state.identity_id
        ):
            why = "the face now matches another enrolled identity"
        elif found.outcome == "match":
            why = "the face drifted beyond the gate's threshold from the face the gate decided on"
        elif found.outcome == "ambiguous":
            why = "the face matches more than one enrolled identity"
        else:
            why = "the face no longer matches the track's identity"
        cause = " after its appearance drifted" if drifted else ""
        note = f"split at {frame.time:.2f} s (frame {frame.index}){cause}: {why}"
        state.state, state.rounds = "pending", 0
        state.reason = f"identity no longer confirmed; {note}"
        for track in tracker.split(state.track_id, f"identity no longer confirmed; {note}"):
            self._end(track)

    def _may_be_target(self, identity_id: str) -> bool:
        """Whether the identity holds any consent naming the target role (else: a bystander, no gate)."""
        if identity_id not in self._target_capable:
            consents = self.registry.list_consents(identity_id)
            self._target_capable[identity_id] = any("target" in c.roles for c in consents)
        return self._target_capable[identity_id]

    def _gate(self, state: _TrackState, face: Face) -> GateDecision:
        return check_consent(
            self.registry,
            [Involvement(face=face, role="target", label=self._label(state))],
            purpose=self.request.purpose,
            media_kind="video",
            analyzer=self.analyzer,
            operator=self.request.operator,
        )

    def _decide(self, state: _TrackState, face: Face, found: Any) -> None:
        state.rounds += 1
        if found.outcome != "match":
            state.reason = (
                "not identified: no enrolled identity matches this face"
                if found.outcome == "not_enrolled"
                else "not identified: the face matches more than one enrolled identity"
            )
            if self.request.faces == "all" and state.rounds >= IDENTIFY_ROUNDS:
                self._gate(state, face)  # raises ConsentRefused naming the face (and logs it)
            return
        identity_id = found.best.identity_id
        state.identity_id, state.consent_id = identity_id, None
        if self.request.faces == "consented" and not self._may_be_target(identity_id):
            state.state = "keep"
            state.reason = f"enrolled identity {identity_id} holds no consent to be replaced (role target)"
            return
        try:
            decision = self._gate(state, face)
        except ConsentRefused as refused:
            if self.request.faces == "all" or refused.rule == "tampered":
                raise
            state.state, state.reason = (
                "keep",
                f"refused by the consent gate ({refused.rule}): {refused.reason}",
            )
            return
        match = decision.matches[0]
        state.state, state.consent_id = "swap", match.consent_id
        state.reason = f"consented as target under consent {match.consent_id}"
        self._matches.setdefault((match.identity_id, match.consent_id), match)

    def _end(self, track: Track) -> None:
        state = self._tracks.get(track.track_id)
        if state is None:
            return
        state.end_reason = track.end_reason
        if self.request.faces == "all" and state.state != "swap" and state.frames_swapped == 0:
            if state.last_detection is not None:
                self._gate(state, state.last_detection)  # raises for an unidentified face
            raise ConsentRefused(
                f"{self._label(state)} was never replaced; --faces all replaces every face",
                hint="use --faces consented to leave faces that are not consenting targets untouched",
                face=self._label(state),
                rule="not_enrolled",
            )

    def _check_something_swapped(self) -> None:
        if self._matches and any(t.decision == "swapped" for t in self.tracks()):
            return
        tracks = self.tracks()
        if not tracks:
            raise NoFace(
                f"{self.request.target}: no face was found in the footage",
                hint="faces must be at least 40 px tall and roughly frontal on some frames",
            )
        shown = "; ".join(f"track #{t.track_id} at {t.first_time:.2f} s: {t.reason}" for t in tracks[:4]) + (
            f"; and {len(tracks) - 4} more" if len(tracks) > 4 else ""
        )
        raise ConsentRefused(
            f"{self.request.target}: no face in the footage was replaced, so nothing was written ({shown})",
            hint="enrol the performer to be replaced and record their consent "
            "with --role target --media video",
            rule="no_consent",
        )

    def _load(self, state: dict[str, Any]) -> None:
        self._tracks = {}
        self._earlier = [TrackReport(**t) for t in state.get("tracks", [])]
        self._matches = {}
        for raw in state.get("matches", []):
            match = _match_from_json(raw)
            self._matches[(match.identity_id, match.consent_id)] = match
        self._next_track_id = int(state.get("next_track_id", 1))
        self._skipped_before = [SkippedSpan.from_dict(raw) for raw in state.get("skipped", [])]
        self._skipped_now = []


def resume_key(request: VideoSwapRequest, source_sha256: str, tools: dict[str, Any]) -> dict[str, str]:
    """What must match for a job folder to be resumed: anything that changes a frame."""
    from likeness import __version__

    facts = {
        "likeness": __version__,
        "source_sha256": source_sha256,
        "purpose": request.purpose,
        "faces": request.faces,
        "detect_every": request.detect_every,
        "on_corrupt": request.on_corrupt,
        "label": [request.label_corner, request.label_language],
        "watermark_strength": VIDEO_WATERMARK_STRENGTH,
        "tools": tools,
    }
    return {"request": hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()}


def _patch(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The face box as a zero-mean, unit-variance 32×32 grey patch (``None`` if the box is empty)."""
    import cv2

    left, top, right, bottom = (int(v) for v in box)
    height, width = pixels.shape[:2]
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    if right - left < 8 or bottom - top < 8:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(pixels[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    return small / (float(small.std()) + 1e-6)


def _square(face: Face, side: int) -> tuple[int, int, int, int]:
    """A square of ``side`` px centred on the face's landmarks (steadier than its box, whose size
    jumps a little at each detection: the drift check compares like with like)."""
    points = np.asarray(face.landmarks if np.size(face.landmarks) else face.landmarks5, np.float64)
    if points.size:
        cx, cy = points.reshape(-1, 2).mean(axis=0)
    else:
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return (left, top, left + side, top + side)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of two patches from :func:`_patch` (1: the same appearance)."""
    return float(np.mean(a * b))


@dataclass(frozen=True)
class _Pending:
    """A frame detected, tracked and gated, whose swap runs in the pool."""

    frame: Frame
    swap: Future[tuple[np.ndarray, list[bool], float]]
    states: list[_TrackState]
    """The tracks whose faces are swapped on it, in the order handed to the swap."""


def _swap_faces(
    transform: SwapTransform, pixels: np.ndarray, faces: list[Face]
) -> tuple[np.ndarray, list[bool], float]:
    """``pixels`` with ``faces`` swapped one after another; per face whether it was; the seconds taken."""
    started = time.perf_counter()
    done: list[bool] = []
    for face in faces:
        try:
            pixels = transform(pixels, face)
        except BadInput:
            done.append(False)
            continue
        done.append(True)
    return pixels, done, time.perf_counter() - started


class _Threads:
    """Owns a thread pool (``None``: work runs in the caller's thread); leaving the block waits for
    what runs and drops what has not started."""

    def __init__(self, executor: ThreadPoolExecutor | None) -> None:
        self._executor = executor
        self._running: set[Future[Any]] = set()
        """What was handed to the pool and may not be done yet."""

    def __enter__(self) -> Self:
        return self

    def _submit(self, call: Callable[..., T], *args: Any) -> Future[T]:
        assert self._executor is not None
        self._running = {future for future in self._running if not future.done()}
        future = self._executor.submit(call, *args)
        self._running.add(future)
        return future

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._executor is not None:  # the exception under way, if any, goes on
            close_pool(self._executor, self._running, reraise=exc_type is None)


class _EarlyDetection(_Threads):
    """The next frame's detector scan, run in a thread of its own while the frames before it are sealed.

    The job's thread decides, once it has analysed frame *k − 1*, whether frame *k* is detected and at
    what scale (as it would at frame *k*: nothing between changes the tracker or the followed faces),
    and starts the scan (:meth:`~likeness.faces.types.SplitDetectAnalyzer.find`: dlib's HOG, without
    the GIL) before it hands the finished frames on to be labelled, watermarked and encoded: all but
    the newest (whose swap has just begun), so that a 1080p scan (≈ 45 ms) is covered. At frame
    *k* it takes the scan and finishes it (landmarks) itself: the same faces as a detection made
    there. An analyzer that cannot split its detection, or ``None`` (the serial road), scans in the
    job's thread as before. The scan's own time is added to the timer as ``detect thread``. The
    first frame's scan may come made already (``first``: :class:`~likeness.jobs.inputs.FirstScan`);
    any scan is taken only for the frame index, scale and pixels it was made for."""

    def __init__(self, analyzer: Analyzer | None, timer: StageTimer, first: FirstScan | None = None) -> None:
        self._analyzer = analyzer if isinstance(analyzer, SplitDetectAnalyzer) else None
        self._timer = timer
        super().__init__(ThreadPoolExecutor(1, thread_name_prefix="detect") if self._analyzer else None)
        self._started: tuple[int, float | None, np.ndarray, Future[Any]] | None = None
        self._busy = 0.0
        if first is not None and self._analyzer is not None:  # scanned at full scale while models loaded
            done: Future[Any] = Future()
            done.set_result(first.found)
            self._started = (first.index, None, first.pixels, done)

    def start(self, frame: Frame, scale: float | None) -> bool:
        """Scan ``frame`` at ``scale`` in the background; ``False``: not done (no splitting analyzer)."""
        if self._executor is None:
            return False
        future = self._submit(self._find, frame.pixels, scale)
        self._started = (frame.index, scale, frame.pixels, future)
        return True

    def _find(self, pixels: np.ndarray, scale: float | None) -> Any:
        assert self._analyzer is not None
        started = time.perf_counter()
        try:
            return self._analyzer.find(pixels, scale=scale)
        finally:
            self._busy += time.perf_counter() - started  # one worker thread: one writer

    def faces(self, frame: Frame, scale: float | None) -> list[Face] | None:
        """The faces of the scan started for this frame at this scale (its error raised here), or
        ``None`` when none was."""
        started, self._started = self._started, None
        if started is None or self._analyzer is None:
            return None
        index, started_scale, pixels, future = started
        same = pixels is frame.pixels or np.array_equal(pixels, frame.pixels)
        if (index, started_scale) != (frame.index, scale) or not same:
            future.cancel()
            return None
        return list(self._analyzer.finish(future.result(), embed=False).faces)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        super().__exit__(exc_type, exc, tb)
        if self._busy:
            self._timer.add("detect thread", self._busy)


class _SwapPool(_Threads):
    """Swaps frames on ``workers`` threads (0: at once, in the caller's thread)."""

    def __init__(self, transform: SwapTransform, workers: int) -> None:
        self.transform = transform
        super().__init__(ThreadPoolExecutor(workers, thread_name_prefix="swap") if workers > 0 else None)

    def submit(self, pixels: np.ndarray, faces: list[Face]) -> Future[tuple[np.ndarray, list[bool], float]]:
        if self._executor is not None:
            return self._submit(_swap_faces, self.transform, pixels, faces)
        future: Future[tuple[np.ndarray, list[bool], float]] = Future()
        future.set_result(_swap_faces(self.transform, pixels, faces))  # an error is raised here, at once
        return future
