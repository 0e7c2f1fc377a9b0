"""A registry write that fails part-way leaves nothing half done — in one process, in the fast tier.

The same cut points as test_concurrency.py's killed writers (marked ``kill``, slow tier), reached by
raising an error from SQLAlchemy's ``before_cursor_execute`` hook inside the open write transaction
instead of SIGKILLing a child: the transaction rolls back, the ledger chain and every signed row
still agree, and the same write then goes through. Real dlib faces, a real SQLite registry.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from likeness.consent.gate import Involvement, check_consent
from likeness.consent.registry import Reference, Registry
from likeness.disclosure.types import SealedOutput
from likeness.faces.backends import load_analyzer
from likeness.home import Home
from likeness.media.image import load_image

UNTIL = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)
USES = "face replacement of the stunt double in scenes 12-14 of the short film 'Harbour'"
TABLES = ("identities", "face_references", "consents", "outputs", "output_consents")


class InjectedFault(Exception):
    """Stands for whatever breaks inside a write transaction (disk, driver, a bug)."""


@contextmanager
def fail_before(statement_start: str) -> Iterator[list[str]]:
    """Raise InjectedFault before the first statement that starts with ``statement_start``."""
    seen: list[str] = []

    def hook(conn, cursor, statement, parameters, context, executemany) -> None:
        if not seen and " ".join(statement.split()).upper().startswith(statement_start):
            seen.append(statement)
            raise InjectedFault(f"injected before {statement_start}")

    event.listen(Engine, "before_cursor_execute", hook)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", hook)


@pytest.fixture(scope="module")
def analysed(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """analysed('John_Salley/1.jpg') → (Reference, Face) from the real dlib analyzer, once per photo."""
    analyzer = load_analyzer("dlib", Home(tmp_path_factory.mktemp("models")))
    cache: dict[str, tuple[Reference, object]] = {}

    def get(photo: str):
        if photo not in cache:
            picture = load_image(faces_dir / photo)
            (face,) = analyzer.analyze(picture.pixels)
            cache[photo] = (Reference.from_face(face, picture), face)
        return cache[photo]

    get.analyzer = analyzer
    return get


def counts(home: Home) -> dict[str, int]:
    engine = create_engine(home.db_url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("step", "fail_at"),
    [
        # step, the statement the write fails before (inside its transaction), what is already written
        pytest.param("enrol", "INSERT INTO LEDGER", id="enrol-identity-and-references-written"),
        pytest.param("grant", "INSERT INTO CONSENTS", id="grant-ledger-entry-written"),
        pytest.param("record", "INSERT INTO OUTPUT_CONSENTS", id="record-output-and-entry-written"),
        pytest.param("revoke", "INSERT INTO LEDGER", id="revoke-row-updated"),
    ],
)
def test_a_write_failing_mid_transaction_leaves_nothing_half_done(
    home: Home, analysed, step: str, fail_at: str
) -> None:
    with Registry.open(home) as registry:
        person = registry.add_identity(
            "John Salley",
            [analysed("John_Salley/1.jpg")[0], analysed("John_Salley/2.jpg")[0]],
            operator="setup",
        )
        consent = registry.grant(
            person.id, purposes=["film"], roles=["source"], valid_until=UNTIL, uses=USES, operator="setup"
        )
        decision = check_consent(
            registry,
            [Involvement(analysed("John_Salley/3.jpg")[1], "source", "source photo 3.jpg")],
            purpose="film",
            media_kind="image",
            analyzer=analysed.analyzer,
            operator="setup",
        )
        sealed = SealedOutput(
            path=Path("/tmp/never-written.jpg"),
            output_id=f"lk1-{time.monotonic_ns():016x}"[:20],
            sha256="ab" * 32,
            media_type="image/jpeg",
            kind="swap",
            consent_ids=decision.consent_ids,
            purpose="film",
        )
        writes = {
            "enrol": lambda: registry.add_identity(
                "John Simm", [analysed("John_Simm/1.jpg")[0]], operator="fault"
            ),
            "grant": lambda: registry.grant(
                person.id, purposes=["film"], roles=["source"], valid_until=UNTIL, uses=USES, operator="fault"
            ),
            "record": lambda: registry.record_output(sealed, decision=decision, operator="fault"),
            "revoke": lambda: registry.revoke(consent.id, reason="withdrawn", operator="fault"),
        }
        before = [(e.seq, e.hash) for e in registry.ledger_entries()]
        rows = counts(home)

        with fail_before(fail_at) as seen, pytest.raises(InjectedFault):
            writes[step]()
        assert seen, f"the {step} never reached {fail_at}"

        assert [(e.seq, e.hash) for e in registry.ledger_entries()] == before, "no entry of the failed write"
        assert counts(home) == rows, "no row of the failed write"
        assert registry.verify_ledger().ok
        assert registry.get_consent(consent.id).revoked_at is None
        assert registry.list_outputs() == []

        writes[step]()  # the failure released the write lock: the same write goes through
        assert len(registry.ledger_entries()) == len(before) + 1
        assert registry.verify_ledger().ok
