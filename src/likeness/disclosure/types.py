"""The in-memory result of a job and what sealing it produced.

An ``Unsealed`` result cannot be written by anything but the one sealing path (``likeness.disclosure.seal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

ResultKind = Literal["swap", "generated", "edit"]
"""swap: faces replaced; generated: made by a model; edit: a photo's face(s) re-made by a model."""


@dataclass(frozen=True)
class Ingredient:
    """An input the user supplied (source likeness, target footage)."""

    role: str
    path: Path | None
    sha256: str
    format: str


@dataclass(frozen=True)
class Unsealed:
    pixels: np.ndarray = field(repr=False)
    kind: ResultKind
    purpose: str
    consent_ids: list[str]
    ingredients: list[Ingredient]
    tools: dict[str, dict[str, str]]
    operator: str
    label_corner: str = "bottom-right"
    label_language: str = "en"
    disclosure_profile: str = "default"
    """``default``, ``eu`` or ``cn`` (:mod:`likeness.disclosure.profiles`)."""
    consent_hashes: dict[str, str] = field(default_factory=dict)
    """Consent id → sha256 of its recorded terms (``ConsentRecord.terms_sha256()``), for the C2PA
    manifest; optional."""


@dataclass(frozen=True)
class SealedOutput:
    path: Path
    output_id: str
    sha256: str
    media_type: str
    kind: ResultKind
    consent_ids: list[str]
    purpose: str
    phash: str | None = None
    c2pa: bool = False
    notes: tuple[str, ...] = ()
    """What the user should know about the disclosure (e.g. the label had to cover a face)."""
    ingredient_sha256: dict[str, str] = field(default_factory=dict)
    """Role → sha256 of each unmodified input (``Unsealed.ingredients``); the registry records them
    with the output so ``likeness verify`` can tell an input from an output. Optional."""
    ledger_head: dict[str, object] | None = None
    """The registry ledger's head ({seq, hash}) just before the manifest was signed; stated in the
    manifest and the output's ledger entry, so released outputs witness the chain. Optional."""
    disclosure: dict[str, object] | None = None
    """The disclosure as drawn (the manifest's ``org.likeness.disclosure``: profile, rule, labels);
    also stated in the output's signed ledger entry, so ``likeness verify`` can judge a copy whose
    credentials were stripped. Optional."""
    aigc: dict[str, str] | None = None
    """The AIGC implicit label written into the file's metadata (profiles that require one)."""
