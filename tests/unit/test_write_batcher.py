"""The engine's write batcher: group commits in a writer thread, each unit its own outcome."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from application.write_batcher import WriteBatcher


class Aggregate:
    """Just what the batcher asks of an aggregate: its pending events."""

    def __init__(self, *events: Any) -> None:
        self.events = list(events)

    def collect_events(self) -> list[Any]:
        events, self.events = self.events, []
        return events


class Store:
    """`record_events` as the batcher calls it: all or nothing per call."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.written: list[Any] = []
        self.conflicts: set[Any] = set()  # events another writer stored first
        self.down = False
        self.wrote = threading.Condition()

    def record_events(self, events: list[Any]) -> int:
        with self.wrote:
            self.calls.append(list(events))
            if self.down:
                raise ConnectionError("the store is away")
            if self.conflicts.intersection(events):
                raise IntegrityError("already stored")
            self.written += events
            self.wrote.notify_all()
        return len(self.written)


def test_units_are_written_in_order_in_few_transactions_each_with_its_outcome() -> None:
    store = Store()
    store.conflicts = {"b7"}

    async def scenario() -> list[bool]:
        batcher = WriteBatcher(store, max_batch=100)  # type: ignore[arg-type]
        results = await asyncio.gather(
            *(batcher.record(Aggregate(f"a{i}", f"b{i}")) for i in range(300))
        )
        batcher.close()
        return results

    results = asyncio.run(scenario())

    assert results == [i != 7 for i in range(300)]  # the refused unit only
    assert store.written == [e for i in range(300) if i != 7 for e in (f"a{i}", f"b{i}")]
    assert len([c for c in store.calls if len(c) > 2]) <= 4  # groups, not a write per unit


def test_a_store_outage_is_every_unit_of_its_group_and_a_later_unit_is_written() -> None:
    store = Store()

    async def scenario() -> None:
        batcher = WriteBatcher(store)  # type: ignore[arg-type]
        store.down = True
        outcomes = await asyncio.gather(
            batcher.record(Aggregate("x")), batcher.record(Aggregate("y")), return_exceptions=True
        )
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        store.down = False
        assert await batcher.record(Aggregate("z"))
        batcher.close()

    asyncio.run(scenario())
    assert store.written == ["z"]


def test_drain_waits_for_what_was_handed_in_without_waiting() -> None:
    store = Store()

    async def scenario() -> None:
        batcher = WriteBatcher(store)  # type: ignore[arg-type]
        for i in range(50):
            batcher.submit(Aggregate(i))
        await batcher.drain()
        assert store.written == list(range(50))
        assert batcher.waiting == 0
        batcher.close()

    asyncio.run(scenario())


def test_the_writer_goes_on_to_the_next_group_while_the_event_loop_is_busy() -> None:
    """Under load the loop's turns are long: the writer must not wait for one per group."""
    store = Store()

    async def scenario() -> None:
        batcher = WriteBatcher(store, max_batch=10)  # type: ignore[arg-type]
        for i in range(50):
            batcher.submit(Aggregate(i))
        # the loop is held here, synchronously, while the writer works through the groups
        with store.wrote:
            all_written = store.wrote.wait_for(lambda: len(store.written) == 50, timeout=20)
        assert all_written, "the writer stopped after a group, waiting for the loop"
        await batcher.drain()
        batcher.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("units", [1, 1500])
def test_a_closed_batcher_takes_a_later_unit(units: int) -> None:
    store = Store()

    async def scenario() -> None:
        batcher = WriteBatcher(store)  # type: ignore[arg-type]
        await asyncio.gather(*(batcher.record(Aggregate(i)) for i in range(units)))
        batcher.close()
        assert await batcher.record(Aggregate("after"))  # e.g. a task cancelled at shutdown
        batcher.close()

    asyncio.run(scenario())
    assert store.written[-1] == "after"
