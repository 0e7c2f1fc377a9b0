"""The consent registry: identities, their encrypted reference faces, consent records, outputs.

Backed by SQLAlchemy: SQLite under the data home by default (WAL, busy timeout, writers
serialised with BEGIN IMMEDIATE), PostgreSQL by URL (writers serialised by a table lock).
Every mutation is one transaction that also appends its ledger entry, so the registry and the
ledger cannot disagree after a crash. A refusal found inside a mutation (a duplicate face, a
consent revoked since the gate) commits its ledger entry and changes nothing else.

:class:`Registry` is the one public face; each concern lives in its own module, as a mixin:

- ``core``: engine, read / write transactions, the ledger append, schema creation and upgrade;
- ``calibrations``: operating points per embedding space, stored calibrations;
- ``identities``: enrolment, references, the gallery, lookups, erasure;
- ``consents``: grant, revoke, evidence documents, attested consents, refusal entries;
- ``outputs``: recording a sealed output (consents re-checked), output lookups;
- ``ledger_keys``: ledger verification and entries, key rotation.
"""

from __future__ import annotations

from likeness.consent.records import GalleryIdentity, Identity, Reference
from likeness.consent.registry.ledger_keys import LedgerKeysMixin
from likeness.consent.registry.outputs import OutputsMixin
from likeness.consent.store import BUSY_TIMEOUT_S

__all__ = ["BUSY_TIMEOUT_S", "GalleryIdentity", "Identity", "Reference", "Registry"]


class Registry(OutputsMixin, LedgerKeysMixin):
    """Open with ``Registry.open(home)``; every method is one transaction."""
