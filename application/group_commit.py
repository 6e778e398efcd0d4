"""Group commit for writers in threads: writes that arrive while one is being stored share the
next transaction, so concurrent commands pay for one `fsync` between them, not one each."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError


class _Unit:
    """One caller's events: stored all together or not at all."""

    __slots__ = ("done", "error", "events", "position")

    def __init__(self, events: Sequence[Any]) -> None:
        self.events = events
        self.position = 0
        self.error: BaseException | None = None
        self.done = False


class GroupCommit:
    """`write(events)` stores the events in one transaction and returns the log position of
    the last; a caller that arrives while another group is being written waits, and the first
    of the waiters then writes everything that gathered meanwhile (leader and followers).

    Units are independent: when the store refuses a group (one unit conflicts with a write
    already stored), the group is written again one unit at a time, so only the conflicting
    caller sees the `IntegrityError`. Any other error is every caller's of that group.
    """

    def __init__(self, put: Callable[[list[Any]], list[int]], max_events: int = 5_000) -> None:
        self._put, self._max_events = put, max_events
        self._lock = threading.Condition()
        self._pending: list[_Unit] = []
        self._writing = False

    def write(self, events: Sequence[Any]) -> int:
        unit = _Unit(events)
        with self._lock:
            self._pending.append(unit)
        while True:
            with self._lock:
                while self._writing and not unit.done:
                    self._lock.wait()
                if unit.done:
                    break
                # lead: take what gathered, oldest first (a full group may leave this unit
                # for the next round, which this caller then leads or waits for)
                self._writing = True
                group = self._take()
            try:
                self._store(group)
            finally:
                with self._lock:
                    self._writing = False
                    self._lock.notify_all()
        if unit.error is not None:
            raise unit.error
        return unit.position

    def _take(self) -> list[_Unit]:
        group, size = [], 0
        while self._pending and (
            not group or size + len(self._pending[0].events) <= self._max_events
        ):
            unit = self._pending.pop(0)
            group.append(unit)
            size += len(unit.events)
        return group

    def _store(self, group: list[_Unit]) -> None:
        try:
            if len(group) == 1:
                self._store_one(group[0])
                return
            try:
                positions = self._put([e for unit in group for e in unit.events])
            except IntegrityError:  # someone's conflict: find whose, keep the others' writes
                for unit in group:
                    self._store_one(unit)
                return
            except BaseException as e:  # noqa: BLE001  # the store's trouble is every caller's
                for unit in group:
                    unit.error = e
                return
            at = 0
            for unit in group:
                at += len(unit.events)
                unit.position = max(positions[at - len(unit.events) : at], default=0)
        finally:
            for unit in group:
                unit.done = True

    def _store_one(self, unit: _Unit) -> None:
        try:
            unit.position = max(self._put(list(unit.events)), default=0)
        except BaseException as e:  # noqa: BLE001  # handed to the caller it belongs to
            unit.error = e
