"""Model licences in jobs: which purposes are commercial, and the commercial licences operators hold.

Several model files may not be used commercially under their own licence: dlib's 68-point predictor
(iBUG 300-W), every insightface file, GFPGAN and CodeFormer (``likeness models list`` shows which). A job
whose purpose is commercial may use such a file only when the operator has recorded that they hold a
commercial licence for it (``likeness models licence NAME --holder … --evidence FILE --note …``);
:func:`check_model_licences` refuses it otherwise, with :class:`~likeness.errors.LicenceRefused`.

Which purposes are commercial comes from the consent policy (``policy.toml``, the data home's copy first,
as for the consent rules)::

    [model_licences]
    non_commercial_purposes = ["education", "research", "demo"]

Every purpose *not* listed there counts as commercial — film, television, advertising, journalism,
creative (music videos are sold) and any purpose added to the policy later — so a new purpose never
slips through as non-commercial by omission. Until the policy has that table the same list is used from
:data:`DEFAULT_NON_COMMERCIAL_PURPOSES`. These are defaults for a studio's counsel to confirm, not legal
advice.

Recorded licences live in the data home next to the recorded model hashes:
``<models>/likeness-licences.json`` (one record per model file name: holder, note, optional end date,
who recorded it and when, and the sha256 of the evidence document, whose copy is kept under
``<models>/licence-evidence/<sha256><suffix>``). A licence is for a model, not for one copy of its file,
so it is keyed by model name; the hash check of the file itself is the model store's job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from likeness.errors import BadInput, LicenceRefused, RegistryError, RegistryTampered, UsageError
from likeness.home import Home
from likeness.models import ModelUse, entries_for_licence, unique_uses

LICENCES_FILENAME = "likeness-licences.json"
EVIDENCE_DIRNAME = "licence-evidence"
POLICY_TABLE = "model_licences"
POLICY_KEY = "non_commercial_purposes"
DEFAULT_NON_COMMERCIAL_PURPOSES = ("education", "research", "demo")
"""Used while the policy has no ``[model_licences]`` table (see the module docstring)."""


# ------------------------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class LicencePolicy:
    """Which job purposes count as non-commercial; every other purpose is commercial."""

    non_commercial_purposes: frozenset[str]
    source: str

    def is_commercial(self, purpose: str) -> bool:
        return purpose not in self.non_commercial_purposes


def licence_policy(home: Home | None) -> LicencePolicy:
    """The ``[model_licences]`` table of the policy in force (the data home's ``policy.toml`` first)."""
    from importlib import resources

    from likeness.consent.policy import POLICY_FILE

    if home is not None and (home.root / POLICY_FILE).is_file():
        path = home.root / POLICY_FILE
        data, source = path.read_bytes(), str(path)
    else:
        data = (resources.files("likeness.policy") / POLICY_FILE).read_bytes()
        source = "likeness/policy/policy.toml (packaged)"
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: the policy cannot be read ({exc})", hint="fix the file") from exc
    table = raw.get(POLICY_TABLE)
    if table is None:
        return LicencePolicy(
            frozenset(DEFAULT_NON_COMMERCIAL_PURPOSES), f"{source} has no [{POLICY_TABLE}]: built-in default"
        )
    listed = table.get(POLICY_KEY) if isinstance(table, dict) else None
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise RegistryError(
            f"{source}: [{POLICY_TABLE}] {POLICY_KEY} must be a list of purpose names",
            hint=f'e.g. {POLICY_KEY} = ["education", "research", "demo"]',
        )
    purposes = raw.get("purposes", {})
    unknown = [p for p in listed if p not in purposes]
    if unknown:
        raise RegistryError(
            f"{source}: [{POLICY_TABLE}] names purpose(s) the policy does not define: {', '.join(unknown)}",
            hint="list only purposes from the [purposes] table",
        )
    return LicencePolicy(frozenset(listed), source)


# --------------------------------------------------------------------------------------- recorded licences


@dataclass(frozen=True)
class LicenceRecord:
    """That the operator holds a commercial licence for one model, and the evidence of it."""

    model: str
    holder: str
    note: str
    evidence_sha256: str
    evidence_file: str
    """The kept copy, relative to the models directory."""
    evidence_name: str
    """The name of the document as it was given."""
    recorded_at: str
    operator: str
    valid_until: dt.date | None = None

    def active(self, on: dt.date) -> bool:
        return self.valid_until is None or on <= self.valid_until

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "holder": self.holder,
            "note": self.note,
            "evidence_sha256": self.evidence_sha256,
            "evidence_file": self.evidence_file,
            "evidence_name": self.evidence_name,
            "recorded_at": self.recorded_at,
            "operator": self.operator,
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LicenceRecord:
        until = data.get("valid_until")
        return cls(
            model=str(data["model"]),
            holder=str(data["holder"]),
            note=str(data["note"]),
            evidence_sha256=str(data["evidence_sha256"]),
            evidence_file=str(data["evidence_file"]),
            evidence_name=str(data["evidence_name"]),
            recorded_at=str(data["recorded_at"]),
            operator=str(data["operator"]),
            valid_until=dt.date.fromisoformat(str(until)) if until else None,
        )


def licences_file(home: Home) -> Path:
    return home.models_dir / LICENCES_FILENAME


def recorded_licences(home: Home) -> dict[str, LicenceRecord]:
    """The licences recorded in ``home``, by model name. A damaged file is an error, never reset."""
    path = licences_file(home)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise RegistryError(f"{path}: the recorded model licences cannot be read ({exc.strerror})") from exc
    try:
        data = json.loads(text)
        return {name: LicenceRecord.from_dict(entry) for name, entry in data["licences"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(
            f"{path}: the recorded model licences are damaged ({type(exc).__name__}: {exc}); no commercial "
            "job can use a non-commercial model while they are",
            hint="restore the file from a backup, or delete it and record the licences again",
        ) from exc


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _keep_evidence(home: Home, evidence: Path) -> tuple[str, str]:
    """Copy the evidence document under its sha256; ``(sha256, path relative to the models dir)``."""
    if not evidence.is_file():
        raise BadInput(
            f"licence evidence {evidence} is not a readable file",
            hint="give the signed licence agreement (PDF, image or text) as --evidence",
        )
    try:
        data = evidence.read_bytes()
    except OSError as exc:
        raise BadInput(f"licence evidence {evidence} cannot be read ({exc.strerror})") from exc
    if not data:
        raise BadInput(f"licence evidence {evidence} is empty", hint="give the signed licence agreement")
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{EVIDENCE_DIRNAME}/{digest}{evidence.suffix.lower()}"
    target = home.models_dir / relative
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".evidence-", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(evidence, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest, relative


def record_licence(
    home: Home,
    name: str,
    *,
    holder: str,
    evidence: Path,
    note: str,
    operator: str,
    valid_until: dt.date | None = None,
    now: dt.datetime | None = None,
) -> list[LicenceRecord]:
    """Record that the operator holds a commercial licence for model ``name`` (a file or a package name:
    then for each of its non-commercial files). Replaces an earlier record for the same model."""
    holder, note = holder.strip(), note.strip()
    if not holder:
        raise UsageError("--holder is empty", hint="name the person or company that holds the licence")
    if not note:
        raise UsageError("--note is empty", hint="say what the licence covers (scope, term, reference)")
    entries = entries_for_licence(name)
    moment = now or dt.datetime.now(dt.UTC)
    if valid_until is not None and valid_until < moment.date():
        raise UsageError(f"--until {valid_until.isoformat()} is in the past")
    digest, relative = _keep_evidence(home, evidence)
    records = recorded_licences(home)
    added: list[LicenceRecord] = []
    for entry in entries:
        record = LicenceRecord(
            model=entry.name,
            holder=holder,
            note=note,
            evidence_sha256=digest,
            evidence_file=relative,
            evidence_name=evidence.name,
            recorded_at=moment.isoformat(timespec="seconds"),
            operator=operator,
            valid_until=valid_until,
        )
        records[entry.name] = record
        added.append(record)
    _sign_licences(home, added, operator)
    payload = {"version": 1, "licences": {k: v.to_dict() for k, v in sorted(records.items())}}
    _write_atomically(licences_file(home), (json.dumps(payload, indent=2) + "\n").encode("utf-8"))
    return added


def _sign_licences(home: Home, records: Sequence[LicenceRecord], operator: str) -> None:
    """A signed ``licence`` ledger entry binding each record's content hash (see docs/trust.md)."""
    from likeness.consent.bindings import record_hash
    from likeness.consent.registry import Registry

    with Registry.open(home) as registry:
        digests = {record.model: record_hash(record.to_dict()) for record in records}
        registry.bind_records("licence", "licences", digests, operator=operator)


def _check_signed(home: Home, record: LicenceRecord) -> None:
    """RegistryTampered unless ``record`` is the one the newest signed licence entry for its model bound."""
    from likeness.consent.bindings import record_hash
    from likeness.consent.registry import Registry

    with Registry.open(home) as registry:
        signed = registry.signed_records("licences").get(record.model)
    if signed is None:
        raise RegistryTampered(
            f"registry tampered: the licence record of {record.model} in {licences_file(home)} has no signed "
            "licence entry in the ledger",
            hint="record the licence again with `likeness models licence` (it is then signed)",
        )
    if signed != record_hash(record.to_dict()):
        raise RegistryTampered(
            f"registry tampered: the licence record of {record.model} in {licences_file(home)} differs from "
            "the record signed in the ledger",
            hint="restore the file from a backup, or record the licence again",
        )


# ------------------------------------------------------------------------------------------------ jobs


@dataclass(frozen=True)
class LicenceUse:
    """One model file of a job and the ground on which its licence allows this job."""

    model: ModelUse
    purpose: str
    commercial_purpose: bool
    basis: str
    """``commercial use allowed`` (the model's own licence), ``non-commercial purpose`` or
    ``licence recorded`` (the operator's commercial licence, in :attr:`record`)."""
    record: LicenceRecord | None = None

    def to_dict(self) -> dict[str, object]:
        data = self.model.to_dict()
        data.update(
            {
                "purpose": self.purpose,
                "commercial_purpose": self.commercial_purpose,
                "basis": self.basis,
                "licence_holder": self.record.holder if self.record else None,
                "licence_evidence_sha256": self.record.evidence_sha256 if self.record else None,
            }
        )
        return data

    def manifest_value(self) -> str:
        """One line for the manifest / ledger: file, hash, licence, and why this job may use it."""
        why = self.basis
        if self.record is not None:
            record = self.record
            why = f"commercial licence held by {record.holder} (evidence sha256:{record.evidence_sha256})"
        return f"{self.model.manifest_value()}; purpose {self.purpose!r}: {why}"


def manifest_entries(uses: Sequence[LicenceUse]) -> dict[str, str]:
    """``{model name: manifest line}`` — the shape of one ``Unsealed.tools`` entry (str → str)."""
    return {use.model.name: use.manifest_value() for use in uses}


def check_model_licences(
    purpose: str, model_files: Iterable[ModelUse], home: Home, *, today: dt.date | None = None
) -> list[LicenceUse]:
    """How each model file's licence allows a job for ``purpose``; :class:`LicenceRefused` if one does not.

    ``model_files`` is what the job's analyzer and swapper report (``model_files()``). The result goes
    into the ledger / C2PA manifest. Refused: a commercial purpose (see :func:`licence_policy`) with a
    model marked non-commercial for which no licence is recorded, or whose recorded licence has ended.
    """
    policy = licence_policy(home)
    commercial = policy.is_commercial(purpose)
    uses = unique_uses(list(model_files))
    day = today or dt.datetime.now(dt.UTC).date()
    restricted = [use for use in uses if not use.commercial_use]
    records = recorded_licences(home) if commercial and restricted else {}
    result: list[LicenceUse] = []
    refused: list[str] = []
    for use in uses:
        if use.commercial_use:
            result.append(LicenceUse(use, purpose, commercial, "commercial use allowed"))
        elif not commercial:
            result.append(LicenceUse(use, purpose, commercial, "non-commercial purpose"))
        elif (record := records.get(use.name)) is not None and record.active(day):
            _check_signed(home, record)
            result.append(LicenceUse(use, purpose, commercial, "licence recorded", record))
        else:
            ended = f"; the licence recorded for it ended {record.valid_until}" if record is not None else ""
            refused.append(f"{use.name} ({use.file}: {use.licence}{ended})")
    if refused:
        allowed = ", ".join(sorted(policy.non_commercial_purposes)) or "none"
        raise LicenceRefused(
            f"purpose {purpose!r} counts as commercial ({policy.source}), and this job would use "
            f"{len(refused)} model file(s) licensed for non-commercial use only, with no commercial licence "
            f"recorded: {'; '.join(refused)}",
            hint=(
                "if you hold a commercial licence, record it: likeness models licence NAME --holder "
                '"…" --evidence FILE --note "…"; otherwise use a non-commercial purpose '
                f"({allowed})"
            ),
        )
    return result
