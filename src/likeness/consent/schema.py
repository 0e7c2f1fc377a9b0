"""The registry's tables (SQLAlchemy Core). The ledger's table lives in ``likeness.ledger``.

Biometric columns (``face_references.embedding``, ``face_references.crop``) and consent documents
(``evidence.data``) hold Fernet tokens, never plain bytes. Lists (purposes, roles, media, consent
ids) are JSON. Times are UTC.

SCHEMA_VERSION is stored in ``meta``. Opening a registry creates missing tables, upgrades an older
database in place (:func:`upgrade`, in the same serialised transaction, recorded by a
``schema_upgrade`` ledger entry) and refuses a database written by a newer version.

- Version 1: the in-depth consent record (grantor, capacity, evidence, erasure, calibrations).
- Version 2: ``outputs.ingredient_sha256`` (JSON, role → sha256 of each file the user supplied).
  Nullable: rows recorded under version 1 hold NULL there, read back as ``{}`` (unknown).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)

SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    # casefolded name; NULL once erased so the person may enrol again later
    Column("name_key", String(200), unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("erased_at", DateTime(timezone=True)),
    Column("erased_by", String(200)),
    Column("erase_reason", Text),
)

face_references = Table(
    "face_references",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("identity_id", ForeignKey("identities.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),  # 1, 2, … in the order the photos were given
    Column("embedding_space", String(64), nullable=False, index=True),
    Column("photo_sha256", String(64), nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # Fernet token of little-endian float32
    Column("crop", LargeBinary),  # Fernet token of a JPEG face crop
    Column("created_at", DateTime(timezone=True), nullable=False),
)

evidence = Table(
    "evidence",
    metadata,
    Column("sha256", String(64), primary_key=True),  # of the plain document
    Column("name", String(300), nullable=False),
    Column("data", LargeBinary, nullable=False),  # Fernet token of the document
    Column("created_at", DateTime(timezone=True), nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("identity_id", ForeignKey("identities.id"), nullable=False, index=True),
    Column("purposes", JSON, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("media", JSON, nullable=False),
    Column("uses", Text, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date, nullable=False),
    Column("capacity", String(32), nullable=False),
    Column("grantor", String(300), nullable=False),
    Column("basis", Text),
    Column("date_of_birth", Date),
    Column("date_of_death", Date),
    Column("jurisdiction", String(16)),
    Column("project", Text),
    Column("compensation", Text),
    Column("representation", Text),
    Column("evidence_sha256", ForeignKey("evidence.sha256")),
    Column("evidence_name", String(300)),
    Column("takedown_contact", Text),
    Column("policy_sha256", String(64), nullable=False),
    Column("terms_sha256", String(64), nullable=False),  # also in the grant's ledger entry
    Column("ledger_seq", Integer, nullable=False),  # the signed grant entry that attests these terms
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(200)),
    Column("revoke_reason", Text),
)

outputs = Table(
    "outputs",
    metadata,
    Column("output_id", String(64), primary_key=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("phash", String(64)),
    Column("media_type", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("consent_ids", JSON, nullable=False),
    Column("operator", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("embedding_space", String(64), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("path", Text),
    Column("ledger_seq", Integer, nullable=False),
    # role → sha256 of each unmodified input file (source photo, target picture or video); since v2
    Column("ingredient_sha256", JSON),
)

output_consents = Table(
    "output_consents",
    metadata,
    Column("output_id", ForeignKey("outputs.output_id"), primary_key=True),
    Column("consent_id", ForeignKey("consents.id"), primary_key=True, index=True),
)

calibrations = Table(
    "calibrations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("embedding_space", String(64), nullable=False, index=True),
    Column("metric", String(16), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("margin", Float, nullable=False),
    Column("same_person_max", Float, nullable=False),
    Column("false_accept_rate", Float),
    Column("false_reject_rate", Float),
    Column("genuine_pairs", Integer),
    Column("impostor_pairs", Integer),
    Column("dataset", Text),  # a description of the labelled folder (path, sha256 of its listing)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
)


def _add_output_ingredients(conn: Connection) -> None:
    """Version 2: the outputs table gains the nullable ``ingredient_sha256`` JSON column."""
    if "ingredient_sha256" in {column["name"] for column in inspect(conn).get_columns("outputs")}:
        return
    column_type = JSON().compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE outputs ADD COLUMN ingredient_sha256 {column_type}")


UPGRADES = {2: _add_output_ingredients}
"""Version → the step that brings a database from the version before it to this one."""


def upgrade(conn: Connection, from_version: int) -> list[int]:
    """Bring a database at ``from_version`` to SCHEMA_VERSION inside the caller's write transaction.

    Each step only adds what is missing (nullable columns), so a database that a crash left
    between steps, or that another process upgraded first, is upgraded correctly. Returns the
    versions applied, in order.
    """
    applied = []
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        UPGRADES[version](conn)
        applied.append(version)
    return applied
