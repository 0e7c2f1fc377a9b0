"""The Swap tab: the likeness source, the purpose, an image target with its face picker (or a video
target, from ``tabs.swap_video``), Swap / Cancel, and the before/after results.

API endpoints: ``/faces`` (the face picker), ``/swap`` and ``/swap_video``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from likeness.errors import LikenessError, UsageError
from likeness.webapp import views
from likeness.webapp.studio import SwapJob
from likeness.webapp.tabs.handling import (
    PRIVATE,
    TabBase,
    TabParts,
    help_block,
    profile_dropdown,
    stage_reporter,
)
from likeness.webapp.tabs.swap_video import VideoSwap
from likeness.webapp.tabs.uploads import image_upload


def face_index(value: str | int | float | None) -> int | None:
    """The face picker's value: ``None`` for every face, else the face number (0 = leftmost)."""
    if value is None or str(value).strip().lower() in ("", "all", "none", "-1"):
        return None
    text = str(value).strip().lstrip("#")
    try:
        return int(float(text))
    except ValueError:
        raise UsageError(
            f"face {value!r} is not a face number", hint="use 'all' or 0, 1, 2 … from the left"
        ) from None


class SwapTab(TabBase):
    """Handlers and layout of the Swap tab."""

    # -- who may be the source ----------------------------------------------------------------------
    def sources(self, purpose: str | None, target_kind: str | None, current: str | None, request: gr.Request):
        """Only people with a consent that could cover this purpose as the source are offered; the
        others are listed below the picker with the reason (the gate still decides at the job)."""
        user = self.user(request)
        media = "video" if target_kind == "video" else "image"
        try:
            offered, not_offered = self.studio.source_candidates(user, purpose, media)
        except LikenessError as error:
            return gr.update(choices=[], value=None), views.banner(
                "warn", "People", views.escape(error.reason)
            )
        choices = views.identity_choices(offered)
        keep = current if current in {value for _, value in choices} else None
        return gr.update(choices=choices, value=keep), views.source_note(not_offered, purpose)

    # -- face picker -------------------------------------------------------------------------------
    def faces(self, target: str | None, request: gr.Request):
        def done():
            found = self.studio.detect(self.user(request), Path(target) if target else None)
            gallery = [(f.thumb, f"#{f.index}") for f in found]
            choices = views.face_choices(len(found))
            note = views.faces_note(len(found)) if target else ""
            data = views.api_safe({"status": "done", "faces": [f.to_dict() for f in found]})
            return gallery, gr.update(choices=choices, value="all"), note, data

        def failed(error):
            no_faces = gr.update(choices=views.face_choices(0), value="all")
            return [], no_faces, views.error_banner(error), views.error_json(error)

        return self.attempt(done, failed)

    def faces_pending(self, target: str | None):
        note = views.banner("working", "Finding faces…") if target else ""
        return [], gr.update(choices=views.face_choices(0), value="all"), note

    def pick_face(self, evt: gr.SelectData):
        return str(evt.index)

    # -- the job -----------------------------------------------------------------------------------
    def pending(self):
        body = (
            "<p>Checking consent, swapping, labelling and watermarking. "
            "Cancel stops it before anything is written.</p>"
        )
        working = views.banner("working", "Working…", body, tag="job-image")
        return working, None, None, None, gr.Column(visible=False)

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

    def cancelled(self, current: str | None):
        """After Cancel: say so, unless the job had already finished and shows its result."""
        if current and "lk-job-video" in current:
            return views.video_cancelled()
        if current and "lk-working" in current:
            return views.banner(
                "warn", "Cancelled", "<p>The swap was stopped; nothing was written or recorded.</p>"
            )
        return current

    async def swap(
        self,
        source_kind: str,
        identity: str | None,
        source_photo: str | None,
        target: str | None,
        purpose: str | None,
        face: str | None,
        request: gr.Request,
        profile: str | None = None,
        progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress tracker
    ):
        """Run the gated, disclosed swap in a worker thread; a cancel stops it before anything is written."""
        user = self.user(request)
        cancel = threading.Event()  # the worker stops at its next stage, before anything is sealed
        report = stage_reporter(progress)

        def run():
            job = SwapJob(
                source_kind=source_kind or "identity",
                target=Path(target) if target else None,
                purpose=purpose or "",
                identity=identity,
                source_photo=Path(source_photo) if source_photo else None,
                face_index=face_index(face),
                disclosure_profile=profile or None,
            )
            result = self.studio.swap(
                user, request.session_hash, job, progress=report, cancelled=cancel.is_set
            )
            report("check", 0.95)
            verified = self.studio.verify(user, result.outcome.output, uploaded=False)
            output = str(result.outcome.output)
            banner = views.swap_banner(result, verified)
            return banner, str(result.target), output, output, views.swap_json(result, verified)

        def failed(error):
            return views.error_banner(error), None, None, None, views.error_json(error)

        return await self.attempt_in_thread(run, failed, cancel=cancel, what="swap", user=user)

    # -- layout ------------------------------------------------------------------------------------
    def build(self, purpose_choices: list[tuple[str, str]]) -> TabParts:
        video = VideoSwap(
            self.studio, swap_concurrency=self.swap_concurrency, video_concurrency=self.video_concurrency
        )
        with gr.Tab("Swap", id="swap"):
            help_block("swap")
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
                    source_note = gr.HTML(views.source_note([], None), elem_id="swap-identity-note")
                    source_photo = image_upload(
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
                    profile = profile_dropdown(self.studio, "swap-profile")
                with gr.Column(scale=2):
                    with gr.Column(visible=True) as image_inputs:
                        target = image_upload(
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
                    video_inputs = video.build_inputs()
            with gr.Row():
                swap_button = gr.Button("Swap", variant="primary", elem_id="swap-run", scale=3)
                video_button = gr.Button(
                    "Swap video", variant="primary", elem_id="swap-video-run", scale=3, visible=False
                )
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="swap-cancel", scale=1)
            banner = gr.HTML(elem_id="swap-result")
            with gr.Column(visible=False) as results_panel:
                with gr.Row(equal_height=True):
                    before_image = gr.Image(
                        label="Before", type="filepath", interactive=False, elem_id="swap-before", height=460
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
            video_results = video.build_results()
            with gr.Accordion("Details (JSON)", open=False):
                swap_json = gr.JSON(label="swap result", elem_id="swap-json")
                video_json = gr.JSON(label="video swap result", elem_id="swap-video-json")

        source_kind.change(
            lambda kind: (gr.update(visible=kind == "identity"), gr.update(visible=kind == "photo")),
            source_kind,
            [source_identity, source_photo],
            **PRIVATE,
        )
        who = [purpose, target_kind, source_identity]
        for changed in (purpose.change, target_kind.change, source_identity.focus):
            changed(self.sources, who, [source_identity, source_note], **PRIVATE)
        faces_outputs = [faces_gallery, face_choice, faces_note]
        target.change(self.faces_pending, target, faces_outputs, **PRIVATE).then(
            self.faces, target, [*faces_outputs, faces_json], api_name="faces", **self.heavy()
        )
        faces_gallery.select(self.pick_face, None, face_choice, **PRIVATE)
        target_kind.change(
            self.target_kind,
            target_kind,
            [image_inputs, video_inputs.column, swap_button, video_button],
            **PRIVATE,
        )
        source = [source_kind, source_identity, source_photo]
        image_outputs = [banner, before_image, after_image, download]
        swap_event = swap_button.click(
            self.pending, None, [*image_outputs, video_results.panel], **PRIVATE
        ).then(
            self.swap,
            [*source, target, purpose, face_choice, profile],
            [*image_outputs, swap_json],
            api_name="swap",
            **self.heavy(),
        )
        swap_event.then(self.show_results, swap_json, results_panel, **PRIVATE)
        video_event = video.wire(
            video_button,
            source=source,
            purpose=purpose,
            profile=profile,
            inputs=video_inputs,
            results=video_results,
            banner=banner,
            details=video_json,
            image_panel=results_panel,
        )
        video_event.then(self.show_results, video_json, video_results.panel, **PRIVATE)
        cancel_button.click(self.cancelled, banner, banner, cancels=[swap_event, video_event], **PRIVATE)
        return TabParts()
