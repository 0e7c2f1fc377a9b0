"""The Grant consent and Revoke sub-tabs (administrators): the full consent record form with its
signed document, and revocation. API endpoints: ``/grant`` and ``/revoke``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import gradio as gr

from likeness.webapp import views
from likeness.webapp.studio import GrantForm
from likeness.webapp.tabs.handling import TabBase, TabParts, banner_and_json, help_block, labelled
from likeness.webapp.tabs.uploads import file_upload


class ConsentTabs(TabBase):
    """Handlers and layout of the Grant consent and Revoke sub-tabs."""

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
            user = self.user(request)
            record = self.studio.grant(user, form)
            name = self.studio.identity_detail(user, record.identity_id).identity.name
            return views.consent_banner(record, name, "granted"), views.api_safe(
                {"status": "done", "consent": record.to_dict()}
            )

        return self.attempt(done, banner_and_json)

    def revoke(self, consent_id: str | None, reason: str, request: gr.Request):
        def done():
            user = self.user(request)
            record = self.studio.revoke(user, consent_id or "", reason)
            name = self.studio.identity_detail(user, record.identity_id).identity.name
            return views.consent_banner(record, name, "revoked"), views.api_safe(
                {"status": "done", "consent": record.to_dict()}
            )

        return self.attempt(done, banner_and_json)

    # -- layout ------------------------------------------------------------------------------------
    def build(self, policy) -> TabParts:
        """``policy``: the consent policy, whose purposes, roles, media and capacities the form offers."""
        return self._build_grant(policy) + self._build_revoke()

    def _build_grant(self, policy) -> TabParts:
        today = dt.datetime.now(dt.UTC).date()
        with gr.Tab("Grant consent", id="grant") as tab:
            help_block("grant")
            with gr.Row():
                identity = gr.Dropdown(
                    choices=[], label="Person", allow_custom_value=True, elem_id="grant-identity"
                )
                capacity = gr.Dropdown(
                    labelled(policy.capacities),
                    value="self",
                    label="Who grants (capacity)",
                    elem_id="grant-capacity",
                )
            purposes = gr.CheckboxGroup(labelled(policy.purposes), label="Purposes", elem_id="grant-purposes")
            with gr.Row():
                roles = gr.CheckboxGroup(labelled(policy.roles), label="Roles", elem_id="grant-roles")
                media = gr.CheckboxGroup(
                    labelled(policy.media), value=["image"], label="Media", elem_id="grant-media"
                )
            uses = gr.Textbox(
                label="Specific description of the intended uses",
                lines=3,
                elem_id="grant-uses",
                placeholder="e.g. stunt double for J. Doe, scenes 12-14 of 'Northern Light'",
            )
            with gr.Row():
                valid_from = gr.Textbox(
                    label="Valid from (YYYY-MM-DD)", value=today.isoformat(), elem_id="grant-from"
                )
                valid_until = gr.Textbox(label="Valid until (YYYY-MM-DD)", elem_id="grant-until")
                project = gr.Textbox(label="Project / production", elem_id="grant-project")
            with gr.Row():
                grantor = gr.Textbox(label="Grantor (if not the person)", elem_id="grant-grantor")
                jurisdiction = gr.Textbox(label="Jurisdiction (e.g. US-CA)", elem_id="grant-jurisdiction")
            with gr.Row():
                date_of_birth = gr.Textbox(label="Date of birth (minors)", elem_id="grant-dob")
                date_of_death = gr.Textbox(
                    label="Date of death (estates, expired rights)", elem_id="grant-dod"
                )
            basis = gr.Textbox(
                label="Legal basis (e.g. why post-mortem rights expired)", elem_id="grant-basis"
            )
            with gr.Row():
                compensation = gr.Textbox(label="Compensation terms", elem_id="grant-compensation")
                representation = gr.Textbox(
                    label="Representation (counsel / union)", elem_id="grant-representation"
                )
                takedown = gr.Textbox(label="Takedown contact", elem_id="grant-takedown")
            evidence = file_upload(
                label="Signed consent document (PDF, JPEG or PNG)",
                file_types=[".pdf", ".jpg", ".jpeg", ".png"],
                elem_id="grant-evidence",
            )
            button = gr.Button("Record consent", variant="primary", elem_id="grant-run")
            banner = gr.HTML(elem_id="grant-result")
            result = gr.JSON(visible=False, label="grant result")

        form = [identity, purposes, roles, media, valid_from, valid_until, uses, project, capacity, grantor]
        form += [basis, date_of_birth, date_of_death, jurisdiction, compensation, representation, takedown]
        granted = button.click(self.grant, [*form, evidence], [banner, result], api_name="grant")
        return TabParts(person_pickers=[identity], admin_tabs=[tab], changes=[granted])

    def _build_revoke(self) -> TabParts:
        with gr.Tab("Revoke", id="revoke") as tab:
            help_block("revoke")
            consent = gr.Dropdown(
                choices=[], label="Consent", allow_custom_value=True, elem_id="revoke-consent"
            )
            reason = gr.Textbox(label="Reason (kept in the ledger)", elem_id="revoke-reason")
            button = gr.Button("Revoke", variant="stop", elem_id="revoke-run")
            banner = gr.HTML(elem_id="revoke-result")
            result = gr.JSON(visible=False, label="revoke result")
        revoked = button.click(self.revoke, [consent, reason], [banner, result], api_name="revoke")
        return TabParts(consent_pickers=[consent], admin_tabs=[tab], changes=[revoked])
