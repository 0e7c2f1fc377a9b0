"""The Erase sub-tab (administrators): delete a person's reference faces and revoke all their
consents, after a confirmation. API endpoint: ``/erase``."""

from __future__ import annotations

import gradio as gr

from likeness.webapp import views
from likeness.webapp.tabs.handling import TabBase, TabParts, banner_and_json, help_block


class EraseTab(TabBase):
    """Handler and layout of the Erase sub-tab."""

    def erase(self, identity: str | None, reason: str, confirmed: bool, request: gr.Request):
        def done():
            person = self.studio.erase(self.user(request), identity or "", reason, confirmed=bool(confirmed))
            return views.erase_banner(person), views.api_safe(
                {"status": "done", "identity": person.to_dict()}
            )

        return self.attempt(done, banner_and_json)

    def build(self) -> TabParts:
        with gr.Tab("Erase", id="erase") as tab:
            help_block("erase")
            identity = gr.Dropdown(
                choices=[], label="Person", allow_custom_value=True, elem_id="erase-identity"
            )
            reason = gr.Textbox(label="Reason (kept in the ledger)", elem_id="erase-reason")
            confirm = gr.Checkbox(
                label="I understand: this deletes the reference faces, revokes every consent",
                elem_id="erase-confirm",
            )
            button = gr.Button("Erase", variant="stop", elem_id="erase-run")
            banner = gr.HTML(elem_id="erase-result")
            result = gr.JSON(visible=False, label="erase result")
        erased = button.click(self.erase, [identity, reason, confirm], [banner, result], api_name="erase")
        return TabParts(person_pickers=[identity], admin_tabs=[tab], changes=[erased])
