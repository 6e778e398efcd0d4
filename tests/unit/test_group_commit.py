"""Group commit: writers arriving together share a transaction, and keep their own outcome."""

from __future__ import annotations

import threading

import pytest
from eventsourcing.persistence import IntegrityError

from application.group_commit import GroupCommit


class Store:
    """Positions from 1; a group holding a "taken" event is refused whole, as a store does."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.broken = False

    def put(self, events: list[str]) -> list[int]:
        if not self.transactions and not self.first_started.is_set():
            self.first_started.set()
            self.release_first.wait(10)  # hold the first write while others queue up
        if self.broken:
            raise OSError("disk full")
        if "taken" in events:
            raise IntegrityError("unique constraint")
        stored = sum(len(t) for t in self.transactions)
        self.transactions.append(list(events))
        return list(range(stored + 1, stored + len(events) + 1))


def write_while_first_is_held(
    store: Store, units: list[list[str]], max_events: int = 5_000
) -> list[object]:
    """Write units[0] alone, then the others while it is still being stored."""
    commit = GroupCommit(store.put, max_events)
    results: list[object] = [None] * len(units)

    def write(i: int) -> None:
        try:
            results[i] = commit.write(units[i])
        except Exception as e:  # noqa: BLE001
            results[i] = e

    first = threading.Thread(target=write, args=(0,))
    first.start()
    assert store.first_started.wait(10)
    others = [threading.Thread(target=write, args=(i,)) for i in range(1, len(units))]
    for t in others:
        t.start()
    while len(commit._pending) < len(others):  # all queued behind the first
        threading.Event().wait(0.001)
    store.release_first.set()
    for t in [first, *others]:
        t.join(10)
    return results


def test_writers_arriving_during_a_write_share_the_next_transaction() -> None:
    store = Store()

    results = write_while_first_is_held(store, [["a"], ["b1", "b2"], ["c"], ["d"]])

    assert len(store.transactions) == 2
    assert store.transactions[0] == ["a"]
    assert sorted(store.transactions[1]) == ["b1", "b2", "c", "d"]
    # each caller learns the position of its own last event
    second = store.transactions[1]
    assert results[1] == 1 + second.index("b2") + 1
    assert results[2] == 1 + second.index("c") + 1
    assert results[0] == 1


def test_a_conflicting_writer_fails_alone_and_the_others_are_stored() -> None:
    store = Store()

    results = write_while_first_is_held(store, [["a"], ["b"], ["taken"], ["d"]])

    assert isinstance(results[2], IntegrityError)
    assert sorted(r for i, r in enumerate(results) if i != 2) == [1, 2, 3]  # type: ignore[type-var]
    assert sorted(e for t in store.transactions for e in t) == ["a", "b", "d"]


def test_a_store_failure_reaches_every_writer_of_the_group() -> None:
    store = Store()
    store.broken = True

    results = write_while_first_is_held(store, [["a"], ["b"], ["c"]])

    assert all(isinstance(r, OSError) for r in results)
    assert store.transactions == []


def test_a_lone_writer_is_stored_at_once() -> None:
    store = Store()
    store.first_started.set()  # nothing to hold

    assert GroupCommit(store.put).write(["a", "b"]) == 2
    with pytest.raises(IntegrityError):
        GroupCommit(store.put).write(["taken"])


def test_writers_beyond_a_full_group_are_stored_in_the_next_one() -> None:
    store = Store()

    results = write_while_first_is_held(
        store, [["a"], ["b1", "b2", "b3"], ["c"], ["d1", "d2"]], max_events=3
    )

    assert sorted(e for t in store.transactions for e in t) == [
        "a",
        "b1",
        "b2",
        "b3",
        "c",
        "d1",
        "d2",
    ]
    assert all(len(t) <= 3 for t in store.transactions)
    assert sorted(results) == sorted(set(results))  # type: ignore[type-var]
    assert all(isinstance(r, int) and r > 0 for r in results)


def test_a_leader_whose_write_did_not_fit_the_group_writes_it_next() -> None:
    from application.group_commit import _Unit

    store = Store()
    store.first_started.set()  # nothing to hold
    commit = GroupCommit(store.put, max_events=3)
    waiting = _Unit(["b1", "b2", "b3"])  # another caller's, queued first, filling a group
    commit._pending.append(waiting)

    position = commit.write(["c"])

    assert store.transactions == [["b1", "b2", "b3"], ["c"]]
    assert (waiting.done, waiting.position, position) == (True, 3, 4)
