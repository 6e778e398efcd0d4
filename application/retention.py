"""Retention of the executions read model: old rows go, the event log (the audit record) stays.

Succeeded executions are kept `succeeded_days`; failed ones `failed_days` (three times as long
by default, as the seed kept failures longer: they are what people come back to look at).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.instants import iso_ms


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished executions stay in the read model (0: forever)."""

    succeeded_days: int = 30
    failed_days: int = 90

    def cutoffs(self, now: datetime) -> dict[str, str | None]:
        """For each final status, the finish instant before which rows are pruned."""

        def cutoff(days: int) -> str | None:
            return iso_ms(now - timedelta(days=days)) if days > 0 else None

        return {"succeeded": cutoff(self.succeeded_days), "failed": cutoff(self.failed_days)}

    def kept(self, rows: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """The rows retention keeps (to compare a rebuilt read model with a pruned one)."""
        cutoffs = self.cutoffs(now)

        def keep(row: Mapping[str, Any]) -> bool:
            cutoff = cutoffs.get(row.get("status", ""))
            return cutoff is None or row.get("finishedAt") is None or row["finishedAt"] >= cutoff

        return {k: r for k, r in rows.items() if keep(r)}
