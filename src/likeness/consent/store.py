"""How the registry's database is opened and written: engines, serialised write transactions, rows.

SQLite (the default, a file in the data home): WAL journal, a 30 s busy timeout, ``synchronous =
FULL`` (a committed consent survives a power cut), foreign keys on, ``secure_delete`` on (erased
biometrics are overwritten, not just unlinked); write transactions start with ``BEGIN IMMEDIATE``
so two writers never interleave and a waiting writer queues instead of failing half way.
PostgreSQL (by URL): writers take a SHARE ROW EXCLUSIVE lock on the ledger table, which
serialises every mutation with its ledger append; creating the schema takes an advisory lock.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DatabaseError, IntegrityError

from likeness.consent.records import ConsentRecord, OutputRecord
from likeness.errors import RegistryError

BUSY_TIMEOUT_S = 30.0
WAL_RETRY_S = 0.02
"""Pause between tries to switch a new SQLite file to WAL while another process has it open."""
SCHEMA_LOCK_KEY = 4242
"""PostgreSQL advisory lock taken while creating tables (the ledger table may not exist yet)."""


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` as an aware UTC time (SQLite returns naive times, PostgreSQL aware ones)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def new_id(prefix: str) -> str:
    """``<prefix>_`` + 16 random hex digits, e.g. ``cns_3f2a...``."""
    return f"{prefix}_{secrets.token_hex(8)}"


def unique_names(values: Sequence[str]) -> tuple[str, ...]:
    """Stripped, non-empty values in their first order, without repeats."""
    return tuple(dict.fromkeys(v.strip() for v in values if v.strip()))


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below starts transactions
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA secure_delete = ON")  # erased biometrics are overwritten, not just unlinked
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode, waiting up to the busy timeout for other processes to let go.

    WAL is a property of the file, so this only switches a new database. SQLite answers "database
    is locked" at once, without calling the busy handler, when another connection holds a write lock
    during the switch (waiting could deadlock). Two likeness processes starting on a fresh data home
    both get here, so the switch is retried until the busy timeout instead of failing one of them.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def write_transaction(engine: Engine, *, creating: bool = False) -> Iterator[Connection]:
    """One serialised write transaction: committed when the block ends, rolled back if it raises."""
    try:
        with engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    if creating:  # the ledger table may not exist yet
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
                    else:
                        conn.exec_driver_sql("LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE")
                yield conn
    except IntegrityError:
        raise
    except DatabaseError as exc:
        raise RegistryError(
            f"the registry at {describe(engine)} could not be written ({exc.orig})",
            hint="another likeness process may hold it for longer than the busy timeout; retry",
        ) from exc


def record_from_row(cls: type[Any], row: Any) -> Any:
    """A record dataclass from a table row: JSON lists become tuples, times become UTC-aware."""
    values = {}
    for f in fields(cls):
        value = row._mapping[f.name]
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dt.datetime):
            value = as_utc(value)
        values[f.name] = value
    return cls(**values)


def consent_from_row(row: Any) -> ConsentRecord:
    return record_from_row(ConsentRecord, row)


def output_from_row(row: Any) -> OutputRecord:
    record: OutputRecord = record_from_row(OutputRecord, row)
    if record.ingredient_sha256 is None:  # recorded under schema version 1
        return replace(record, ingredient_sha256={})
    return record
