"""The one writer of video outputs: :func:`seal_video`, the video twin of :func:`.writer.seal`.

Frames come from a :class:`FrameRenderer` (the pipeline's swap, frame by frame) and nothing is
written outside a hidden job folder next to the output until every step has passed:

1. The output path is checked before any work: ``.mp4`` (H.264, or FFV1 lossless) or ``.mov``
   (ProRes; H.264), not one of the job's inputs, in an existing folder. Matroska is refused:
   a C2PA manifest cannot be embedded in it.
2. The :class:`~likeness.media.video.VideoEncoder` opens the job folder ``.<out name>.likeness-job``
   (same filesystem as the output, so the final rename is atomic). A new job gets a new output id;
   a job that was killed or cancelled keeps its id (every frame already written carries it), its
   finished segments and the renderer's checkpoint (:class:`ResumePoint`), and carries on after them.
3. Every frame: visible label (the same plate as on images, corner and language from the request)
   → invisible watermark with the output id (``VIDEO_WATERMARK_STRENGTH``; see below) → encode.
   There is no switch that skips either. ``cancel`` is checked before each frame.
4. ``finish``: segments joined, audio copied; then a **self-check** reads the keyframes of the
   encoded file back (:func:`.video_verify.read_video_disclosure`): the id must read back and no
   other id may, else :class:`DisclosureError`.
5. C2PA content credentials are signed into the file (:func:`.credentials.sign_content_credentials`),
   then ``record(sealed)`` (the registry re-checks every consent; a revocation since the gate wins
   and nothing is written), then the file is renamed onto the output name and the job folder removed.

Failure handling. A typed error (refusal, bad input mid-file, disclosure failure) removes the job
folder: nothing of a refused or broken job stays on disk. :class:`Cancelled`, Ctrl-C, a kill, or an
unexpected error (disk full) keep the finished segments, so the same request resumes. A kill between
``record`` and the rename leaves the signed file in the job folder; the rerun finds its id in the
ledger with the same sha256 and just renames it (or, if that file is gone, starts over with a new id).

Watermark strength. Video is re-encoded by everyone who handles it, and a predicted frame at a
high CRF keeps only part of a static mark (x264 builds it from motion-compensated blocks of earlier
frames, which carry the mark shifted); verify reads windows of averaged frames (``video_verify``).
The mark is perceptually masked: flat areas get a 0.35 grey-level floor whatever the strength, and
``VIDEO_WATERMARK_STRENGTH`` scales only the textured part (4.5 = 1.5x the image setting). Measured
on a 720p pan re-encoded at CRF 28, then also at 480p: at 4.5, 1 s windows read 2/2 and 2/2
(PSNR 37.3-38.9 dB, flat-area RMS 0.31-0.85); at 3.75 the per-window signal margins were about
half as large.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from likeness.disclosure import watermark
from likeness.disclosure.label import CORNERS, LABEL_TEXT, apply_label
from likeness.disclosure.output_id import new_output_id, parse_output_id
from likeness.disclosure.types import Ingredient, ResultKind, SealedOutput
from likeness.disclosure.writer import fsync_dir
from likeness.errors import Cancelled, DisclosureError, LikenessError, UsageError
from likeness.home import Home
from likeness.media.video import DecodedFrame, EncodeSettings, VideoEncoder, VideoInfo, remove_job

if TYPE_CHECKING:
    from likeness.disclosure.credentials import CredentialResult
    from likeness.pipeline import StageTimer

VIDEO_WATERMARK_STRENGTH = 4.5
"""RMS of the luma change in grey levels (images: ``watermark.STRENGTH`` = 3.0); see the docstring."""
OUTPUT_CONTAINERS = {".mp4": "mp4", ".mov": "mov"}
DEFAULT_CODECS = {".mp4": "h264", ".mov": "prores"}
JOB_SUFFIX = ".likeness-job"
SEALED_STEM = "sealed"
PROGRESS_EVERY_S = 0.5

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class ResumePoint:
    """Where the renderer starts: after ``after_pts`` (``None``: from the first frame)."""

    after_pts: int | None
    first_index: int
    state: dict[str, Any]
    """What the renderer's ``checkpoint()`` returned when the last kept segment was finished."""


class FrameRenderer(Protocol):
    """Produces the job's frames (the swap), in order, from a resume point."""

    def frames(self, start: ResumePoint) -> Iterator[DecodedFrame]:
        """Upright RGB frames with the source's pts, the first one after ``start.after_pts``."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """JSON state to resume from (e.g. the consent decisions so far)."""
        ...

    def consent_ids(self) -> list[str]:
        """The consents the frames were made under; complete once ``frames`` is exhausted."""
        ...


@dataclass(frozen=True)
class UnsealedVideo:
    """A video job ready to be rendered and sealed; only :func:`seal_video` can write it."""

    info: VideoInfo
    renderer: FrameRenderer = field(repr=False)
    settings: EncodeSettings
    kind: ResultKind
    purpose: str
    ingredients: list[Ingredient]
    tools: dict[str, dict[str, str]]
    operator: str
    key: Mapping[str, str]
    """Everything that must be unchanged for a job folder to be resumed (hash of the request)."""
    label_corner: str = "bottom-right"
    label_language: str = "en"


@dataclass(frozen=True)
class SelfCheck:
    """The encoded file read back (keyframes) before it was signed."""

    windows: int
    windows_with_id: int
    label_windows: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SealedVideo:
    output: SealedOutput
    codec: str
    container: str
    frames: int
    duration: float
    segments: int
    reused_segments: int
    audio: tuple[str, ...]
    notes: tuple[str, ...]
    self_check: SelfCheck
    credentials: dict[str, object] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output.path),
            "output_id": self.output.output_id,
            "sha256": self.output.sha256,
            "media_type": self.output.media_type,
            "codec": self.codec,
            "container": self.container,
            "frames": self.frames,
            "duration": round(self.duration, 4),
            "segments": self.segments,
            "reused_segments": self.reused_segments,
            "audio": list(self.audio),
            "notes": list(self.notes),
            "self_check": self.self_check.to_dict(),
            "c2pa": self.credentials,
        }


# -- the output path ----------------------------------------------------------------------------------


def video_output_settings(out_path: Path, settings: EncodeSettings) -> EncodeSettings:
    """``settings`` with the container the output suffix names, or :class:`UsageError`."""
    suffix = Path(out_path).suffix.lower()
    if suffix == ".mkv":
        raise UsageError(
            f"{out_path}: a C2PA manifest cannot be embedded in Matroska (.mkv), and every output "
            "carries one",
            hint="name the output .mp4 (H.264, or --codec ffv1 for lossless) or .mov (ProRes)",
        )
    if suffix not in OUTPUT_CONTAINERS:
        raise UsageError(
            f"{out_path}: cannot write {suffix or 'a file without a suffix'} video",
            hint="name the output .mp4 (H.264 or FFV1) or .mov (ProRes or H.264)",
        )
    chosen = dataclasses.replace(settings, container=OUTPUT_CONTAINERS[suffix])  # type: ignore[arg-type]
    chosen.validate()  # e.g. ProRes in .mp4 → UsageError naming the allowed containers
    return chosen


def default_codec(out_path: Path) -> str:
    """The codec an output suffix implies when none is asked for: .mp4 → h264, .mov → prores."""
    return DEFAULT_CODECS.get(Path(out_path).suffix.lower(), "h264")


def job_folder(out_path: Path) -> Path:
    """The hidden folder where a video job for ``out_path`` keeps its segments (resume state)."""
    out_path = Path(out_path).expanduser().absolute()
    return out_path.parent / f".{out_path.name}{JOB_SUFFIX}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _check_destination(ingredients: list[Ingredient], out_path: Path) -> None:
    for ingredient in ingredients:
        if ingredient.path is not None and _same_file(Path(ingredient.path), out_path):
            raise UsageError(
                f"{out_path}: is the {ingredient.role} input of this job; refusing to overwrite an input",
                hint="choose another output path",
            )
    if not out_path.parent.is_dir():
        raise UsageError(f"{out_path.parent}: the output folder does not exist", hint="create it first")
    if out_path.is_dir():
        raise UsageError(f"{out_path}: is a folder", hint="give an output file name ending .mp4 or .mov")


# -- per frame -------------------------------------------------------------------------------------------


class _Label:
    """The visible label for every frame of one output.

    The plate is opaque, so it is the same pixels on every frame: it is drawn once with
    :func:`apply_label` and pasted after that, provided pasting reproduces ``apply_label`` exactly
    on the first frame (else every frame is drawn).
    """

    def __init__(self, output_id: str, corner: str, language: str) -> None:
        self.output_id, self.corner, self.language = output_id, corner, language
        self._patch: np.ndarray | None = None
        self._where: tuple[slice, slice] | None = None
        self._paste = False

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self._paste and self._patch is not None and self._where is not None:
            out = pixels.copy()
            out[self._where] = self._patch
            return out
        labelled, box = apply_label(pixels, self.output_id, corner=self.corner, language=self.language)
        if self._where is None:
            self._where = (slice(box.top, box.bottom), slice(box.left, box.right))
            self._patch = labelled[self._where].copy()
            pasted = pixels.copy()
            pasted[self._where] = self._patch
            self._paste = bool(np.array_equal(pasted, labelled))
        return labelled


class _Meter:
    """Progress with frames per second and an estimated time left (this run's speed)."""

    def __init__(self, progress: Progress | None, total: int, first_index: int) -> None:
        self.progress = progress
        self.total = max(total, 1)
        self.first_index = first_index
        self.started = time.monotonic()
        self.last = 0.0

    def tick(self, frame: DecodedFrame) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        done = frame.index + 1
        made = done - self.first_index
        rate = made / max(now - self.started, 1e-6)
        left = max(self.total - done, 0) / rate if rate > 0 else float("nan")
        total = max(self.total, done)
        self.progress(
            f"frame {done}/{total} · {rate:.1f} fps · ETA {_clock(left)}", min(done / total, 0.99) * 0.95
        )


def _clock(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@contextlib.contextmanager
def _stage(timer: StageTimer | None, name: str) -> Iterator[None]:
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield


# -- sealing -----------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _discard(job: Path) -> None:
    """Remove the job folder and everything this writer or the encoder put in it."""
    for name in job.glob(f"{SEALED_STEM}.*") if job.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            name.unlink()
    remove_job(job)


def _self_check(path: Path, output_id: str) -> tuple[SelfCheck, str]:
    from likeness.disclosure.video_verify import read_video_disclosure

    report = read_video_disclosure(path, sample="keyframes")
    found = {w.output_id for w in report.windows if w.output_id is not None}
    check = SelfCheck(
        windows=len(report.windows),
        windows_with_id=sum(1 for w in report.windows if w.output_id == output_id),
        label_windows=sum(1 for w in report.windows if w.label_detected),
    )
    if found - {output_id}:
        raise DisclosureError(
            f"the encoded video reads back watermark id(s) {', '.join(sorted(found - {output_id}))} "
            f"besides its own {output_id}; nothing was written",
            hint="report this: a frame carries a mark it was not given",
        )
    if check.windows_with_id == 0:
        raise DisclosureError(
            f"the watermark carrying {output_id} does not read back from any keyframe of the encoded "
            f"video ({check.windows} checked); nothing was written",
            hint="encode at a higher quality (a lower --crf), or a larger size",
        )
    return check, report.phash


def _sign(path: Path, sealed: SealedOutput, unsealed: UnsealedVideo, home: Home) -> CredentialResult:
    """Embed the C2PA manifest into ``path`` in place (fails closed: DisclosureError)."""
    from likeness.disclosure.credentials import CredentialFacts, sign_content_credentials

    facts = CredentialFacts(
        output_id=sealed.output_id,
        kind=sealed.kind,
        media_type=sealed.media_type,
        purpose=sealed.purpose,
        consent_ids=list(sealed.consent_ids),
        ingredients=list(unsealed.ingredients),
        tools=dict(unsealed.tools),
    )
    return sign_content_credentials(path, facts=facts, home=home)


def _to_json(video: SealedVideo, file: str) -> dict[str, Any]:
    data = {f.name: getattr(video, f.name) for f in dataclasses.fields(video)}
    data["output"] = {**dataclasses.asdict(video.output), "path": str(video.output.path)}
    data["self_check"] = video.self_check.to_dict()
    data["file"] = file
    return data


def _from_json(data: dict[str, Any], out_path: Path) -> SealedVideo:
    values = {f.name: data[f.name] for f in dataclasses.fields(SealedVideo)}
    values["output"] = SealedOutput(**{**data["output"], "path": out_path})
    values["self_check"] = SelfCheck(**data["self_check"])
    values["audio"], values["notes"] = tuple(data["audio"]), tuple(data["notes"])
    return SealedVideo(**values)


def _adopt(job: Path, out_path: Path, output_id: str, recorded_sha256: str) -> SealedVideo | None:
    """Finish a job killed between ``record`` and the rename: its signed file is in the job folder."""
    try:
        data = json.loads((job / f"{SEALED_STEM}.json").read_text(encoding="utf-8"))
        video = _from_json(data, out_path)
        signed = job / str(data["file"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if video.output.output_id != output_id or not signed.is_file() or _sha256(signed) != recorded_sha256:
        return None
    os.replace(signed, out_path)
    fsync_dir(out_path.parent)
    _discard(job)
    return video


def seal_video(
    unsealed: UnsealedVideo,
    out_path: Path,
    *,
    home: Home,
    record: Callable[[SealedOutput], None],
    recorded_sha256: Callable[[str], str | None],
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timer: StageTimer | None = None,
) -> SealedVideo:
    """Render, label, watermark, encode, self-check, sign, record and atomically write a video.

    ``record(sealed)`` writes the ledger entry (and may refuse); ``recorded_sha256(output_id)``
    returns the sha256 the ledger holds for an output id, or ``None``: it lets a rerun finish a
    job killed between recording and renaming. See the module docstring.
    """
    out_path = Path(out_path).expanduser().absolute()
    settings = video_output_settings(out_path, unsealed.settings)
    _check_destination(unsealed.ingredients, out_path)
    if unsealed.label_corner not in CORNERS:
        raise UsageError(f"label corner {unsealed.label_corner!r} is not one of {', '.join(CORNERS)}")
    if unsealed.label_language not in LABEL_TEXT:
        raise UsageError(
            f"label language {unsealed.label_language!r} is not available",
            hint=f"choose one of: {', '.join(LABEL_TEXT)}",
        )
    job = job_folder(out_path)
    try:
        for _attempt in range(2):
            sealed = _render_and_seal(
                unsealed, settings, out_path, job, home, record, recorded_sha256, progress, cancel, timer
            )
            if sealed is not None:
                return sealed
            _discard(job)  # its id is in the ledger but its file is gone: start over with a new id
        raise DisclosureError(f"{job}: could not start a fresh job", hint=f"delete {job} and run again")
    except Cancelled:
        raise
    except LikenessError as error:
        if not getattr(error, "keep_job", False):
            _discard(job)
        raise
    except Exception as exc:
        raise DisclosureError(
            f"{out_path}: the video job stopped ({type(exc).__name__}: {exc}); nothing was written under "
            f"that name, and the finished segments are kept in {job}",
            hint="fix the cause and run the same command again to resume",
        ) from exc


def _render_and_seal(
    unsealed: UnsealedVideo,
    settings: EncodeSettings,
    out_path: Path,
    job: Path,
    home: Home,
    record: Callable[[SealedOutput], None],
    recorded_sha256: Callable[[str], str | None],
    progress: Progress | None,
    cancel: threading.Event | None,
    timer: StageTimer | None,
) -> SealedVideo | None:
    renderer = unsealed.renderer
    try:
        encoder = VideoEncoder(
            job,
            unsealed.info,
            settings,
            key=unsealed.key,
            meta={"output_id": new_output_id()},
            checkpoint=renderer.checkpoint,
        )
    except LikenessError as error:
        error.keep_job = True  # type: ignore[attr-defined] # e.g. the folder is another process's job
        raise
    with encoder:
        output_id = parse_output_id(str(encoder.meta.get("output_id", "")))
        recorded = recorded_sha256(output_id)
        if recorded is not None:
            return _adopt(job, out_path, output_id, recorded)
        start = ResumePoint(encoder.resume_after_pts, encoder.resume_frames, dict(encoder.resume_state))
        label = _Label(output_id, unsealed.label_corner, unsealed.label_language)
        meter = _Meter(progress, unsealed.info.frame_count, start.first_index)
        frames = renderer.frames(start)
        try:
            for frame in frames:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(
                        f"cancelled at frame {frame.index} ({frame.time:.2f} s); {encoder.resume_frames} "
                        f"frame(s) in finished segments are kept in {job}",
                        hint="run the same command again to resume from there",
                    )
                with _stage(timer, "label"):
                    labelled = label(frame.pixels)
                with _stage(timer, "watermark"):
                    marked = watermark.embed_id(labelled, output_id, strength=VIDEO_WATERMARK_STRENGTH)
                with _stage(timer, "encode"):
                    encoder.write(marked, frame.pts)
                meter.tick(frame)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        if progress is not None:
            progress("joining segments and audio", 0.95)
        with _stage(timer, "mux"):
            encoded = encoder.finish()

    if progress is not None:
        progress("checking the watermark", 0.96)
    with _stage(timer, "self-check"):
        check, perceptual = _self_check(encoded.path, output_id)
    signed = job / f"{SEALED_STEM}{settings.suffix}"
    os.replace(encoded.path, signed)
    sealed = SealedOutput(
        path=out_path,
        output_id=output_id,
        sha256="",
        media_type=settings.media_type,
        kind=unsealed.kind,
        consent_ids=list(renderer.consent_ids()),
        purpose=unsealed.purpose,
        phash=perceptual,
        c2pa=False,
        ingredient_sha256={item.role: item.sha256 for item in unsealed.ingredients},
    )
    if progress is not None:
        progress("signing content credentials", 0.97)
    with _stage(timer, "sign"):
        credentials = _sign(signed, sealed, unsealed, home)
        sealed = dataclasses.replace(sealed, sha256=_sha256(signed), c2pa=True)
    video = SealedVideo(
        output=sealed,
        codec=settings.codec,
        container=settings.container_format,
        frames=encoded.frames,
        duration=encoded.duration,
        segments=encoded.segments,
        reused_segments=encoded.reused_segments,
        audio=encoded.audio,
        notes=encoded.notes,
        self_check=check,
        credentials={**credentials.to_dict(), "path": str(out_path)},
    )
    (job / f"{SEALED_STEM}.json").write_text(json.dumps(_to_json(video, signed.name)), encoding="utf-8")
    with _stage(timer, "record"):
        record(sealed)
    try:
        os.replace(signed, out_path)
    except OSError as exc:
        error = DisclosureError(
            f"{out_path}: output {output_id} was recorded but could not be moved into place ({exc})",
            hint=f"check the folder's permissions and free space, then run the same command again: "
            f"it moves the signed file {signed} into place",
        )
        error.keep_job = True  # type: ignore[attr-defined]
        raise error from exc
    fsync_dir(out_path.parent)
    _discard(job)
    return video
