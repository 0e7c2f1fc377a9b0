"""The Generate tab: a new image from a local diffusers model, on the same road as a swap — the
output gate checks every face in it, a consented likeness needs a ``generate`` consent, and the
output is labelled, watermarked, signed and recorded. API endpoint: ``/generate``.
"""

from __future__ import annotations

import threading
from html import escape
from typing import Any

import gradio as gr

from likeness.errors import LikenessError, UsageError
from likeness.webapp import views
from likeness.webapp.studio import GenerateJob
from likeness.webapp.tabs.handling import (
    PRIVATE,
    TabBase,
    TabParts,
    help_block,
    profile_dropdown,
    stage_reporter,
)

SIZES = ("512x512", "768x768", "1024x1024", "768x512", "512x768")


def parse_size(text: str | None) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in str(text or "512x512").lower().split("x"))
    except ValueError:
        raise UsageError(f"size {text!r} is not WIDTHxHEIGHT", hint="e.g. 512x512") from None
    return width, height


def outcome_banner(outcome: Any) -> str:
    faces = [
        (
            f"face #{i}: {escape(str(face['match']['identity_name']))} under consent "
            f"<code>{escape(str(face['match']['consent_id']))}</code>"
            if face.get("match")
            else f"face #{i}: matches no one enrolled (recorded as synthetic)"
        )
        for i, face in enumerate(outcome.faces)
    ]
    body = (
        f"<p>Output <code>{escape(outcome.output_id)}</code>: labelled AI-GENERATED, watermarked, "
        "C2PA content credentials signed, recorded in the ledger.</p>"
        + (f"<ul>{''.join(f'<li>{line}</li>' for line in faces)}</ul>" if faces else "<p>No face in it.</p>")
    )
    return views.banner("synthetic", "Generated and disclosed", body)


class GenerateTab(TabBase):
    """Handlers and layout of the Generate tab."""

    def offered_people(self, purpose: str | None, current: str | None, request: gr.Request):
        """Only people with a consent to new images of them (role ``generate``) for this purpose."""
        try:
            offered, not_offered = self.studio.source_candidates(
                self.user(request), purpose, "image", role="generate"
            )
        except LikenessError as error:
            return gr.update(choices=[], value=None), views.banner("warn", "People", escape(error.reason))
        choices = [("Nobody (synthetic people)", ""), *views.identity_choices(offered)]
        keep = current if current in {value for _, value in choices} else ""
        return gr.update(choices=choices, value=keep), views.source_note(not_offered, purpose)

    async def generate(
        self,
        model: str,
        prompt: str,
        purpose: str | None,
        identity: str | None,
        negative: str | None,
        steps: float | None,
        seed: float | None,
        size: str | None,
        request: gr.Request,
        profile: str | None = None,
        progress=gr.Progress(),  # noqa: B008 - Gradio's injection idiom
    ):
        user = self.user(request)
        cancel = threading.Event()

        def run():
            job = GenerateJob(
                model=model or "",
                prompt=prompt or "",
                purpose=purpose or "",
                identity=identity or None,
                negative=negative or None,
                steps=int(steps or 30),
                seed=None if seed in (None, "") else int(seed),
                size=parse_size(size),
                disclosure_profile=profile or None,
            )
            outcome = self.studio.generate(
                user, request.session_hash, job, progress=stage_reporter(progress), cancelled=cancel.is_set
            )
            return outcome_banner(outcome), str(outcome.output), {"status": "done", **outcome.to_dict()}

        def failed(error: LikenessError):
            return views.error_banner(error), None, views.error_json(error)

        return await self.attempt_in_thread(run, failed, cancel=cancel, what="generation", user=user)

    def build(self, purpose_choices: list[tuple[str, str]]) -> TabParts:
        with gr.Tab("Generate", id="generate"):
            help_block("generate")
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Textbox(
                        label="Model (a local diffusers folder, or a name from `likeness models list`)",
                        elem_id="generate-model",
                    )
                    purpose = gr.Dropdown(
                        purpose_choices, label="Purpose", value=None, elem_id="generate-purpose"
                    )
                    identity = gr.Dropdown(
                        choices=[("Nobody (synthetic people)", "")],
                        value="",
                        label="Likeness of (needs their consent to new images)",
                        allow_custom_value=True,
                        elem_id="generate-identity",
                    )
                    identity_note = gr.HTML(views.source_note([], None), elem_id="generate-identity-note")
                    profile = profile_dropdown(self.studio, "generate-profile")
                    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="generate-prompt")
                    negative = gr.Textbox(label="Negative prompt", elem_id="generate-negative")
                    with gr.Row():
                        steps = gr.Number(30, label="Steps", precision=0, elem_id="generate-steps")
                        seed = gr.Number(None, label="Seed", precision=0, elem_id="generate-seed")
                        size = gr.Dropdown(
                            list(SIZES),
                            value="512x512",
                            label="Size",
                            allow_custom_value=True,
                            elem_id="generate-size",
                        )
                    run = gr.Button("Generate", variant="primary", elem_id="generate-run")
                with gr.Column(scale=2):
                    banner = gr.HTML(elem_id="generate-result")
                    image = gr.Image(
                        label="The disclosed output",
                        type="filepath",
                        interactive=False,
                        elem_id="generate-out",
                    )
            with gr.Accordion("Details (JSON)", open=False):
                result = gr.JSON(label="generate result", elem_id="generate-json")
        for changed in (purpose.change, identity.focus):
            changed(self.offered_people, [purpose, identity], [identity, identity_note], **PRIVATE)
        run.click(
            self.generate,
            [model, prompt, purpose, identity, negative, steps, seed, size, profile],
            [banner, image, result],
            api_name="generate",
            **self.heavy(),
        )
        return TabParts()
