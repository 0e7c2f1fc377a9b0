"""The studio's page frame: title, the signed-in user, and the tabs (``likeness.webapp.tabs``).

Each tab builds itself and wires its own events; the frame wires what spans tabs: who is signed in
(``/whoami``: the header, a read-only note and greyed-out admin tabs for operators) and the person
and consent pickers of every tab, refreshed when the page loads and after every registry change.
Imported only when the app starts (it imports Gradio).
"""

from __future__ import annotations

import gradio as gr

from likeness.errors import LikenessError
from likeness.webapp import views
from likeness.webapp.tabs.audit import AuditTab
from likeness.webapp.tabs.generate import GenerateTab
from likeness.webapp.tabs.handling import PRIVATE, TabBase, TabParts, labelled, table
from likeness.webapp.tabs.people import PEOPLE_HEADERS, PeopleTab
from likeness.webapp.tabs.swap import SwapTab
from likeness.webapp.tabs.verify import VerifyTab

TITLE = (
    "# likeness studio\nConsented, disclosed face swaps — every face needs recorded consent; "
    "every output is labelled, watermarked and logged."
)


class StudioPage(TabBase):
    """Binds a ``Studio`` to the page: builds the Blocks from the tabs."""

    def whoami(self, request: gr.Request, parts: TabParts) -> list:
        user = self.user(request)
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
        notes = [note for _ in parts.role_notes]
        tabs = [gr.Tab(interactive=admin) for _ in parts.admin_tabs]  # greyed out (the server checks too)
        return [header, info, *notes, *tabs]

    def choices(self, request: gr.Request, parts: TabParts) -> list:
        """Fresh choices for every person and consent picker and the people tables (after any change)."""
        user = self.user(request)
        try:
            people = self.studio.identities(user)
            consents = self.studio.consents(user)
        except LikenessError:
            people, consents = [], []
        names = {p.id: p.name for p in people}
        person = gr.update(choices=views.identity_choices(people))
        consent = gr.update(choices=views.consent_choices(consents, names), value=None)
        rows = table(PEOPLE_HEADERS, views.identity_rows(people, consents))
        return (
            [person for _ in parts.person_pickers]
            + [consent for _ in parts.consent_pickers]
            + [rows for _ in parts.people_tables]
        )

    def build(self) -> gr.Blocks:
        policy = self.studio.policy()
        limits = {"swap_concurrency": self.swap_concurrency, "video_concurrency": self.video_concurrency}
        with gr.Blocks(
            title="likeness studio", analytics_enabled=False, delete_cache=(900, 6 * 3600)
        ) as demo:
            with gr.Row(equal_height=True):
                gr.Markdown(TITLE, elem_id="lk-title")
            header = gr.HTML(elem_id="lk-header")
            whoami_json = gr.JSON(visible=False, label="whoami")
            with gr.Tabs():
                parts = SwapTab(self.studio, **limits).build(labelled(policy.purposes))
                parts += GenerateTab(self.studio, **limits).build(labelled(policy.purposes))
                parts += PeopleTab(self.studio, **limits).build(policy)
                parts += VerifyTab(self.studio, **limits).build()
                parts += AuditTab(self.studio, **limits).build()

            def whoami(request: gr.Request):
                return self.whoami(request, parts)

            def choices(request: gr.Request):
                return self.choices(request, parts)

            pickers = [*parts.person_pickers, *parts.consent_pickers, *parts.people_tables]
            demo.load(
                whoami, None, [header, whoami_json, *parts.role_notes, *parts.admin_tabs], api_name="whoami"
            )
            demo.load(choices, None, pickers, **PRIVATE)
            for change in parts.changes:
                change.then(choices, None, pickers, **PRIVATE)
        return demo
