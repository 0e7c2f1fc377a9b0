"""The audit ledger: append-only entries, chained by hash and signed with the installation key.

Each entry holds ``seq`` (1, 2, 3, …), ``time``, ``kind`` (enrol, references_added, grant,
revoke, refusal, output, erasure, calibration, key_rotation, schema_upgrade), ``actor``, a JSON
``payload`` (ids and hashes only, never photos or embeddings), ``prev_hash`` (the previous
entry's hash; 64 zeros for the first) and

    hash = sha256(prev_hash + canonical_json({seq, time, kind, actor, payload, key_id}))

``signature`` is the Ed25519 signature of the hash by the key named ``key_id``. Editing an entry
breaks its hash; re-hashing it breaks the signature (without the key) and the next entry's link;
deleting, reordering or inserting entries breaks the sequence or a link. ``verify_chain`` names
the first entry where any of that happens.

What the chain alone cannot show is the removal of the newest entries: the registry keeps the head
in a file outside the database (``likeness.consent.head_file``), every output's signed manifest
states the head when it was made, and a head hash kept elsewhere (a ticket, an e-mail) works too.

Appends must run inside the caller's write transaction (the registry serialises writers), so an
entry commits together with the change it records, or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, insert, select

GENESIS_HASH = "0" * 64

LEDGER_METADATA = MetaData()
ledger_table = Table(
    "ledger",
    LEDGER_METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)


def canonical_json(value: Any) -> str:
    """One byte-exact JSON text per value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """The installation's ledger signing key."""

    private_key: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id_of(self.private_key.public_key())

    def sign(self, entry_hash: str) -> str:
        return self.private_key.sign(entry_hash.encode("ascii")).hex()


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    kind: str
    actor: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "actor": self.actor,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
            "key_id": self.key_id,
        }


def entry_hash(
    *, prev_hash: str, seq: int, time: str, kind: str, actor: str, payload: Any, key_id: str
) -> str:
    body = canonical_json(
        {"seq": seq, "time": time, "kind": kind, "actor": actor, "payload": payload, "key_id": key_id}
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the newest entry, or (0, GENESIS_HASH) for an empty ledger."""
    row = conn.execute(
        select(ledger_table.c.seq, ledger_table.c.hash).order_by(ledger_table.c.seq.desc()).limit(1)
    ).first()
    return (0, GENESIS_HASH) if row is None else (int(row.seq), str(row.hash))


def append(conn: Connection, *, kind: str, actor: str, payload: Mapping[str, Any], signer: Signer) -> Entry:
    """Append one signed entry inside the caller's (write) transaction and return it."""
    last_seq, prev_hash = head(conn)
    body = json.loads(canonical_json(dict(payload)))  # a plain-JSON copy: what is hashed is what is stored
    seq, time = last_seq + 1, _now()
    digest = entry_hash(
        prev_hash=prev_hash, seq=seq, time=time, kind=kind, actor=actor, payload=body, key_id=signer.key_id
    )
    entry = Entry(seq, time, kind, actor, body, prev_hash, digest, signer.key_id, signer.sign(digest))
    conn.execute(
        insert(ledger_table).values(
            seq=seq,
            time=time,
            kind=kind,
            actor=actor,
            payload=canonical_json(body),
            prev_hash=prev_hash,
            hash=digest,
            key_id=entry.key_id,
            signature=entry.signature,
        )
    )
    return entry


def _row_to_entry(row: Any) -> Entry:
    return Entry(
        seq=int(row.seq),
        time=row.time,
        kind=row.kind,
        actor=row.actor,
        payload=json.loads(row.payload),
        prev_hash=row.prev_hash,
        hash=row.hash,
        key_id=row.key_id,
        signature=row.signature,
    )


def entries(conn: Connection, *, kind: str | None = None, since_seq: int = 0) -> Iterator[Entry]:
    """Entries in sequence order (optionally of one kind, after ``since_seq``)."""
    query = select(ledger_table).where(ledger_table.c.seq > since_seq).order_by(ledger_table.c.seq)
    if kind is not None:
        query = query.where(ledger_table.c.kind == kind)
    for row in conn.execute(query):
        yield _row_to_entry(row)


def recent(conn: Connection, *, limit: int, kind: str | None = None) -> list[Entry]:
    """The newest ``limit`` entries (optionally of one kind), in sequence order."""
    query = select(ledger_table).order_by(ledger_table.c.seq.desc()).limit(max(0, limit))
    if kind is not None:
        query = query.where(ledger_table.c.kind == kind)
    return [_row_to_entry(row) for row in reversed(conn.execute(query).all())]


@dataclass(frozen=True)
class ChainReport:
    """The result of ``verify_chain``: ``ok`` and, if not, the first bad entry and why."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return (
                f"ledger OK: {self.entries} entries, chain and signatures intact\n"
                f"head: entry {self.head_seq} {self.head_hash} (keep this elsewhere to detect truncation)"
            )
        if self.first_bad_seq is None:
            return f"audit FAILED: {self.reason}"
        return f"audit FAILED at ledger entry {self.first_bad_seq}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "reason": self.reason,
        }


def _link_problem(row: Any, expected_prev: str, seq_of_hash: Mapping[str, int]) -> str | None:
    if row.prev_hash == expected_prev:
        return None
    if row.prev_hash in seq_of_hash:
        return (
            f"entry {row.seq} is out of order: it was written after entry {seq_of_hash[row.prev_hash]}, "
            "not after the entry before it (entries were reordered)"
        )
    return (
        f"entry {row.seq} does not link to the entry before it: it was inserted, "
        "or the entry it followed was deleted or edited"
    )


def entry_problem(row: Any, verify_keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why one stored ledger row is not authentic (content ≠ hash, or bad signature), else None."""
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = None
    recomputed = entry_hash(
        prev_hash=row.prev_hash,
        seq=row.seq,
        time=row.time,
        kind=row.kind,
        actor=row.actor,
        payload=payload,
        key_id=row.key_id,
    )
    if payload is None or recomputed != row.hash:
        return f"entry {row.seq} ({row.kind}) was edited: its content does not match its hash"
    public_key = verify_keys.get(row.key_id)
    if public_key is None:
        return f"entry {row.seq} is signed by an unknown key {row.key_id} (inserted or forged)"
    try:
        public_key.verify(bytes.fromhex(row.signature), row.hash.encode("ascii"))
    except (InvalidSignature, ValueError):
        return f"entry {row.seq} has an invalid signature (inserted, or edited and re-hashed)"
    return None


def verify_chain(conn: Connection, verify_keys: Mapping[str, Ed25519PublicKey]) -> ChainReport:
    """Walk the ledger from the start; report the first edited, deleted, reordered or inserted entry."""
    rows = list(conn.execute(select(ledger_table).order_by(ledger_table.c.seq)))
    seq_of_hash = {row.hash: int(row.seq) for row in rows}
    expected_prev, expected_seq = GENESIS_HASH, 1
    for row in rows:
        problem: str | None = None
        if row.seq != expected_seq:
            missing = (
                f"entry {expected_seq}"
                if row.seq == expected_seq + 1
                else f"entries {expected_seq}-{row.seq - 1}"
            )
            problem = f"{missing} missing: the ledger jumps from {expected_seq - 1} to {row.seq} (deleted)"
        if problem is None:
            problem = _link_problem(row, expected_prev, seq_of_hash)
        if problem is None:
            problem = entry_problem(row, verify_keys)
        if problem is not None:
            bad_seq = expected_seq if row.seq != expected_seq else int(row.seq)
            return ChainReport(False, len(rows), expected_seq - 1, expected_prev, bad_seq, problem)
        expected_prev, expected_seq = row.hash, expected_seq + 1
    return ChainReport(True, len(rows), expected_seq - 1, expected_prev)
