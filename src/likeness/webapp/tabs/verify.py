"""The Verify tab: drop any image or video to read its disclosure back (content credentials,
watermark, visible label, ledger record). API endpoint: ``/verify``."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from likeness.webapp import views
from likeness.webapp.tabs.handling import TabBase, TabParts, banner_and_json, help_block
from likeness.webapp.tabs.uploads import file_upload


class VerifyTab(TabBase):
    """Handler and layout of the Verify tab."""

    def verify(self, file: str | None, request: gr.Request):
        def done():
            report = self.studio.verify(self.user(request), Path(file) if file else None)
            return views.verify_banner(report), views.verify_json(report)

        return self.attempt(done, banner_and_json)

    def build(self) -> TabParts:
        with gr.Tab("Verify", id="verify"):
            help_block("verify")
            file = file_upload(label="Drop any file", elem_id="verify-file")
            banner = gr.HTML(elem_id="verify-result")
            with gr.Accordion("Details (JSON)", open=False):
                result = gr.JSON(label="verify result")
        file.upload(self.verify, file, [banner, result], api_name="verify", **self.heavy())
        return TabParts()
