"""Job commands: list faces, swap, verify."""

from __future__ import annotations

from pathlib import Path

import click

from likeness.cli.common import (
    PURPOSES_HELP,
    check_label_for_profile,
    checked_profile,
    disclosure_profile_option,
    home_option,
    json_option,
    overwrite_option,
    resolve_cli_home,
)
from likeness.cli.support import ProgressLine, emit_json, handle_errors
from likeness.errors import UsageError
from likeness.jobs.footage_limits import DETECT_EVERY, SEGMENT_SECONDS


@click.command()
@click.argument("target_image", metavar="TARGET", type=click.Path(path_type=Path))
@click.option("--backend", default="dlib", show_default=True, help="face backend")
@click.option(
    "--purpose",
    default=None,
    help="also say whether a consent covers each face for this purpose (" + PURPOSES_HELP + ")",
)
@click.option(
    "--role",
    type=click.Choice(["target", "source"]),
    default="target",
    show_default=True,
    help="with --purpose: the role the faces would play",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def faces(
    ctx: click.Context,
    target_image: Path,
    backend: str,
    purpose: str | None,
    role: str,
    home: Path | None,
    as_json: bool,
) -> None:
    """List the faces in an image, numbered left to right (for --face-index), who each one is and,
    with --purpose, whether a consent covers it, so you learn before a swap which face is refused."""
    from likeness.consent.registry import Registry
    from likeness.faces.backends import load_analyzer
    from likeness.jobs.who import who_is
    from likeness.media.image import load_image

    data_home = resolve_cli_home(ctx, home)
    picture = load_image(target_image)
    analyzer = load_analyzer(backend, data_home, swapping=False)  # faces only: no swapper, no 68 points
    found = analyzer.analyze(picture.pixels)
    with Registry.open(data_home) as registry:
        if purpose is not None:
            registry.policy.require_known("purposes", [purpose])
        rows = who_is(found, registry, analyzer, purpose=purpose, role=role)
    if as_json:
        emit_json(
            {
                "image": str(target_image),
                "purpose": purpose,
                "role": role,
                "faces": [r.to_dict() for r in rows],
            }
        )
        return
    click.echo(f"{len(rows)} face(s) in {target_image}, left to right:")
    for row in rows:
        box = list(row.face.box)
        if row.outcome == "match":
            who = f"{row.name} ({row.identity_id}, distance {row.distance:.3f})"
        elif row.outcome == "ambiguous":
            who = "ambiguous: matches more than one enrolled identity"
        else:
            who = "not enrolled"
        click.echo(f"  #{row.index}  box={box}  size={row.face.size}px  {who}")
        if row.covered is None:
            continue
        verdict = "COVERED" if row.covered else "NOT covered — the gate would refuse this face"
        click.echo(f"      as {role} for {purpose}: {verdict}")
        for fit in row.consents:
            click.echo(f"      consent {fit.consent_id}: {fit.why}")


@click.command()
@click.option(
    "--source",
    required=True,
    type=click.Path(path_type=Path),
    help="photo of the person whose likeness is used (exactly one face)",
)
@click.option(
    "--target",
    required=True,
    type=click.Path(path_type=Path),
    help="image or video whose face(s) are replaced",
)
@click.option("--purpose", required=True, help=PURPOSES_HELP)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="output file: .jpg or .png for an image; .mp4 (H.264, or FFV1) or .mov (ProRes) for a video",
)
@click.option(
    "--face-index",
    type=int,
    default=None,
    help="image only: replace only this target face (0 = leftmost; see `likeness faces`); default: all",
)
@click.option("--backend", default="dlib", show_default=True, help="face backend")
@click.option(
    "--label-corner",
    default="bottom-right",
    show_default=True,
    type=click.Choice(["bottom-right", "bottom-left", "top-right", "top-left"]),
    help="corner of the visible label (with --disclosure-profile eu: top-right only)",
)
@click.option(
    "--label-language",
    default="en",
    show_default=True,
    help="language of the visible label (the default profile; eu and cn set their own wording)",
)
@disclosure_profile_option
@overwrite_option
@click.option("--max-pixels", type=int, default=None, help="refuse images larger than this (default 100 MP)")
@click.option(
    "--faces",
    "faces_mode",
    type=click.Choice(["consented", "all"]),
    default=None,
    help="video: replace only faces identified as consenting targets and leave others untouched "
    "(consented, the default), or require every face to be replaced (all)",
)
@click.option(
    "--codec",
    type=click.Choice(["h264", "ffv1", "prores"]),
    default=None,
    help="video: h264 (default for .mp4), ffv1 (lossless, .mp4) or prores (default for .mov)",
)
@click.option("--crf", type=click.IntRange(0, 51), default=None, help="video, h264: quality (default 18)")
@click.option(
    "--detect-every",
    type=click.IntRange(*DETECT_EVERY),
    default=None,
    help="video: run face detection every N frames, tracking in between (default 5); a face that comes "
    "into view between two detections keeps its own pixels until the next one (1: look on every frame)",
)
@click.option(
    "--on-corrupt",
    type=click.Choice(["stop", "skip"]),
    default=None,
    help="video: stop at damaged frames (default), or drop them (the output's notes, --json "
    "frames_dropped and its credentials and ledger entry say which)",
)
@click.option(
    "--segment-seconds",
    type=click.FloatRange(*SEGMENT_SECONDS),
    default=None,
    hidden=True,
    help="video: seconds per resumable segment (default 10)",
)
@home_option
@json_option
@click.pass_context
@handle_errors
def swap(
    ctx: click.Context,
    source: Path,
    target: Path,
    purpose: str,
    out: Path,
    face_index: int | None,
    backend: str,
    label_corner: str,
    label_language: str,
    disclosure_profile: str | None,
    overwrite: bool,
    max_pixels: int | None,
    faces_mode: str | None,
    codec: str | None,
    crf: int | None,
    detect_every: int | None,
    on_corrupt: str | None,
    segment_seconds: float | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Swap the face in --source onto --target (image or video), if consent covers it; writes a
    disclosed output. Ctrl-C stops a job cleanly (exit 130); a video job resumes when run again."""
    from likeness.jobs.requests import SwapRequest, VideoSwapRequest
    from likeness.media.image import DEFAULT_MAX_PIXELS
    from likeness.media.video_probe import looks_like_video

    check_label_for_profile(ctx, disclosure_profile, label_corner, label_language)
    common = {
        "source": source,
        "target": target,
        "purpose": purpose,
        "out": out,
        "backend": backend,
        "label_corner": label_corner,
        "label_language": label_language,
        "disclosure_profile": checked_profile(disclosure_profile),
        "max_pixels": DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
        "overwrite": overwrite,
    }
    if looks_like_video(target):
        if face_index is not None:
            raise UsageError(
                "--face-index applies to images; in a video faces are followed and chosen by consent",
                hint="use --faces consented (only consenting targets) or --faces all",
            )
        if crf is not None:
            from likeness.disclosure.footage_sink import check_crf_applies

            check_crf_applies(out, codec)
        request: SwapRequest = VideoSwapRequest(
            **common,
            faces=faces_mode or "consented",  # type: ignore[arg-type]
            codec=codec,
            crf=18 if crf is None else crf,
            detect_every=detect_every or 5,
            on_corrupt=on_corrupt or "stop",  # type: ignore[arg-type]
            segment_seconds=segment_seconds or 10.0,
        )
        progress = _video_progress(enabled=not as_json)
    else:
        video_options = {
            "--faces": faces_mode,
            "--codec": codec,
            "--crf": crf,
            "--detect-every": detect_every,
            "--on-corrupt": on_corrupt,
            "--segment-seconds": segment_seconds,
        }
        given = [name for name, value in video_options.items() if value is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to video targets; "
                f"{target} is not a video",
                hint="drop the option, or give a video file as --target",
            )
        request = SwapRequest(**common, face_index=face_index)
        progress = ProgressLine("swap", enabled=not as_json)
    outcome = _run_job(request, resolve_cli_home(ctx, home), progress)
    if as_json:
        emit_json(outcome.to_dict())
        return
    click.echo(f"wrote {outcome.output}")
    click.echo(f"  output id: {outcome.output_id}")
    click.echo(f"  consents:  {', '.join(outcome.consents)}")
    for note in outcome.notes:
        click.echo(f"  note: {note}")
    if outcome.video is None:
        click.echo(f"  faces swapped: {outcome.faces_swapped}; labelled and watermarked")
        return
    video = outcome.video
    click.echo(
        f"  video: {video.frames} frames, {video.duration:.2f} s, {video.codec} in {video.container}"
        + (f"; resumed with {video.reused_segments} finished segment(s)" if video.reused_segments else "")
    )
    for line in video.audio:
        click.echo(f"  {line}")
    for track in outcome.tracks:
        what = "swapped" if track.decision == "swapped" else "left untouched"
        click.echo(
            f"  face track #{track.track_id} ({track.first_time:.2f}–{track.last_time:.2f} s): {what} — "
            f"{track.reason}"
            + (f"; {track.swap_failures} frame(s) not swappable (pose)" if track.swap_failures else "")
        )
    for note in video.notes:
        click.echo(f"  note: {note}")
    click.echo("  every frame labelled and watermarked; C2PA content credentials embedded")


def _video_progress(*, enabled: bool, log_every: float = 10.0):
    """A progress line for long video jobs: rewritten in place on a terminal; in a log, one line
    every ``log_every`` seconds and at each new stage (frames, then joining, checking, signing)."""
    import sys
    import time

    started = time.monotonic()
    tty = sys.stderr.isatty()
    last = {"time": 0.0, "kind": ""}

    def show(stage: str, fraction: float) -> None:
        if not enabled:
            return
        now = time.monotonic()
        kind = stage.split(" ", 1)[0]
        text = f"swap: {fraction * 100:3.0f}%  {stage}  ({now - started:.0f} s)"
        if tty:
            click.echo(f"\r{text:<100}", err=True, nl=fraction >= 1.0)
        elif kind != last["kind"] or now - last["time"] >= log_every or fraction >= 1.0:
            click.echo(text, err=True)
            last["time"] = now
        last["kind"] = kind

    return show


def _run_job(request, home, progress):
    """Run a job on the one road with a clean Ctrl-C: the first one stops it at the next step or
    frame (exit 130; footage keeps its finished segments and the same command resumes), a second
    one at once. SIGTERM (``docker stop``, systemd, ``kill``) is taken as a Ctrl-C."""
    import os
    import threading

    from likeness.cli.startup import collector_paused_while_importing
    from likeness.progress import counting_interrupts

    cancel = threading.Event()
    running = threading.Event()  # the job itself runs (the command's own imports are done)

    def interrupt(count: int) -> None:
        if count > 1:
            if not running.is_set():
                # Still starting: nothing is written yet, and a KeyboardInterrupt raised inside an
                # import would leave the import lock held and the reader's threads blocked on it.
                os.write(2, b"\nlikeness: stopped\n")
                os._exit(130)
            raise KeyboardInterrupt
        cancel.set()
        # os.write, not click.echo: the handler may run while the progress display is writing to
        # stderr, where a buffered write would raise "reentrant call"
        os.write(2, b"\nlikeness: stopping at the next step (press Ctrl-C again to stop at once)\n")

    helper = _landmark_helper(request, home)  # first: it reads its model while the rest is imported
    reader = None
    # The handler first: a Ctrl-C then never raises inside the imports below, where an interrupted
    # import lock would leave the early reader's threads blocked on it (and the command hung).
    with counting_interrupts(interrupt, terminate=True), collector_paused_while_importing() as imported:
        try:
            analyzer, reader = _start_early(request, home, helper)
            engines = None
            if analyzer is not None:
                from likeness.jobs.engines import Engines
                from likeness.swap.backends import load_swapper

                engines = Engines(backend="dlib", analyzer=analyzer, swapper=load_swapper("dlib", home))
            from likeness.jobs.road import run_job

            imported()
            running.set()
            return run_job(
                request, home=home, progress=progress, cancel=cancel, engines=engines, reader=reader
            )
        finally:
            if reader is not None:
                reader.close(reraise=False)  # the job closed it already, unless it never took it over
            if helper is not None:
                helper.close()


def _start_early(request, home, helper):
    """A dlib swap: its analyzer, and its inputs' reader already started
    (:func:`likeness.jobs.inputs.start_early`: decoding, detection and the models' loading run on the
    other core while this one imports the rest of the job); ``(None, None)`` for any other job."""
    if not _dlib_swap(request):
        return None, None
    from likeness.faces.dlib_backend import DlibAnalyzer
    from likeness.jobs.inputs import start_early

    analyzer = DlibAnalyzer(home, defer_models=True, landmarks_helper=helper)
    return analyzer, start_early(request, analyzer)


def _dlib_swap(request) -> bool:
    """A still or footage swapped with dlib (not generation or an edit, and no other backend)."""
    from likeness.jobs.requests import SwapRequest  # footage's VideoSwapRequest is one too

    return isinstance(request, SwapRequest) and request.backend == "dlib"


def _landmark_helper(request, home):
    """A dlib swap (a still or footage; not generation or an edit, which use no 68-point model here)
    where the 68-point model cannot be loaded from arrays (:mod:`likeness.faces.shape_cache`: they are
    not cached and the cache folder cannot be written): the model loaded in a helper process
    (:mod:`likeness.faces.landmark_helper`) while this one imports and loads the rest, or ``None``.
    Footage too: a job then asks the helper for the landmarks of each detection, a round trip with a
    crop around each face that costs about 1 ms more than computing them here (1080p: 2.4 ms wall and
    CPU of both processes, against 1.3 ms), while dlib's 0.5 s load leaves the job's start."""
    if not _dlib_swap(request):
        return None
    from likeness.faces.shape_cache import cache_usable

    if cache_usable("dlib_landmarks_68"):
        return None  # its arrays load in ≈ 0.1 s here, less than the helper's round trips cost
    from likeness.faces.landmark_helper import LandmarkHelper

    return LandmarkHelper.start(home)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@home_option
@json_option
@click.pass_context
@handle_errors
def verify(ctx: click.Context, file: Path, home: Path | None, as_json: bool) -> None:
    """Read back a file's disclosure: watermark id, label, C2PA, and this installation's ledger record.

    The verdict is in the output (with --json, ``status``: synthetic, probably-synthetic, tampered or
    none); the exit code is 0 whatever it is, and 4 only when FILE cannot be opened at all.
    """
    from likeness.jobs.verify import verify_file

    report = verify_file(file, home=resolve_cli_home(ctx, home))
    if as_json:
        emit_json(report)
    else:
        click.echo(report.describe())
