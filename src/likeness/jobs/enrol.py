"""Enrolling a person from reference photos (each must show exactly one face)."""

from __future__ import annotations

from likeness.consent.records import Identity
from likeness.consent.registry import Reference, Registry
from likeness.errors import UsageError
from likeness.faces.backends import available_analyzers, load_analyzer
from likeness.home import Home
from likeness.jobs.requests import EnrolRequest
from likeness.jobs.selection import one_face
from likeness.media.image import load_image
from likeness.progress import Progress, no_progress


def enrol_identity(request: EnrolRequest, *, home: Home, progress: Progress = no_progress) -> Identity:
    """Enrol a person from reference photos: one reference per photo and per available backend."""
    if not request.photos:
        raise UsageError("at least one --photo is needed to enrol an identity")
    analyzers = (
        available_analyzers(home) if request.backend == "all" else [load_analyzer(request.backend, home)]
    )
    references: list[Reference] = []
    for number, photo in enumerate(request.photos):
        progress(f"reference {number + 1}/{len(request.photos)}", number / len(request.photos))
        picture = load_image(photo, max_pixels=request.max_pixels)
        for analyzer in analyzers:
            face = one_face(analyzer.analyze(picture.pixels), picture, f"reference photo ({analyzer.name})")
            references.append(Reference.from_face(face, picture))
    with Registry.open(home) as registry:
        identity = registry.add_identity(request.name, references, operator=request.operator)
    progress("done", 1.0)
    return identity
