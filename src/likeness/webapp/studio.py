"""What the app does. Every action checks the signed-in user's role first, on the server.

No Gradio here: the UI layer (``likeness.webapp.ui`` and ``.tabs``) turns these calls into pages and the
typed errors into messages, so the same rules hold for the browser and for gradio_client.
Everything goes through ``likeness.jobs`` (the one road) and the registry's
public API.

Uploads: Gradio refuses any upload over the larger of the two limits before it reaches a handler;
here every file is checked against the limit of its kind (images and documents:
``UploadLimits.image_mb``; videos: ``video_mb`` and ``video_seconds``) and by its bytes.

Video jobs and Cancel. A video job's output goes to the session folder like any result. While it
runs, the app keeps a *pending job* folder (``<home>/app/work/video/<user>/<job key>/``) holding a
hard link to the uploaded target and the output name chosen. The job key is a hash of the user,
the target's and the source's sha256, the purpose and the options. Cancel stops the job after the
current frame; the video writer keeps its finished segments (next to the output name, hidden) and
the pending folder stays, so **the same user running the same job again resumes** from the last
finished segment, in whatever session. A finished or refused job removes both; a pending job not
resumed within ``PENDING_VIDEO_HOURS`` is deleted when the next video job starts or the app starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from likeness.errors import BadInput, Cancelled, LikenessError, UsageError
from likeness.home import Home
from likeness.users import AppUser, UserStore, require
from likeness.webapp.engines import EnginePool

if TYPE_CHECKING:
    from likeness.consent.records import ConsentRecord, Identity, OutputRecord
    from likeness.jobs.requests import SwapOutcome, VideoSwapOutcome
    from likeness.jobs.verdict import VerifyReport
    from likeness.ledger import ChainReport, Entry
    from likeness.licences import LicenceRecord
    from likeness.media.video import VideoInfo
    from likeness.models import ModelRow

APP_MAX_PIXELS = 50_000_000
"""Largest image the app decodes (the CLI allows 100 MP); keeps several users' jobs in memory."""
MIN_FACE_PX = 80
"""Smallest face (shorter side of its box) accepted as a reference photo."""
THUMB_PX = 160
EVIDENCE_KINDS = {
    b"%PDF": "PDF",
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
}
VIDEO_CODECS = ("h264", "ffv1")
"""What the app offers: H.264 (plays in a browser) or FFV1 (lossless, for VFX), both in .mp4."""
FACES_MODES = ("consented", "all")
DEFAULT_CRF = 18
PENDING_VIDEO_HOURS = 24.0
"""How long a cancelled video job's finished segments wait to be resumed."""
MB = 1024 * 1024

StageReport = Callable[[str, float], None]


@dataclass(frozen=True)
class UploadLimits:
    """What the app accepts. Images and documents are small; footage is not.

    Defaults: 50 MB for an image (a 100-megapixel JPEG is about 30 MB) and 1 GB or 10 minutes for a
    video (10 minutes of 1080p H.264 at a camera's 10 Mbit/s is 750 MB; longer footage belongs in
    the CLI, where a job can run for hours without a browser tab open).
    """

    image_mb: int = 50
    video_mb: int = 1024
    video_seconds: float = 600.0

    @property
    def largest_mb(self) -> int:
        """Gradio's own upload limit: the larger of the two (each kind is checked again here)."""
        return max(self.image_mb, self.video_mb)


@dataclass(frozen=True)
class FaceThumb:
    """A face found in a target image, for the face picker (index counts left to right from 0)."""

    index: int
    box: tuple[int, int, int, int]
    size: int
    thumb: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "box": list(self.box), "size_px": self.size}


@dataclass(frozen=True)
class PhotoCheck:
    """The quality check of one reference photo."""

    name: str
    faces: int
    face_px: int | None
    ok: bool
    message: str
    thumb: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "photo": self.name,
            "faces": self.faces,
            "face_px": self.face_px,
            "ok": self.ok,
            "message": self.message,
        }


@dataclass(frozen=True)
class SwapJob:
    """One swap as asked for in the app: the likeness comes from an enrolled identity or a photo."""

    source_kind: str
    """``identity`` or ``photo``."""
    target: Path | None
    purpose: str
    identity: str | None = None
    source_photo: Path | None = None
    face_index: int | None = None
    """Which target face to replace (0 = leftmost); ``None`` replaces every face."""
    disclosure_profile: str | None = None
    """``default``, ``eu`` or ``cn``; ``None``: the policy's default."""


@dataclass(frozen=True)
class GenerateJob:
    """One generation as asked for in the app (see ``likeness generate``)."""

    model: str
    prompt: str
    purpose: str
    identity: str | None = None
    negative: str | None = None
    steps: int = 30
    guidance: float = 7.0
    seed: int | None = None
    size: tuple[int, int] = (512, 512)
    disclosure_profile: str | None = None


@dataclass(frozen=True)
class SwapResult:
    outcome: SwapOutcome
    target: Path
    source_name: str


@dataclass(frozen=True)
class VideoJob:
    """One video swap as asked for in the app (the source as in :class:`SwapJob`)."""

    source_kind: str
    target: Path | None
    purpose: str
    identity: str | None = None
    source_photo: Path | None = None
    faces: str = "consented"
    """``consented``: replace only faces identified as consenting targets; ``all``: every face or nothing."""
    codec: str = "h264"
    crf: int = DEFAULT_CRF
    """H.264 quality: 0 (lossless) … 51 (worst); 18 is visually lossless. FFV1 ignores it."""
    disclosure_profile: str | None = None


@dataclass(frozen=True)
class VideoResult:
    outcome: VideoSwapOutcome
    source_name: str
    names: dict[str, str]
    """Identity id → name, for the per-track report."""

    @property
    def resumed(self) -> bool:
        return self.outcome.video.reused_segments > 0

    @property
    def playable(self) -> bool:
        """Whether a browser can play the output (H.264 yes; FFV1 no: download it)."""
        return self.outcome.video.codec == "h264"


@dataclass(frozen=True)
class ModelLine:
    """One model file as ``likeness models list`` shows it, with the licence recorded for it."""

    row: ModelRow
    licence: LicenceRecord | None

    def commercial_use(self, today: dt.date) -> str:
        if self.row.entry.commercial_use:
            return "yes"
        if self.licence is None:
            return "no"
        if not self.licence.active(today):
            return f"no (licence ended {self.licence.valid_until})"
        return f"licensed ({self.licence.holder})"


@dataclass(frozen=True)
class GrantForm:
    """The consent record form, as typed (dates as YYYY-MM-DD text; empty text means not given)."""

    identity: str
    purposes: Sequence[str]
    roles: Sequence[str]
    media: Sequence[str]
    valid_until: str
    uses: str
    valid_from: str = ""
    capacity: str = "self"
    grantor: str = ""
    project: str = ""
    basis: str = ""
    date_of_birth: str = ""
    date_of_death: str = ""
    jurisdiction: str = ""
    compensation: str = ""
    representation: str = ""
    takedown_contact: str = ""
    evidence: Path | None = None


@dataclass(frozen=True)
class IdentityDetail:
    identity: Identity
    consents: list[ConsentRecord]
    outputs: list[OutputRecord]
    reference_faces: list[np.ndarray] = field(default_factory=list, repr=False)


def _date(value: str, what: str) -> dt.date | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {text!r} is not a date", hint="write it as YYYY-MM-DD") from exc


def _text(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text or None


def _thumb(pixels: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.35) -> np.ndarray:
    from PIL import Image

    left, top, right, bottom = box
    pad_x, pad_y = int((right - left) * margin), int((bottom - top) * margin)
    height, width = pixels.shape[:2]
    crop = pixels[
        max(0, top - pad_y) : min(height, bottom + pad_y), max(0, left - pad_x) : min(width, right + pad_x)
    ]
    image = Image.fromarray(np.ascontiguousarray(crop))
    image.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _safe_part(value: str | None, fallback: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.@-]", "_", value or "")[:64].strip("._")
    return clean or fallback


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class Studio:
    """The app's actions over one data home. Create one per app.

    It holds no per-user state beyond the video jobs running now (so that a second run of the same
    job waits for a cancelled one to stop instead of colliding with it) and a pool of loaded face
    models (:class:`~likeness.webapp.engines.EnginePool`, ``engine_slots`` copies: the app's heavy-job
    concurrency).
    """

    def __init__(
        self,
        home: Home,
        users: UserStore,
        *,
        auth_required: bool,
        backend: str = "dlib",
        max_pixels: int = APP_MAX_PIXELS,
        limits: UploadLimits | None = None,
        engine_slots: int = 2,
        video_segment_seconds: float = 10.0,
    ) -> None:
        self.home = home
        self.users = users
        self.auth_required = auth_required
        self.backend = backend
        self.max_pixels = max_pixels
        self.limits = limits or UploadLimits()
        self.engines = EnginePool(backend, home, size=max(1, engine_slots))
        self.video_segment_seconds = video_segment_seconds
        self._video_running: dict[str, threading.Event] = {}
        self._video_lock = threading.Lock()

    # -- folders ---------------------------------------------------------------------------
    @property
    def outputs_root(self) -> Path:
        """The only folder the app serves files from (besides Gradio's own upload cache)."""
        return self.home.root / "outputs"

    @property
    def work_root(self) -> Path:
        """Private scratch space (never served): reference crops used as a source, pending video jobs."""
        return self.home.root / "app" / "work"

    @property
    def cache_root(self) -> Path:
        """Gradio's upload cache for this app."""
        return self.home.root / "app" / "cache"

    def session_dir(self, user: AppUser, session: str | None) -> Path:
        """outputs/<user>/<session>: one folder per browser or API session, so results never mix."""
        folder = self.outputs_root / _safe_part(user.name, "user") / _safe_part(session, "session")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def _without_paths(self, text: str) -> str:
        """``text`` with server paths of uploads and scratch files cut to the file's name."""
        for root in (self.cache_root, self.work_root):
            text = re.sub(re.escape(str(root)) + r"/(?:[^/\s]+/)*", "", text)
        return text

    def public(self, error: LikenessError) -> LikenessError:
        """``error`` with server paths of uploads and scratch files cut to the file's name."""
        for attribute in ("reason", "hint"):
            text = getattr(error, attribute, None)
            if text:
                setattr(error, attribute, self._without_paths(text))
        if error.args and isinstance(error.args[0], str):
            error.args = (error.reason, *error.args[1:])
        return error

    # -- uploads ---------------------------------------------------------------------------
    def check_upload(self, path: Path, kind: str = "image") -> Path:
        """Refuse a file over the limit of its kind (``image`` also covers documents) or unreadable."""
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise BadInput(f"{path.name}: the upload cannot be read ({exc.strerror})") from exc
        limit_mb = self.limits.video_mb if kind == "video" else self.limits.image_mb
        if size > limit_mb * MB:
            option = "--max-video-mb" if kind == "video" else "--max-upload-mb"
            what = "videos" if kind == "video" else "images and documents"
            raise BadInput(
                f"{path.name} is {size / MB:.1f} MB; this studio accepts {what} up to {limit_mb} MB",
                hint=f"use a smaller file, or ask the administrator to raise `likeness app {option}`",
            )
        return path

    def check_video(self, path: Path) -> VideoInfo:
        """A target video: within the size and duration limits, and a video by its bytes."""
        from likeness.media.video import looks_like_video, probe_video

        path = self.check_upload(path, "video")
        if not looks_like_video(path):
            raise BadInput(
                f"{path.name} is not a video file",
                hint="upload an MP4, MOV, MKV, WebM or AVI file; for a still picture choose Image as "
                "the target",
            )
        info = probe_video(path)
        if info.duration is not None and info.duration > self.limits.video_seconds:
            raise BadInput(
                f"{path.name} runs {info.duration:.0f} s; this studio accepts videos up to "
                f"{self.limits.video_seconds:.0f} s",
                hint="trim it, run it with `likeness swap` on the command line, or ask the administrator "
                "to raise `likeness app --max-video-seconds`",
            )
        return info

    # -- who is asking -----------------------------------------------------------------------
    def user(self, username: str | None) -> AppUser | None:
        """The app user behind a request. Without auth (localhost, no users) the local user is an admin."""
        if not self.auth_required:
            from likeness.jobs.requests import default_operator

            return AppUser(name=default_operator(), role="admin", created_at="", password_changed_at="")
        if not username:
            return None
        return self.users.get(username)

    # -- policy ----------------------------------------------------------------------------
    def policy(self):
        from likeness.consent.policy import Policy

        return Policy.load(self.home)

    # -- registry views ----------------------------------------------------------------------
    def identities(self, user: AppUser | None) -> list[Identity]:
        require(user, "view")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            return registry.list_identities()

    def generate(
        self,
        user: AppUser | None,
        session: str | None,
        job: GenerateJob,
        *,
        progress: StageReport,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Any:
        """Generate one image on the one road (``likeness generate``), gated and disclosed, into this
        session's outputs folder. The model is a local diffusers folder or a table name; nothing is
        ever downloaded."""
        user = require(user, "generate")
        if not job.model.strip():
            raise UsageError("give the model: a local diffusers folder or a name from `likeness models list`")
        if not job.prompt.strip():
            raise UsageError("write a prompt")
        if not job.purpose:
            raise UsageError("choose the purpose of this output", hint="it must be covered by every consent")
        self.policy().require_known("purposes", [job.purpose])
        from likeness.jobs.requests import GenerateRequest
        from likeness.jobs.road import run_job

        out = self.session_dir(user, session) / f"likeness-{_stamp()}-{secrets.token_hex(3)}.png"

        def report(stage: str, fraction: float) -> None:
            if fraction < 1.0 and cancelled():
                raise Cancelled("the generation was cancelled; nothing was written or recorded")
            progress(stage, fraction)

        request = GenerateRequest(
            model=job.model.strip(),
            prompt=job.prompt,
            purpose=job.purpose,
            out=out,
            identity=job.identity or None,
            negative=job.negative or None,
            steps=job.steps,
            guidance=job.guidance,
            seed=job.seed,
            size=job.size,
            backend=self.backend,
            operator=user.name,
            disclosure_profile=job.disclosure_profile or None,
        )
        return run_job(request, home=self.home, progress=report)

    def source_candidates(
        self, user: AppUser | None, purpose: str | None, media_kind: str = "image", role: str = "source"
    ) -> tuple[list[Identity], list[tuple[Identity, str]]]:
        """Who may be chosen as the likeness for ``purpose``: people with a consent that could cover
        it (``role``: ``source`` for a swap, ``generate`` for new images; this media kind; in force),
        and everyone else with the reason."""
        require(user, "view")
        from likeness.consent.registry import Registry
        from likeness.jobs.who import consent_fit

        offered: list[Identity] = []
        not_offered: list[tuple[Identity, str]] = []
        with Registry.open(self.home) as registry:
            today = registry.policy.today(dt.datetime.now(dt.UTC))
            for person in registry.list_identities():
                if person.erased_at is not None:
                    continue
                if not purpose:
                    not_offered.append((person, "choose a purpose first"))
                    continue
                fits = [
                    consent_fit(record, purpose=purpose, role=role, media_kind=media_kind, today=today)
                    for record in registry.list_consents(person.id)
                ]
                if any(fit.covers for fit in fits):
                    offered.append(person)
                else:
                    why = "; ".join(f"{fit.consent_id}: {fit.why}" for fit in fits) or "no consent recorded"
                    not_offered.append((person, why))
        return offered, not_offered

    def consents(self, user: AppUser | None, identity: str | None = None) -> list[ConsentRecord]:
        require(user, "view")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            return registry.list_consents(identity_id=identity or None)

    def identity_detail(self, user: AppUser | None, identity: str) -> IdentityDetail:
        """One person: their consents, the outputs made under them, and (admins only) reference faces."""
        user = require(user, "view")
        if not (identity or "").strip():
            raise UsageError("choose a person first")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            person = registry.get_identity(identity)
            consents = registry.list_consents(identity_id=person.id)
            outputs: dict[str, OutputRecord] = {}
            for record in consents:
                for output in registry.list_outputs(consent_id=record.id):
                    outputs.setdefault(output.output_id, output)
            faces: list[np.ndarray] = []
            if user.can("view_biometrics") and person.erased_at is None:
                faces = [_decode(crop) for crop in registry.reference_crops(person.id)]
        ordered = sorted(outputs.values(), key=lambda o: o.created_at)
        return IdentityDetail(identity=person, consents=consents, outputs=ordered, reference_faces=faces)

    # -- swap --------------------------------------------------------------------------------
    def detect(self, user: AppUser | None, target: Path | None) -> list[FaceThumb]:
        """The faces in a target image, left to right, as thumbnails for the face picker."""
        require(user, "swap")
        if target is None:
            return []
        from likeness.jobs.engines import detect_faces

        target = self.check_upload(Path(target))
        with self.engines.borrow() as engines:
            picture, faces = detect_faces(
                target, home=self.home, backend=self.backend, max_pixels=self.max_pixels, engines=engines
            )
        return [
            FaceThumb(i, face.box, face.size, _thumb(picture.pixels, face.box))
            for i, face in enumerate(faces)
        ]

    def swap(
        self,
        user: AppUser | None,
        session: str | None,
        job: SwapJob,
        *,
        progress: StageReport,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> SwapResult:
        """Run one gated, disclosed swap into this session's outputs folder.

        ``cancelled`` is polled at every stage; a job cancelled before the output is sealed
        raises :class:`~likeness.errors.Cancelled` (exit 130, as on every road) and writes nothing.
        """
        user = require(user, "swap")
        if job.target is None:
            raise UsageError("choose a target image (the picture whose face is replaced)")
        if not job.purpose:
            raise UsageError("choose the purpose of this output", hint="it must be covered by every consent")
        self.policy().require_known("purposes", [job.purpose])
        from likeness.jobs.requests import SwapRequest
        from likeness.jobs.road import swap_image

        target = self.check_upload(Path(job.target))
        suffix = ".png" if target.suffix.lower() == ".png" else ".jpg"
        out = self.session_dir(user, session) / f"likeness-{_stamp()}-{secrets.token_hex(3)}{suffix}"

        def report(stage: str, fraction: float) -> None:
            if fraction < 1.0 and cancelled():
                raise Cancelled(
                    "the swap was cancelled; nothing was written or recorded",
                    hint="run the swap again when you are ready",
                )
            progress(stage, fraction)

        scratch = self.work_root / secrets.token_hex(8)
        try:
            source, source_name = self._source(job, scratch)
            request = SwapRequest(
                source=source,
                target=target,
                purpose=job.purpose,
                out=out,
                face_index=job.face_index,
                backend=self.backend,
                operator=user.name,
                max_pixels=self.max_pixels,
                disclosure_profile=job.disclosure_profile or None,
            )
            with self.engines.borrow() as engines:
                outcome = swap_image(request, home=self.home, progress=report, engines=engines)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return SwapResult(outcome=outcome, target=target, source_name=source_name)

    # -- video ---------------------------------------------------------------------------------
    def swap_video(
        self,
        user: AppUser | None,
        session: str | None,
        job: VideoJob,
        *,
        progress: StageReport,
        cancel: threading.Event | None = None,
    ) -> VideoResult:
        """Run one gated, disclosed video swap into this session's outputs folder.

        ``cancel`` stops it after the current frame (:class:`~likeness.errors.Cancelled`); the
        finished segments are kept and the same job by the same user resumes from them (see the
        module docstring).
        """
        user = require(user, "swap")
        if job.target is None:
            raise UsageError("choose a target video (the footage whose faces are replaced)")
        if not job.purpose:
            raise UsageError("choose the purpose of this output", hint="it must be covered by every consent")
        self.policy().require_known("purposes", [job.purpose])
        if job.faces not in FACES_MODES:
            raise UsageError(f"unknown faces choice {job.faces!r}", hint="choose consented or all")
        if job.codec not in VIDEO_CODECS:
            raise UsageError(f"unknown codec {job.codec!r}", hint=f"choose {' or '.join(VIDEO_CODECS)}")
        crf = int(job.crf if job.crf is not None else DEFAULT_CRF)
        if not 0 <= crf <= 51:
            raise UsageError(
                f"quality (CRF) {crf} is out of range", hint="use 0 (lossless) to 51; 18 is the default"
            )
        cancel = cancel or threading.Event()
        target = Path(job.target)
        self.check_video(target)
        self.sweep_video_jobs()
        from likeness.jobs.requests import VideoSwapRequest
        from likeness.jobs.road import swap_video

        scratch = self.work_root / secrets.token_hex(8)
        try:
            source, source_name = self._source(job, scratch)
            progress("hash", 0.0)
            key = _video_key(user.name, self.backend, job, crf, _file_sha256(target), _file_sha256(source))
            pending = self.work_root / "video" / _safe_part(user.name, "user") / key
            with self._video_slot(key, cancel):
                out, stable_target = self._pending_video(pending, user, session, target)
                request = VideoSwapRequest(
                    source=source,
                    target=stable_target,
                    purpose=job.purpose,
                    out=out,
                    faces=job.faces,  # type: ignore[arg-type]
                    backend=self.backend,
                    codec=job.codec,
                    crf=crf,
                    segment_seconds=self.video_segment_seconds,
                    operator=user.name,
                    max_pixels=self.max_pixels,
                    disclosure_profile=job.disclosure_profile or None,
                )
                try:
                    with self.engines.borrow() as engines:  # the loaded models serve video too
                        outcome = swap_video(
                            request, home=self.home, progress=progress, cancel=cancel, engines=engines
                        )
                except Cancelled:
                    raise  # the finished segments and the pending folder stay: the same job resumes
                except LikenessError:
                    _forget_unless_resumable(pending, out)
                    raise
                shutil.rmtree(pending, ignore_errors=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return VideoResult(outcome=outcome, source_name=source_name, names=self._names())

    def video_jobs_running(self) -> int:
        """How many video jobs are running now (a cancelled one counts until its worker has stopped)."""
        with self._video_lock:
            return len(self._video_running)

    @contextlib.contextmanager
    def _video_slot(self, key: str, cancel: threading.Event, wait_s: float = 30.0) -> Iterator[None]:
        """Run one job key at a time: a second run waits for a cancelled one to stop, else is refused."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._video_lock:
                running = self._video_running.get(key)
                if running is None:
                    self._video_running[key] = cancel
                    break
            if not running.is_set():
                raise UsageError(
                    "this video job is already running (the same source, target, purpose and options)",
                    hint="wait for it to finish, or cancel it where it runs",
                )
            if time.monotonic() > deadline:
                raise UsageError(
                    "the cancelled run of this video job is still stopping", hint="try again in a moment"
                )
            time.sleep(0.1)
        try:
            yield
        finally:
            with self._video_lock:
                self._video_running.pop(key, None)

    def _pending_video(
        self, pending: Path, user: AppUser, session: str | None, target: Path
    ) -> tuple[Path, Path]:
        """The output name and the target for a job: a cancelled run's (to resume), else new ones."""
        record = pending / "job.json"
        out: Path | None = None
        kept: Path | None = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(record.read_text(encoding="utf-8"))
            earlier, kept = Path(data["out"]), pending / Path(data["target"]).name
            if earlier.is_relative_to(self.outputs_root) and not earlier.exists() and earlier.parent.is_dir():
                out = earlier
        if out is None or kept is None:
            shutil.rmtree(pending, ignore_errors=True)
            pending.mkdir(parents=True, mode=0o700)
            out = self.session_dir(user, session) / f"likeness-{_stamp()}-{secrets.token_hex(3)}.mp4"
            suffix = re.sub(r"[^a-z0-9.]", "", target.suffix.lower())[:8]
            kept = pending / f"{_safe_part(target.stem, 'target')[:48]}{suffix}"
            data = {
                "out": str(out),
                "target": kept.name,
                "user": user.name,
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            record.write_text(json.dumps(data), encoding="utf-8")
        else:
            os.utime(record)  # resumed: the retention period starts again
        # The writer resumes only with the same target file (path, size, mtime): keep a link to it,
        # named as uploaded (the name appears in the consent labels and the content credentials).
        if not kept.exists():
            try:
                os.link(target, kept)
            except OSError:
                shutil.copy2(target, kept)
        return out, kept

    def sweep_video_jobs(self, older_than_hours: float = PENDING_VIDEO_HOURS) -> list[Path]:
        """Delete pending video jobs (and their finished segments) not resumed in time; returns them."""
        from likeness.disclosure.footage_sink import job_folder

        cutoff = time.time() - older_than_hours * 3600
        removed = []
        for pending in sorted((self.work_root / "video").glob("*/*")):
            record = pending / "job.json"
            try:
                stamp = (record if record.exists() else pending).stat().st_mtime
            except OSError:
                continue
            with self._video_lock:
                if stamp > cutoff or pending.name in self._video_running:
                    continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                out = Path(json.loads(record.read_text(encoding="utf-8"))["out"])
                if out.is_relative_to(self.outputs_root):
                    shutil.rmtree(job_folder(out), ignore_errors=True)
            shutil.rmtree(pending, ignore_errors=True)
            removed.append(pending)
        return removed

    def _names(self) -> dict[str, str]:
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            return {person.id: person.name for person in registry.list_identities()}

    def _source(self, job: SwapJob | VideoJob, scratch: Path) -> tuple[Path, str]:
        """The source photo: uploaded, or an enrolled identity's best stored reference crop."""
        if job.source_kind == "photo":
            if job.source_photo is None:
                raise UsageError("upload a source photo, or choose an enrolled person as the source")
            photo = self.check_upload(Path(job.source_photo))
            return photo, photo.name
        if job.source_kind != "identity":
            raise UsageError(f"unknown source kind {job.source_kind!r}", hint="use 'identity' or 'photo'")
        if not (job.identity or "").strip():
            raise UsageError("choose the enrolled person whose likeness is used")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            person = registry.get_identity(job.identity or "")
            if person.erased_at is not None:
                raise UsageError(f"{person.name} ({person.id}) was erased; their likeness cannot be used")
            crops = registry.reference_crops(person.id)
        if not crops:
            raise UsageError(
                f"{person.name} has no stored reference face to use as a source",
                hint="upload a source photo of them instead",
            )
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        best = max(crops, key=_pixel_area)
        path = scratch / f"{_safe_part(person.name, person.id)}-reference.jpg"
        path.write_bytes(best)
        return path, f"{person.name} (enrolled reference)"

    # -- enrolment and consent -----------------------------------------------------------------
    def check_photos(self, user: AppUser | None, photos: Sequence[Path]) -> list[PhotoCheck]:
        """Quality check for reference photos: exactly one face, at least MIN_FACE_PX tall."""
        require(user, "enrol")
        from likeness.jobs.engines import detect_faces

        checks: list[PhotoCheck] = []
        for photo in photos:
            name = Path(photo).name
            try:
                self.check_upload(Path(photo))
                with self.engines.borrow() as engines:
                    picture, faces = detect_faces(
                        Path(photo),
                        home=self.home,
                        backend=self.backend,
                        max_pixels=self.max_pixels,
                        engines=engines,
                    )
            except BadInput as error:
                checks.append(PhotoCheck(name, 0, None, False, error.reason.replace(str(photo), name)))
                continue
            if not faces:
                checks.append(
                    PhotoCheck(name, 0, None, False, "no face found: use a sharp, lit, frontal photo")
                )
                continue
            if len(faces) > 1:
                message = f"{len(faces)} faces: a reference photo must show only this person; crop it"
                checks.append(PhotoCheck(name, len(faces), None, False, message))
                continue
            face = faces[0]
            thumb = _thumb(picture.pixels, face.box)
            if face.size < MIN_FACE_PX:
                message = f"face is {face.size} px; at least {MIN_FACE_PX} px is needed for a reliable match"
                checks.append(PhotoCheck(name, 1, face.size, False, message, thumb))
                continue
            checks.append(PhotoCheck(name, 1, face.size, True, f"one face, {face.size} px: good", thumb))
        return checks

    def enrol(
        self, user: AppUser | None, name: str, photos: Sequence[Path], *, progress: StageReport
    ) -> Identity:
        user = require(user, "enrol")
        if not (name or "").strip():
            raise UsageError("give the person's name")
        if not photos:
            raise UsageError("add at least one reference photo of the person")
        from likeness.jobs.enrol import enrol_identity
        from likeness.jobs.requests import EnrolRequest

        request = EnrolRequest(
            name=name,
            photos=[self.check_upload(Path(p)) for p in photos],
            operator=user.name,
            backend=self.backend,
            max_pixels=self.max_pixels,
        )
        return enrol_identity(request, home=self.home, progress=progress)

    def grant(self, user: AppUser | None, form: GrantForm) -> ConsentRecord:
        user = require(user, "grant")
        if not (form.identity or "").strip():
            raise UsageError("choose the person who gives consent")
        until = _date(form.valid_until, "valid until")
        if until is None:
            raise UsageError("give the last day the consent is valid (valid until)", hint="YYYY-MM-DD")
        if not form.purposes:
            raise UsageError("tick at least one purpose")
        if not form.roles:
            raise UsageError("tick at least one role (source, target)")
        evidence = _check_evidence(self.check_upload(form.evidence)) if form.evidence is not None else None
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            person = registry.get_identity(form.identity)
            return registry.grant(
                person.id,
                purposes=list(form.purposes),
                roles=list(form.roles),
                media=list(form.media) or ["image"],
                valid_until=until,
                valid_from=_date(form.valid_from, "valid from"),
                uses=form.uses or "",
                operator=user.name,
                capacity=form.capacity or "self",
                grantor=_text(form.grantor),
                basis=_text(form.basis),
                date_of_birth=_date(form.date_of_birth, "date of birth"),
                date_of_death=_date(form.date_of_death, "date of death"),
                jurisdiction=_text(form.jurisdiction),
                project=_text(form.project),
                compensation=_text(form.compensation),
                representation=_text(form.representation),
                evidence=evidence,
                takedown_contact=_text(form.takedown_contact),
            )

    def revoke(self, user: AppUser | None, consent_id: str, reason: str) -> ConsentRecord:
        user = require(user, "revoke")
        if not (consent_id or "").strip():
            raise UsageError("choose the consent to revoke")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            return registry.revoke(consent_id.strip(), reason=reason or "", operator=user.name)

    def erase(self, user: AppUser | None, identity: str, reason: str, *, confirmed: bool) -> Identity:
        user = require(user, "erase")
        if not (identity or "").strip():
            raise UsageError("choose the person to erase")
        if not confirmed:
            raise UsageError(
                "tick the confirmation box to erase",
                hint="erasure deletes the reference faces and revokes every consent; it cannot be undone",
            )
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            erase = getattr(registry, "erase", None)
            if erase is None:
                raise UsageError("erasing a person is not available in this version of the registry")
            person = registry.get_identity(identity)
            return erase(person.id, reason=reason or "", operator=user.name)

    # -- verify and audit ------------------------------------------------------------------------
    def verify(self, user: AppUser | None, path: Path | None, *, uploaded: bool = True) -> VerifyReport:
        """Read a file's disclosure back; ``uploaded`` files are held to the upload limits first."""
        require(user, "verify")
        if path is None:
            raise UsageError("drop a file to verify")
        from likeness.jobs.verify import verify_file
        from likeness.media.video import looks_like_video

        path = Path(path)
        if uploaded:
            self.check_upload(path, "video" if looks_like_video(path) else "image")
        report = verify_file(path, home=self.home)
        if not uploaded:
            return report
        # an upload is named by its file name only: no server paths in the report
        unreadable = report.disclosure.unreadable
        clean = dataclasses.replace(
            report.disclosure,
            path=Path(path.name),
            unreadable=self._without_paths(unreadable).replace(f"{path.parent}/", "") if unreadable else None,
        )
        return dataclasses.replace(report, file=Path(path.name), disclosure=clean)

    def models(self, user: AppUser | None) -> list[ModelLine]:
        """Every model file (``likeness models list``): present, hash state, licence, commercial use."""
        require(user, "view")
        from likeness.licences import recorded_licences
        from likeness.models import list_all

        records = recorded_licences(self.home)
        return [ModelLine(row, records.get(row.entry.name)) for row in list_all(self.home)]

    def check_ledger(self, user: AppUser | None) -> ChainReport:
        require(user, "audit")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            return registry.verify_ledger()

    def ledger(self, user: AppUser | None, kind: str | None = None) -> list[Entry]:
        require(user, "audit")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            return registry.ledger_entries(kind=kind or None)

    def export_ledger(self, user: AppUser | None, session: str | None) -> Path:
        """Write the whole ledger as JSON Lines (first line: the chain check) for download."""
        user = require(user, "audit")
        from likeness.consent.registry import Registry

        with Registry.open(self.home) as registry:
            report = registry.verify_ledger()
            entries = registry.ledger_entries()
        path = self.session_dir(user, session) / f"ledger-{_stamp()}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            out.write(json.dumps({"chain_check": report.to_dict(), "exported_by": user.name}) + "\n")
            for entry in entries:
                out.write(
                    json.dumps({**entry.to_dict(), "signature": entry.signature}, ensure_ascii=False) + "\n"
                )
        return path


def _decode(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))


def _pixel_area(jpeg: bytes) -> int:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(jpeg)) as image:
            return image.width * image.height
    except OSError:
        return 0


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _video_key(user: str, backend: str, job: VideoJob, crf: int, target_sha: str, source_sha: str) -> str:
    """What makes two video jobs the same job (the writer checks the rest when it resumes)."""
    facts = {
        "user": user,
        "backend": backend,
        "target": target_sha,
        "source": source_sha,
        "purpose": job.purpose,
        "faces": job.faces,
        "codec": job.codec,
        "crf": crf,
        **({"disclosure_profile": job.disclosure_profile} if job.disclosure_profile else {}),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _forget_unless_resumable(pending: Path, out: Path) -> None:
    """After a failed run: keep the pending job only while the writer kept its segments."""
    from likeness.disclosure.footage_sink import job_folder

    if not job_folder(out).exists():
        shutil.rmtree(pending, ignore_errors=True)


def _check_evidence(path: Path) -> Path:
    """The signed consent document must be a PDF, JPEG or PNG (checked by its bytes, not its name)."""
    with Path(path).open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise BadInput(
            f"{Path(path).name}: the consent document is empty (0 bytes)",
            hint="upload the signed form again (PDF, JPEG or PNG)",
        )
    if not any(head.startswith(magic) for magic in EVIDENCE_KINDS):
        raise BadInput(
            f"{Path(path).name}: the consent document is not a PDF, JPEG or PNG file",
            hint="scan or export the signed form as PDF, JPEG or PNG",
        )
    return Path(path)
