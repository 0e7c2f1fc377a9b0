"""What the verified ledger says the registry holds: the only facts the gate acts on.

:class:`TrustedLedger` is built by walking the ledger once (every entry's hash recomputed, every
link and sequence number checked, the newest entry's signature and every revoke / erasure
entry's signature verified), then advanced entry by entry as the ledger grows. Because each hash
covers the previous one, the signed newest entry authenticates the whole walked chain. It keeps:

- the bound content hash of every identity, reference face, consent and calibration row
  (``consent.bindings``), and which references each identity has in which embedding space;
- every revoked consent and erased identity (so a deleted or edited revocation is noticed by the
  walk itself: a gap, a broken link or a wrong hash);
- the newest signed calibration per embedding space (the operating point).

Each check (:func:`advance`) also compares the database's newest entry with the head file kept
outside the database (``consent.head_file``): a chain that no longer contains the entry the file
names was truncated. The registry keeps one TrustedLedger per Registry instance (never global);
a process that has verified a prefix keeps what it learned even if that prefix is edited later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from likeness import ledger
from likeness.consent.bindings import calibration_hash
from likeness.consent.head_file import Head, HeadFile
from likeness.errors import RegistryTampered


@dataclass(frozen=True)
class Bound:
    """A row's content hash as a signed entry recorded it."""

    digest: str
    seq: int


@dataclass(frozen=True)
class BoundReference:
    digest: str
    seq: int
    identity_id: str
    embedding_space: str


@dataclass(frozen=True)
class SignedCalibration:
    calibration_id: str
    values: dict[str, Any]
    seq: int


@dataclass
class TrustedLedger:
    """The facts of a verified ledger prefix (see the module docstring)."""

    seq: int = 0
    hash: str = ledger.GENESIS_HASH
    identities: dict[str, Bound] = field(default_factory=dict)
    references: dict[str, BoundReference] = field(default_factory=dict)
    by_identity: dict[str, set[str]] = field(default_factory=dict)
    """Identity id → ids of its bound references (an index into ``references``)."""
    consents: dict[str, Bound] = field(default_factory=dict)
    calibrations: dict[str, Bound] = field(default_factory=dict)
    newest_calibration: dict[str, SignedCalibration] = field(default_factory=dict)
    revoked: dict[str, int] = field(default_factory=dict)
    erased: dict[str, int] = field(default_factory=dict)
    records: dict[str, dict[str, Bound]] = field(default_factory=dict)
    """Other bound records by table, e.g. ``licences`` (model name → hash of its licence record)."""
    references_changed_at: int = 0
    """Seq of the newest entry that added or removed references (galleries built before it are stale)."""
    broken: str | None = None

    def references_of(self, identity_id: str) -> dict[str, BoundReference]:
        return {rid: self.references[rid] for rid in self.by_identity.get(identity_id, ())}

    # -- applying one verified entry -------------------------------------------------------------
    def apply(self, seq: int, kind: str, payload: Mapping[str, Any]) -> None:
        rows = payload.get("rows") or {}
        if kind == "binding_upgrade":  # a snapshot of every current identity and reference row
            self.identities = {}
            self.references = {}
            self.by_identity = {}
        for row_id, digest in (rows.get("identities") or {}).items():
            self.identities[row_id] = Bound(digest, seq)
        for table, bound in rows.items():
            if table not in ("identities", "face_references"):
                for row_id, digest in (bound or {}).items():
                    self.records.setdefault(table, {})[row_id] = Bound(str(digest), seq)
        owners = payload.get("reference_of") or {}
        for row_id, digest in (rows.get("face_references") or {}).items():
            identity_id, space = owners.get(row_id, [None, None])
            self.references[row_id] = BoundReference(digest, seq, str(identity_id), str(space))
            self.by_identity.setdefault(str(identity_id), set()).add(row_id)
        if kind in ("enrol", "references_added", "binding_upgrade", "erasure"):
            self.references_changed_at = seq
        if kind == "grant" and payload.get("consent_id"):
            self.consents[str(payload["consent_id"])] = Bound(str(payload.get("terms_sha256")), seq)
        elif kind == "revoke" and payload.get("consent_id"):
            self.revoked.setdefault(str(payload["consent_id"]), seq)
        elif kind == "erasure":
            identity_id = str(payload.get("identity_id"))
            self.erased.setdefault(identity_id, seq)
            for consent_id in payload.get("consents_revoked") or []:
                self.revoked.setdefault(str(consent_id), seq)
            for row_id in self.by_identity.pop(identity_id, set()):
                self.references.pop(row_id, None)
        elif kind == "calibration" and payload.get("id"):
            calibration_id = str(payload["id"])
            self.calibrations[calibration_id] = Bound(calibration_hash(payload), seq)
            self.newest_calibration[str(payload["embedding_space"])] = SignedCalibration(
                calibration_id, dict(payload), seq
            )


_NEEDS_PAYLOAD = frozenset(
    (
        "enrol",
        "references_added",
        "binding_upgrade",
        "grant",
        "revoke",
        "erasure",
        "calibration",
        "licence",
        "model_hash",
    )
)


def _fast_hash(row: Any) -> str:
    """The entry hash from the stored payload text as it is (equal to ``ledger.entry_hash`` when
    the text is canonical, which is how ``ledger.append`` stores it)."""
    body = (
        f'{{"actor":{json.dumps(row.actor, ensure_ascii=False)},"key_id":{json.dumps(row.key_id)},'
        f'"kind":{json.dumps(row.kind, ensure_ascii=False)},"payload":{row.payload},"seq":{int(row.seq)},'
        f'"time":{json.dumps(row.time, ensure_ascii=False)}}}'
    )
    return hashlib.sha256((row.prev_hash + body).encode("utf-8")).hexdigest()


def _hash_matches(row: Any) -> bool:
    if _fast_hash(row) == row.hash:
        return True
    try:  # stored text not canonical (reformatted): hash what it means, as ``verify_chain`` does
        payload = json.loads(row.payload)
    except ValueError:
        return False
    recomputed = ledger.entry_hash(
        prev_hash=row.prev_hash,
        seq=int(row.seq),
        time=row.time,
        kind=row.kind,
        actor=row.actor,
        payload=payload,
        key_id=row.key_id,
    )
    return bool(recomputed == row.hash)


def _fail(trusted: TrustedLedger, reason: str) -> RegistryTampered:
    trusted.broken = reason
    return RegistryTampered(reason)


def advance(
    trusted: TrustedLedger,
    conn: Connection,
    verify_keys: Callable[[], Mapping[str, Ed25519PublicKey]],
    head_file: HeadFile,
    committed_hash_at: Callable[[int], str | None],
) -> Head:
    """Bring ``trusted`` up to the database's newest entry, or raise RegistryTampered (and stay so).

    ``committed_hash_at(seq)`` reads an entry's hash in a new transaction: the head file is written
    just after a commit, so a file ahead of ``conn``'s snapshot is checked against the database as
    it is now before it counts as truncation.

    Returns the head the database's chain ends at (verified). When nothing was appended since the
    last call, this is one indexed read and the head file's: the newest entry's signature was
    verified when it was walked, and the facts taken from it are kept here.
    """
    if trusted.broken is not None:
        raise RegistryTampered(trusted.broken)
    kept = head_file.read()  # before the database: what it names was committed before this read
    table = ledger.ledger_table
    newest = conn.execute(select(table).order_by(table.c.seq.desc()).limit(1)).first()
    head = Head(0, ledger.GENESIS_HASH) if newest is None else Head(int(newest.seq), str(newest.hash))
    unchanged = head == Head(trusted.seq, trusted.hash)
    if newest is not None and not unchanged:
        problem = ledger.entry_problem(newest, verify_keys())
        if problem is not None:
            raise _fail(trusted, f"the newest ledger entry is not authentic: {problem}")
    _check_head_file(trusted, conn, head, kept, head_file, committed_hash_at)
    if head.seq < trusted.seq or (head.seq == trusted.seq and head.hash != trusted.hash):
        raise _fail(
            trusted,
            f"the ledger now ends at entry {head.seq}, but entry {trusted.seq} ({trusted.hash[:16]}…) was "
            "verified earlier by this process: entries were removed or replaced",
        )
    if head.seq == trusted.seq:
        return head
    expected_seq, prev_hash = trusted.seq + 1, trusted.hash
    query = select(table).where(table.c.seq > trusted.seq, table.c.seq <= head.seq).order_by(table.c.seq)
    for row in conn.execute(query):
        where = f"ledger entry {row.seq} ({row.kind})"
        if row.seq != expected_seq:
            raise _fail(trusted, f"ledger entry {expected_seq} is missing (the ledger jumps to {row.seq})")
        if row.prev_hash != prev_hash:
            raise _fail(trusted, f"{where} does not link to the entry before it (inserted, or one deleted)")
        if not _hash_matches(row):
            raise _fail(trusted, f"{where} was edited: its content does not match its hash")
        if row.kind in ("revoke", "erasure"):
            problem = ledger.entry_problem(row, verify_keys())
            if problem is not None:
                raise _fail(trusted, problem)
        if row.kind in _NEEDS_PAYLOAD:
            trusted.apply(int(row.seq), str(row.kind), json.loads(row.payload))
        trusted.seq, trusted.hash = int(row.seq), str(row.hash)
        expected_seq, prev_hash = expected_seq + 1, str(row.hash)
    if trusted.seq != head.seq:
        raise _fail(trusted, f"ledger entries {trusted.seq + 1}-{head.seq} are missing (deleted)")
    return head


def _check_head_file(
    trusted: TrustedLedger,
    conn: Connection,
    head: Head,
    kept: Head | None,
    head_file: HeadFile,
    committed_hash_at: Callable[[int], str | None],
) -> None:
    if kept is None or kept.seq == 0:
        return
    if kept == Head(trusted.seq, trusted.hash) and head.seq >= kept.seq:
        return  # the entry the file names was walked by this process; ``advance`` checks it is still there
    if kept.seq > head.seq:
        if committed_hash_at(kept.seq) == kept.hash:
            return  # committed after this transaction's snapshot began: not a truncation
        raise _fail(
            trusted,
            f"the ledger ends at entry {head.seq}, but the head file {head_file.path} records entry "
            f"{kept.seq} ({kept.hash[:16]}…): the newest entries were cut off",
        )
    table = ledger.ledger_table
    stored = conn.execute(select(table.c.hash).where(table.c.seq == kept.seq)).scalar()
    if stored != kept.hash:
        raise _fail(
            trusted,
            f"ledger entry {kept.seq} is not the one the head file {head_file.path} records "
            f"({kept.hash[:16]}…): the ledger was replaced or rewritten",
        )
