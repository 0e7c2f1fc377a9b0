"""C2PA content credentials: sign every output, and read (validate) them back.

Signing (:func:`sign_content_credentials`) embeds one manifest, signed with the installation's
certificate chain (:mod:`likeness.disclosure.certificates`), into a finished file **in place**
(the writer's temp file, before it is recorded and renamed). It works for any media type
c2pa-python can embed into (JPEG, PNG, MP4, …); the caller says which.

The manifest (no thumbnails, no personal data — no names, no operator):

- ``c2pa.actions.v2``: for a swap onto a user's picture, ``c2pa.opened`` (the target, the parent
  ingredient), ``c2pa.placed`` (each other supplied asset, e.g. the source likeness) and
  ``c2pa.edited`` with IPTC digitalSourceType ``compositeWithTrainedAlgorithmicMedia``; for
  generated media ``c2pa.created`` with ``trainedAlgorithmicMedia`` (then ``c2pa.placed``). The
  edit/create action names likeness (version) as its ``softwareAgent`` and lists the tools and
  models used under ``parameters["org.likeness.tools"]``.
- one ingredient per asset the user supplied, titled by its role only ("target", "source"); its
  file is read for the format and any C2PA history when it is still there unchanged.
- ``org.likeness.consent``: output id, kind, purpose, consent record ids, the hash of each
  consent's recorded terms (when known) and each ingredient's sha256.

Reading (:func:`read_credentials`) validates with this installation's root (and configured roots)
as trust anchors and reports one of ``trusted`` / ``valid-untrusted`` / ``invalid`` / ``absent``
with the validation failure codes as reasons (c2pa's "Valid" may still carry
``signingCredential.untrusted``: the codes decide, not the word).

c2pa-python is imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from likeness.disclosure.certificates import SigningCredentials, signing_credentials, trust_anchors_pem
from likeness.disclosure.types import Ingredient, ResultKind
from likeness.errors import DisclosureError
from likeness.fsutil import sha256_file
from likeness.home import Home

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    "swap": IPTC + "compositeWithTrainedAlgorithmicMedia",
    "generated": IPTC + "trainedAlgorithmicMedia",
}
AI_SOURCE_TYPES = frozenset(
    IPTC + name
    for name in (
        "trainedAlgorithmicMedia",
        "compositeWithTrainedAlgorithmicMedia",
        "algorithmicMedia",
        "compositeSynthetic",
    )
)
LIKENESS_ASSERTION = "org.likeness.consent"
TOOLS_PARAMETER = "org.likeness.tools"
GENERATOR = "likeness"
FORMAT_MIME = {
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
    "HEIC": "image/heic",
    "MP4": "video/mp4",
    "MOV": "video/quicktime",
    "QUICKTIME": "video/quicktime",
    "M4V": "video/mp4",
}
CredentialState = Literal["trusted", "valid-untrusted", "invalid", "absent"]
READ_SETTINGS: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
SIGN_SETTINGS: dict[str, Any] = {
    "builder": {"thumbnail": {"enabled": False}},
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
}


def _version() -> str:
    from likeness import __version__

    return __version__


@dataclass(frozen=True)
class CredentialFacts:
    """What a manifest states about one output: ids, hashes, tools; never a person's name."""

    output_id: str
    kind: ResultKind
    media_type: str
    purpose: str
    consent_ids: Sequence[str]
    ingredients: Sequence[Ingredient] = ()
    tools: Mapping[str, Any] = field(default_factory=dict)
    """Tool role → its description (names, versions, model files and licences)."""
    consent_hashes: Mapping[str, str] = field(default_factory=dict)
    """Consent id → sha256 of its recorded terms (optional)."""
    ledger_head: Mapping[str, object] | None = None
    """The registry ledger's head ({seq, hash}) when the output was sealed (optional): a released
    output witnesses that the ledger held this entry (``likeness audit verify --witness``)."""

    def __post_init__(self) -> None:
        if self.kind not in DIGITAL_SOURCE_TYPES:
            raise DisclosureError(
                f"unknown output kind {self.kind!r}; expected one of {', '.join(DIGITAL_SOURCE_TYPES)}"
            )


@dataclass(frozen=True)
class CredentialResult:
    """A manifest embedded by :func:`sign_content_credentials`."""

    path: Path
    media_type: str
    manifest_label: str | None
    state: CredentialState
    """As read back right after signing, with this installation's trust anchors."""
    signer: dict[str, str | None]
    manifest_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "media_type": self.media_type,
            "manifest_label": self.manifest_label,
            "state": self.state,
            "signer": dict(self.signer),
            "manifest_bytes": self.manifest_bytes,
            "seconds": round(self.seconds, 4),
        }


@dataclass(frozen=True)
class CredentialReport:
    """What a file's content credentials say, and whether they hold."""

    state: CredentialState
    reasons: tuple[str, ...] = ()
    """Validation failure codes of the active manifest, e.g. ``assertion.dataHash.mismatch``."""
    explanations: tuple[str, ...] = ()
    output_id: str | None = None
    consent_ids: tuple[str, ...] = ()
    consent_hashes: dict[str, str] = field(default_factory=dict)
    kind: str | None = None
    digital_source_type: str | None = None
    actions: tuple[str, ...] = ()
    ingredients: tuple[dict[str, Any], ...] = ()
    tools: dict[str, Any] = field(default_factory=dict)
    signer: dict[str, str] = field(default_factory=dict)
    claim_generator: str | None = None
    manifest_label: str | None = None
    ledger_head: dict[str, Any] | None = None
    """The registry ledger head ({seq, hash}) the manifest states, if any."""

    @property
    def present(self) -> bool:
        return self.state != "absent"

    @property
    def ai_generated(self) -> bool:
        """Whether the manifest declares AI-made or AI-composited media."""
        return self.digital_source_type in AI_SOURCE_TYPES

    @property
    def by_likeness(self) -> bool:
        return self.output_id is not None

    def describe(self) -> str:
        """One line in words."""
        if self.state == "absent":
            return "none (no C2PA manifest in the file)"
        who = self.signer.get("common_name") or self.signer.get("issuer") or "an unknown signer"
        if self.state == "trusted":
            text = f"trusted (signed by {who}, a certificate this installation trusts)"
        elif self.state == "valid-untrusted":
            text = (
                f"valid but untrusted (signed by {who}, whose certificate this installation does not trust)"
            )
        else:
            text = "INVALID (the file or its manifest changed after signing)"
        if self.reasons:
            text += f"; reasons: {', '.join(self.reasons)}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "reasons": list(self.reasons),
            "explanations": list(self.explanations),
            "output_id": self.output_id,
            "consent_ids": list(self.consent_ids),
            "consent_hashes": dict(self.consent_hashes),
            "kind": self.kind,
            "digital_source_type": self.digital_source_type,
            "ai_generated": self.ai_generated,
            "actions": list(self.actions),
            "ingredients": [dict(item) for item in self.ingredients],
            "tools": dict(self.tools),
            "signer": dict(self.signer),
            "claim_generator": self.claim_generator,
            "manifest_label": self.manifest_label,
            "ledger_head": dict(self.ledger_head) if self.ledger_head else None,
        }


# -- building the manifest -------------------------------------------------------------------------
def ingredient_media_type(ingredient: Ingredient) -> str | None:
    """The MIME type of an ingredient, from its decoded format, else its file name."""
    fmt = (ingredient.format or "").strip()
    if "/" in fmt:
        return fmt.lower()
    if fmt.upper() in FORMAT_MIME:
        return FORMAT_MIME[fmt.upper()]
    if ingredient.path is not None:
        guessed, _ = mimetypes.guess_type(str(ingredient.path))
        return guessed
    return None


def _usable_file(ingredient: Ingredient, supported: Sequence[str]) -> Path | None:
    """The ingredient's file if it is still there, unchanged, in a format c2pa can parse."""
    if ingredient.path is None or ingredient_media_type(ingredient) not in supported:
        return None
    path = Path(ingredient.path)
    try:
        if path.is_file() and sha256_file(path) == ingredient.sha256.lower():
            return path
    except OSError:
        return None
    return None


def _parent(facts: CredentialFacts) -> Ingredient | None:
    """The asset the output was edited from: a swap's target (generated media has none)."""
    if facts.kind != "swap":
        return None
    return next((item for item in facts.ingredients if item.role == "target"), None)


def _ingredient_ids(facts: CredentialFacts) -> list[str]:
    """Unique labels (``target``, ``source``, ``source-2`` …) linking actions to ingredients."""
    ids: list[str] = []
    for item in facts.ingredients:
        base = "".join(c if c.isalnum() or c in "-_" else "-" for c in (item.role or "ingredient"))
        label, n = base, 1
        while label in ids:
            n += 1
            label = f"{base}-{n}"
        ids.append(label)
    return ids


def _jsonable_tools(tools: Mapping[str, Any]) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return str(value)

    return clean(tools)


def build_manifest(facts: CredentialFacts) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest definition and the ingredient definitions (same order as ``facts.ingredients``)."""
    source_type = DIGITAL_SOURCE_TYPES[facts.kind]
    parent = _parent(facts)
    ids = _ingredient_ids(facts)
    agent = {"name": GENERATOR, "version": _version()}
    tools = _jsonable_tools(facts.tools)
    ingredient_defs: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    placed: list[dict[str, Any]] = []
    for item, label in zip(facts.ingredients, ids, strict=True):
        relationship = "parentOf" if item is parent else "componentOf"
        definition: dict[str, Any] = {
            "title": f"{item.role} (supplied by the user)",
            "relationship": relationship,
            "label": label,
        }
        media_type = ingredient_media_type(item)
        if media_type:
            definition["format"] = media_type
        ingredient_defs.append(definition)
        if item is parent:
            actions.append({"action": "c2pa.opened", "parameters": {"ingredientIds": [label]}})
        else:
            placed.append({"action": "c2pa.placed", "parameters": {"ingredientIds": [label]}})
    main: dict[str, Any] = {
        "action": "c2pa.edited" if parent is not None else "c2pa.created",
        "digitalSourceType": source_type,
        "softwareAgent": agent,
        "description": (
            "face(s) replaced with a consented likeness"
            if facts.kind == "swap"
            else "generated from a consented likeness"
        ),
        "parameters": {TOOLS_PARAMETER: tools},
    }
    if parent is not None:
        actions += [*placed, main]
    else:
        actions = [main, *placed]
    consent = {
        "output_id": facts.output_id,
        "kind": facts.kind,
        "purpose": facts.purpose,
        "consent_ids": list(dict.fromkeys(facts.consent_ids)),
        "consent_terms_sha256": {str(k): str(v) for k, v in facts.consent_hashes.items()},
        **({"ledger_head": dict(facts.ledger_head)} if facts.ledger_head else {}),
        "ingredients": [
            {"role": item.role, "sha256": item.sha256, "format": ingredient_media_type(item)}
            for item in facts.ingredients
        ],
    }
    manifest = {
        "claim_generator_info": [agent],
        "title": f"likeness output {facts.output_id}",
        "format": facts.media_type,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {"label": LIKENESS_ASSERTION, "data": consent},
        ],
    }
    return manifest, ingredient_defs


# -- signing ----------------------------------------------------------------------------------------
def _signer(credentials: SigningCredentials):
    from c2pa import C2paSignerInfo, Signer

    info = C2paSignerInfo(
        credentials.alg.encode("ascii"),
        credentials.chain_pem,
        credentials.key_pem,
        credentials.tsa_url.encode("utf-8") if credentials.tsa_url else None,
    )
    return Signer.from_info(info)


def _signing_failed(
    path: Path, exc: BaseException, credentials: SigningCredentials | None
) -> DisclosureError:
    where = f" with the {credentials.source} certificate {credentials.chain_path}" if credentials else ""
    return DisclosureError(
        f"{path}: signing the content credentials failed{where} ({type(exc).__name__}: {exc}); "
        "nothing was written",
        hint="check the C2PA certificate and key (see likeness.disclosure.certificates), or that the "
        "media type can carry a C2PA manifest",
    )


def sign_content_credentials(path: Path, *, facts: CredentialFacts, home: Home) -> CredentialResult:
    """Embed a signed C2PA manifest for ``facts`` into ``path``, replacing it in place.

    Fails closed: any problem (no usable certificate, unsupported media type, a c2pa error, a
    manifest that does not read back valid) raises :class:`DisclosureError` and leaves ``path``
    as it was (the caller then discards it).
    """
    import c2pa

    path = Path(path)
    start = time.perf_counter()
    credentials: SigningCredentials | None = None
    tmp: Path | None = None
    try:
        credentials = signing_credentials(home)
        supported = c2pa.Builder.get_supported_mime_types()
        if facts.media_type not in supported:
            raise DisclosureError(
                f"{path}: C2PA cannot be embedded in {facts.media_type}",
                hint="write the output as JPEG, PNG or MP4",
            )
        manifest, ingredient_defs = build_manifest(facts)
        files = [_usable_file(item, supported) for item in facts.ingredients]
        # An ingredient whose file is gone, changed or unparseable is stated from what is known.
        stated = [d for d, f in zip(ingredient_defs, files, strict=True) if f is None]
        if stated:
            manifest["ingredients"] = stated
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".c2pa")
        os.close(fd)
        tmp = Path(name)
        with (
            c2pa.Context.from_dict(SIGN_SETTINGS) as context,
            c2pa.Builder(manifest, context=context) as builder,
            _signer(credentials) as signer,
        ):
            for definition, file in zip(ingredient_defs, files, strict=True):
                if file is not None:
                    with file.open("rb") as stream:
                        builder.add_ingredient(definition, definition["format"], stream)
            with path.open("rb") as source, tmp.open("w+b") as dest:
                manifest_bytes = builder.sign(signer, facts.media_type, source, dest)
                dest.flush()
                os.fsync(dest.fileno())
        report = read_credentials(tmp, home=home, media_type=facts.media_type)
        wanted = ("trusted",) if credentials.source == "installation" else ("trusted", "valid-untrusted")
        if report.state not in wanted or report.output_id != facts.output_id:
            raise DisclosureError(
                f"{path}: the signed manifest reads back {report.state}"
                + (f" ({', '.join(report.reasons)})" if report.reasons else "")
                + (f" naming {report.output_id}" if report.output_id != facts.output_id else ""),
                hint="check the C2PA certificate chain and the trust anchors",
            )
        os.replace(tmp, path)
        tmp = None
    except DisclosureError:
        raise
    except Exception as exc:  # c2pa.C2paError, OSError, ValueError from a bad key …
        raise _signing_failed(path, exc, credentials) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    info = credentials.describe()
    return CredentialResult(
        path=path,
        media_type=facts.media_type,
        manifest_label=report.manifest_label,
        state=report.state,
        signer={
            "source": info["source"],
            "alg": info["alg"],
            "subject": info["subject"],
            "issuer": info["issuer"],
        },
        manifest_bytes=len(manifest_bytes),
        seconds=time.perf_counter() - start,
    )


# -- reading ----------------------------------------------------------------------------------------
def sniff_media_type(head: bytes) -> str | None:
    """The MIME type from a file's first bytes (JPEG, PNG, WebP, MP4/MOV), else ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    return None


def _read_context(home: Home | None):
    import c2pa

    settings = json.loads(json.dumps(READ_SETTINGS))
    anchors = trust_anchors_pem(home)
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    return c2pa.Context.from_dict(settings)


def _codes(entries: Sequence[Mapping[str, Any]] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    entries = entries or []
    codes = tuple(str(e.get("code", "")) for e in entries if e.get("code"))
    explanations = tuple(str(e.get("explanation", "")) for e in entries if e.get("code"))
    return codes, explanations


def _state(validation_state: str | None, failures: Sequence[str]) -> CredentialState:
    trust_only = all(code.startswith("signingCredential.untrusted") for code in failures)
    if validation_state == "Trusted" and not failures:
        return "trusted"
    if validation_state in ("Trusted", "Valid") and trust_only:
        return "valid-untrusted"
    if validation_state is None and not failures:
        return "valid-untrusted"
    return "invalid"


def _report_from(manifest_store: Mapping[str, Any]) -> CredentialReport:
    label = manifest_store.get("active_manifest")
    manifest = (manifest_store.get("manifests") or {}).get(label) or {}
    results = manifest_store.get("validation_results") or {}
    failures, explanations = _codes((results.get("activeManifest") or {}).get("failure"))
    if not results and manifest_store.get("validation_status"):
        failures, explanations = _codes(manifest_store.get("validation_status"))
    state = _state(manifest_store.get("validation_state"), failures)

    actions: list[str] = []
    source_type: str | None = None
    tools: dict[str, Any] = {}
    consent: dict[str, Any] = {}
    for assertion in manifest.get("assertions") or []:
        data = assertion.get("data") or {}
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in data.get("actions") or []:
                actions.append(str(action.get("action")))
                if action.get("digitalSourceType") and (
                    source_type is None or action.get("action") in ("c2pa.created", "c2pa.edited")
                ):
                    source_type = str(action["digitalSourceType"])
                found = (action.get("parameters") or {}).get(TOOLS_PARAMETER)
                if isinstance(found, Mapping):
                    tools = dict(found)
        elif assertion.get("label") == LIKENESS_ASSERTION:
            consent = dict(data)
    hashes = {
        str(item.get("role")): item.get("sha256")
        for item in consent.get("ingredients") or []
        if isinstance(item, Mapping)
    }
    ingredients = []
    for item in manifest.get("ingredients") or []:
        role = str(item.get("title", "")).split(" (supplied by the user)", 1)[0]
        ingredients.append(
            {
                "role": role if role in hashes else None,
                "title": item.get("title"),
                "format": item.get("format"),
                "relationship": item.get("relationship"),
                "sha256": hashes.get(role),
            }
        )
    signature = manifest.get("signature_info") or {}
    generators = manifest.get("claim_generator_info") or []
    generator = None
    if generators and isinstance(generators[0], Mapping):
        generator = " ".join(str(generators[0].get(k)) for k in ("name", "version") if generators[0].get(k))
    elif manifest.get("claim_generator"):
        generator = str(manifest["claim_generator"])
    return CredentialReport(
        state=state,
        reasons=failures,
        explanations=explanations,
        output_id=consent.get("output_id"),
        consent_ids=tuple(str(c) for c in consent.get("consent_ids") or []),
        consent_hashes={str(k): str(v) for k, v in (consent.get("consent_terms_sha256") or {}).items()},
        kind=consent.get("kind"),
        digital_source_type=source_type,
        actions=tuple(actions),
        ingredients=tuple(ingredients),
        tools=tools,
        signer={
            str(k): str(v)
            for k, v in signature.items()
            if k in ("issuer", "common_name", "alg", "time", "cert_serial_number") and v is not None
        },
        claim_generator=generator,
        manifest_label=label,
        ledger_head=dict(consent["ledger_head"]) if isinstance(consent.get("ledger_head"), Mapping) else None,
    )


def read_credentials(
    path: str | Path, home: Home | None = None, *, media_type: str | None = None
) -> CredentialReport:
    """Validate the C2PA manifest in ``path`` against this installation's trust anchors."""
    import c2pa

    path = Path(path)
    try:
        with path.open("rb") as stream:
            head = stream.read(16)
            stream.seek(0)
            fmt = media_type or sniff_media_type(head)
            with _read_context(home) as context:
                reader = c2pa.Reader.try_create(fmt, stream, None, context)
                if reader is None:
                    return CredentialReport(state="absent")
                with reader:
                    store = json.loads(reader.json())
    except OSError as exc:
        raise DisclosureError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except c2pa.C2paError as exc:
        message = str(exc)
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in message:
            return CredentialReport(state="absent")
        if "NotSupported" in type(exc).__name__:
            return CredentialReport(
                state="absent", explanations=(f"C2PA cannot be read from this file type ({message})",)
            )
        return CredentialReport(
            state="invalid",
            reasons=("manifest.unreadable",),
            explanations=(f"{type(exc).__name__}: {message}",),
        )
    return _report_from(store)
