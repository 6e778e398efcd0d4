"""The event log's reading, the stream's bounded buffer and delivery state, on each store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from application.event_log import EVENT_OVERHEAD, EventFilter, EventLog, LiveLog, LiveReader
from application.projections import Row
from application.webhook_dispatcher import DeliverySettings, Dispatcher
from application.webhooks import Cursor, new_row
from domain.errors import InvalidField
from infrastructure.webhook_sender import WebhookSender
from interfaces.composition import Core
from interfaces.http.events_api import _frames
from tests.integration.test_job_lifecycle import nightly
from tests.webhook_receiver import Receiver, receiving


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
        frames = _frames(lambda: reader, live=True, heartbeat=30, stopping=asyncio.Event())
        return [frame async for frame in frames]

    frames = asyncio.run(scenario())

    assert frames[-1].startswith(b"event: overflow\n")
    assert b"Last-Event-ID" in frames[-1]
    assert not any(b"\nevent: scheduler." in f for f in frames)  # the buffer was dropped


def test_a_delivery_batch_lost_to_another_node_writes_nothing(core: Core) -> None:
    store, now, later = core.deliveries, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:30.000Z"
    first = store.claim("sub-1", "acme", 7, "node-a", now, later)
    taken = store.claim("sub-1", "acme", 7, "node-b", now, later)
    row = new_row("sub-1", 9, "scheduler.job.created", now)

    moved = store.commit("sub-1", "acme", "node-a", 7, Cursor(9), [row], now, later)
    stale = store.commit(
        "sub-1", "acme", "node-a", 7, Cursor(12), [new_row("sub-1", 12, "x", now)], now, later
    )

    assert first == Cursor(7) and taken is None
    assert moved is True and stale is False
    rows, total = store.list_deliveries("acme", "sub-1", None, 0, 10)
    assert total == 1 and rows[0]["position"] == 9
    assert store.state("sub-1") == {"position": 9, "consecutiveFailures": 0, "nextAttemptAt": None}
    assert store.list_deliveries("other", "sub-1", None, 0, 10) == ([], 0)


# -- subscriptions ------------------------------------------------------------------------------

HOOK = {"url": "https://93.184.215.14/hooks?token=abc", "eventTypes": ["scheduler.job.*"]}


def test_a_masked_secret_on_create_is_refused_naming_the_field(core: Core) -> None:
    with pytest.raises(InvalidField) as refused:
        core.webhooks.create("acme", {**HOOK, "secret": "whsec_***"}, by="ana")

    assert refused.value.field == "secret"


def test_the_masked_secret_and_url_sent_back_change_nothing(core: Core) -> None:
    written, secret = core.webhooks.create("acme", HOOK, by="ana")
    core.projections["webhooks"].catch_up()
    shown = core.webhooks_view.get_webhook("acme", str(written.id))
    assert shown is not None and shown["url"] == "https://93.184.215.14/hooks?token=***"

    unchanged = core.webhooks.update("acme", written.id, {"url": shown["url"],
                                     "secret": shown["secret"]}, by="ana")  # fmt: skip

    sub = core.webhooks.get("acme", written.id)
    assert unchanged.version == written.version  # nothing recorded
    assert sub.url == HOOK["url"] and sub.secret == secret


def test_a_redeliver_range_wider_than_the_cap_is_refused_naming_until(core: Core) -> None:
    written, _ = core.webhooks.create("acme", HOOK, by="ana")

    with pytest.raises(InvalidField) as refused:
        core.webhooks.redeliver("acme", written.id, {"after": 0, "until": 2**62})

    assert refused.value.field == "until"


# -- memory bounds ----------------------------------------------------------------------------


def test_a_ring_over_its_byte_budget_keeps_the_latest_and_reads_the_rest_from_the_log(
    core: Core,
) -> None:
    live = LiveLog(core.event_log, ring_size=1000, ring_bytes=2 * EVENT_OVERHEAD + 1500)
    start = live.position = live.ring_start = core.event_log.head()  # no thread: steps here
    live.add_listener(lambda events, head: None)  # heard: events are built and kept
    for i in range(4):
        written = core.jobs.create_job("acme", nightly(f"n-{i}"), by="ana")
    while live.position < written.position:
        live.step()

    page = live.read_all(start, 100)

    assert live.ring_start > start  # the oldest left the ring
    assert [e.type for e in page.events] == ["scheduler.job.created"] * 4


def test_a_stream_client_whose_buffer_passes_its_byte_budget_is_overflowed(core: Core) -> None:
    core.start()

    async def scenario() -> LiveReader:
        reader = LiveReader(core.live, EventFilter("acme"), None, buffer=1000, buffer_bytes=100)
        await asyncio.to_thread(core.jobs.create_job, "acme", nightly(), "ana")
        await asyncio.wait_for(reader.ready.wait(), 30)
        return reader

    assert asyncio.run(scenario()).overflowed


def test_a_stream_that_never_started_leaves_no_listener(core: Core) -> None:
    core.start()

    async def scenario() -> tuple[int, int, int]:
        def join() -> LiveReader:
            return LiveReader(core.live, EventFilter("acme"), None, buffer=10)

        frames = _frames(join, live=True, heartbeat=30, stopping=asyncio.Event())
        before = core.live.listeners  # the client went away before the first frame
        await anext(frames)
        streaming = core.live.listeners
        await frames.aclose()
        return before, streaming, core.live.listeners

    assert asyncio.run(scenario()) == (0, 1, 0)


def test_a_deleted_jobs_events_are_attributed_with_a_tiny_owner_cache(core: Core) -> None:
    jobs = [core.jobs.create_job("acme", nightly(f"n-{i}"), by="ana") for i in range(3)]
    for job in jobs:
        core.jobs.delete_job("acme", job.id, by="ana")
    log = EventLog(core.jobs.recorder, core.jobs.mapper, owner_cache=1)

    mine = log.read(EventFilter("acme"), 0, 100)

    assert len(mine.events) == 6 and len(log.owners) == 1


# -- delivery rows ----------------------------------------------------------------------------


def test_finished_deliveries_older_than_the_retention_are_pruned(core: Core) -> None:
    old, recent = "2026-01-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"
    rows = [new_row("sub-1", 1, "x", old), new_row("sub-1", 2, "x", old),
            new_row("sub-1", 3, "x", old), new_row("sub-1", 4, "x", recent)]  # fmt: skip
    for row, status in zip(rows, ["succeeded", "failed", "retrying", "succeeded"], strict=True):
        row["status"] = status
    core.deliveries.claim("sub-1", "acme", 0, "a", old, "2099-01-01T00:00:00.000Z")
    core.deliveries.commit(
        "sub-1", "acme", "a", 0, Cursor(4), rows, old, "2099-01-01T00:00:00.000Z"
    )

    removed = core.prune_deliveries(now=datetime(2026, 3, 2, tzinfo=UTC))  # 30 days

    left, total = core.deliveries.list_deliveries("acme", "sub-1", None, 0, 10)
    assert removed == 2 and total == 2
    assert sorted(r["position"] for r in left) == [3, 4]  # a retrying one stays, whatever its age


# -- the dispatcher ---------------------------------------------------------------------------

# a lease shorter than a batch of sends to a slow receiver: it must be renewed mid-batch
SHORT_LEASE = DeliverySettings(timeout_seconds=0.3, lease_margin_seconds=0.1, lease_seconds=0.8,
                               refresh_seconds=0.2, commit_idle_seconds=0.1)  # fmt: skip


def _dispatcher(core: Core, settings: DeliverySettings = SHORT_LEASE) -> Dispatcher:
    """A dispatcher as a process runs it; every one is named for the same host."""
    sender = WebhookSender(core.guard, settings.timeout_seconds)
    return Dispatcher(core.webhooks, core.live, core.deliveries, sender,
                      core._enabled_webhooks, "one-host", settings)  # fmt: skip


async def _deliver_until(dispatchers: list[Dispatcher], receiver: Receiver, done: Any) -> None:
    runs = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        await asyncio.to_thread(receiver.wait_for, done)
    finally:
        for d in dispatchers:
            d.stop()
        await asyncio.gather(*runs)


def test_two_processes_on_one_store_never_send_one_subscription_at_once(
    make_core: Callable[..., Core],
) -> None:
    cores = [make_core(allow_targets="127.0.0.0/8") for _ in range(2)]
    for core in cores:
        core.start()
    with receiving() as receiver:
        receiver.slow["/shared"] = 0.1  # 12 sends outlast the lease
        hook, _ = cores[0].webhooks.create("acme", {"url": receiver.url("/shared"),
                                           "eventTypes": ["scheduler.job.*"]}, by="ana")  # fmt: skip
        ids = [str(cores[0].jobs.create_job("acme", nightly(f"n-{i}"), by="ana").id)
               for i in range(12)]  # fmt: skip

        def all_in() -> bool:
            return set(ids) <= {m.body["subject"] for m in receiver.at("/shared")}

        asyncio.run(_deliver_until([_dispatcher(c) for c in cores], receiver, all_in))

    got = [m.body["subject"] for m in receiver.at("/shared")]
    assert list(dict.fromkeys(got)) == ids  # every one, in log order
    assert receiver.most_in_flight["/shared"] == 1  # never two sends at once
    assert hook is not None


def test_the_dispatcher_hears_the_log_only_while_a_subscription_is_enabled(core: Core) -> None:
    core.start()

    async def scenario() -> list[int]:
        dispatcher = _dispatcher(core)
        run = asyncio.create_task(dispatcher.run())
        heard = [core.live.listeners]
        hook, _ = await asyncio.to_thread(core.webhooks.create, "acme", HOOK, "ana")
        dispatcher.changed(str(hook.id))
        await _until(lambda: dispatcher.workers == 1)
        heard.append(core.live.listeners)
        await asyncio.to_thread(core.webhooks.delete, "acme", hook.id, "ana")
        dispatcher.changed(str(hook.id))
        await _until(lambda: dispatcher.workers == 0)
        heard.append(core.live.listeners)
        dispatcher.stop()
        await run
        return heard

    assert asyncio.run(scenario()) == [0, 1, 0]


def test_deliveries_look_for_redeliveries_only_when_asked(make_core: Callable[..., Core]) -> None:
    core = make_core(allow_targets="127.0.0.0/8")
    core.start()
    looked: list[str] = []
    pending = core.deliveries.pending_redeliveries

    def counted(subscription_id: str, limit: int) -> list[Row]:
        looked.append(subscription_id)
        return pending(subscription_id, limit)

    core.deliveries.pending_redeliveries = counted  # type: ignore[method-assign]
    settings = DeliverySettings(timeout_seconds=5, lease_seconds=60, refresh_seconds=60)
    with receiving() as receiver:
        core.webhooks.create("acme", {"url": receiver.url("/quiet"),
                             "eventTypes": ["scheduler.job.*"]}, by="ana")  # fmt: skip
        first = str(core.jobs.create_job("acme", nightly("first"), by="ana").id)

        async def scenario() -> int:
            dispatcher = _dispatcher(core, settings)
            run = asyncio.create_task(dispatcher.run())
            await asyncio.to_thread(receiver.wait_for, lambda: len(receiver.at("/quiet")) == 1)
            at_start = len(looked)
            for i in range(20):  # batches of another tenant's events, then one of ours
                await asyncio.to_thread(core.jobs.create_job, "other", nightly(f"o-{i}"), "bob")
            await asyncio.to_thread(core.jobs.create_job, "acme", nightly("second"), "ana")
            await asyncio.to_thread(receiver.wait_for, lambda: len(receiver.at("/quiet")) == 2)
            dispatcher.stop()
            await run
            return len(looked) - at_start

        assert asyncio.run(scenario()) == 0
    assert receiver.at("/quiet")[0].body["subject"] == first


async def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Yield to the loop until `condition()` holds (a hang guard, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
