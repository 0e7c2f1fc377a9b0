"""The Enrol sub-tab (administrators): reference photos, their quality check as soon as they are
added, and the enrolment. API endpoints: ``/check_photos`` and ``/enrol``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from likeness.webapp import views
from likeness.webapp.tabs.handling import TabBase, TabParts, banner_and_json, help_block, table
from likeness.webapp.tabs.uploads import file_upload

CHECK_HEADERS = ["Photo", "Faces", "Face size (px)", "Usable", "Note"]


def upload_paths(files: Sequence[Any] | None) -> list[Path]:
    return [Path(f if isinstance(f, str) else getattr(f, "name", f)) for f in (files or [])]


class EnrolTab(TabBase):
    """Handlers and layout of the Enrol sub-tab."""

    def check_photos(self, photos: list[str] | None, request: gr.Request):
        def done():
            checks = self.studio.check_photos(self.user(request), upload_paths(photos))
            gallery = [(c.thumb, f"{c.name} · {c.message}") for c in checks if c.thumb is not None]
            data = {
                "status": "done",
                "ok": bool(checks) and all(c.ok for c in checks),
                "photos": [c.to_dict() for c in checks],
            }
            rows = table(CHECK_HEADERS, views.check_rows(checks))
            return views.checks_banner(checks), gallery, rows, views.api_safe(data)

        return self.attempt(
            done, lambda e: (views.error_banner(e), [], table(CHECK_HEADERS, []), views.error_json(e))
        )

    def enrol(self, name: str, photos: list[str] | None, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        def report(stage: str, fraction: float) -> None:
            progress(fraction, desc=f"Enrolling: {stage}")

        def done():
            identity = self.studio.enrol(self.user(request), name, upload_paths(photos), progress=report)
            return views.enrol_banner(identity), views.api_safe(
                {"status": "done", "identity": identity.to_dict()}
            )

        return self.attempt(done, banner_and_json)

    def build(self) -> TabParts:
        with gr.Tab("Enrol", id="enrol") as tab:
            help_block("enrol")
            name = gr.Textbox(label="Full name", elem_id="enrol-name")
            photos = file_upload(
                label="Reference photos",
                file_count="multiple",
                file_types=["image"],
                elem_id="enrol-photos",
            )
            check_banner = gr.HTML(elem_id="enrol-check")
            check_gallery = gr.Gallery(
                label="Faces found", columns=8, height=140, allow_preview=False, fit_columns=False
            )
            check_table = gr.Dataframe(headers=CHECK_HEADERS, interactive=False, wrap=True)
            check_json = gr.JSON(visible=False, label="photo check")
            button = gr.Button("Enrol", variant="primary", elem_id="enrol-run")
            banner = gr.HTML(elem_id="enrol-result")
            result = gr.JSON(visible=False, label="enrol result")

        photos.change(
            self.check_photos,
            photos,
            [check_banner, check_gallery, check_table, check_json],
            api_name="check_photos",
            **self.heavy(),
        )
        enrolled = button.click(
            self.enrol, [name, photos], [banner, result], api_name="enrol", **self.heavy()
        )
        return TabParts(admin_tabs=[tab], changes=[enrolled])
