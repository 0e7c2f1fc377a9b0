"""Operating points (threshold, margin, same-person bound) per embedding space, and calibrations.

The newest *signed* calibration of a space wins over the policy's default for it; its row must
match the entry, and no newer unsigned row may exist (``trusted._signed_operating_point``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select

from likeness.consent import schema
from likeness.consent.bindings import calibration_hash
from likeness.consent.records import OperatingPoint
from likeness.consent.registry.trusted import TrustMixin
from likeness.consent.store import as_utc, new_id, now_utc
from likeness.errors import UsageError


class CalibrationsMixin(TrustMixin):
    """Operating points and stored calibrations."""

    def operating_point(self, embedding_space: str) -> OperatingPoint:
        """Threshold and margin for ``embedding_space``: the newest stored calibration, else the policy."""
        with self._read() as conn:
            return self._operating_point(conn, embedding_space)

    def _operating_point(self, conn: Connection, embedding_space: str) -> OperatingPoint:
        return self._signed_operating_point(conn, self._trusted_ledger(conn)[0], embedding_space)

    def policy_operating_point(self, embedding_space: str) -> OperatingPoint | None:
        """The policy's default for ``embedding_space`` (ignoring calibrations), if it has one."""
        return self.policy.operating_point(embedding_space)

    def list_calibrations(self, embedding_space: str | None = None) -> list[dict[str, Any]]:
        """Stored calibrations, oldest first (as plain dicts)."""
        table = schema.calibrations
        query = select(table).order_by(table.c.created_at, table.c.id)
        if embedding_space is not None:
            query = query.where(table.c.embedding_space == embedding_space)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            {k: (as_utc(v).isoformat() if isinstance(v, dt.datetime) else v) for k, v in row._mapping.items()}
            for row in rows
        ]

    def store_calibration(
        self,
        embedding_space: str,
        *,
        metric: str,
        threshold: float,
        margin: float,
        same_person_max: float,
        operator: str,
        false_accept_rate: float | None = None,
        false_reject_rate: float | None = None,
        genuine_pairs: int | None = None,
        impostor_pairs: int | None = None,
        dataset: str | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> OperatingPoint:
        """Store an operating point measured by ``likeness calibrate``; the gate uses it from now on.

        ``evidence`` (plain JSON: the model, bounds, counts) goes into the calibration's ledger entry.
        """
        if metric not in ("euclidean", "cosine") or not 0 < threshold or margin < 0:
            raise UsageError(
                f"invalid operating point: metric={metric!r} threshold={threshold} margin={margin}"
            )
        calibration_id = new_id("cal")
        values = {
            "id": calibration_id,
            "embedding_space": embedding_space,
            "metric": metric,
            "threshold": float(threshold),
            "margin": float(margin),
            "same_person_max": float(same_person_max),
            "false_accept_rate": false_accept_rate,
            "false_reject_rate": false_reject_rate,
            "genuine_pairs": genuine_pairs,
            "impostor_pairs": impostor_pairs,
            "dataset": dataset,
        }
        with self._write() as conn:
            conn.execute(
                insert(schema.calibrations).values(**values, created_at=now_utc(), created_by=operator)
            )
            self._log(
                conn,
                "calibration",
                operator,
                {
                    **values,
                    "rows": {"calibrations": {calibration_id: calibration_hash(values)}},
                    **({"evidence": evidence} if evidence else {}),
                },
            )
        return OperatingPoint(
            embedding_space,
            metric,
            threshold,
            margin,
            same_person_max,
            source=f"calibration {calibration_id}",
        )
