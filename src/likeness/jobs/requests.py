"""What a job asks for and what it produced: frozen requests, one outcome shape for every road."""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from likeness.media.image import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from likeness.consent.records import GateDecision
    from likeness.disclosure.footage_sink import SealedVideo
    from likeness.media.video import EncodeSettings
    from likeness.media.video_read import SkippedSpan

FacesMode = Literal["consented", "all"]
FACES_MODES = ("consented", "all")


def default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


@dataclass(frozen=True)
class SwapRequest:
    """Put the face in ``source`` onto the face(s) of ``target`` (a still, or footage: see
    :class:`VideoSwapRequest` for the options footage adds)."""

    source: Path
    target: Path
    purpose: str
    out: Path
    face_index: int | None = None
    """Which target face of a still to replace, counted from 0 left to right; ``None`` replaces every
    face. Footage chooses faces by consent (``faces``) instead."""
    backend: str = "dlib"
    operator: str = field(default_factory=default_operator)
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Limit for still pictures (the source photo, a still target); footage has probe limits."""
    label_corner: str = "bottom-right"
    label_language: str = "en"
    disclosure_profile: str | None = None
    """``default``, ``eu`` or ``cn`` (:mod:`likeness.disclosure.profiles`); ``None``: the policy's
    ``[disclosure] default_profile``."""
    overwrite: bool = False
    """Replace a file at ``out`` that is not an output recorded in the data home
    (:mod:`likeness.jobs.destination`)."""


@dataclass(frozen=True)
class VideoSwapRequest(SwapRequest):
    """A swap onto footage, with what footage adds: which faces, codec, detection, resume."""

    faces: FacesMode = "consented"
    codec: str | None = None
    """``h264`` (default for .mp4), ``ffv1`` (lossless, .mp4) or ``prores`` (default for .mov)."""
    crf: int = 18
    preset: str = "medium"
    detect_every: int = 5
    segment_seconds: float = 10.0
    rotation: Literal["keep", "bake"] = "keep"
    """``keep``: the output carries the source's display rotation (a phone clip stays a phone clip);
    ``bake``: frames are stored upright with no rotation tag."""
    on_corrupt: Literal["stop", "skip"] = "stop"

    def encode_settings(self) -> EncodeSettings:
        from likeness.disclosure.footage_sink import default_codec
        from likeness.media.video import EncodeSettings

        return EncodeSettings(
            codec=self.codec or default_codec(self.out),  # type: ignore[arg-type]
            crf=self.crf,
            preset=self.preset,
            segment_seconds=self.segment_seconds,
            rotation=self.rotation,
        )


@dataclass(frozen=True)
class EnrolRequest:
    name: str
    photos: Sequence[Path]
    operator: str = field(default_factory=default_operator)
    backend: str = "all"
    """``all``: every available backend (see ``available_analyzers``), so any backend can match later."""
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class TrackReport:
    """One face followed through the footage and what was done with it."""

    track_id: int
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    decision: str
    """``swapped`` (at least once), ``untouched`` (never swapped)."""
    reason: str
    identity_id: str | None = None
    consent_id: str | None = None
    frames_seen: int = 0
    frames_swapped: int = 0
    swap_failures: int = 0
    """Frames where the swapper refused the face (e.g. turned too far) and it was left as it was."""
    end_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["first_time"], data["last_time"] = round(self.first_time, 4), round(self.last_time, 4)
        return data


@dataclass(frozen=True)
class SwapOutcome:
    """What a job wrote: the output, its id and hash, the consents it was made under, how."""

    output: Path
    output_id: str
    sha256: str
    consents: list[str]
    decision: GateDecision
    timings: dict[str, float]
    faces: int = 0
    """Still: the faces replaced. Footage: see :attr:`faces_swapped` (tracks that were swapped)."""
    tracks: list[TrackReport] = field(default_factory=list)
    """Footage: every face followed through it and what was done with it."""
    video: SealedVideo | None = None
    """Footage: codec, frames, audio, segments and the self-check."""
    notes: tuple[str, ...] = ()
    """What the user should know about the output's disclosure (e.g. the label covers a face, or
    source frames were dropped)."""
    frames_dropped: list[SkippedSpan] = field(default_factory=list)
    """Footage: the source frames the output leaves out (damaged ones under ``on_corrupt="skip"``,
    frames with out-of-order timestamps), each span with its times, frame count and reason."""

    @property
    def faces_swapped(self) -> int:
        if self.video is None:
            return self.faces
        return sum(1 for t in self.tracks if t.decision == "swapped")

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "output": str(self.output),
            "output_id": self.output_id,
            "sha256": self.sha256,
            "consents": list(self.consents),
        }
        if self.video is not None:
            data["media"] = "video"
        data["faces_swapped"] = self.faces_swapped
        if self.video is not None:
            data["tracks"] = [t.to_dict() for t in self.tracks]
        data["matches"] = [m.to_dict() for m in self.decision.matches]
        if self.video is not None:
            data["video"] = self.video.to_dict()
            data["frames_dropped"] = [span.to_dict() for span in self.frames_dropped]
        data["notes"] = list(self.notes)
        data["timings_s"] = {k: round(v, 4) for k, v in self.timings.items()}
        return data


VideoSwapOutcome = SwapOutcome
"""Footage outcomes are :class:`SwapOutcome` with ``tracks`` and ``video`` set."""


@dataclass(frozen=True)
class GenerateRequest:
    """Make a new image with a local diffusers model (see :mod:`likeness.jobs.generation`).

    ``identity`` (a name or id): condition on that enrolled person's face with IP-Adapter FaceID; they
    must hold an in-force consent with role ``generate``. Without it the people in the image are
    synthetic, and the output gate checks that none of them is an enrolled person without consent.
    """

    model: str
    """A local diffusers folder, a table name (``likeness models list``) or a cached repo id."""
    prompt: str
    purpose: str
    out: Path
    identity: str | None = None
    negative: str | None = None
    steps: int = 30
    guidance: float = 7.0
    seed: int | None = None
    size: tuple[int, int] = (512, 512)
    """(width, height)."""
    ip_adapter: Path | None = None
    """The IP-Adapter FaceID weight file (default: the data home, then the Hugging Face cache)."""
    record_prompt: bool = False
    """Put the prompt text itself in the manifest (its sha256 is always there)."""
    backend: str = "dlib"
    """The face backend that gates (identity, named people, the faces in the output)."""
    operator: str = field(default_factory=default_operator)
    label_corner: str = "bottom-right"
    label_language: str = "en"
    disclosure_profile: str | None = None
    """``default``, ``eu`` or ``cn`` (:mod:`likeness.disclosure.profiles`); ``None``: the policy's
    ``[disclosure] default_profile``."""
    overwrite: bool = False
    """Replace a file at ``out`` that is not an output recorded in the data home
    (:mod:`likeness.jobs.destination`)."""


@dataclass(frozen=True)
class EditRequest:
    """Re-make face(s) of a photo with an inpainting model; each edited face is gated as in a swap
    (role ``target``) and the faces the model made are checked like a generated output."""

    model: str
    target: Path
    prompt: str
    purpose: str
    out: Path
    face_index: int | None = None
    """Which face to edit, counted from 0 left to right; ``None`` edits every face."""
    negative: str | None = None
    steps: int = 30
    guidance: float = 7.0
    seed: int | None = None
    strength: float = 1.0
    work_size: int = 512
    """Side of the square each face region is inpainted at (the model's working size)."""
    record_prompt: bool = False
    backend: str = "dlib"
    operator: str = field(default_factory=default_operator)
    max_pixels: int = DEFAULT_MAX_PIXELS
    label_corner: str = "bottom-right"
    label_language: str = "en"
    disclosure_profile: str | None = None
    """``default``, ``eu`` or ``cn`` (:mod:`likeness.disclosure.profiles`); ``None``: the policy's
    ``[disclosure] default_profile``."""
    overwrite: bool = False
    """Replace a file at ``out`` that is not an output recorded in the data home
    (:mod:`likeness.jobs.destination`)."""


@dataclass(frozen=True)
class GenerateOutcome:
    """What a generation or edit job wrote, and every face in it with what the gate made of it."""

    output: Path
    output_id: str
    sha256: str
    kind: str
    consents: list[str]
    decision: GateDecision
    faces: list[dict[str, Any]]
    timings: dict[str, float]
    diffusers_watermark: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "output": str(self.output),
            "output_id": self.output_id,
            "sha256": self.sha256,
            "kind": self.kind,
            "consents": list(self.consents),
            "faces": [dict(face) for face in self.faces],
            "matches": [m.to_dict() for m in self.decision.matches],
            "diffusers_watermark": self.diffusers_watermark,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }
