"""What the app does. Every action checks the signed-in user's role first, on the server.

No Gradio here: the UI layer (``likeness.webapp.ui``) turns these calls into pages and the
typed errors into messages, so the same rules hold for the browser and for gradio_client.
Everything goes through ``likeness.pipeline`` and the registry's public API.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from likeness.errors import BadInput, LikenessError, UsageError
from likeness.home import Home
from likeness.users import AppUser, UserStore, require

if TYPE_CHECKING:
    from likeness.consent.records import ConsentRecord, Identity, OutputRecord
    from likeness.ledger import ChainReport, Entry
    from likeness.pipeline import SwapOutcome, VerifyReport

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

StageReport = Callable[[str, float], None]


class JobCancelled(LikenessError):
    """The user cancelled the job before anything was written."""

    exit_code = 1
    kind = "cancelled"


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


@dataclass(frozen=True)
class SwapResult:
    outcome: SwapOutcome
    target: Path
    source_name: str


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
    """The app's actions over one data home. Create one per app; it holds no per-user state."""

    def __init__(
        self,
        home: Home,
        users: UserStore,
        *,
        auth_required: bool,
        backend: str = "dlib",
        max_pixels: int = APP_MAX_PIXELS,
    ) -> None:
        self.home = home
        self.users = users
        self.auth_required = auth_required
        self.backend = backend
        self.max_pixels = max_pixels

    # -- folders ---------------------------------------------------------------------------
    @property
    def outputs_root(self) -> Path:
        """The only folder the app serves files from (besides Gradio's own upload cache)."""
        return self.home.root / "outputs"

    @property
    def work_root(self) -> Path:
        """Private scratch space (never served): decrypted reference crops used as a swap source."""
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

    # -- who is asking -----------------------------------------------------------------------
    def user(self, username: str | None) -> AppUser | None:
        """The app user behind a request. Without auth (localhost, no users) the local user is an admin."""
        if not self.auth_required:
            from likeness.pipeline import default_operator

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
        from likeness.pipeline import detect_faces

        picture, faces = detect_faces(
            Path(target), home=self.home, backend=self.backend, max_pixels=self.max_pixels
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
        raises :class:`JobCancelled` and writes nothing.
        """
        user = require(user, "swap")
        if job.target is None:
            raise UsageError("choose a target image (the picture whose face is replaced)")
        if not job.purpose:
            raise UsageError("choose the purpose of this output", hint="it must be covered by every consent")
        self.policy().require_known("purposes", [job.purpose])
        from likeness.pipeline import SwapRequest, swap_image

        target = Path(job.target)
        suffix = ".png" if target.suffix.lower() == ".png" else ".jpg"
        out = self.session_dir(user, session) / f"likeness-{_stamp()}-{secrets.token_hex(3)}{suffix}"

        def report(stage: str, fraction: float) -> None:
            if fraction < 1.0 and cancelled():
                raise JobCancelled("the swap was cancelled; nothing was written or recorded")
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
            )
            outcome = swap_image(request, home=self.home, progress=report)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return SwapResult(outcome=outcome, target=target, source_name=source_name)

    def _source(self, job: SwapJob, scratch: Path) -> tuple[Path, str]:
        """The source photo: uploaded, or an enrolled identity's best stored reference crop."""
        if job.source_kind == "photo":
            if job.source_photo is None:
                raise UsageError("upload a source photo, or choose an enrolled person as the source")
            return Path(job.source_photo), Path(job.source_photo).name
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
        from likeness.pipeline import detect_faces

        checks: list[PhotoCheck] = []
        for photo in photos:
            name = Path(photo).name
            try:
                picture, faces = detect_faces(
                    Path(photo), home=self.home, backend=self.backend, max_pixels=self.max_pixels
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
        from likeness.pipeline import EnrolRequest, enrol_identity

        request = EnrolRequest(
            name=name,
            photos=[Path(p) for p in photos],
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
        evidence = _check_evidence(form.evidence) if form.evidence is not None else None
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
    def verify(self, user: AppUser | None, path: Path | None) -> VerifyReport:
        require(user, "verify")
        if path is None:
            raise UsageError("drop a file to verify")
        from likeness.pipeline import verify_file

        return verify_file(Path(path), home=self.home)

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


def _check_evidence(path: Path) -> Path:
    """The signed consent document must be a PDF, JPEG or PNG (checked by its bytes, not its name)."""
    with Path(path).open("rb") as handle:
        head = handle.read(16)
    if not any(head.startswith(magic) for magic in EVIDENCE_KINDS):
        raise BadInput(
            f"{Path(path).name}: the consent document is not a PDF, JPEG or PNG file",
            hint="scan or export the signed form as PDF, JPEG or PNG",
        )
    return Path(path)
