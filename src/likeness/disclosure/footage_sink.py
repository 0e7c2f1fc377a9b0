"""The sink for footage: a resumable segment encoder in a hidden job folder next to the output.

* The output path is checked before any work: ``.mp4`` (H.264, or FFV1 lossless) or ``.mov``
  (ProRes; H.264), not one of the job's inputs, in an existing, writable folder. Matroska is
  refused: a C2PA manifest cannot be embedded in it.
* The :class:`~likeness.media.video.VideoEncoder` opens the job folder ``.<out name>.likeness-job``
  (same filesystem as the output, so the final rename is atomic). A new job gets a new output id;
  a job that was killed or cancelled keeps its id (every frame already written carries it), its
  finished segments and the source's checkpoint, and carries on after them. It converts and
  encodes in its own thread, at most ``ENCODE_QUEUE_FRAMES`` frames behind (``background``), so the
  next frame is made on the other core meanwhile.
* ``finish`` joins the segments and copies the audio; the **self-check** reads the keyframes of the
  encoded file back (:func:`likeness.disclosure.read.read_video_disclosure`): the id must read back
  and no other id may.
* Failure handling: a typed error (refusal, bad input mid-file, disclosure failure) removes the job
  folder; a cancel, Ctrl-C, a kill or an unexpected error (disk full) keep the finished segments,
  so the same request resumes. A kill between ``record`` and the rename leaves the signed file in
  the job folder; the rerun finds its id in the ledger with the same sha256 and just renames it
  (or, if that file is gone, starts over with a new id).

Watermark strength. Video is re-encoded by everyone who handles it, and a predicted frame at a
high CRF keeps only part of a static mark (x264 builds it from motion-compensated blocks of earlier
frames, which carry the mark shifted); verify reads windows of averaged frames. The mark is
perceptually masked: flat areas get a 0.35 grey-level floor whatever the strength, and
``VIDEO_WATERMARK_STRENGTH`` scales only the textured part (4.5 = 1.5x the image setting). Measured
on a 720p pan re-encoded at CRF 28, then also at 480p: at 4.5, 1 s windows read 2/2 and 2/2
(PSNR 37.3-38.9 dB, flat-area RMS 0.31-0.85); at 3.75 the per-window signal margins were about
half as large.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from likeness.disclosure.credentials import CredentialResult
from likeness.disclosure.output_id import new_output_id, parse_output_id
from likeness.disclosure.seal import Begun, MarkedFrame
from likeness.disclosure.still_sink import check_destination
from likeness.disclosure.types import Ingredient, SealedOutput
from likeness.errors import DisclosureError, LikenessError, UsageError
from likeness.fsutil import move_into_place, sha256_file
from likeness.media.frames import Frame, ResumePoint
from likeness.media.video import EncodeSettings, VideoEncoder, VideoInfo, remove_job
from likeness.progress import Progress, StageTimer, no_progress

VIDEO_WATERMARK_STRENGTH = 4.5
"""RMS of the luma change in grey levels (images: ``watermark.STRENGTH`` = 3.0); see the docstring."""
OUTPUT_CONTAINERS = {".mp4": "mp4", ".mov": "mov"}
DEFAULT_CODECS = {".mp4": "h264", ".mov": "prores"}
JOB_SUFFIX = ".likeness-job"
SEALED_STEM = "sealed"
PROGRESS_EVERY_S = 0.5
ENCODE_QUEUE_FRAMES = 4
"""Frames waiting for the encoder thread at most (4 RGB frames: 25 MB at 1080p, 100 MB at 4K)."""


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
            f"{out_path}: cannot write {f'{suffix} video' if suffix else 'a video file without a suffix'}",
            hint="name the output .mp4 (H.264 or FFV1) or .mov (ProRes or H.264)",
        )
    chosen = dataclasses.replace(settings, container=OUTPUT_CONTAINERS[suffix])  # type: ignore[arg-type]
    chosen.validate()  # e.g. ProRes in .mp4 → UsageError naming the allowed containers
    return chosen


def default_codec(out_path: Path) -> str:
    """The codec an output suffix implies when none is asked for: .mp4 → h264, .mov → prores."""
    return DEFAULT_CODECS.get(Path(out_path).suffix.lower(), "h264")


def check_crf_applies(out_path: Path, codec: str | None) -> None:
    """:class:`UsageError` when a CRF is asked for an output whose codec takes none (FFV1 is lossless,
    ProRes has profiles): it would be ignored without a word."""
    chosen = codec or default_codec(out_path)
    if chosen != "h264":
        raise UsageError(
            f"crf sets H.264's quality; {chosen} takes none ({Path(out_path).name} is written as {chosen})",
            hint="leave out crf, or write H.264 (codec h264, in .mp4 or .mov)",
        )


def job_folder(out_path: Path) -> Path:
    """The hidden folder where a footage job for ``out_path`` keeps its segments (resume state)."""
    out_path = Path(out_path).expanduser().absolute()
    return out_path.parent / f".{out_path.name}{JOB_SUFFIX}"


class _Meter:
    """Progress with frames per second and an estimated time left (this run's speed)."""

    def __init__(self, progress: Progress, total: int, first_index: int) -> None:
        self.progress = progress
        self.total = max(total, 1)
        self.first_index = first_index
        self.started = time.monotonic()
        self.last = 0.0

    def tick(self, frame: Frame) -> None:
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


def _discard(job: Path) -> None:
    """Remove the job folder and everything this sink or the encoder put in it: the signed file and
    its facts, and the temporary file signing writes beside the file it signs
    (``.sealed.mp4.XXXXXXXX.c2pa``), which a process killed while signing leaves behind."""
    names = [*job.glob(f"{SEALED_STEM}.*"), *job.glob(f".{SEALED_STEM}.*")] if job.is_dir() else []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            name.unlink()
    remove_job(job)


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


class FootageSink:
    """Segments in the job folder, then one signed MP4/MOV; see the module docstring."""

    watermark_strength = VIDEO_WATERMARK_STRENGTH
    watermark_per_output = True  # one id, one frame size: the pattern is built once (frame_mark)

    def __init__(
        self,
        out_path: Path,
        *,
        info: VideoInfo,
        settings: EncodeSettings,
        key: dict[str, str],
        progress: Progress = no_progress,
        timer: StageTimer | None = None,
    ) -> None:
        self.out_path = Path(out_path).expanduser().absolute()
        self.settings = video_output_settings(self.out_path, settings)
        self.media_type = self.settings.media_type
        self.info = info
        self.start_time = info.start_time  # the start label's clock starts at the first frame
        self.key = key
        self.progress = progress
        self.timer = timer
        """Receives ``encode thread``: the encoder thread's busy time (frames converted and encoded)."""
        self.job = job_folder(self.out_path)
        self._encoder: VideoEncoder | None = None
        self._meter: _Meter | None = None
        self._check: SelfCheck | None = None
        self._encoded: Any = None

    def check(self, ingredients: list[Ingredient]) -> None:
        check_destination(ingredients, self.out_path, names=".mp4 or .mov")

    def begin(self, checkpoint: Callable[[], dict[str, Any]]) -> Begun:
        self.close()
        try:
            self._encoder = VideoEncoder(
                self.job,
                self.info,
                self.settings,
                key=self.key,
                meta={"output_id": new_output_id()},
                checkpoint=checkpoint,
                background=True,  # frames are encoded on the other core while the next is made
                queue_frames=ENCODE_QUEUE_FRAMES,
            )
        except LikenessError as error:
            error.keep_job = True  # type: ignore[attr-defined] # e.g. the folder is another process's job
            raise
        encoder = self._encoder
        output_id = parse_output_id(str(encoder.meta.get("output_id", "")))
        start = ResumePoint(encoder.resume_after_pts, encoder.resume_frames, dict(encoder.resume_state))
        self._meter = _Meter(self.progress, self.info.frame_count, start.first_index)
        return Begun(output_id=output_id, start=start)

    def adopt(self, recorded_sha256: Callable[[str], str | None]) -> SealedVideo | None:
        """Finish a job killed between ``record`` and the rename: its signed file is in the job folder."""
        assert self._encoder is not None
        output_id = parse_output_id(str(self._encoder.meta.get("output_id", "")))
        recorded = recorded_sha256(output_id)
        self.close()
        try:
            data = json.loads((self.job / f"{SEALED_STEM}.json").read_text(encoding="utf-8"))
            video = _from_json(data, self.out_path)
            signed = self.job / str(data["file"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if video.output.output_id != output_id or not signed.is_file() or sha256_file(signed) != recorded:
            return None
        move_into_place(signed, self.out_path)
        _discard(self.job)
        return video

    def write(self, frame: MarkedFrame) -> None:
        assert self._encoder is not None and self._meter is not None
        self._encoder.write(frame.marked, frame.frame.pts)
        self._meter.tick(frame.frame)

    def finish(self, progress: Progress) -> Path:
        assert self._encoder is not None
        progress("joining segments and audio", 0.95)
        self._encoded = self._encoder.finish()
        if self.timer is not None:
            self.timer.add("encode thread", self._encoder.busy_seconds)
        self.close()
        signed = self.job / f"{SEALED_STEM}{self.settings.suffix}"
        os.replace(self._encoded.path, signed)
        return signed

    def self_check(self, path: Path, output_id: str) -> str:
        from likeness.disclosure.read import read_video_disclosure

        report = read_video_disclosure(path, sample="keyframes", credentials=False)
        if not any(w.output_id == output_id for w in report.windows):
            # A short or small clip may have too few keyframes to carry the mark alone: every frame of
            # a window adds to its sum, so read them all before refusing.
            report = read_video_disclosure(path, sample="all", credentials=False)
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
                f"the watermark carrying {output_id} does not read back from any window of the encoded "
                f"video ({check.windows} checked, keyframes and then every frame); nothing was written",
                hint="encode at a higher quality (a lower --crf), or a larger size",
            )
        self._check = check
        return report.phash

    def keep(self, sealed: SealedOutput, signed: Path, credentials: CredentialResult) -> SealedVideo:
        encoded, check = self._encoded, self._check
        assert encoded is not None and check is not None
        video = SealedVideo(
            output=sealed,
            codec=self.settings.codec,
            container=self.settings.container_format,
            frames=encoded.frames,
            duration=encoded.duration,
            segments=encoded.segments,
            reused_segments=encoded.reused_segments,
            audio=encoded.audio,
            notes=encoded.notes,
            self_check=check,
            credentials={**credentials.to_dict(), "path": str(self.out_path)},
        )
        (self.job / f"{SEALED_STEM}.json").write_text(
            json.dumps(_to_json(video, signed.name)), encoding="utf-8"
        )
        return video

    def commit(self, signed: Path, result: SealedVideo) -> None:
        try:
            move_into_place(signed, self.out_path)
        except OSError as exc:
            error = DisclosureError(
                f"{self.out_path}: output {result.output.output_id} was recorded but could not be moved "
                f"into place ({exc})",
                hint=f"check the folder's permissions and free space, then run the same command again: "
                f"it moves the signed file {signed} into place",
            )
            error.keep_job = True  # type: ignore[attr-defined]
            raise error from exc
        _discard(self.job)

    def abandon(self, *, resumable: bool) -> None:
        self.close()
        if not resumable:
            _discard(self.job)

    def stopped(self, exc: Exception) -> DisclosureError:
        return DisclosureError(
            f"{self.out_path}: the video job stopped ({type(exc).__name__}: {exc}); nothing was written "
            f"under that name, and the finished segments are kept in {self.job}",
            hint="fix the cause and run the same command again to resume",
        )

    def close(self) -> None:
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.close()
