"""The registry's core: its engine, read and write transactions, the ledger append, the schema.

Every concern's mixin (``calibrations``, ``identities``, ``consents``, ``outputs``, ``ledger_keys``)
builds on :class:`RegistryCore`: reads go through ``_read``, every mutation through one ``_write``
transaction that also appends its ledger entry with ``_log``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Self

from sqlalchemy import Connection, Engine, insert, select, update

from likeness import ledger
from likeness.consent import schema
from likeness.consent.bindings import identity_hash, reference_row_hash
from likeness.consent.gallery_index import GalleryIndex
from likeness.consent.head_file import Head, HeadFile
from likeness.consent.keys import InstallationKeys, passphrase_from_env
from likeness.consent.policy import Policy
from likeness.consent.store import describe, make_engine, write_transaction
from likeness.consent.trust import TrustedLedger
from likeness.errors import RegistryError
from likeness.home import Home

BINDINGS_KEY = "row_bindings"
"""``meta`` key set once every identity and reference row is bound to a signed entry."""
_APPENDED = "likeness.appended"
"""``Connection.info`` key: the entries a write transaction appended (for the head file)."""


class RegistryCore:
    """The engine, the installation's keys and policy; transactions and the ledger append."""

    def __init__(self, engine: Engine, *, home: Home, policy: Policy, keys: InstallationKeys) -> None:
        self._engine = engine
        self.home = home
        self.policy = policy
        self.keys = keys
        self._signer = keys.signer()
        self.head_file = HeadFile(home.ledger_head_path)
        self._trust_lock = threading.RLock()
        self._trusted = TrustedLedger()  # what this instance has verified (see ``trusted``)
        self._galleries: dict[str, GalleryIndex] = {}

    @classmethod
    @contextmanager
    def open(cls, home: Home, *, policy: Policy | None = None) -> Iterator[Self]:
        home.ensure()
        engine = make_engine(home.db_url)
        try:
            registry = cls(
                engine,
                home=home,
                policy=policy or Policy.load(home),
                keys=InstallationKeys(home.keys_dir, passphrase_from_env()),
            )
            registry._create_schema()
            yield registry
        finally:
            engine.dispose()

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def _write(self, *, creating: bool = False) -> Iterator[Connection]:
        """One serialised write transaction (see ``store.write_transaction``); once it commits, the
        head file (``consent.head_file``) is advanced to the newest entry it appended."""
        appended: list[ledger.Entry] = []
        with write_transaction(self._engine, creating=creating) as conn:
            conn.info[_APPENDED] = appended
            try:
                yield conn
            finally:
                conn.info.pop(_APPENDED, None)
        if appended:
            self.head_file.advance(Head(appended[-1].seq, appended[-1].hash))

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _checkpoint_wal(self) -> None:
        """On SQLite, move committed pages out of the WAL file (so overwritten data leaves it too)."""
        if self._engine.dialect.name != "sqlite":
            return
        raw = self._engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()

    @property
    def location(self) -> str:
        """The database URL, password hidden."""
        return describe(self._engine)

    def _log(self, conn: Connection, kind: str, actor: str, payload: Mapping[str, Any]) -> ledger.Entry:
        entry = ledger.append(conn, kind=kind, actor=actor, payload=payload, signer=self._signer)
        conn.info.setdefault(_APPENDED, []).append(entry)
        return entry

    def _create_schema(self) -> None:
        with self._write(creating=True) as conn:
            schema.metadata.create_all(conn)
            ledger.LEDGER_METADATA.create_all(conn)
            version = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).scalar()
            if version is None:
                conn.execute(
                    insert(schema.meta).values(key="schema_version", value=str(schema.SCHEMA_VERSION))
                )
                conn.execute(insert(schema.meta).values(key=BINDINGS_KEY, value="1"))
                return
            found = int(version) if str(version).isdecimal() else 0
            if found < 1:
                raise RegistryError(
                    f"the registry at {self.location} has schema version {version}, "
                    "which no likeness version wrote",
                    hint="restore the registry from a backup",
                )
            if found > schema.SCHEMA_VERSION:
                raise RegistryError(
                    f"the registry at {self.location} has schema version {version}, "
                    f"newer than this likeness understands ({schema.SCHEMA_VERSION})",
                    hint="upgrade likeness",
                )
            if found < schema.SCHEMA_VERSION:
                applied = schema.upgrade(conn, found)
                conn.execute(
                    update(schema.meta)
                    .where(schema.meta.c.key == "schema_version")
                    .values(value=str(schema.SCHEMA_VERSION))
                )
                self._log(
                    conn,
                    "schema_upgrade",
                    "likeness",
                    {"from": found, "to": schema.SCHEMA_VERSION, "steps": applied},
                )
            self._bind_existing_rows(conn)

    def _bind_existing_rows(self, conn: Connection) -> None:
        """A registry written before rows were bound to their entries: sign the content hash of every
        current identity and reference row in one ``binding_upgrade`` entry (once).

        This vouches for the rows as they are at the upgrade: an edit made before it is not caught
        by the gate (``likeness audit verify`` before upgrading shows consent and output edits). It
        is skipped, and the meta flag set, when any entry already binds rows (the flag was removed).
        """
        flag = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == BINDINGS_KEY)).scalar()
        if flag is not None:
            return
        table = ledger.ledger_table
        already = conn.execute(
            select(table.c.seq)
            .where((table.c.kind == "binding_upgrade") | table.c.payload.contains('"rows":'))
            .limit(1)
        ).first()
        conn.execute(insert(schema.meta).values(key=BINDINGS_KEY, value="1"))
        if already is not None:
            return
        rows: dict[str, dict[str, str]] = {"identities": {}, "face_references": {}}
        owners: dict[str, list[str]] = {}
        for row in conn.execute(select(schema.identities)):
            rows["identities"][row.id] = identity_hash(row.id, row.name)
        cipher = self.keys.cipher()
        for ref in conn.execute(select(schema.face_references)):
            rows["face_references"][ref.id] = reference_row_hash(ref, cipher.decrypt(ref.embedding))
            owners[ref.id] = [ref.identity_id, ref.embedding_space]
        if rows["identities"] or rows["face_references"]:
            self._log(conn, "binding_upgrade", "likeness", {"rows": rows, "reference_of": owners})
