"""The one road every job walks, stills and footage alike (generation is one more transform, in
:mod:`likeness.jobs.generation`).

    inputs → frame source → analyze → gate → transform → seal into a frame sink → record

:func:`run_job` reads top to bottom as numbered steps. A still is a one-frame source; footage is
its decoded frames, tracked, with each new person gated as they appear. Each step either hands a
value to the next or raises a typed error from :mod:`likeness.errors`; nothing is written unless
every step succeeded, and the consents are checked again inside the transaction that records the
output (a revocation while the job ran wins). The CLI and the app call this module and nothing
below it.

Footage: who is replaced (``faces``):

* ``"consented"`` (default): a face is replaced only when the consent gate identifies it as an
  enrolled person who holds an in-force consent to be replaced (role ``target``) for this purpose
  and for video. Every other face is **left untouched**, and the outcome lists each such face with
  the reason it was left.
* ``"all"``: the image rule (every face replaced): a face that is not identified as a consenting
  target, or is identified as someone whose consent does not cover this use, stops the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from likeness.consent.gate import GateDecision, Involvement, check_consent
from likeness.consent.policy import Policy
from likeness.consent.registry import Registry
from likeness.disclosure.seal import (
    DROPPED_FACTS,
    SealJob,
    check_label_options,
    check_label_room,
    import_sealing,
    seal_frames,
)
from likeness.disclosure.still_sink import StillSink, check_destination, output_format
from likeness.disclosure.types import Ingredient, SealedOutput
from likeness.errors import UsageError
from likeness.faces.types import Face
from likeness.fsutil import sha256_file
from likeness.home import Home
from likeness.jobs.destination import check_replaceable
from likeness.jobs.engines import Engines, engines_for
from likeness.jobs.footage_limits import check_footage_limits
from likeness.jobs.inputs import InputReader, finish_loading, finished, is_footage
from likeness.jobs.requests import (
    FACES_MODES,
    EditRequest,
    GenerateOutcome,
    GenerateRequest,
    SwapOutcome,
    SwapRequest,
    VideoSwapRequest,
)
from likeness.jobs.selection import SwapTransform, chosen_targets, find_source_face
from likeness.licences import check_model_licences, manifest_entries
from likeness.media.background import in_background
from likeness.media.frames import FrameSource, StillSource
from likeness.media.image import Picture, load_image
from likeness.media.video_probe import VideoInfo, looks_like_video
from likeness.media.video_read import SkippedSpan
from likeness.progress import CancelToken, Progress, StageTimer, no_progress

if TYPE_CHECKING:  # footage's modules are imported by a footage job only (a still's start-up skips them)
    from likeness.disclosure.footage_sink import FootageSink
    from likeness.jobs.tracks import FootageFrames
    from likeness.media.video import EncodeSettings


@dataclass(frozen=True)
class _Target:
    """The target as read in step 3: a still picture, or footage's probe."""

    path: Path
    still: Picture | None = None
    footage: VideoInfo | None = None


def as_footage(request: SwapRequest) -> VideoSwapRequest | None:
    """The footage request for ``request``, or ``None`` for a still target."""
    if isinstance(request, VideoSwapRequest):
        return request
    if not is_footage(request):
        return None
    if request.face_index is not None:
        raise UsageError(
            "--face-index applies to images; in a video faces are followed and chosen by consent",
            hint="use --faces consented (only consenting targets) or --faces all",
        )
    fields = {name: getattr(request, name) for name in SwapRequest.__dataclass_fields__}
    return VideoSwapRequest(**fields)


def check_options(request: SwapRequest, policy: Policy) -> EncodeSettings | None:
    """Step 1: every option is checked before any work; the footage encoder settings, if footage."""
    policy.require_known("purposes", [request.purpose])  # names the known purposes
    check_label_options(
        request.label_corner, request.label_language, request.disclosure_profile or policy.disclosure_profile
    )
    if request.max_pixels <= 0:
        raise UsageError(f"--max-pixels must be a positive number of pixels, not {request.max_pixels}")
    out = Path(request.out).expanduser().absolute()
    inputs = [
        Ingredient(role=role, path=Path(path), sha256="", format="")
        for role, path in (("source", request.source), ("target", request.target))
    ]
    footage = as_footage(request)
    check_destination(inputs, out, names=".jpg or .png" if footage is None else ".mp4 or .mov")
    if footage is None:
        output_format(out)  # an unwritable output type is refused before any work
        return None
    if footage.faces not in FACES_MODES:
        raise UsageError(f"unknown faces mode {footage.faces!r}", hint="choose consented or all")
    check_footage_limits(footage.detect_every, footage.segment_seconds)  # the CLI's and a batch's bounds
    from likeness.disclosure.footage_sink import video_output_settings

    return video_output_settings(footage.out, footage.encode_settings())


def run_job(
    request: SwapRequest | GenerateRequest | EditRequest,
    *,
    home: Home,
    progress: Progress = no_progress,
    cancel: CancelToken | Any = None,
    engines: Engines | None = None,
    reader: InputReader | None = None,
) -> SwapOutcome | GenerateOutcome:
    """Run one gated, disclosed job; see the module docstring.

    Generation and face edits (:class:`GenerateRequest`, :class:`EditRequest`) walk the same steps in
    :func:`likeness.jobs.generation.run_generation`: their gate also runs on the output.

    ``cancel``: a :class:`CancelToken` or ``threading.Event``; once set, the job stops at the next
    step or frame with :class:`~likeness.errors.Cancelled` (exit 130) and writes nothing under the
    output name (footage keeps its finished segments, so the same request resumes).
    ``engines``: already-loaded models to reuse (used when their backend is ``request.backend``).
    ``reader``: the inputs' reader a command started early (:func:`likeness.jobs.inputs.start_early`),
    taken over when it reads this request for these engines' analyzer; the caller closes it.
    """
    if isinstance(request, (GenerateRequest, EditRequest)):
        from likeness.jobs.generation import run_generation

        analyzer = engines.analyzer if engines is not None and engines.backend == request.backend else None
        return run_generation(request, home=home, progress=progress, cancel=cancel, analyzer=analyzer)
    timer = StageTimer()
    token = CancelToken.of(cancel)

    # 1. Check every option before any work.
    policy = Policy.load(home)
    settings = check_options(request, policy)
    check_replaceable(request.out, home, overwrite=request.overwrite)
    profile = request.disclosure_profile or policy.disclosure_profile
    footage = as_footage(request)
    progress("decode", 0.0)

    # 2. Engines and model licences; 3. the inputs, read in a worker thread meanwhile: the source
    #    likeness and the target (a still, or footage's probe), and (dlib) their faces detected while
    #    the other models load (:mod:`likeness.jobs.inputs`).
    with timer.stage("load models"):
        loaded = engines_for(request.backend, home, engines, defer_models=True)
    analyzer, swapper = loaded.analyzer, loaded.swapper
    token.check("before the inputs were read")
    if reader is None or not reader.serves(request, analyzer, footage=footage is not None):
        reader = InputReader(request, analyzer, footage=footage is not None)
    with reader as reading:
        with timer.stage("read inputs"):
            reading.wait_decoded()
        with timer.stage("load models"):
            finish_loading(analyzer)
        licences = check_model_licences(
            request.purpose, [*analyzer.model_files(), *swapper.model_files()], home
        )
        with timer.stage("read inputs"):
            source, source_found = reading.source()

        # 4. Analyze the source likeness (while the target's detection may still run) and open the
        #    target's faces.
        progress("detect", 0.1 if footage is None else 0.005)  # footage's own steps are its frames
        targets: list[tuple[int, Face]] = []
        still_faces: list[Face] = []
        with timer.stage("detect+embed"):
            source_face = find_source_face(analyzer, source, found=source_found)
            read, still_found = reading.target()
            target = (
                _Target(request.target, still=read)
                if isinstance(read, Picture)
                else _Target(request.target, footage=read)
            )
            if target.still is not None:
                still_faces = (
                    analyzer.analyze(target.still.pixels)
                    if still_found is None
                    else finished(analyzer, still_found).faces
                )
                targets = chosen_targets(still_faces, target.still, request.face_index)
    media_kind = "image" if footage is None else "video"
    token.check("before the consent gate")

    progress("consent", 0.4 if footage is None else 0.01)
    # The transform's source side (the classical swap measures the source's facial hair: ≈ 50 ms in
    # a new process, most of it OpenCV building its colour tables) is prepared while the gate runs.
    preparing = in_background(
        lambda: SwapTransform(swapper=swapper, source_pixels=source.pixels, source_face=source_face),
        name="prepare-source",
    )
    with preparing as prepared, Registry.open(home, policy=policy) as registry:
        # 5. Gate: the source likeness, then the target faces (a still's all at once; footage's per
        #    person as they appear, in step 6).
        registry.check_model_hashes(  # the model files' recorded hashes are signed facts too
            [*analyzer.model_files(), *swapper.model_files()], operator=request.operator
        )
        involved = [Involvement(face=source_face, role="source", label=f"source photo {source.path.name}")]
        if target.still is not None:
            involved += [
                Involvement(face=face, role="target", label=f"target face #{index} in {target.path.name}")
                for index, face in targets
            ]
        with timer.stage("gate"):
            decision = check_consent(
                registry,
                involved,
                purpose=request.purpose,
                media_kind=media_kind,
                analyzer=analyzer,
                operator=request.operator,
            )
        token.check("after the consent gate")
        with timer.stage("prepare source"):
            import_sealing()  # the sealing's first-use imports, while the source side is prepared
            if target.still is not None:
                height, width = target.still.pixels.shape[:2]
            else:
                assert target.footage is not None
                width, height = target.footage.width, target.footage.height
            check_label_room(
                target.path,
                width,
                height,
                kind="swap",
                language=request.label_language,
                profile=profile,
                footage=footage is not None,
            )
            transform = prepared.result()

        # 6. Transform: a still's chosen faces now; footage frame by frame as the sink pulls them.
        frames: FrameSource
        tracked: FootageFrames | None = None
        if target.still is not None:
            progress("swap", 0.5)
            with timer.stage("swap"):
                pixels = target.still.pixels
                for _, face in targets:
                    pixels = transform(pixels, face)
            frames = StillSource(pixels)
        else:
            from likeness.jobs.tracks import FootageFrames

            assert footage is not None and target.footage is not None
            tracked = FootageFrames(
                request=footage,
                info=target.footage,
                registry=registry,
                analyzer=analyzer,
                transform=transform,
                source_matches=decision.matches,
                timer=timer,
                first_scan=still_found,
            )
            frames = tracked

        # 7. Seal into the frame sink and record (consents re-checked in the recording transaction).
        progress("disclose", 0.8 if footage is None else 0.02)
        tools = {
            "analyzer": analyzer.describe(),
            "swapper": swapper.describe(),
            "models": manifest_entries(licences),
        }
        job = SealJob(
            kind="swap",
            purpose=request.purpose,
            ingredients=[
                Ingredient(role="source", path=source.path, sha256=source.sha256, format=source.format),
                _target_ingredient(target, timer),
            ],
            tools=tools,
            operator=request.operator,
            consent_ids=lambda: _final(decision, tracked).consent_ids,
            consent_hashes=lambda ids: {cid: registry.get_consent(cid).terms_sha256() for cid in ids},
            ledger_head=lambda: registry.ledger_head().to_dict(),
            label_corner=request.label_corner,
            label_language=request.label_language,
            faces=(lambda: [f.box for f in still_faces]) if tracked is None else tracked.first_faces,
            disclosure_profile=profile,
            content_producer=policy.content_producer,
            dropped=(lambda: ()) if tracked is None else tracked.skipped,
        )
        if footage is None:
            sink: StillSink | FootageSink = StillSink(request.out)
        else:
            from likeness.disclosure.footage_sink import FootageSink
            from likeness.jobs.tracks import resume_key

            assert settings is not None and target.footage is not None
            sink = FootageSink(
                request.out,
                info=target.footage,
                settings=settings,
                key={**resume_key(footage, source.sha256, tools), "disclosure_profile": profile},
                progress=lambda stage, fraction: progress(stage, 0.02 + 0.98 * fraction),
                timer=timer,
            )

        def record(sealed: SealedOutput) -> None:
            registry.record_output(sealed, decision=_final(decision, tracked), operator=request.operator)

        result = seal_frames(
            frames,
            job,
            sink,
            home=home,
            record=record,
            recorded_sha256=_recorded_sha256(registry),
            progress=progress,
            cancel=token,
            timer=timer,
        )
        final = _final(decision, tracked)

    # 8. The outcome.
    progress("done", 1.0)
    if isinstance(result, SealedOutput):
        return SwapOutcome(
            output=result.path,
            output_id=result.output_id,
            sha256=result.sha256,
            consents=list(final.consent_ids),
            decision=final,
            timings=dict(timer.seconds),
            faces=len(targets),
            notes=result.notes,
        )
    return SwapOutcome(
        output=result.output.path,
        output_id=result.output.output_id,
        sha256=result.output.sha256,
        consents=list(dict.fromkeys([*final.consent_ids, *result.output.consent_ids])),
        decision=final,
        timings=dict(timer.seconds),
        tracks=tracked.tracks() if tracked is not None else [],
        video=result,
        notes=result.output.notes,
        frames_dropped=_dropped(result.output),
    )


def _target_ingredient(target: _Target, timer: StageTimer) -> Ingredient:
    if target.still is not None:
        still = target.still
        return Ingredient(role="target", path=still.path, sha256=still.sha256, format=still.format)
    assert target.footage is not None
    with timer.stage("hash target"):
        sha256 = sha256_file(target.path)
    return Ingredient(role="target", path=target.path, sha256=sha256, format=target.footage.container)


def _final(decision: GateDecision, tracked: FootageFrames | None) -> GateDecision:
    """The gate's decision with every footage track's match added."""
    return decision if tracked is None else tracked.decision(decision)


def _dropped(sealed: SealedOutput) -> list[SkippedSpan]:
    """The source frames the output leaves out, as its recorded disclosure states them (also for a
    job finished by adopting a signed file, whose frames were not read again)."""
    return [SkippedSpan.from_dict(raw) for raw in (sealed.disclosure or {}).get(DROPPED_FACTS, [])]


def _recorded_sha256(registry: Registry) -> Callable[[str], str | None]:
    def recorded(output_id: str) -> str | None:
        found = registry.get_output(output_id)
        return None if found is None else found.sha256

    return recorded


def swap_image(
    request: SwapRequest,
    *,
    home: Home,
    progress: Progress = no_progress,
    cancel: CancelToken | Any = None,
    engines: Engines | None = None,
) -> SwapOutcome:
    """:func:`run_job` for a still target (a footage target is refused: use :func:`swap_video`)."""
    if looks_like_video(request.target):
        load_image(request.target, max_pixels=request.max_pixels)  # BadInput: not a picture, and why
        raise UsageError(f"{request.target}: is named like a video; swap_image takes still pictures")
    return run_job(request, home=home, progress=progress, cancel=cancel, engines=engines)


def swap_video(
    request: VideoSwapRequest,
    *,
    home: Home,
    progress: Progress = no_progress,
    cancel: CancelToken | Any = None,
    engines: Engines | None = None,
) -> SwapOutcome:
    """:func:`run_job` for footage."""
    return run_job(request, home=home, progress=progress, cancel=cancel, engines=engines)
