"""Generation and face edits on the one road: the same gate, the same sealing path, the same record.

:func:`run_generation` reads top to bottom as numbered steps, like :func:`likeness.jobs.road.run_job`
(which hands generation and edit requests here)::

    1 check options → 2 face engine + model licences → 3 inputs → 4 analyze → 5 gate the inputs
    → 6 transform (load the model, generate / inpaint) → 7 gate the output → 8 seal and record

Three modes:

* **consented likeness** (``GenerateRequest.identity``): the person must hold an in-force consent with
  role ``generate`` (consenting to be swapped is not consenting to be generated) — checked in step 5,
  before the model is even loaded; the model is conditioned on their ArcFace reference through
  IP-Adapter FaceID.
* **synthetic people** (no identity): every person the prompt names (:mod:`likeness.generate.prompt_names`)
  is gated in step 5 as if their face had been given; in step 7 every face in the output is matched
  against the whole registry (:mod:`likeness.consent.output_check`): an enrolled person without a
  covering consent stops the job (exit 3, nothing written); faces that match nobody are recorded as
  synthetic, and the ledger says the check ran, with which model and threshold.
* **face edit** (:class:`EditRequest`): the chosen faces of a photo are gated as in a swap (role
  ``target``), each re-made by an inpainting model in a square around it at the model's working size
  (``work_size``, not the photo's size) inside a mask drawn from its landmarks, pasted back (pixels
  outside the masks are the photo's own), and the re-made faces are checked as in step 7.

The gate runs before the (slow) model load wherever it can; nothing is written unless every step
passed, and the consents are re-checked in the transaction that records the output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from likeness.consent.gate import GateDecision, Involvement, Match, check_consent
from likeness.consent.output_check import GENERATE_ROLE, GenerationDecision, OutputCheck, check_output
from likeness.consent.policy import Policy
from likeness.consent.registry import Registry
from likeness.disclosure.seal import SealJob, check_label_options, seal_frames
from likeness.disclosure.still_sink import StillSink, output_format
from likeness.disclosure.types import Ingredient, ResultKind, SealedOutput
from likeness.errors import DisclosureError, UsageError
from likeness.faces.backends import load_analyzer
from likeness.faces.types import Analyzer, Face
from likeness.generate.faceid import (
    IdentityReference,
    faceid_table_use,
    identity_reference,
    locate_faceid_weights,
)
from likeness.generate.mask import edit_region, face_mask, overlaps
from likeness.generate.pipeline import GenerationSettings, Generator, StageSeconds, Task, load_generator
from likeness.generate.prompt_names import people_named
from likeness.generation_models import locate_model, model_licence
from likeness.home import Home
from likeness.jobs.destination import check_replaceable
from likeness.jobs.requests import EditRequest, GenerateOutcome, GenerateRequest
from likeness.jobs.selection import chosen_targets
from likeness.licences import check_model_licences, manifest_entries
from likeness.media.frames import StillSource
from likeness.media.image import Picture, load_image
from likeness.models import ModelUse
from likeness.progress import CancelToken, Progress, StageTimer, no_progress

GenerationRequest = GenerateRequest | EditRequest


@dataclass(frozen=True)
class _Plan:
    """What step 1 derives from a request."""

    kind: ResultKind
    task: Task
    settings: GenerationSettings
    disclosure_profile: str = "default"
    content_producer: str = "likeness"


def generation_settings(request: GenerationRequest) -> GenerationSettings:
    """The generation settings a request asks for (checked by :meth:`GenerationSettings.check`)."""
    if isinstance(request, EditRequest):
        return GenerationSettings(
            prompt=request.prompt,
            negative=request.negative,
            steps=request.steps,
            guidance=request.guidance,
            seed=request.seed,
            strength=request.strength,
            width=request.work_size,
            height=request.work_size,
        )
    width, height = request.size
    return GenerationSettings(
        prompt=request.prompt,
        negative=request.negative,
        steps=request.steps,
        guidance=request.guidance,
        seed=request.seed,
        width=width,
        height=height,
    )


def check_options(request: GenerationRequest, home: Home) -> _Plan:
    """Step 1: every option, before any work (the purpose against the policy included)."""
    policy = Policy.load(home)
    profile = request.disclosure_profile or policy.disclosure_profile
    check_label_options(request.label_corner, request.label_language, profile)
    output_format(request.out)
    check_replaceable(request.out, home, overwrite=request.overwrite)
    settings = generation_settings(request)
    settings.check()
    policy.require_known("purposes", [request.purpose])
    if isinstance(request, EditRequest):
        if request.max_pixels <= 0:
            raise UsageError(f"--max-pixels must be a positive number of pixels, not {request.max_pixels}")
        return _Plan("edit", "inpainting", settings, profile, policy.content_producer)
    _check_label_fits(settings, request)
    return _Plan("generated", "text-to-image", settings, profile, policy.content_producer)


def _check_label_fits(settings: GenerationSettings, request: GenerateRequest) -> None:
    """Refuse a size too small for the visible label before generating (not after)."""
    from likeness.disclosure.label import apply_label
    from likeness.disclosure.output_id import new_output_id

    blank = np.zeros((settings.height, settings.width, 3), dtype=np.uint8)
    try:
        apply_label(blank, new_output_id(), corner=request.label_corner, language=request.label_language)
    except DisclosureError as exc:
        raise UsageError(
            f"--size {settings.width}x{settings.height} is too small to carry the visible label with its id",
            hint="generate at least 192x192 (the label is part of every output)",
        ) from exc


def _reference_face(registry: Registry, identity_id: str, space: str) -> Face | None:
    """The identity's first stored reference in ``space``, as a face the gate can check."""
    for entry in registry.gallery(space):
        if entry.identity_id == identity_id and len(entry.embeddings):
            embedding = np.asarray(entry.embeddings[0], dtype=np.float32).ravel()
            empty = np.zeros((0, 2), dtype=np.float32)
            return Face(
                box=(0, 0, 0, 0),
                landmarks=empty,
                landmarks5=empty,
                embedding=embedding,
                score=1.0,
                embedding_space=space,
            )
    return None


def _person_involvement(registry: Registry, identity_id: str, name: str, why: str, space: str) -> Involvement:
    face = _reference_face(registry, identity_id, space)
    if face is None:
        raise UsageError(
            f"{name!r} ({identity_id}), {why}, has no reference for the {space} face backend, so their "
            "consent cannot be checked with it",
            hint=f"re-embed them for this backend (likeness identity reembed {identity_id} --backend …) or "
            "choose the backend they were enrolled with (--backend)",
        )
    return Involvement(face=face, role=GENERATE_ROLE, label=f"{name!r} ({why})")


def _prompt_record(request: GenerationRequest, settings: GenerationSettings) -> dict[str, Any]:
    """The settings as the manifest and ledger state them (the prompt as a hash unless opted in)."""
    facts: dict[str, Any] = {
        "prompt_sha256": hashlib.sha256(settings.prompt.encode("utf-8")).hexdigest(),
        "negative_prompt_sha256": None
        if settings.negative is None
        else hashlib.sha256(settings.negative.encode("utf-8")).hexdigest(),
        "prompt_text_included": request.record_prompt,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "seed": settings.seed,
    }
    if request.record_prompt:
        facts["prompt"] = settings.prompt
        facts["negative_prompt"] = settings.negative
    if isinstance(request, GenerateRequest):
        facts["size"] = f"{settings.width}x{settings.height}"
    else:
        facts["strength"] = settings.strength
    return facts


def _licence_uses(
    request: GenerationRequest,
    home: Home,
    analyzer: Analyzer,
    faceid: ModelUse | None,
    generator: Generator | None,
) -> list[ModelUse]:
    """The model files the job uses; before the load, the generation model's licence from its folder."""
    if generator is not None:
        model_uses = generator.model_files()
    else:
        folder = locate_model(home, request.model)
        decided = model_licence(folder, requested=request.model)
        model_uses = [
            ModelUse(decided.name, folder.name, None, decided.licence, decided.commercial_use, "located")
        ]
        if faceid is not None:
            model_uses.append(faceid)
    return [*analyzer.model_files(), *model_uses]


def _inpaint_faces(
    engine: Generator,
    settings: GenerationSettings,
    pixels: np.ndarray,
    masks: list[np.ndarray],
    regions: list[tuple[slice, slice]],
) -> tuple[np.ndarray, StageSeconds]:
    """Each face re-made in its own square region at the model's working size, pasted back through its
    mask; pixels outside every mask are the photo's own."""
    import cv2

    out = pixels.copy()
    spent = StageSeconds(0.0, 0.0, 0.0)
    size = (settings.width, settings.height)
    for mask, (rows, cols) in zip(masks, regions, strict=True):
        crop, crop_mask = out[rows, cols], mask[rows, cols]
        work = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        work_mask = cv2.resize(crop_mask, size, interpolation=cv2.INTER_NEAREST)
        made, stages = engine.run(settings, image=work, mask=work_mask)
        back = cv2.resize(made, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LANCZOS4)
        out[rows, cols] = _paste_back(crop, back, crop_mask)
        spent = StageSeconds(
            spent.encode + stages.encode, spent.denoise + stages.denoise, spent.decode + stages.decode
        )
    return out, spent


def run_generation(
    request: GenerationRequest,
    *,
    home: Home,
    progress: Progress = no_progress,
    cancel: CancelToken | Any = None,
    analyzer: Analyzer | None = None,
    generator: Generator | None = None,
) -> GenerateOutcome:
    """Run one gated, disclosed generation or edit; see the module docstring.

    ``analyzer`` / ``generator``: already-loaded engines to reuse (the app's pool; tests' stand-ins).
    """
    timer = StageTimer()
    token = CancelToken.of(cancel)
    identity_given = isinstance(request, GenerateRequest) and request.identity is not None

    # 1. Check every option before any work.
    plan = check_options(request, home)
    progress("load", 0.0)

    # 2. The face engine and every model's licence (the generation model is located, not yet loaded).
    with timer.stage("load face engine"):
        face_engine = analyzer if analyzer is not None else load_analyzer(request.backend, home)
    # FaceID's licence is known from the table; its file is located after the gate (a refusal never
    # waits on a model to be installed).
    faceid_use = faceid_table_use() if identity_given else None
    check_model_licences(
        request.purpose, _licence_uses(request, home, face_engine, faceid_use, generator), home
    )
    token.check("before the inputs were read")

    with Registry.open(home) as registry:
        registry.check_model_hashes(face_engine.model_files(), operator=request.operator)
        # 3. Inputs: the photo to edit, or the identity to condition on.
        picture: Picture | None = None
        pixels_in: np.ndarray | None = None
        reference: IdentityReference | None = None
        involved: list[Involvement] = []
        space = face_engine.embedding_space
        if isinstance(request, EditRequest):
            with timer.stage("decode"):
                picture = load_image(request.target, max_pixels=request.max_pixels)
                pixels_in = picture.pixels

        # 4. Analyze: the faces to edit; the identity and the people the prompt names.
        mask: np.ndarray | None = None
        face_masks: list[np.ndarray] = []
        regions: list[tuple[slice, slice]] = []
        if isinstance(request, EditRequest):
            assert picture is not None and pixels_in is not None
            with timer.stage("detect+embed"):
                faces = face_engine.analyze(pixels_in)
                targets = chosen_targets(faces, picture, request.face_index)
            mask = np.zeros(pixels_in.shape[:2], dtype=np.uint8)
            for index, face in targets:
                face_masks.append(face_mask(pixels_in.shape, face))
                regions.append(edit_region(pixels_in.shape, face))
                mask = np.maximum(mask, face_masks[-1])
                involved.append(
                    Involvement(
                        face=face, role="target", label=f"edited face #{index} in {picture.path.name}"
                    )
                )
        identities = registry.list_identities()
        conditioned_id: str | None = None
        if identity_given:
            assert isinstance(request, GenerateRequest) and request.identity is not None
            person = registry.get_identity(request.identity)
            conditioned_id = person.id
            involved.append(_person_involvement(registry, person.id, person.name, "--identity", space))
        for named in people_named(request.prompt, identities):
            if named.identity.id != conditioned_id:
                why = f"named in the prompt as {named.matched!r}"
                involved.append(
                    _person_involvement(registry, named.identity.id, named.identity.name, why, space)
                )
        token.check("before the consent gate")

        # 5. Gate the inputs: the identity, the people named, the faces to edit (before the model loads).
        progress("consent", 0.1)
        input_decision: GateDecision | None = None
        if involved:
            with timer.stage("gate"):
                input_decision = check_consent(
                    registry,
                    involved,
                    purpose=request.purpose,
                    media_kind="image",
                    analyzer=face_engine,
                    operator=request.operator,
                )
        if identity_given:
            person = registry.get_identity(conditioned_id or "")
            reference = identity_reference(registry, person)
        token.check("after the consent gate")

        # 6. Transform: load the model (hash + offline load), then generate or inpaint.
        progress("generate", 0.2)
        with timer.stage("load model"):
            engine = (
                generator if generator is not None else load_generator(home, request.model, task=plan.task)
            )
            if identity_given and engine.faceid is None:
                assert isinstance(request, GenerateRequest)
                engine.attach_faceid(*locate_faceid_weights(home, request.ip_adapter))
        licences = check_model_licences(
            request.purpose, [*face_engine.model_files(), *engine.model_files()], home
        )
        token.check("before generating")
        if pixels_in is not None:
            made, stages = _inpaint_faces(engine, plan.settings, pixels_in, face_masks, regions)
        else:
            embedding = None if reference is None else reference.embedding
            made, stages = engine.run(plan.settings, face_embedding=embedding)
        timer.add("prompt encoding", stages.encode)
        timer.add("denoising", stages.denoise)
        timer.add("decoding", stages.decode)
        token.check("after generating")

        # 7. Gate the output: every face the model made, against the whole registry.
        progress("checking the output", 0.7)
        with timer.stage("output gate"):
            found = face_engine.analyze(made)
            if mask is not None:
                found = [face for face in found if overlaps(mask, face)]
            check = check_output(
                registry,
                [(f"face #{i} in the generated image", face) for i, face in enumerate(found)],
                purpose=request.purpose,
                media_kind="image",
                analyzer=face_engine,
                operator=request.operator,
            )
        decision = _decision(input_decision, check, request, face_engine)
        token.check("after the output gate")

        # 8. Seal (label → watermark → encode → self-check → sign) and record.
        progress("disclose", 0.8)
        tools = {
            "analyzer": face_engine.describe(),
            "generator": engine.describe(),
            "generation": _prompt_record(request, plan.settings),
            "models": manifest_entries(licences),
        }
        ingredients = []
        if picture is not None:
            ingredients.append(
                Ingredient(role="target", path=picture.path, sha256=picture.sha256, format=picture.format)
            )
        job = SealJob(
            kind=plan.kind,
            purpose=request.purpose,
            ingredients=ingredients,
            tools=tools,
            operator=request.operator,
            consent_ids=lambda: decision.consent_ids,
            consent_hashes=lambda ids: {cid: registry.get_consent(cid).terms_sha256() for cid in ids},
            ledger_head=lambda: registry.ledger_head().to_dict(),
            label_corner=request.label_corner,
            label_language=request.label_language,
            faces=lambda: [face.box for face in found],
            disclosure_profile=plan.disclosure_profile,
            content_producer=plan.content_producer,
        )

        def record(sealed: SealedOutput) -> None:
            registry.record_output(sealed, decision=decision, operator=request.operator)

        sealed = seal_frames(
            StillSource(made),
            job,
            StillSink(request.out),
            home=home,
            record=record,
            progress=progress,
            cancel=token,
            timer=timer,
        )

    progress("done", 1.0)
    return GenerateOutcome(
        output=sealed.path,
        output_id=sealed.output_id,
        sha256=sealed.sha256,
        kind=plan.kind,
        consents=list(decision.consent_ids),
        decision=decision,
        faces=[face.to_dict() for face in check.faces],
        timings=dict(timer.seconds),
        diffusers_watermark=engine.diffusers_watermark,
    )


def _paste_back(original: np.ndarray, made: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The model's pixels inside the (feathered) mask, the photo's own outside it."""
    import cv2

    if made.shape != original.shape:
        made = cv2.resize(made, (original.shape[1], original.shape[0]), interpolation=cv2.INTER_LANCZOS4)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigmaX=3.0)
    alpha[mask == 0] = 0.0  # outside the mask: the photo's own pixels, exactly
    alpha = alpha[..., None]
    blended = original.astype(np.float32) * (1.0 - alpha) + made.astype(np.float32) * alpha
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _decision(
    inputs: GateDecision | None, check: OutputCheck, request: GenerationRequest, analyzer: Analyzer
) -> GenerationDecision:
    """One decision for the record: the inputs' matches, then the output's (each consent once)."""
    matches: list[Match] = [*(inputs.matches if inputs is not None else []), *check.matches]
    facts = check.facts
    return GenerationDecision(
        matches=matches,
        embedding_space=facts["embedding_space"],
        threshold=facts["threshold"],
        model=dict(analyzer.describe()),
        checked_at=inputs.checked_at if inputs is not None else dt.datetime.now(dt.UTC),
        purpose=request.purpose,
        media_kind="image",
        margin=facts["margin"],
        threshold_source=facts["threshold_source"],
        metric=facts["metric"],
        output_check=facts,
    )
