"""The People & consent tab: who is enrolled and what they consented to (the People sub-tab, here),
and the administrators' sub-tabs Enrol (``tabs.enrol``), Grant consent and Revoke
(``tabs.consent``) and Erase (``tabs.erase``).

API endpoints: ``/people`` and ``/person`` (and those of the sub-tabs).
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from likeness.webapp import views
from likeness.webapp.tabs.consent import ConsentTabs
from likeness.webapp.tabs.enrol import EnrolTab
from likeness.webapp.tabs.erase import EraseTab
from likeness.webapp.tabs.handling import PRIVATE, TabBase, TabParts, help_block, table

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


class PeopleTab(TabBase):
    """Handlers and layout of the People & consent tab and its People sub-tab."""

    def people(self, request: gr.Request):
        def done():
            user = self.user(request)
            people = self.studio.identities(user)
            consents = self.studio.consents(user)
            rows = views.identity_rows(people, consents)
            data = views.api_safe({"status": "done", "people": [p.to_dict() for p in people]})
            return table(PEOPLE_HEADERS, rows), data

        return self.attempt(done, lambda e: (table(PEOPLE_HEADERS, []), views.error_json(e)))

    def select_person(self, evt: gr.SelectData):
        row = evt.row_value or []
        return row[1] if len(row) > 1 else None

    def person(self, identity: str | None, request: gr.Request):
        def done():
            user = self.user(request)
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
                table(CONSENT_HEADERS, views.consent_rows(detail.consents, names)),
                table(OUTPUT_HEADERS, views.output_rows(detail.outputs)),
                views.api_safe(data),
            )

        def failed(error):
            empty = (table(CONSENT_HEADERS, []), table(OUTPUT_HEADERS, []))
            return views.error_banner(error), [], *empty, views.error_json(error)

        return self.attempt(done, failed)

    # -- layout ------------------------------------------------------------------------------------
    def build(self, policy) -> TabParts:
        """``policy``: the consent policy, whose purposes, roles, media and capacities the forms offer."""
        limits = {"swap_concurrency": self.swap_concurrency, "video_concurrency": self.video_concurrency}
        with gr.Tab("People & consent", id="people"):
            help_block("people")
            role_note = gr.HTML()
            with gr.Tabs():
                parts = self._build_list()
                parts += EnrolTab(self.studio, **limits).build()
                parts += ConsentTabs(self.studio, **limits).build(policy)
                parts += EraseTab(self.studio, **limits).build()
        return parts + TabParts(role_notes=[role_note])

    def _build_list(self) -> TabParts:
        with gr.Tab("People", id="people-list"):
            people_table = gr.Dataframe(
                headers=PEOPLE_HEADERS, interactive=False, wrap=True, elem_id="people-table"
            )
            with gr.Row():
                person_pick = gr.Dropdown(
                    choices=[], label="Person", allow_custom_value=True, elem_id="person-pick", scale=3
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

        refreshed = refresh_button.click(self.people, None, [people_table, people_json], api_name="people")
        people_table.select(self.select_person, None, person_pick, **PRIVATE)
        person_pick.change(
            self.person,
            person_pick,
            [person_banner, person_faces, person_consents, person_outputs, person_json],
            api_name="person",
        )
        return TabParts(person_pickers=[person_pick], people_tables=[people_table], changes=[refreshed])
