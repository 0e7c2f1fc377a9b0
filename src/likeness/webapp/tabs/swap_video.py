"""The Swap tab's video half: the target footage and its options, the job, the player and track table.

The Swap tab (``tabs.swap``) places these pieces: the inputs beside the image inputs (one or the
other is visible), the results under the shared banner. Video jobs have their own queue
(``video_concurrency``) so that footage never blocks image work.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from likeness.webapp import views
from likeness.webapp.studio import DEFAULT_CRF, VideoJob
from likeness.webapp.tabs.handling import PRIVATE, TabBase, help_block, stage_reporter, table


@dataclass(frozen=True)
class VideoInputs:
    column: Any
    target: Any
    faces: Any
    codec: Any
    crf: Any


@dataclass(frozen=True)
class VideoResults:
    panel: Any
    player: Any
    download: Any
    tracks: Any


class VideoSwap(TabBase):
    """Handlers and layout of the video swap."""

    def pending(self):
        return views.video_working(), None, None, table(views.TRACK_HEADERS, []), gr.Column(visible=False)

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
        profile: str | None = None,
        progress=gr.Progress(),  # noqa: B008 - Gradio's way to ask for a progress tracker
    ):
        """Run the gated, disclosed video swap in a worker thread; Cancel stops it after the current frame
        (finished segments are kept: the same job resumes)."""
        user = self.user(request)
        cancel = threading.Event()  # the writer stops before its next frame and keeps the finished segments
        report = stage_reporter(progress)

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
                disclosure_profile=profile or None,
            )
            result = self.studio.swap_video(user, request.session_hash, job, progress=report, cancel=cancel)
            report("check", 0.99)
            verified = self.studio.verify(user, result.outcome.output, uploaded=False)
            output = str(result.outcome.output)
            tracks = table(views.TRACK_HEADERS, views.track_rows(result.outcome.tracks, result.names))
            return (
                views.video_banner(result, verified),
                output if result.playable else None,
                output,
                tracks,
                views.video_json(result, verified),
            )

        def failed(error):
            empty = table(views.TRACK_HEADERS, [])
            return views.error_banner(error), None, None, empty, views.error_json(error)

        return await self.attempt_in_thread(run, failed, cancel=cancel, what="video swap", user=user)

    # -- layout ----------------------------------------------------------------------------------
    def build_inputs(self) -> VideoInputs:
        limits = self.studio.limits
        with gr.Column(visible=False) as column:
            target = gr.Video(
                sources=["upload"],
                label=f"Target video (up to {limits.video_mb} MB and {limits.video_seconds:.0f} s)",
                height=300,
                include_audio=True,
                elem_id="swap-target-video",
            )
            help_block("video")
            with gr.Row(equal_height=True):
                faces = gr.Radio(
                    [("Consented faces only", "consented"), ("All faces", "all")],
                    value="consented",
                    label="Faces to replace",
                    elem_id="swap-video-faces",
                )
                codec = gr.Radio(
                    [("H.264", "h264"), ("FFV1 lossless", "ffv1")],
                    value="h264",
                    label="Codec",
                    elem_id="swap-video-codec",
                )
            crf = gr.Slider(
                0,
                51,
                value=DEFAULT_CRF,
                step=1,
                label="H.264 quality (CRF; lower is better, 18 ≈ visually lossless)",
                elem_id="swap-video-crf",
            )
        codec.change(lambda chosen: gr.Slider(interactive=chosen == "h264"), codec, crf, **PRIVATE)
        return VideoInputs(column, target, faces, codec, crf)

    def build_results(self) -> VideoResults:
        with gr.Column(visible=False) as panel:
            with gr.Row(equal_height=False):
                player = gr.Video(
                    label="The disclosed output",
                    interactive=False,
                    height=420,
                    elem_id="swap-video-out",
                    scale=3,
                )
                download = gr.File(
                    label="Disclosed video (download)",
                    interactive=False,
                    elem_id="swap-video-download",
                    scale=2,
                )
            tracks = gr.Dataframe(
                headers=views.TRACK_HEADERS,
                column_widths=views.TRACK_WIDTHS,
                label="Faces followed through the footage",
                interactive=False,
                wrap=True,
                elem_id="swap-tracks",
            )
        return VideoResults(panel, player, download, tracks)

    def wire(
        self,
        button: Any,
        *,
        source: list[Any],
        purpose: Any,
        profile: Any,
        inputs: VideoInputs,
        results: VideoResults,
        banner: Any,
        details: Any,
        image_panel: Any,
    ) -> Any:
        """The Swap video button: clear the results, then run the job (API ``/swap_video``).

        ``source`` is [source kind, identity, photo]; the image results (``image_panel``) hide while
        it runs; ``details`` receives the job's JSON."""
        outputs = [banner, results.player, results.download, results.tracks]
        return button.click(self.pending, None, [*outputs, image_panel], **PRIVATE).then(
            self.swap_video,
            [*source, inputs.target, purpose, inputs.faces, inputs.codec, inputs.crf, profile],
            [*outputs, details],
            api_name="swap_video",
            concurrency_id="video",
            concurrency_limit=self.video_concurrency,
        )
