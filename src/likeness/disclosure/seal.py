"""The one sealing path: every output, a still or footage, is written by :func:`seal_frames`.

Order, for every kind of output:

1. the sink checks its destination (format, folder, not one of the job's inputs) before any work;
2. the sink opens its job folder next to the output and says which output id the frames carry (a
   new one, or the id of a killed or cancelled footage job it resumes);
3. every frame: visible label (as the job's disclosure profile words and places it; footage under
   a profile with a start label gets a larger one over its first seconds) → invisible watermark
   carrying the id → the sink (encoder); there is no switch that skips either, and ``cancel`` is
   checked before each frame (footage builds the watermark's fixed pattern once,
   :mod:`likeness.disclosure.frame_mark`);
4. the sink finishes the file inside its job folder, and a **self-check** reads the encoded file
   back: the id must read back (and no other id may); a profile with an implicit label then has
   the ``AIGC`` metadata written into the file (:mod:`likeness.disclosure.implicit`);
5. C2PA content credentials are signed into it, built by :func:`credential_facts` (the same facts
   for stills and footage: ids, consent terms hashes, ingredients, tools, the profile and the
   label as drawn, the AIGC JSON);
6. ``record(sealed)``: the registry transaction, which re-checks every consent (a revocation since
   the gate wins, and nothing is written);
7. the sink renames the signed file onto the output name (atomic: same folder) and removes its
   job folder.

A failure anywhere leaves nothing under the output name. What stays in the job folder depends on
the sink: a still's is removed; footage keeps its finished segments after a cancel, a kill or an
unexpected error, so the same request resumes (see :mod:`likeness.disclosure.footage_sink`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from likeness.disclosure import watermark
from likeness.disclosure.credentials import CredentialFacts, CredentialResult, sign_content_credentials
from likeness.disclosure.frame_mark import FrameMarker
from likeness.disclosure.implicit import aigc_fields, embed_aigc
from likeness.disclosure.label import (
    CORNERS,
    LABEL_TEXT,
    Box,
    LabelBox,
    apply_label,
    apply_start_label,
    label_fits,
    start_label_box,
)
from likeness.disclosure.profiles import DisclosureProfile, get_profile
from likeness.disclosure.types import Ingredient, ResultKind, SealedOutput
from likeness.errors import BadInput, Cancelled, DisclosureError, LikenessError, UsageError
from likeness.fsutil import sha256_file
from likeness.home import Home
from likeness.media.frames import Frame, FrameSource, ResumePoint
from likeness.media.video_read import SkippedSpan, dropped_note
from likeness.progress import CancelToken, Progress, StageTimer, no_progress, timed

Result = TypeVar("Result", covariant=True)
LABELS_STATE = "disclosure_labels"
"""The key under which a footage checkpoint keeps :meth:`Marker.checkpoint`."""
DROPPED_FACTS = "source_frames_dropped"
"""The key of the disclosure facts (manifest and ledger) listing the source frames the output leaves
out (:attr:`SealJob.dropped`)."""
LABEL_COVERS_FACE = (
    "the visible label covers a detected face: at the legal size every corner would have covered one"
)
START_LABEL_COVERS_FACE = (
    "the start label covers a detected face in the first seconds: at the top, the bottom and the "
    "middle it would have covered one"
)


def label_covers_face(profile: DisclosureProfile) -> str:
    """The note for a label that had to cover a face, naming the profile's restriction if any."""
    if len(profile.corners) == len(CORNERS):
        return LABEL_COVERS_FACE
    return (
        f"the visible label covers a detected face: the {profile.name} disclosure profile allows only "
        f"the {', '.join(profile.corners)} corner, and at the legal size the label covers a face there"
    )


@dataclass(frozen=True)
class SealJob:
    """What the road hands to the sealer besides the frames: the facts every output states."""

    kind: ResultKind
    purpose: str
    ingredients: list[Ingredient]
    tools: dict[str, Any]
    operator: str
    consent_ids: Callable[[], Sequence[str]]
    """The consents the frames were made under; complete once the frames are exhausted (footage
    adds the consent of each face it gated on the way)."""
    consent_hashes: Callable[[Sequence[str]], Mapping[str, str]] = lambda ids: {}
    """Consent id → sha256 of its recorded terms, for the manifest."""
    ledger_head: Callable[[], Mapping[str, object] | None] = lambda: None
    """The registry ledger's head ({seq, hash}), read just before signing, for the manifest."""
    label_corner: str = "bottom-right"
    label_language: str = "en"
    faces: Callable[[], Sequence[tuple[int, int, int, int]]] = lambda: ()
    """Boxes of the faces in the first frame, asked when the label is placed: it covers none."""
    disclosure_profile: str = "default"
    """``default``, ``eu`` or ``cn`` (:mod:`likeness.disclosure.profiles`)."""
    content_producer: str = "likeness"
    """The AIGC implicit label's ContentProducer (the policy's ``[disclosure] content_producer``)."""
    dropped: Callable[[], Sequence[SkippedSpan]] = lambda: ()
    """Source frames the output leaves out (footage: damaged ones under ``on_corrupt="skip"``, frames
    with out-of-order timestamps); complete once the frames are exhausted. Stated in the output's
    notes, and in its disclosure facts (manifest and ledger entry) under :data:`DROPPED_FACTS`."""


@dataclass(frozen=True)
class MarkedFrame:
    """A frame as the sink receives it: labelled, then watermarked."""

    frame: Frame
    labelled: np.ndarray
    """The labelled frame before its watermark (a still's sink marks it again, stronger, when the
    self-check asks); footage's is marked in place, so there it is ``marked`` itself."""
    marked: np.ndarray


@dataclass(frozen=True)
class Begun:
    """What a sink's job folder holds when the job starts."""

    output_id: str
    start: ResumePoint


class FrameSink(Protocol, Generic[Result]):
    """Where sealed frames go: a still encoder or a segment encoder, inside a job folder."""

    out_path: Path
    media_type: str
    watermark_strength: float
    start_time: float
    """When the first frame is shown, in seconds (footage may start after 0): the start label's clock."""
    watermark_per_output: bool
    """True: the frames are many, of one size, so the watermark pattern is built once per output
    (:class:`~likeness.disclosure.frame_mark.FrameMarker`); False: each frame is marked on its own
    (:func:`~likeness.disclosure.watermark.embed_id`, for a still)."""

    def check(self, ingredients: list[Ingredient]) -> None:
        """Refuse an unusable destination (:class:`UsageError`) before any work."""
        ...

    def begin(self, checkpoint: Callable[[], dict[str, Any]]) -> Begun:
        """Open the job folder; the output id and where the frames start."""
        ...

    def adopt(self, recorded_sha256: Callable[[str], str | None]) -> Result | None:
        """A job killed between recording and renaming: finish it (or ``None``)."""
        ...

    def write(self, frame: MarkedFrame) -> None: ...

    def finish(self, progress: Progress) -> Path:
        """The encoded file, inside the job folder."""
        ...

    def self_check(self, path: Path, output_id: str) -> str:
        """Read the encoded file back; its perceptual hash, or :class:`DisclosureError`."""
        ...

    def keep(self, sealed: SealedOutput, signed: Path, credentials: CredentialResult) -> Result:
        """The result to return (and to adopt after a kill) for a signed file."""
        ...

    def commit(self, signed: Path, result: Result) -> None:
        """Rename the signed file onto the output name; remove the job folder."""
        ...

    def abandon(self, *, resumable: bool) -> None:
        """After a failure: keep the job folder only if ``resumable`` and the sink can resume."""
        ...

    def stopped(self, exc: Exception) -> DisclosureError:
        """The error for an unexpected failure (what was kept, what to do)."""
        ...

    def close(self) -> None: ...


def check_label_options(corner: str, language: str, profile: str = "default") -> DisclosureProfile:
    """Refuse unknown label options and disclosure profiles (before any work); the profile."""
    chosen = get_profile(profile)
    if corner not in CORNERS:
        raise UsageError(f"label corner {corner!r} is not one of {', '.join(CORNERS)}")
    if language not in LABEL_TEXT:
        raise UsageError(
            f"label language {language!r} is not available", hint=f"choose one of: {', '.join(LABEL_TEXT)}"
        )
    return chosen


def credential_facts(
    sealed: SealedOutput,
    job: SealJob,
    consent_hashes: Mapping[str, str],
) -> CredentialFacts:
    """The one builder of what a manifest states, for stills and footage alike (the disclosure as
    drawn and the AIGC label from ``sealed``, as its ledger entry states them too)."""
    return CredentialFacts(
        output_id=sealed.output_id,
        kind=sealed.kind,
        media_type=sealed.media_type,
        purpose=sealed.purpose,
        consent_ids=list(sealed.consent_ids),
        ingredients=list(job.ingredients),
        tools=dict(job.tools),
        consent_hashes=dict(consent_hashes),
        ledger_head=dict(sealed.ledger_head) if sealed.ledger_head else None,
        disclosure=dict(sealed.disclosure) if sealed.disclosure else None,
        aigc=dict(sealed.aigc) if sealed.aigc else None,
    )


class Marker:
    """Labels and watermarks every frame of one output.

    The label plate is opaque, so it is the same pixels on every frame: it is drawn once with
    :func:`apply_label` and pasted after that, provided pasting reproduces ``apply_label`` exactly
    on the first frame (else every frame is drawn). Footage under a profile with a start label gets
    :func:`apply_start_label` on top for the frames before ``profile.start_seconds``, pasted the
    same way.

    The watermark: with ``per_output`` (footage) a :class:`FrameMarker` built for the frame size
    marks every frame (a new one if the size changes); else :func:`watermark.embed_id`.

    Resuming footage: :meth:`checkpoint` states the face boxes each label was placed to avoid, and
    a marker built with that state (``resumed``) places its labels from those boxes, not from the
    faces it sees now, so a resumed job's labels sit where the first run drew them and its facts
    state the start label as drawn.
    """

    def __init__(
        self,
        output_id: str,
        job: SealJob,
        strength: float,
        *,
        per_output: bool = False,
        footage: bool = False,
        start_time: float = 0.0,
        resumed: Mapping[str, Any] | None = None,
    ) -> None:
        self.output_id = output_id
        self.per_output = per_output
        self._frame_marker: FrameMarker | None = None
        self.corner, self.language = job.label_corner, job.label_language
        self.faces = job.faces
        self.strength = strength
        self._patch: np.ndarray | None = None
        self._where: tuple[slice, slice] | None = None
        self._paste = False
        self.covers_face = False
        """Every allowed corner would have covered a face, so the label covers one."""
        self.profile = get_profile(job.disclosure_profile)
        self.text, self.font_language = self.profile.label_text(job.kind, job.label_language)
        self.start_seconds = self.profile.start_seconds if footage else 0.0
        self.start_time = start_time
        self.box: LabelBox | None = None
        self.start_box: LabelBox | None = None
        self.size: tuple[int, int] = (0, 0)
        self._start: tuple[tuple[slice, slice], np.ndarray] | None = None
        earlier = resumed or {}
        self.label_avoid: list[Box] | None = _boxes(earlier.get("label_avoid"))
        """The faces the corner label was placed to avoid (set when it is first placed)."""
        self.start_avoid: list[Box] | None = _boxes(earlier.get("start_avoid"))
        """The faces the start label was placed to avoid (set when it is first drawn)."""
        self._earlier: Mapping[str, Any] = earlier
        """An earlier run's state: its facts and notes stand for a resumed run that labels nothing
        (its frames were all in finished segments)."""

    def checkpoint(self) -> dict[str, Any]:
        """What a resumed job needs to place its labels as this run did, and what it drew (JSON)."""
        drawn = self.box is not None
        return {
            "label_avoid": self.label_avoid,
            "start_avoid": self.start_avoid,
            "facts": self.facts() if drawn else self._earlier.get("facts"),
            "notes": list(self.notes()) if drawn else self._earlier.get("notes"),
        }

    def label(self, pixels: np.ndarray, time: float = 0.0) -> np.ndarray:
        labelled = self._corner_label(pixels)
        if time - self.start_time < self.start_seconds:
            labelled = self._start_label(labelled)
        return labelled

    def _corner_label(self, pixels: np.ndarray) -> np.ndarray:
        if self._paste and self._patch is not None and self._where is not None:
            out = pixels.copy()
            out[self._where] = self._patch
            return out
        if self.label_avoid is None:
            self.label_avoid = [_box(face) for face in self.faces()]
        labelled, box = apply_label(
            pixels,
            self.output_id,
            corner=self.profile.corner(self.corner),
            language=self.font_language,
            avoid=self.label_avoid,
            text=self.text,
            corners=self.profile.corners,
        )
        if self._where is None:
            self.covers_face = box.covers_face
            self.box, self.size = box, (pixels.shape[1], pixels.shape[0])
            self._where = (slice(box.top, box.bottom), slice(box.left, box.right))
            self._patch = labelled[self._where].copy()
            pasted = pixels.copy()
            pasted[self._where] = self._patch
            self._paste = bool(np.array_equal(pasted, labelled))
        return labelled

    def _start_label(self, labelled: np.ndarray) -> np.ndarray:
        if self._start is not None:  # opaque, the same on every frame: pasted (``labelled`` is a copy)
            where, patch = self._start
            labelled[where] = patch
            return labelled
        if self.start_avoid is None:
            self.start_avoid = [_box(face) for face in self.faces()]
        out, box = apply_start_label(
            labelled,
            self.text,
            language=self.font_language,
            avoid=self.start_avoid,
            keep_clear=self._corner_clear(),
        )
        self.start_box = box
        self._start = (
            (slice(box.top, box.bottom), slice(box.left, box.right)),
            out[box.top : box.bottom, box.left : box.right].copy(),
        )
        return out

    def _corner_clear(self) -> list[Box]:
        corner = self.box
        return [(corner.left, corner.top, corner.right, corner.bottom)] if corner else []

    def _drawn_start_box(self) -> LabelBox | None:
        """The start label as drawn, in this run or (resumed after the first seconds) an earlier one."""
        if self.start_box is not None or self.start_seconds <= 0 or self.box is None:
            return self.start_box
        # Resumed after its first seconds: an earlier run drew the start label, placed to avoid
        # ``start_avoid`` (a job folder from before that was recorded: the faces seen now).
        avoid = self.start_avoid if self.start_avoid is not None else self.faces()
        width, height = self.size
        return start_label_box(width, height, self.text, self.font_language, avoid, self._corner_clear())[0]

    def notes(self) -> tuple[str, ...]:
        """What the user should know about where the labels went."""
        if self.box is None and self._earlier.get("notes") is not None:
            return tuple(self._earlier["notes"])
        notes = [label_covers_face(self.profile)] if self.covers_face else []
        start = self._drawn_start_box()
        if start is not None and start.covers_face:
            notes.append(START_LABEL_COVERS_FACE)
        return tuple(notes)

    def facts(self) -> dict[str, Any]:
        """The manifest's ``org.likeness.disclosure``: the profile, its rule, the labels as drawn."""
        if self.box is None and self._earlier.get("facts") is not None:
            return dict(self._earlier["facts"])
        width, height = self.size
        facts: dict[str, Any] = {
            "profile": self.profile.name,
            "rules": self.profile.rules,
            "label": self.box.facts(width, height) if self.box is not None else None,
            "start_label": None,
            "implicit_label": "AIGC XMP (TC260)" if self.profile.implicit else None,
        }
        start = self._drawn_start_box()
        if start is not None:
            facts["start_label"] = {**start.facts(width, height), "seconds": self.start_seconds}
        return facts

    def mark(self, labelled: np.ndarray) -> np.ndarray:
        if not self.per_output:
            return watermark.embed_id(labelled, self.output_id, strength=self.strength)
        height, width = labelled.shape[:2]
        marker = self._frame_marker
        if marker is None or (marker.height, marker.width) != (height, width):
            marker = self._frame_marker = FrameMarker(height, width, self.output_id, strength=self.strength)
        # In place: ``label`` returned a copy of its own (the frame's pixels are never written).
        return marker.mark(labelled, in_place=True)


def _box(face: Sequence[int]) -> Box:
    left, top, right, bottom = (int(v) for v in face)
    return (left, top, right, bottom)


def _boxes(value: Any) -> list[Box] | None:
    """Boxes as a checkpoint stores them (JSON lists), or ``None`` where none were stored."""
    return None if value is None else [_box(face) for face in value]


def _check_pixels(pixels: np.ndarray) -> None:
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 3
        or pixels.shape[2] != 3
    ):
        shape, dtype = getattr(pixels, "shape", None), getattr(pixels, "dtype", None)
        raise DisclosureError(f"the result to seal is not an H×W×3 uint8 RGB image (shape {shape}, {dtype})")
    if min(pixels.shape[:2]) < 16:
        raise DisclosureError(
            f"the result is only {pixels.shape[1]}×{pixels.shape[0]} pixels; too small to label and watermark"
        )


def _frames(source: FrameSource, start: ResumePoint) -> Iterator[Frame]:
    frames = source.frames(start)
    try:
        yield from frames
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def check_label_room(
    target: Path,
    width: int,
    height: int,
    *,
    kind: ResultKind,
    language: str,
    profile: str,
    footage: bool,
) -> None:
    """Refuse (:class:`BadInput`, naming ``target``) a ``width``×``height`` output that could not carry
    its labels legibly: the corner label with its id under ``profile`` and, for footage under a
    profile with one, the start label. Asked before the frames are worked on, so such an input is
    bad input found early, not a failure of the sealing at the end."""
    from likeness.disclosure.output_id import new_output_id

    chosen = get_profile(profile)
    text, language = chosen.label_text(kind, language)
    missing = None
    if not label_fits(text, new_output_id(), language, width, height):  # every id has the same length
        missing = f"a legible {text!r} label with its output id"
    elif footage and chosen.start_seconds > 0:
        try:
            start_label_box(width, height, text, language)
        except DisclosureError:
            missing = f"the {chosen.name} profile's start label"
    if missing is not None:
        raise BadInput(
            f"{target}: at {width}×{height} pixels the output would be too small to carry {missing}",
            hint="use a larger target picture or video (the label needs about 160 pixels across)",
        )


def import_sealing() -> None:
    """Import what :func:`seal_frames` imports on first use (the label's fonts, the certificate
    parser, c2pa: ≈ 20 ms), for a job that has a moment to wait before it seals."""
    import c2pa  # noqa: F401
    from cryptography import x509  # noqa: F401
    from PIL import ImageDraw, ImageFont  # noqa: F401


def seal_frames(
    source: FrameSource,
    job: SealJob,
    sink: FrameSink[Result],
    *,
    home: Home,
    record: Callable[[SealedOutput], None],
    recorded_sha256: Callable[[str], str | None] = lambda output_id: None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    timer: StageTimer | None = None,
) -> Result:
    """Label, watermark, encode, self-check, sign, record and atomically write ``source``'s frames.

    ``record(sealed)`` writes the ledger entry (and may refuse); ``recorded_sha256(output_id)``
    returns the sha256 the ledger holds for an output id, or ``None``: it lets a rerun finish a
    footage job killed between recording and renaming. See the module docstring.
    """
    token = cancel or CancelToken()
    check_label_options(job.label_corner, job.label_language, job.disclosure_profile)
    sink.check(job.ingredients)
    try:
        for _attempt in range(2):
            result = _seal_once(source, job, sink, home, record, recorded_sha256, progress, token, timer)
            if result is not None:
                return result
            sink.abandon(resumable=False)  # its id is in the ledger but its file is gone: a new id
        raise DisclosureError(f"{sink.out_path}: could not start a fresh job", hint="run the job again")
    except Cancelled:
        sink.abandon(resumable=True)
        raise
    except LikenessError as error:
        sink.abandon(resumable=bool(getattr(error, "keep_job", False)))
        raise
    except Exception as exc:
        sink.abandon(resumable=True)
        raise sink.stopped(exc) from exc
    finally:
        sink.close()


def _seal_once(
    source: FrameSource,
    job: SealJob,
    sink: FrameSink[Result],
    home: Home,
    record: Callable[[SealedOutput], None],
    recorded_sha256: Callable[[str], str | None],
    progress: Progress,
    cancel: CancelToken,
    timer: StageTimer | None,
) -> Result | None:
    marker: Marker | None = None

    def checkpoint() -> dict[str, Any]:
        """The source's state and, apart, the labels' (``frames`` ignores keys it does not know)."""
        state = dict(source.checkpoint())
        if marker is not None:
            state[LABELS_STATE] = marker.checkpoint()
        return state

    begun = sink.begin(checkpoint)
    if recorded_sha256(begun.output_id) is not None:
        return sink.adopt(recorded_sha256)
    marker = Marker(
        begun.output_id,
        job,
        sink.watermark_strength,
        per_output=sink.watermark_per_output,
        footage=sink.media_type.startswith("video/"),
        start_time=sink.start_time,
        resumed=begun.start.state.get(LABELS_STATE),
    )
    for frame in _frames(source, begun.start):
        cancel.check(
            f"at frame {frame.index} ({frame.time:.2f} s)",
            hint="run the same command again: footage resumes from its finished segments",
        )
        _check_pixels(frame.pixels)
        with timed(timer, "label"):
            labelled = marker.label(frame.pixels, frame.time)
        with timed(timer, "watermark"):
            marked = marker.mark(labelled)
        with timed(timer, "encode"):
            sink.write(MarkedFrame(frame=frame, labelled=labelled, marked=marked))
    with timed(timer, "mux"):
        encoded = sink.finish(progress)
    progress("checking the watermark", 0.96)
    with timed(timer, "self-check"):
        perceptual = sink.self_check(encoded, begun.output_id)
    aigc = None
    if marker.profile.implicit:  # the implicit label, in the file's metadata before it is signed
        aigc = aigc_fields(begun.output_id, job.content_producer, perceptual)
        embed_aigc(encoded, sink.media_type, aigc)
    consent_ids = list(dict.fromkeys(job.consent_ids()))
    dropped = list(job.dropped())
    disclosure = marker.facts()
    if dropped:  # nothing silent: what the output leaves out is said where the output is described
        disclosure = {**disclosure, DROPPED_FACTS: [span.to_dict() for span in dropped]}
    note = dropped_note(dropped)
    dropped_notes = (note,) if note else ()
    sealed = SealedOutput(
        path=sink.out_path,
        output_id=begun.output_id,
        sha256="",
        media_type=sink.media_type,
        kind=job.kind,
        consent_ids=consent_ids,
        purpose=job.purpose,
        phash=perceptual,
        c2pa=False,
        notes=(*marker.notes(), *dropped_notes),
        ingredient_sha256={item.role: item.sha256 for item in job.ingredients},
        disclosure=disclosure,
        aigc=aigc,
    )
    head = job.ledger_head()
    sealed = dataclasses.replace(sealed, ledger_head=dict(head) if head else None)
    progress("signing content credentials", 0.97)
    with timed(timer, "sign"):
        credentials = sign_content_credentials(
            encoded,
            facts=credential_facts(sealed, job, job.consent_hashes(consent_ids)),
            home=home,
        )
    sealed = dataclasses.replace(sealed, sha256=sha256_file(encoded), c2pa=True)
    result = sink.keep(sealed, encoded, credentials)
    cancel.check("before the output was recorded")
    with timed(timer, "record"):
        record(sealed)
    sink.commit(encoded, result)
    return result
