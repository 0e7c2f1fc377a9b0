"""The studio's pages: four tabs wired to ``Studio``. Each event is also an API endpoint (``api_name``).

Imported only when the app starts (it imports Gradio). Handlers here do three things: find the
signed-in user from ``gr.Request``, call the studio (which checks the role), and turn the result
or the typed error into what the page shows. A refusal is a result, shown in plain words; only a
role violation raises ``gr.Error`` (an exception for API clients, a modal in the browser).
"""

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from likeness.errors import LikenessError
from likeness.users import AppUser, NotAllowed
from likeness.webapp import views
from likeness.webapp.studio import DEFAULT_CRF, GrantForm, Studio, SwapJob, VideoJob

log = logging.getLogger("likeness.webapp")

PEOPLE_HEADERS = ["Name", "Id", "Reference faces", "Enrolled", "Consent", "Active purposes"]
CONSENT_HEADERS = [
    "Consent",
    "Person",
    "Status",
    "Purposes",
    "Roles",
    "Media",
    "From",
    "Until",
    "Capacity",
    "Uses",
]
CONSENT_WIDTHS = ["13%", "10%", "7%", "9%", "9%", "8%", "8%", "8%", "9%", "19%"]
OUTPUT_HEADERS = ["Output id", "Made (UTC)", "Purpose", "Operator", "Consents", "File"]
OUTPUT_WIDTHS = ["15%", "14%", "9%", "8%", "28%", "26%"]
CHECK_HEADERS = ["Photo", "Faces", "Face size (px)", "Usable", "Note"]
LEDGER_HEADERS = ["#", "Time (UTC)", "Kind", "Actor", "Summary", "Hash"]
LEDGER_WIDTHS = ["5%", "15%", "8%", "8%", "50%", "14%"]
LEDGER_KINDS = [
    "all",
    "enrol",
    "grant",
    "revoke",
    "erasure",
    "output",
    "refusal",
    "calibration",
    "key_rotation",
]

HELP = {
    "swap": (
        "Put an enrolled person's likeness onto a face in a target image or video. Every face replaced must "
        "match an enrolled person whose consent covers this purpose, role (*source* for the likeness used, "
        "*target* for the face replaced) and medium; otherwise the job is refused and nothing is written. "
        "Each output carries a visible **AI-GENERATED** label, an invisible watermark with its output id, "
        "signed C2PA content credentials and an audit-ledger entry."
    ),
    "video": (
        "Faces are followed through the footage. **Consented only** replaces the faces identified as "
        "enrolled people with a consent to be replaced (role *target*, medium *video*) and leaves everyone "
        "else untouched (the report says why); **All** replaces every face or refuses the job. Audio is "
        "copied untouched. H.264 plays in the browser; FFV1 is lossless, for VFX (download it)."
    ),
    "people": (
        "Who is enrolled, what they consented to, and what was made under each consent. Administrators enrol "
        "people from reference photos, record consent with the full record, revoke it, or erase a person."
    ),
    "enrol": (
        "Upload one or more photos that each show **only this person**, sharp and roughly frontal. The check "
        "below runs as soon as photos are added: every photo needs exactly one face at least 80 px tall."
    ),
    "grant": (
        "Record a consent as the signed document states it: a **specific description of the uses**, the "
        "purposes, the roles, the media, a bounded period, who grants it (the person, a guardian, an "
        "estate, a union, or expired post-mortem rights), compensation, representation and a takedown "
        "contact. The "
        "consent policy checks the record before it is stored; the ledger keeps its hash."
    ),
    "revoke": "Revoking takes effect at once: new jobs, and jobs already past the gate, are refused.",
    "erase": (
        "Erasure deletes the person's reference faces and embeddings and revokes all their consents. The "
        "identity remains as a tombstone and the ledger keeps its entries (no images). It cannot be undone."
    ),
    "verify": (
        "Drop any image or video to see whether it is a disclosed likeness output: its C2PA content "
        "credentials (and whether they still hold), its invisible watermark, the visible label and this "
        "installation's ledger record. A video is read in time windows."
    ),
    "audit": (
        "Every enrolment, consent, revocation, refusal and output is an entry in a hash-chained, signed "
        "ledger. Check the chain, browse the entries, or export them as JSON Lines."
    ),
    "models": (
        "The model files this installation runs (`likeness models list`): whether each is present, its "
        "hash check, its licence and whether it may be used for commercial purposes. A job for a purpose "
        "that is not non-commercial is refused while it would use a non-commercial model without a "
        "recorded licence."
    ),
}


def _table(headers: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"headers": headers, "data": rows}


def _help(key: str) -> None:
    gr.Markdown(HELP[key], elem_classes=["lk-help"])


def _not_allowed(error: NotAllowed) -> gr.Error:
    text = error.reason + (f". {error.hint}" if error.hint else "")
    return gr.Error(text, title="Not allowed for your role", print_exception=False)


def _internal(error: Exception) -> LikenessError:
    log.exception("unexpected error in the app")
    return LikenessError(
        f"unexpected internal error: {type(error).__name__}: {error}",
        hint="nothing was written; the server log has the details — please report it",
    )


def attempt(
    call: Callable[[], Any],
    failed: Callable[[LikenessError], Any],
    tidy: Callable[[LikenessError], LikenessError] = lambda error: error,
) -> Any:
    """Run ``call``; a role violation becomes gr.Error, any other error becomes ``failed(tidy(error))``."""
    try:
        return call()
    except NotAllowed as error:
        raise _not_allowed(error) from None
    except LikenessError as error:
        return failed(tidy(error))
    except Exception as error:  # noqa: BLE001 - never a traceback on the page
        return failed(_internal(error))


def _face_index(value: str | int | float | None) -> int | None:
    if value is None or str(value).strip().lower() in ("", "all", "none", "-1"):
        return None
    text = str(value).strip().lstrip("#")
    try:
        return int(float(text))
    except ValueError:
        from likeness.errors import UsageError

        raise UsageError(
            f"face {value!r} is not a face number", hint="use 'all' or 0, 1, 2 … from the left"
        ) from None


def _paths(files: Sequence[Any] | None) -> list[Path]:
    return [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in (files or [])]


class StudioPage:
    """Binds a ``Studio`` to Gradio handlers and builds the Blocks."""

    def __init__(self, studio: Studio, *, swap_concurrency: int = 2, video_concurrency: int = 1) -> None:
        self.studio = studio
        self.swap_concurrency = swap_concurrency
        self.video_concurrency = video_concurrency

    def attempt(self, call: Callable[[], Any], failed: Callable[[LikenessError], Any]) -> Any:
        return attempt(call, failed, self.studio.public)

    def _user(self, request: gr.Request | None) -> AppUser | None:
        return self.studio.user(getattr(request, "username", None) if request is not None else None)

    # -- header and choices ------------------------------------------------------------------
    def whoami(self, request: gr.Request):
        user = self._user(request)
        header = views.user_line(
            user, auth_required=self.studio.auth_required, home=str(self.studio.home.root)
        )
        info = {"user": user.name, "role": user.role} if user else {"user": None, "role": None}
        admin = bool(user and user.can("grant"))
        note = (
            ""
            if admin
            else views.banner(
                "neutral", "Read-only for your role", "<p>Changing the registry needs an administrator.</p>"
            )
        )
        tabs = [
            gr.Tab(interactive=admin) for _ in range(4)
        ]  # greyed out for operators (the server checks too)
        return [header, info, note, *tabs]

    def choices(self, request: gr.Request):
        """Fresh choices for every person/consent picker and the people table (after any change)."""
        user = self._user(request)
        try:
            people = self.studio.identities(user)
            consents = self.studio.consents(user)
        except LikenessError:
            people, consents = [], []
        names = {p.id: p.name for p in people}
        people_choices = views.identity_choices(people)
        consent_choices = views.consent_choices(consents, names)
        table = _table(PEOPLE_HEADERS, views.identity_rows(people, consents))
        person = gr.update(choices=people_choices)
        return [person, person, person, person, gr.update(choices=consent_choices, value=None), table]

    # -- swap ----------------------------------------------------------------------------------
    def faces(self, target: str | None, request: gr.Request):
        def done():
            found = self.studio.detect(self._user(request), Path(target) if target else None)
            gallery = [(f.thumb, f"#{f.index}") for f in found]
            choices = views.face_choices(len(found))
            note = views.faces_note(len(found)) if target else ""
            data = views.api_safe({"status": "done", "faces": [f.to_dict() for f in found]})
            return gallery, gr.update(choices=choices, value="all"), note, data

        def failed(error: LikenessError):
            return (
                [],
                gr.update(choices=views.face_choices(0), value="all"),
                views.error_banner(error),
                views.error_json(error),
            )

        return self.attempt(done, failed)

    def faces_pending(self, target: str | None):
        note = views.banner("working", "Finding faces…") if target else ""
        return [], gr.update(choices=views.face_choices(0), value="all"), note

    def swap_pending(self):
        body = (
            "<p>Checking consent, swapping, labelling and watermarking. "
            "Cancel stops it before anything is written.</p>"
        )
        working = views.banner("working", "Working…", body, tag="job-image")
        return working, None, None, None, gr.Column(visible=False)

    def video_pending(self):
        return views.video_working(), None, None, _table(views.TRACK_HEADERS, []), gr.Column(visible=False)

    def show_results(self, result: dict | None):
        return gr.Column(visible=bool(result and result.get("status") == "done"))

    def target_kind(self, kind: str):
        image, video = kind != "video", kind == "video"
        return (
            gr.Column(visible=image),
            gr.Column(visible=video),
            gr.Button(visible=image),
            gr.Button(visible=video),
        )

    def swap_cancelled(self, current: str | None):
        """After Cancel: say so, unless the job had already finished and shows its result."""
        if current and "lk-job-video" in current:
            return views.video_cancelled()
        if current and "lk-working" in current:
            return views.banner(
                "warn", "Cancelled", "<p>The swap was stopped; nothing was written or recorded.</p>"
            )
        return current

    def pick_face(self, evt: gr.SelectData):
        return str(evt.index)

    async def swap(
        self,
        source_kind: str,
        identity: str | None,
        source_photo: str | None,
        target: str | None,
        purpose: str | None,
        face: str | None,
        request: gr.Request,
        progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress tracker
    ):
        """Run the gated, disclosed swap in a worker thread; a cancel stops it before anything is written."""
        user = self._user(request)
        cancel = threading.Event()

        def report(stage: str, fraction: float) -> None:
            progress(min(max(fraction, 0.0), 1.0), desc=views.stage_words(stage))

        def run():
            job = SwapJob(
                source_kind=source_kind or "identity",
                target=Path(target) if target else None,
                purpose=purpose or "",
                identity=identity,
                source_photo=Path(source_photo) if source_photo else None,
                face_index=_face_index(face),
            )
            result = self.studio.swap(
                user, request.session_hash, job, progress=report, cancelled=cancel.is_set
            )
            report("check", 0.95)
            verified = self.studio.verify(user, result.outcome.output, uploaded=False)
            return result, verified

        try:
            result, verified = await asyncio.to_thread(run)  # to_thread keeps Gradio's context for progress
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at its next stage, before anything is sealed
            log.info("swap cancelled by %s", getattr(user, "name", None))
            raise
        except NotAllowed as error:
            raise _not_allowed(error) from None
        except LikenessError as error:
            error = self.studio.public(error)
            return views.error_banner(error), None, None, None, views.error_json(error)
        except Exception as error:  # noqa: BLE001
            failure = _internal(error)
            return views.error_banner(failure), None, None, None, views.error_json(failure)
        output = str(result.outcome.output)
        return (
            views.swap_banner(result, verified),
            str(result.target),
            output,
            output,
            views.swap_json(result, verified),
        )

    async def swap_video(
        self,
        source_kind: str,
        identity: str | None,
        source_photo: str | None,
        target_video: str | None,
        purpose: str | None,
        faces: str | None,
        codec: str | None,
        crf: float | None,
        request: gr.Request,
        progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress tracker
    ):
        """Run the gated, disclosed video swap in a worker thread; Cancel stops it after the current frame
        (finished segments are kept: the same job resumes)."""
        user = self._user(request)
        cancel = threading.Event()
        empty = _table(views.TRACK_HEADERS, [])

        def report(stage: str, fraction: float) -> None:
            progress(min(max(fraction, 0.0), 1.0), desc=views.stage_words(stage))

        def run():
            job = VideoJob(
                source_kind=source_kind or "identity",
                target=Path(target_video) if target_video else None,
                purpose=purpose or "",
                identity=identity,
                source_photo=Path(source_photo) if source_photo else None,
                faces=faces or "consented",
                codec=codec or "h264",
                crf=DEFAULT_CRF if crf is None else int(crf),
            )
            result = self.studio.swap_video(user, request.session_hash, job, progress=report, cancel=cancel)
            report("check", 0.99)
            verified = self.studio.verify(user, result.outcome.output, uploaded=False)
            return result, verified

        try:
            result, verified = await asyncio.to_thread(run)
        except asyncio.CancelledError:
            cancel.set()  # the writer stops before its next frame and keeps the finished segments
            log.info("video swap cancelled by %s", getattr(user, "name", None))
            raise
        except NotAllowed as error:
            raise _not_allowed(error) from None
        except LikenessError as error:
            error = self.studio.public(error)
            return views.error_banner(error), None, None, empty, views.error_json(error)
        except Exception as error:  # noqa: BLE001
            failure = _internal(error)
            return views.error_banner(failure), None, None, empty, views.error_json(failure)
        output = str(result.outcome.output)
        tracks = _table(views.TRACK_HEADERS, views.track_rows(result.outcome.tracks, result.names))
        return (
            views.video_banner(result, verified),
            output if result.playable else None,
            output,
            tracks,
            views.video_json(result, verified),
        )

    # -- people & consent ------------------------------------------------------------------------
    def people(self, request: gr.Request):
        def done():
            user = self._user(request)
            people = self.studio.identities(user)
            consents = self.studio.consents(user)
            rows = views.identity_rows(people, consents)
            data = views.api_safe({"status": "done", "people": [p.to_dict() for p in people]})
            return _table(PEOPLE_HEADERS, rows), data

        return self.attempt(done, lambda e: (_table(PEOPLE_HEADERS, []), views.error_json(e)))

    def select_person(self, evt: gr.SelectData):
        row = evt.row_value or []
        return row[1] if len(row) > 1 else None

    def person(self, identity: str | None, request: gr.Request):
        def done():
            user = self._user(request)
            detail = self.studio.identity_detail(user, identity or "")
            names = {detail.identity.id: detail.identity.name}
            outputs = [o.to_dict() for o in detail.outputs]
            if not (user and user.can("view_installation")):  # file names, not the server's folders
                for output in outputs:
                    if output.get("path"):
                        output["path"] = Path(str(output["path"])).name
            data = {
                "status": "done",
                "identity": detail.identity.to_dict(),
                "consents": [c.to_dict() for c in detail.consents],
                "outputs": outputs,
            }
            return (
                views.person_banner(detail.identity, detail.consents, detail.outputs),
                detail.reference_faces,
                _table(CONSENT_HEADERS, views.consent_rows(detail.consents, names)),
                _table(OUTPUT_HEADERS, views.output_rows(detail.outputs)),
                views.api_safe(data),
            )

        def failed(error: LikenessError):
            empty = (_table(CONSENT_HEADERS, []), _table(OUTPUT_HEADERS, []))
            return views.error_banner(error), [], *empty, views.error_json(error)

        return self.attempt(done, failed)

    def check_photos(self, photos: list[str] | None, request: gr.Request):
        def done():
            checks = self.studio.check_photos(self._user(request), _paths(photos))
            gallery = [(c.thumb, f"{c.name} · {c.message}") for c in checks if c.thumb is not None]
            data = {
                "status": "done",
                "ok": bool(checks) and all(c.ok for c in checks),
                "photos": [c.to_dict() for c in checks],
            }
            table = _table(CHECK_HEADERS, views.check_rows(checks))
            return views.checks_banner(checks), gallery, table, views.api_safe(data)

        return self.attempt(
            done, lambda e: (views.error_banner(e), [], _table(CHECK_HEADERS, []), views.error_json(e))
        )

    def enrol(self, name: str, photos: list[str] | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        def report(stage: str, fraction: float) -> None:
            progress(fraction, desc=f"Enrolling: {stage}")

        def done():
            identity = self.studio.enrol(self._user(request), name, _paths(photos), progress=report)
            return views.enrol_banner(identity), views.api_safe(
                {"status": "done", "identity": identity.to_dict()}
            )

        return self.attempt(done, lambda e: (views.error_banner(e), views.error_json(e)))

    def grant(
        self,
        identity: str | None,
        purposes: list[str] | None,
        roles: list[str] | None,
        media: list[str] | None,
        valid_from: str,
        valid_until: str,
        uses: str,
        project: str,
        capacity: str | None,
        grantor: str,
        basis: str,
        date_of_birth: str,
        date_of_death: str,
        jurisdiction: str,
        compensation: str,
        representation: str,
        takedown_contact: str,
        evidence: str | None,
        request: gr.Request,
    ):
        def done():
            form = GrantForm(
                identity=identity or "",
                purposes=purposes or [],
                roles=roles or [],
                media=media or [],
                valid_from=valid_from or "",
                valid_until=valid_until or "",
                uses=uses or "",
                project=project or "",
                capacity=capacity or "self",
                grantor=grantor or "",
                basis=basis or "",
                date_of_birth=date_of_birth or "",
                date_of_death=date_of_death or "",
                jurisdiction=jurisdiction or "",
                compensation=compensation or "",
                representation=representation or "",
                takedown_contact=takedown_contact or "",
                evidence=Path(evidence) if evidence else None,
            )
            user = self._user(request)
            record = self.studio.grant(user, form)
            name = self.studio.identity_detail(user, record.identity_id).identity.name
            return views.consent_banner(record, name, "granted"), views.api_safe(
                {"status": "done", "consent": record.to_dict()}
            )

        return self.attempt(done, lambda e: (views.error_banner(e), views.error_json(e)))

    def revoke(self, consent_id: str | None, reason: str, request: gr.Request):
        def done():
            user = self._user(request)
            record = self.studio.revoke(user, consent_id or "", reason)
            name = self.studio.identity_detail(user, record.identity_id).identity.name
            return views.consent_banner(record, name, "revoked"), views.api_safe(
                {"status": "done", "consent": record.to_dict()}
            )

        return self.attempt(done, lambda e: (views.error_banner(e), views.error_json(e)))

    def erase(self, identity: str | None, reason: str, confirmed: bool, request: gr.Request):
        def done():
            person = self.studio.erase(self._user(request), identity or "", reason, confirmed=bool(confirmed))
            return views.erase_banner(person), views.api_safe(
                {"status": "done", "identity": person.to_dict()}
            )

        return self.attempt(done, lambda e: (views.error_banner(e), views.error_json(e)))

    # -- verify and audit ------------------------------------------------------------------------
    def verify(self, file: str | None, request: gr.Request):
        def done():
            report = self.studio.verify(self._user(request), Path(file) if file else None)
            return views.verify_banner(report), views.verify_json(report)

        return self.attempt(done, lambda e: (views.error_banner(e), views.error_json(e)))

    def check_ledger(self, request: gr.Request):
        def done():
            report = self.studio.check_ledger(self._user(request))
            return views.chain_banner(report), views.api_safe({"status": "done", **report.to_dict()})

        return self.attempt(done, lambda e: (views.error_banner(e), views.error_json(e)))

    def ledger(self, kind: str | None, limit: float | None, request: gr.Request):
        def done():
            chosen = None if kind in (None, "", "all") else kind
            entries = self.studio.ledger(self._user(request), chosen)
            count = int(limit or 200)
            rows = views.ledger_rows(entries, count)
            data = {
                "status": "done",
                "total": len(entries),
                "entries": [e.to_dict() for e in entries[-count:]],
            }
            return _table(LEDGER_HEADERS, rows), views.api_safe(data)

        return self.attempt(done, lambda e: (_table(LEDGER_HEADERS, []), views.error_json(e)))

    def export_ledger(self, request: gr.Request):
        def done():
            path = self.studio.export_ledger(self._user(request), request.session_hash)
            notice = views.banner("ok", "Ledger exported", f"<p>{path.name}: download it below.</p>")
            return str(path), notice

        return self.attempt(done, lambda e: (None, views.error_banner(e)))

    def models(self, request: gr.Request):
        def done():
            user = self._user(request)
            lines = self.studio.models(user)
            full = bool(user and user.can("view_installation"))
            return (
                views.models_banner(lines),
                _table(views.MODEL_HEADERS, views.model_rows(lines)),
                views.models_json(lines, full_paths=full),
            )

        return self.attempt(
            done, lambda e: (views.error_banner(e), _table(views.MODEL_HEADERS, []), views.error_json(e))
        )

    # -- layout ----------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        policy = self.studio.policy()
        purpose_choices = [(f"{name} — {text}", name) for name, text in policy.purposes.items()]
        role_choices = [(f"{name} — {text}", name) for name, text in policy.roles.items()]
        media_choices = [(f"{name} — {text}", name) for name, text in policy.media.items()]
        capacity_choices = [
            (f"{name} — {rule.description}", name) for name, rule in policy.capacities.items()
        ]
        today = dt.datetime.now(dt.UTC).date()

        with gr.Blocks(
            title="likeness studio", analytics_enabled=False, delete_cache=(900, 6 * 3600)
        ) as demo:
            with gr.Row(equal_height=True):
                gr.Markdown(
                    "# likeness studio\nConsented, disclosed face swaps — every face needs recorded consent; "
                    "every output is labelled, watermarked and logged.",
                    elem_id="lk-title",
                )
            header = gr.HTML(elem_id="lk-header")
            whoami_json = gr.JSON(visible=False, label="whoami")

            with gr.Tabs():
                # ---------------------------------------------------------------- Swap
                with gr.Tab("Swap", id="swap"):
                    _help("swap")
                    with gr.Row():
                        with gr.Column(scale=1):
                            source_kind = gr.Radio(
                                [("Enrolled person", "identity"), ("Photo", "photo")],
                                value="identity",
                                label="Likeness from",
                            )
                            source_identity = gr.Dropdown(
                                choices=[],
                                label="Enrolled person (source)",
                                allow_custom_value=True,
                                elem_id="swap-identity",
                            )
                            source_photo = gr.Image(
                                type="filepath",
                                image_mode=None,
                                sources=["upload"],
                                label="Source photo (one face)",
                                visible=False,
                                height=240,
                                elem_id="swap-source-photo",
                            )
                            purpose = gr.Dropdown(
                                purpose_choices, label="Purpose", value=None, elem_id="swap-purpose"
                            )
                            target_kind = gr.Radio(
                                [("Image", "image"), ("Video", "video")],
                                value="image",
                                label="Target",
                                elem_id="swap-target-kind",
                            )
                        with gr.Column(scale=2):
                            with gr.Column(visible=True) as image_inputs:
                                target = gr.Image(
                                    type="filepath",
                                    image_mode=None,
                                    sources=["upload"],
                                    label="Target image",
                                    height=300,
                                    elem_id="swap-target",
                                )
                                faces_note = gr.HTML(elem_id="swap-faces-note")
                                faces_gallery = gr.Gallery(
                                    label="Faces in the target — click one to replace only that face",
                                    columns=6,
                                    height=180,
                                    allow_preview=False,
                                    fit_columns=False,
                                    object_fit="contain",
                                    elem_id="swap-faces",
                                )
                                face_choice = gr.Dropdown(
                                    views.face_choices(0),
                                    value="all",
                                    label="Face to replace",
                                    allow_custom_value=True,
                                    elem_id="swap-face",
                                )
                                faces_json = gr.JSON(visible=False, label="faces")
                            with gr.Column(visible=False) as video_inputs:
                                target_video = gr.Video(
                                    sources=["upload"],
                                    label=(
                                        f"Target video (up to {self.studio.limits.video_mb} MB and "
                                        f"{self.studio.limits.video_seconds:.0f} s)"
                                    ),
                                    height=300,
                                    include_audio=True,
                                    elem_id="swap-target-video",
                                )
                                _help("video")
                                with gr.Row(equal_height=True):
                                    video_faces = gr.Radio(
                                        [("Consented faces only", "consented"), ("All faces", "all")],
                                        value="consented",
                                        label="Faces to replace",
                                        elem_id="swap-video-faces",
                                    )
                                    video_codec = gr.Radio(
                                        [("H.264", "h264"), ("FFV1 lossless", "ffv1")],
                                        value="h264",
                                        label="Codec",
                                        elem_id="swap-video-codec",
                                    )
                                video_crf = gr.Slider(
                                    0,
                                    51,
                                    value=DEFAULT_CRF,
                                    step=1,
                                    label="H.264 quality (CRF; lower is better, 18 ≈ visually lossless)",
                                    elem_id="swap-video-crf",
                                )
                    with gr.Row():
                        swap_button = gr.Button("Swap", variant="primary", elem_id="swap-run", scale=3)
                        video_button = gr.Button(
                            "Swap video", variant="primary", elem_id="swap-video-run", scale=3, visible=False
                        )
                        cancel_button = gr.Button("Cancel", variant="stop", elem_id="swap-cancel", scale=1)
                    swap_banner = gr.HTML(elem_id="swap-result")
                    with gr.Column(visible=False) as results_panel:
                        with gr.Row(equal_height=True):
                            before_image = gr.Image(
                                label="Before",
                                type="filepath",
                                interactive=False,
                                elem_id="swap-before",
                                height=460,
                            )
                            after_image = gr.Image(
                                label="After: the disclosed output",
                                type="filepath",
                                interactive=False,
                                elem_id="swap-after",
                                height=460,
                            )
                        download = gr.File(
                            label="Disclosed output (download)", interactive=False, elem_id="swap-download"
                        )
                    with gr.Column(visible=False) as video_panel:
                        with gr.Row(equal_height=False):
                            video_player = gr.Video(
                                label="The disclosed output",
                                interactive=False,
                                height=420,
                                elem_id="swap-video-out",
                                scale=3,
                            )
                            video_download = gr.File(
                                label="Disclosed video (download)",
                                interactive=False,
                                elem_id="swap-video-download",
                                scale=2,
                            )
                        tracks_table = gr.Dataframe(
                            headers=views.TRACK_HEADERS,
                            column_widths=views.TRACK_WIDTHS,
                            label="Faces followed through the footage",
                            interactive=False,
                            wrap=True,
                            elem_id="swap-tracks",
                        )
                    with gr.Accordion("Details (JSON)", open=False):
                        swap_json = gr.JSON(label="swap result", elem_id="swap-json")
                        video_json = gr.JSON(label="video swap result", elem_id="swap-video-json")

                # ---------------------------------------------------------------- People & consent
                with gr.Tab("People & consent", id="people"):
                    _help("people")
                    role_note = gr.HTML()
                    with gr.Tabs():
                        with gr.Tab("People", id="people-list"):
                            people_table = gr.Dataframe(
                                headers=PEOPLE_HEADERS, interactive=False, wrap=True, elem_id="people-table"
                            )
                            with gr.Row():
                                person_pick = gr.Dropdown(
                                    choices=[],
                                    label="Person",
                                    allow_custom_value=True,
                                    elem_id="person-pick",
                                    scale=3,
                                )
                                refresh_button = gr.Button("Refresh", elem_id="people-refresh", scale=1)
                            people_json = gr.JSON(visible=False, label="people")
                            person_banner = gr.HTML(elem_id="person-banner")
                            person_faces = gr.Gallery(
                                label="Reference faces (administrators only)",
                                columns=8,
                                height=140,
                                allow_preview=False,
                                fit_columns=False,
                            )
                            gr.Markdown("**Consents**")
                            person_consents = gr.Dataframe(
                                headers=CONSENT_HEADERS,
                                column_widths=CONSENT_WIDTHS,
                                interactive=False,
                                wrap=True,
                                elem_id="person-consents",
                            )
                            gr.Markdown("**Outputs made under these consents**")
                            person_outputs = gr.Dataframe(
                                headers=OUTPUT_HEADERS,
                                column_widths=OUTPUT_WIDTHS,
                                interactive=False,
                                wrap=True,
                                elem_id="person-outputs",
                            )
                            person_json = gr.JSON(visible=False, label="person")
                        with gr.Tab("Enrol", id="enrol") as enrol_tab:
                            _help("enrol")
                            enrol_name = gr.Textbox(label="Full name", elem_id="enrol-name")
                            enrol_photos = gr.File(
                                label="Reference photos",
                                file_count="multiple",
                                file_types=["image"],
                                type="filepath",
                                elem_id="enrol-photos",
                            )
                            check_banner = gr.HTML(elem_id="enrol-check")
                            check_gallery = gr.Gallery(
                                label="Faces found",
                                columns=8,
                                height=140,
                                allow_preview=False,
                                fit_columns=False,
                            )
                            check_table = gr.Dataframe(headers=CHECK_HEADERS, interactive=False, wrap=True)
                            check_json = gr.JSON(visible=False, label="photo check")
                            enrol_button = gr.Button("Enrol", variant="primary", elem_id="enrol-run")
                            enrol_banner = gr.HTML(elem_id="enrol-result")
                            enrol_json = gr.JSON(visible=False, label="enrol result")
                        with gr.Tab("Grant consent", id="grant") as grant_tab:
                            _help("grant")
                            with gr.Row():
                                g_identity = gr.Dropdown(
                                    choices=[],
                                    label="Person",
                                    allow_custom_value=True,
                                    elem_id="grant-identity",
                                )
                                g_capacity = gr.Dropdown(
                                    capacity_choices,
                                    value="self",
                                    label="Who grants (capacity)",
                                    elem_id="grant-capacity",
                                )
                            g_purposes = gr.CheckboxGroup(
                                purpose_choices, label="Purposes", elem_id="grant-purposes"
                            )
                            with gr.Row():
                                g_roles = gr.CheckboxGroup(role_choices, label="Roles", elem_id="grant-roles")
                                g_media = gr.CheckboxGroup(
                                    media_choices, value=["image"], label="Media", elem_id="grant-media"
                                )
                            g_uses = gr.Textbox(
                                label="Specific description of the intended uses",
                                lines=3,
                                elem_id="grant-uses",
                                placeholder="e.g. stunt double for J. Doe, scenes 12-14 of 'Northern Light'",
                            )
                            with gr.Row():
                                g_from = gr.Textbox(
                                    label="Valid from (YYYY-MM-DD)",
                                    value=today.isoformat(),
                                    elem_id="grant-from",
                                )
                                g_until = gr.Textbox(label="Valid until (YYYY-MM-DD)", elem_id="grant-until")
                                g_project = gr.Textbox(label="Project / production", elem_id="grant-project")
                            with gr.Row():
                                g_grantor = gr.Textbox(
                                    label="Grantor (if not the person)", elem_id="grant-grantor"
                                )
                                g_jurisdiction = gr.Textbox(
                                    label="Jurisdiction (e.g. US-CA)", elem_id="grant-jurisdiction"
                                )
                            with gr.Row():
                                g_dob = gr.Textbox(label="Date of birth (minors)", elem_id="grant-dob")
                                g_dod = gr.Textbox(
                                    label="Date of death (estates, expired rights)", elem_id="grant-dod"
                                )
                            g_basis = gr.Textbox(
                                label="Legal basis (e.g. why post-mortem rights expired)",
                                elem_id="grant-basis",
                            )
                            with gr.Row():
                                g_compensation = gr.Textbox(
                                    label="Compensation terms", elem_id="grant-compensation"
                                )
                                g_representation = gr.Textbox(
                                    label="Representation (counsel / union)", elem_id="grant-representation"
                                )
                                g_takedown = gr.Textbox(label="Takedown contact", elem_id="grant-takedown")
                            g_evidence = gr.File(
                                label="Signed consent document (PDF, JPEG or PNG)",
                                file_types=[".pdf", ".jpg", ".jpeg", ".png"],
                                type="filepath",
                                elem_id="grant-evidence",
                            )
                            grant_button = gr.Button("Record consent", variant="primary", elem_id="grant-run")
                            grant_banner = gr.HTML(elem_id="grant-result")
                            grant_json = gr.JSON(visible=False, label="grant result")
                        with gr.Tab("Revoke", id="revoke") as revoke_tab:
                            _help("revoke")
                            r_consent = gr.Dropdown(
                                choices=[], label="Consent", allow_custom_value=True, elem_id="revoke-consent"
                            )
                            r_reason = gr.Textbox(
                                label="Reason (kept in the ledger)", elem_id="revoke-reason"
                            )
                            revoke_button = gr.Button("Revoke", variant="stop", elem_id="revoke-run")
                            revoke_banner = gr.HTML(elem_id="revoke-result")
                            revoke_json = gr.JSON(visible=False, label="revoke result")
                        with gr.Tab("Erase", id="erase") as erase_tab:
                            _help("erase")
                            e_identity = gr.Dropdown(
                                choices=[], label="Person", allow_custom_value=True, elem_id="erase-identity"
                            )
                            e_reason = gr.Textbox(label="Reason (kept in the ledger)", elem_id="erase-reason")
                            e_confirm = gr.Checkbox(
                                label="I understand: this deletes the reference faces, revokes every consent",
                                elem_id="erase-confirm",
                            )
                            erase_button = gr.Button("Erase", variant="stop", elem_id="erase-run")
                            erase_banner = gr.HTML(elem_id="erase-result")
                            erase_json = gr.JSON(visible=False, label="erase result")

                # ---------------------------------------------------------------- Verify
                with gr.Tab("Verify", id="verify"):
                    _help("verify")
                    v_file = gr.File(label="Drop any file", type="filepath", elem_id="verify-file")
                    v_banner = gr.HTML(elem_id="verify-result")
                    with gr.Accordion("Details (JSON)", open=False):
                        v_json = gr.JSON(label="verify result")

                # ---------------------------------------------------------------- Audit
                with gr.Tab("Audit", id="audit"):
                    _help("audit")
                    with gr.Row():
                        chain_button = gr.Button("Check the chain", variant="primary", elem_id="audit-check")
                        a_kind = gr.Dropdown(LEDGER_KINDS, value="all", label="Kind", elem_id="audit-kind")
                        a_limit = gr.Number(
                            value=200, precision=0, minimum=1, maximum=100000, label="Newest entries"
                        )
                        load_button = gr.Button("Show entries", elem_id="audit-load")
                        export_button = gr.Button("Export (JSON Lines)", elem_id="audit-export")
                    chain_banner = gr.HTML(elem_id="audit-result")
                    chain_json = gr.JSON(visible=False, label="chain check")
                    ledger_table = gr.Dataframe(
                        headers=LEDGER_HEADERS,
                        column_widths=LEDGER_WIDTHS,
                        interactive=False,
                        wrap=True,
                        elem_id="audit-table",
                    )
                    ledger_json = gr.JSON(visible=False, label="ledger")
                    export_file = gr.File(
                        label="Exported ledger", interactive=False, visible=False, elem_id="audit-file"
                    )
                    with gr.Accordion(
                        "Models and licences", open=False, elem_id="audit-models"
                    ) as models_box:
                        _help("models")
                        models_button = gr.Button("Check the model files", elem_id="models-check")
                        models_banner = gr.HTML(elem_id="models-result")
                        models_table = gr.Dataframe(
                            headers=views.MODEL_HEADERS,
                            column_widths=views.MODEL_WIDTHS,
                            interactive=False,
                            wrap=True,
                            max_height=900,
                            elem_id="models-table",
                        )
                        models_json = gr.JSON(visible=False, label="models")

            # ---------------------------------------------------------------- events
            pickers = [source_identity, g_identity, e_identity, person_pick, r_consent, people_table]
            admin_tabs = [enrol_tab, grant_tab, revoke_tab, erase_tab]
            private: dict[str, Any] = {"api_visibility": "private", "queue": False}

            demo.load(self.whoami, None, [header, whoami_json, role_note, *admin_tabs], api_name="whoami")
            demo.load(self.choices, None, pickers, **private)

            source_kind.change(
                lambda kind: (gr.update(visible=kind == "identity"), gr.update(visible=kind == "photo")),
                source_kind,
                [source_identity, source_photo],
                **private,
            )
            target.change(
                self.faces_pending, target, [faces_gallery, face_choice, faces_note], **private
            ).then(
                self.faces,
                target,
                [faces_gallery, face_choice, faces_note, faces_json],
                api_name="faces",
                concurrency_id="heavy",
                concurrency_limit=self.swap_concurrency,
            )
            faces_gallery.select(self.pick_face, None, face_choice, **private)
            target_kind.change(
                self.target_kind,
                target_kind,
                [image_inputs, video_inputs, swap_button, video_button],
                **private,
            )
            video_codec.change(
                lambda codec: gr.Slider(interactive=codec == "h264"), video_codec, video_crf, **private
            )
            swap_event = swap_button.click(
                self.swap_pending,
                None,
                [swap_banner, before_image, after_image, download, video_panel],
                **private,
            ).then(
                self.swap,
                [source_kind, source_identity, source_photo, target, purpose, face_choice],
                [swap_banner, before_image, after_image, download, swap_json],
                api_name="swap",
                concurrency_id="heavy",
                concurrency_limit=self.swap_concurrency,
            )
            swap_event.then(self.show_results, swap_json, results_panel, **private)
            video_event = video_button.click(
                self.video_pending,
                None,
                [swap_banner, video_player, video_download, tracks_table, results_panel],
                **private,
            ).then(
                self.swap_video,
                [
                    source_kind,
                    source_identity,
                    source_photo,
                    target_video,
                    purpose,
                    video_faces,
                    video_codec,
                    video_crf,
                ],
                [swap_banner, video_player, video_download, tracks_table, video_json],
                api_name="swap_video",
                concurrency_id="video",
                concurrency_limit=self.video_concurrency,
            )
            video_event.then(self.show_results, video_json, video_panel, **private)
            cancel_button.click(
                self.swap_cancelled, swap_banner, swap_banner, cancels=[swap_event, video_event], **private
            )

            refresh_button.click(self.people, None, [people_table, people_json], api_name="people")
            refresh_button.click(self.choices, None, pickers, **private)
            people_table.select(self.select_person, None, person_pick, **private)
            person_pick.change(
                self.person,
                person_pick,
                [person_banner, person_faces, person_consents, person_outputs, person_json],
                api_name="person",
            )
            enrol_photos.change(
                self.check_photos,
                enrol_photos,
                [check_banner, check_gallery, check_table, check_json],
                api_name="check_photos",
                concurrency_id="heavy",
                concurrency_limit=self.swap_concurrency,
            )
            enrol_button.click(
                self.enrol,
                [enrol_name, enrol_photos],
                [enrol_banner, enrol_json],
                api_name="enrol",
                concurrency_id="heavy",
                concurrency_limit=self.swap_concurrency,
            ).then(self.choices, None, pickers, **private)
            grant_button.click(
                self.grant,
                [
                    g_identity,
                    g_purposes,
                    g_roles,
                    g_media,
                    g_from,
                    g_until,
                    g_uses,
                    g_project,
                    g_capacity,
                    g_grantor,
                    g_basis,
                    g_dob,
                    g_dod,
                    g_jurisdiction,
                    g_compensation,
                    g_representation,
                    g_takedown,
                    g_evidence,
                ],
                [grant_banner, grant_json],
                api_name="grant",
            ).then(self.choices, None, pickers, **private)
            revoke_button.click(
                self.revoke, [r_consent, r_reason], [revoke_banner, revoke_json], api_name="revoke"
            ).then(self.choices, None, pickers, **private)
            erase_button.click(
                self.erase, [e_identity, e_reason, e_confirm], [erase_banner, erase_json], api_name="erase"
            ).then(self.choices, None, pickers, **private)

            v_file.upload(
                self.verify,
                v_file,
                [v_banner, v_json],
                api_name="verify",
                concurrency_id="heavy",
                concurrency_limit=self.swap_concurrency,
            )
            chain_button.click(self.check_ledger, None, [chain_banner, chain_json], api_name="audit_check")
            load_button.click(self.ledger, [a_kind, a_limit], [ledger_table, ledger_json], api_name="ledger")
            export_button.click(
                self.export_ledger, None, [export_file, chain_banner], api_name="export_ledger"
            ).then(lambda path: gr.File(visible=bool(path)), export_file, export_file, **private)
            model_outputs = [models_banner, models_table, models_json]
            models_button.click(self.models, None, model_outputs, api_name="models")
            models_box.expand(self.models, None, model_outputs, **private)
        return demo
