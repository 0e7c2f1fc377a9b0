"""Sealing what is already made: a picture in memory, or footage a renderer produces.

Both go through the one sealing path (:func:`likeness.disclosure.seal.seal_frames`); these are the
entry points for callers that are not a job road (the benchmarks, tests of the sealing path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from likeness.disclosure.footage_sink import FootageSink, SealedVideo
from likeness.disclosure.seal import SealJob, seal_frames
from likeness.disclosure.still_sink import StillSink
from likeness.disclosure.types import Ingredient, ResultKind, SealedOutput, Unsealed
from likeness.home import Home
from likeness.media.frames import Frame, ResumePoint, StillSource
from likeness.media.video import EncodeSettings, VideoInfo
from likeness.progress import CancelToken, Progress, StageTimer, no_progress


def _known_hashes(known: Mapping[str, str]) -> Callable[[Sequence[str]], dict[str, str]]:
    """The ``SealJob.consent_hashes`` of a caller that already knows the terms hashes."""
    return lambda ids: {cid: known[cid] for cid in ids if cid in known}


def seal(
    unsealed: Unsealed,
    out_path: Path,
    *,
    home: Home,
    record: Callable[[SealedOutput], None],
    timer: StageTimer | None = None,
) -> SealedOutput:
    """Label, watermark, encode, sign, record and atomically write one picture."""
    job = SealJob(
        kind=unsealed.kind,
        purpose=unsealed.purpose,
        ingredients=list(unsealed.ingredients),
        tools=dict(unsealed.tools),
        operator=unsealed.operator,
        consent_ids=lambda: list(unsealed.consent_ids),
        consent_hashes=_known_hashes(unsealed.consent_hashes),
        label_corner=unsealed.label_corner,
        label_language=unsealed.label_language,
        disclosure_profile=unsealed.disclosure_profile,
    )
    return seal_frames(
        StillSource(unsealed.pixels), job, StillSink(out_path), home=home, record=record, timer=timer
    )


class Renderer(Protocol):
    """Produces footage's frames in order from a resume point, and the consents they were made under."""

    def frames(self, start: ResumePoint) -> Iterator[Frame]: ...

    def checkpoint(self) -> dict[str, Any]: ...

    def consent_ids(self) -> list[str]: ...


@dataclass(frozen=True)
class UnsealedVideo:
    """Footage ready to be rendered and sealed."""

    info: VideoInfo
    renderer: Renderer = field(repr=False)
    settings: EncodeSettings
    kind: ResultKind
    purpose: str
    ingredients: list[Ingredient]
    tools: dict[str, Any]
    operator: str
    key: Mapping[str, str]
    """Everything that must be unchanged for a job folder to be resumed (hash of the request)."""
    label_corner: str = "bottom-right"
    label_language: str = "en"
    consent_hashes: Mapping[str, str] = field(default_factory=dict)
    disclosure_profile: str = "default"


def seal_video(
    unsealed: UnsealedVideo,
    out_path: Path,
    *,
    home: Home,
    record: Callable[[SealedOutput], None],
    recorded_sha256: Callable[[str], str | None],
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    timer: StageTimer | None = None,
) -> SealedVideo:
    """Render, label, watermark, encode, self-check, sign, record and atomically write footage."""

    job = SealJob(
        kind=unsealed.kind,
        purpose=unsealed.purpose,
        ingredients=list(unsealed.ingredients),
        tools=dict(unsealed.tools),
        operator=unsealed.operator,
        consent_ids=unsealed.renderer.consent_ids,
        consent_hashes=_known_hashes(unsealed.consent_hashes),
        label_corner=unsealed.label_corner,
        label_language=unsealed.label_language,
        disclosure_profile=unsealed.disclosure_profile,
    )
    sink = FootageSink(
        out_path, info=unsealed.info, settings=unsealed.settings, key=dict(unsealed.key), progress=progress
    )
    return seal_frames(
        unsealed.renderer,
        job,
        sink,
        home=home,
        record=record,
        recorded_sha256=recorded_sha256,
        progress=progress,
        cancel=cancel,
        timer=timer,
    )
