"""The event log's reading, the stream's bounded buffer and delivery state, on each store."""

from __future__ import annotations

import asyncio

from application.event_log import EventFilter, EventLog, LiveReader
from application.webhooks import Cursor, new_row
from interfaces.composition import Core
from interfaces.http.events_api import _frames
from tests.integration.test_job_lifecycle import nightly


def test_a_deleted_jobs_events_stay_its_tenants_when_read_from_mid_log(core: Core) -> None:
    created = core.jobs.create_job("acme", nightly(), by="ana")
    core.jobs.update_job("acme", created.id, {"description": "v2"}, by="ana")
    core.jobs.delete_job("acme", created.id, by="ana")
    fresh = EventLog(core.jobs.recorder, core.jobs.mapper)  # knows no owner yet

    mine = fresh.read(EventFilter("acme"), created.position, 100)
    theirs = fresh.read(EventFilter("other"), 0, 100)

    assert [e.type for e in mine.events] == ["scheduler.job.updated", "scheduler.job.deleted"]
    assert {e.job_id for e in mine.events} == {str(created.id)}
    assert theirs.events == [] and theirs.more is False


def test_a_short_scan_says_the_log_goes_on(core: Core) -> None:
    for i in range(5):
        core.jobs.create_job("acme", nightly(f"n-{i}"), by="ana")

    page = core.event_log.read(EventFilter("other"), 0, 100, scan=2)

    assert page.events == [] and page.more is True
    assert 0 < page.next_after < core.event_log.head()


def test_a_stream_client_that_falls_behind_its_buffer_gets_a_last_overflow_message(
    core: Core,
) -> None:
    core.start()

    async def scenario() -> list[bytes]:
        reader = LiveReader(core.live, EventFilter("acme"), None, buffer=3)
        for i in range(5):  # more than the buffer, while the client reads nothing
            await asyncio.to_thread(core.jobs.create_job, "acme", nightly(f"n-{i}"), "ana")
        while not reader.overflowed:
            await asyncio.wait_for(reader.ready.wait(), 30)
            reader.ready.clear()
        return [frame async for frame in _frames(reader, live=True, heartbeat=30)]

    frames = asyncio.run(scenario())

    assert frames[-1].startswith(b"event: overflow\n")
    assert b"Last-Event-ID" in frames[-1]
    assert not any(b"\nevent: scheduler." in f for f in frames)  # the buffer was dropped


def test_a_delivery_batch_lost_to_another_node_writes_nothing(core: Core) -> None:
    store, now, later = core.deliveries, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:30.000Z"
    first = store.claim("sub-1", "acme", 7, "node-a", now, later)
    taken = store.claim("sub-1", "acme", 7, "node-b", now, later)
    row = new_row("sub-1", 9, "scheduler.job.created", now)

    moved = store.commit("sub-1", "acme", "node-a", 7, Cursor(9), [row], later)
    stale = store.commit(
        "sub-1", "acme", "node-a", 7, Cursor(12), [new_row("sub-1", 12, "x", now)], later
    )

    assert first == Cursor(7) and taken is None
    assert moved is True and stale is False
    rows, total = store.list_deliveries("acme", "sub-1", None, 0, 10)
    assert total == 1 and rows[0]["position"] == 9
    assert store.state("sub-1") == {"position": 9, "consecutiveFailures": 0, "nextAttemptAt": None}
    assert store.list_deliveries("other", "sub-1", None, 0, 10) == ([], 0)
