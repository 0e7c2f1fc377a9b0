"""The Audit tab: check the ledger's hash chain, browse and export its entries, and (in an
accordion) the model files with their hash state and licences. API endpoints: ``/audit_check``,
``/ledger``, ``/export_ledger`` and ``/models``."""

from __future__ import annotations

import gradio as gr

from likeness.webapp import views
from likeness.webapp.tabs.handling import PRIVATE, TabBase, TabParts, banner_and_json, help_block, table

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


class AuditTab(TabBase):
    """Handlers and layout of the Audit tab."""

    def check_ledger(self, request: gr.Request):
        def done():
            report = self.studio.check_ledger(self.user(request))
            return views.chain_banner(report), views.api_safe({"status": "done", **report.to_dict()})

        return self.attempt(done, banner_and_json)

    def ledger(self, kind: str | None, limit: float | None, request: gr.Request):
        def done():
            chosen = None if kind in (None, "", "all") else kind
            entries = self.studio.ledger(self.user(request), chosen)
            count = int(limit or 200)
            rows = views.ledger_rows(entries, count)
            data = {
                "status": "done",
                "total": len(entries),
                "entries": [e.to_dict() for e in entries[-count:]],
            }
            return table(LEDGER_HEADERS, rows), views.api_safe(data)

        return self.attempt(done, lambda e: (table(LEDGER_HEADERS, []), views.error_json(e)))

    def export_ledger(self, request: gr.Request):
        def done():
            path = self.studio.export_ledger(self.user(request), request.session_hash)
            notice = views.banner("ok", "Ledger exported", f"<p>{path.name}: download it below.</p>")
            return str(path), notice

        return self.attempt(done, lambda e: (None, views.error_banner(e)))

    def models(self, request: gr.Request):
        def done():
            user = self.user(request)
            lines = self.studio.models(user)
            full = bool(user and user.can("view_installation"))
            return (
                views.models_banner(lines),
                table(views.MODEL_HEADERS, views.model_rows(lines)),
                views.models_json(lines, full_paths=full),
            )

        return self.attempt(
            done, lambda e: (views.error_banner(e), table(views.MODEL_HEADERS, []), views.error_json(e))
        )

    # -- layout ------------------------------------------------------------------------------------
    def build(self) -> TabParts:
        with gr.Tab("Audit", id="audit"):
            help_block("audit")
            with gr.Row():
                chain_button = gr.Button("Check the chain", variant="primary", elem_id="audit-check")
                kind = gr.Dropdown(LEDGER_KINDS, value="all", label="Kind", elem_id="audit-kind")
                limit = gr.Number(value=200, precision=0, minimum=1, maximum=100000, label="Newest entries")
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
            with gr.Accordion("Models and licences", open=False, elem_id="audit-models") as models_box:
                help_block("models")
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

        chain_button.click(self.check_ledger, None, [chain_banner, chain_json], api_name="audit_check")
        load_button.click(self.ledger, [kind, limit], [ledger_table, ledger_json], api_name="ledger")
        export_button.click(
            self.export_ledger, None, [export_file, chain_banner], api_name="export_ledger"
        ).then(lambda path: gr.File(visible=bool(path)), export_file, export_file, **PRIVATE)
        model_outputs = [models_banner, models_table, models_json]
        models_button.click(self.models, None, model_outputs, api_name="models")
        models_box.expand(self.models, None, model_outputs, **PRIVATE)
        return TabParts()
