"""Rebuild every read model from the log in a scratch store and compare it with the live one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from application.ports import ProjectionStore
from application.projection_runner import ProjectionRunner
from application.projections import Projection


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a live read model differs from the log's own account."""

    projection: str
    key: str
    field: str | None
    live: Any
    rebuilt: Any

    def __str__(self) -> str:
        where = f"{self.projection} row {self.key}"
        if self.field is None:
            state = "missing from the live read model" if self.live is None else "not in the log"
            return f"{where}: {state}"
        return f"{where} field {self.field!r}: live {self.live!r}, rebuilt {self.rebuilt!r}"


def compare_rows(
    name: str, live: Mapping[str, Any], rebuilt: Mapping[str, Any]
) -> list[Difference]:
    """Every row and field where two read models disagree, in key order."""
    differences = []
    for key in sorted(set(live) | set(rebuilt)):
        a, b = live.get(key), rebuilt.get(key)
        if a is None or b is None:
            differences.append(Difference(name, key, None, a, b))
            continue
        for field in sorted(set(a) | set(b)):
            if a.get(field) != b.get(field):
                differences.append(Difference(name, key, field, a.get(field), b.get(field)))
    return differences


def verify_projection(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    projection: Projection,
    live: ProjectionStore,
    scratch: ProjectionStore,
    keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[Difference]]:
    """Rebuild `projection` into `scratch` up to the live position; return it and differences.

    `keep` selects the rows to compare on both sides (retention prunes old rows on purpose);
    `progress` is told the rebuild's position and the live one after each batch.
    """
    position, live_rows = live.dump()
    scratch.reset()
    tell = None if progress is None else (lambda reached: progress(reached, position))
    ProjectionRunner(recorder, mapper, projection, scratch).catch_up(stop=position, progress=tell)
    _, rebuilt_rows = scratch.dump()
    if keep is not None:
        live_rows, rebuilt_rows = keep(live_rows), keep(rebuilt_rows)
    return position, compare_rows(projection.name, live_rows, rebuilt_rows)
