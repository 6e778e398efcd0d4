"""Delivers each subscription's events in log order, at least once, retried and recorded.

One worker per enabled subscription and process follows the live log from the
subscription's cursor. It sends each matching event, then commits the delivery records
together with the cursor's new position (guarded by the position it started from and its
lease, which must still be valid), so a crash repeats a delivery at worst and never skips
one. A worker sends only while its lease has room for one more send (it renews it before),
so two processes never deliver one subscription at once. A failed send (any answer but a
2xx) blocks the subscription's later events (log order) and is retried on the schedule,
each delay stretched by random jitter; after a run of failures, or a 410 Gone, the
subscription is disabled by the system, with the reason, as an event, and its cursor stays
before the failed event, so enabling it again retries that one first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

from application.event_log import EventFilter, LiveLog, Page
from application.projections import Row
from application.public_events import PublicEvent
from application.webhooks import Cursor, Webhooks, delivery_id, new_row, subscription_filter
from domain.errors import DomainError
from domain.instants import iso_ms
from domain.job import SYSTEM
from domain.webhook import Subscription

log = logging.getLogger(__name__)

#: Standard Webhooks' suggested schedule (seconds after each failed attempt).
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
ATTEMPTS_KEPT = 25
REDELIVERY_BATCH = 20


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send came to."""

    ok: bool
    status: int | None
    latency_ms: int
    response: str | None
    error: str | None
    gone: bool = False  # 410 Gone: the receiver says the subscription is over


class Sender(Protocol):
    """Posts one signed message."""

    async def send(self, url: str, secret: str, message_id: str, body: bytes) -> Attempt: ...

    async def close(self) -> None: ...


class DeliveryStore(Protocol):
    """Cursors, leases and delivery rows (see `infrastructure.webhook_store`)."""

    def claim(self, subscription_id: str, tenant: str, start_after: int, owner: str, now: str,
              until: str) -> Cursor | None: ...  # fmt: skip

    def renew(self, subscription_id: str, owner: str, now: str, until: str) -> bool: ...

    def load(self, ids: Iterable[str]) -> dict[str, Row]: ...

    def commit(self, subscription_id: str, tenant: str, owner: str, expected: int,
               cursor: Cursor, rows: list[Row], now: str, lease_until: str) -> bool: ...  # fmt: skip

    def pending_redeliveries(self, subscription_id: str, limit: int) -> list[Row]: ...

    def save(self, subscription_id: str, tenant: str, row: Row) -> None: ...


@dataclass(frozen=True)
class DeliverySettings:
    """How deliveries are retried and given up on (every value is configurable)."""

    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    disable_after: int = 0  # failed attempts in a row; 0: when the schedule is used up
    jitter: float = 0.2  # each delay is stretched by up to this fraction, at random
    timeout_seconds: float = 10.0  # the longest one send takes (the sender's timeout)
    lease_seconds: float = 30.0
    lease_margin_seconds: float = 2.0  # room left after a send's timeout, for the commit
    batch: int = 100
    commit_idle_seconds: float = 2.0  # how long a cursor move with no delivery may wait
    refresh_seconds: float = 5.0  # how often the enabled subscriptions are looked at

    def __post_init__(self) -> None:
        if self.lease_seconds <= self.timeout_seconds + self.lease_margin_seconds:
            raise ValueError("the lease must outlast one send's timeout and the margin")

    @property
    def failures_to_disable(self) -> int:
        """Failed attempts in a row that disable a subscription."""
        return self.disable_after or len(self.retry_schedule) + 1

    @property
    def idle_seconds(self) -> float:
        """The longest a worker waits for news: it renews its lease in between."""
        return min(self.refresh_seconds, self.lease_seconds / 3)

    @property
    def lease_needed(self) -> float:
        """Seconds of lease a send must have left before it starts (else it is renewed)."""
        return max(self.lease_seconds / 2, self.timeout_seconds + self.lease_margin_seconds)

    def delay(self, attempt: int) -> float:
        """Seconds before retrying after failed attempt number `attempt` (1-based)."""
        base = self.retry_schedule[min(attempt, len(self.retry_schedule)) - 1]
        return base * (1 + self.jitter * random.random())  # jitter, not crypto


@dataclass
class _Worker:
    sub: Subscription
    wanted: EventFilter
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    generation: int = 0  # counts reloads of `sub`: a batch read before one stops
    fresh: bool = True  # False from a change seen in the log until `sub` is reloaded
    gone: bool = False  # disabled or deleted: the worker ends
    redeliveries: bool = True  # look for queued redeliveries (at start, poke, lease renewal)
    lease_until: float = 0.0  # epoch seconds; 0: not held


@dataclass(frozen=True, slots=True)
class _Batch:
    cursor: Cursor
    rows: list[Row]
    disable: str | None  # why the subscription is to be disabled
    continuing: bool  # the next delivery's record exists (a retry, or a failed one resumed)


def _iso(epoch: float) -> str:
    return iso_ms(datetime.fromtimestamp(epoch, UTC)) or ""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Dispatcher:
    """Runs one delivery worker per enabled subscription on the event loop."""

    def __init__(
        self,
        webhooks: Webhooks,
        live: LiveLog,
        store: DeliveryStore,
        sender: Sender,
        enabled_versions: Callable[[], dict[str, int]],
        node: str,
        settings: DeliverySettings | None = None,
    ) -> None:
        self.webhooks, self.live, self.store, self.sender = webhooks, live, store, sender
        self.enabled_versions = enabled_versions
        self.owner = f"{node}/{uuid4().hex[:12]}"  # processes on one host may share a node name
        self.settings = settings or DeliverySettings()
        self._workers: dict[str, _Worker] = {}
        self._touched: set[str] = set()
        self._listening = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until `stop()`."""
        self._loop, self._changed = asyncio.get_running_loop(), asyncio.Event()
        try:
            while not self._stopping:
                self._changed.clear()
                try:
                    await self._refresh()
                except Exception:  # the dispatcher must outlive a store outage; it logs the stack
                    log.exception("webhook subscriptions could not be read")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.settings.refresh_seconds)
        finally:
            self._stopping = True
            tasks = [w.task for w in self._workers.values() if w.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._workers.clear()
            self._listen()
            await self.sender.close()

    def stop(self) -> None:
        """Stop delivering; sends in flight are abandoned (they will be repeated)."""
        self._stopping = True
        self._call(lambda: self._changed.set() if self._changed is not None else None)

    def poke(self, subscription_id: str) -> None:
        """Redeliveries were queued for this subscription: send them now."""
        self._call(lambda: self._poke(subscription_id))

    def changed(self, subscription_id: str) -> None:
        """This process changed the subscription (the API did): load it again now."""
        self._call(lambda: self._touch({subscription_id}))

    @property
    def workers(self) -> int:
        """Subscriptions this process is delivering (or waiting for the lease of)."""
        return len(self._workers)

    def _call(self, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    def _poke(self, subscription_id: str) -> None:
        worker = self._workers.get(subscription_id)
        if worker is not None:
            worker.redeliveries = True
            worker.wake.set()

    def _listen(self) -> None:
        """Hear the live log only while some subscription is delivered: with none, no event
        is built for the dispatcher."""
        wanted = bool(self._workers) and not self._stopping
        if wanted and not self._listening:
            self.live.add_listener(self._on_events)
        elif not wanted and self._listening:
            self.live.remove_listener(self._on_events)
        self._listening = wanted

    def _on_events(self, events: list[PublicEvent], _head: int) -> None:
        """From the live log's thread: hand the batch to the event loop."""
        by_tenant: dict[str, list[PublicEvent]] = {}
        for event in events:
            by_tenant.setdefault(event.tenant, []).append(event)
        touched = {
            e.envelope["subject"] for e in events if e.type.startswith("scheduler.webhook.")
        }
        self._call(lambda: self._wake_matching(by_tenant, touched))

    def _wake_matching(self, by_tenant: dict[str, list[PublicEvent]], touched: set[str]) -> None:
        """Wake the workers that get some of these events; note changed subscriptions."""
        for worker in self._workers.values():
            events = by_tenant.get(worker.sub.tenant)
            if events and not worker.wake.is_set() and any(map(worker.wanted.matches, events)):
                worker.wake.set()
        if touched:
            self._touch(touched)

    def _touch(self, touched: set[str]) -> None:
        for sub_id in touched:
            worker = self._workers.get(sub_id)
            if worker is not None:
                worker.fresh = False  # no send with what may be an old URL, secret or state
        self._touched |= touched
        if self._changed is not None:
            self._changed.set()

    async def _refresh(self) -> None:
        """Start workers for enabled subscriptions (new, or changed since they were loaded:
        the read model's version says so), end those of subscriptions disabled or deleted."""
        versions = await asyncio.to_thread(self.enabled_versions)
        touched, self._touched = self._touched, set()
        touched |= set(self._workers) - set(versions)  # disabled, deleted (or not yet seen)
        for sub_id in sorted(set(versions) | touched):
            worker = self._workers.get(sub_id)
            known = worker is not None and worker.fresh and not worker.gone
            if sub_id not in touched and known and worker.sub.version >= versions[sub_id]:  # type: ignore[union-attr]
                continue
            sub = await asyncio.to_thread(self._load, sub_id)
            worker = self._workers.get(sub_id)  # after the await: it may have ended
            if sub is None or not sub.enabled:
                if worker is not None:
                    worker.gone, worker.fresh = True, True
                    worker.wake.set()  # it sees it is gone and returns
                continue
            if worker is None:
                self._start(sub)
            else:
                worker.sub, worker.wanted = sub, subscription_filter(sub)
                worker.generation += 1
                worker.gone, worker.fresh = False, True
                worker.wake.set()

    def _start(self, sub: Subscription) -> None:
        sub_id = str(sub.id)
        worker = self._workers[sub_id] = _Worker(sub, subscription_filter(sub))
        worker.task = asyncio.create_task(self._work(sub_id, worker), name=f"webhook-{sub_id}")
        self._listen()

    def _load(self, sub_id: str) -> Subscription | None:
        try:
            sub = self.webhooks.jobs.repository.get(UUID(sub_id))
        except Exception:  # noqa: BLE001  # a missing or malformed id is no subscription
            return None
        return sub if isinstance(sub, Subscription) and not sub.deleted else None

    # -- one subscription ------------------------------------------------------------------

    async def _work(self, sub_id: str, worker: _Worker) -> None:
        failures = 0
        try:
            while not self._stopping and not worker.gone:
                try:
                    await self._follow(sub_id, worker)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a worker must outlive a store outage; it logs the stack
                    failures += 1
                    log.exception("webhook %s: delivery failed", sub_id)
                    worker.lease_until = 0.0
                    await self._pause(worker, min(30.0, 0.1 * 2**failures))
        finally:  # no await between the decision to end and this: one worker at a time
            if self._workers.get(sub_id) is worker:
                del self._workers[sub_id]
            self._listen()

    async def _follow(self, sub_id: str, worker: _Worker) -> None:
        s = self.settings
        cursor: Cursor | None = None
        committed: Cursor | None = None
        continuing = False
        last_commit = 0.0
        while not self._stopping and not worker.gone:
            if cursor is None:
                cursor = committed = await self._claim(sub_id, worker)
                if cursor is None:  # another process delivers this one
                    await self._wait_for_lease(worker)
                    continue
                continuing = worker.redeliveries = True  # a retry's record may be there
            elif not await self._hold_lease(sub_id, worker):
                log.warning("webhook %s: the lease lapsed; claiming it again", sub_id)
                cursor = None
                continue
            assert committed is not None
            if worker.redeliveries and await self._redeliver(sub_id, worker):
                continue
            if cursor.next_attempt_at is not None:
                wait = _epoch(cursor.next_attempt_at) - time.time()
                if wait > 0:
                    await self._pause(worker, min(wait, s.idle_seconds))
                    continue
            worker.wake.clear()
            if not worker.fresh:  # the subscription changed: wait until it is loaded again
                await self._pause(worker, s.idle_seconds)
                continue
            generation = worker.generation
            page = self.live.from_ring(worker.wanted, cursor.position, s.batch)
            if page is None:
                page = await asyncio.to_thread(
                    self.live.read, worker.wanted, cursor.position, s.batch
                )
            batch = _Batch(cursor, [], None, continuing)
            if page.events or page.next_after > cursor.position:
                batch = await self._deliver(sub_id, worker, generation, batch, page)
            cursor, continuing = batch.cursor, batch.continuing
            moved = cursor != committed
            idle = time.monotonic() - last_commit > s.commit_idle_seconds
            if batch.rows or batch.disable or (moved and idle):
                now = time.time()
                if not await asyncio.to_thread(
                    self.store.commit, sub_id, worker.sub.tenant, self.owner, committed.position,
                    cursor, batch.rows, _iso(now), _iso(now + s.lease_seconds),
                ):  # fmt: skip
                    log.warning("webhook %s: the lease was lost before the commit", sub_id)
                    cursor = committed = None
                    worker.lease_until = 0.0
                    continue
                committed, last_commit = cursor, time.monotonic()
                worker.lease_until = now + s.lease_seconds
                if batch.disable:
                    await self._disable(sub_id, worker, batch.disable)
                    return
            if not page.more and not batch.rows:
                await self._pause(worker, s.commit_idle_seconds if moved else s.idle_seconds)

    async def _pause(self, worker: _Worker, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.wake.wait(), max(0.0, seconds))
        worker.wake.clear()

    async def _wait_for_lease(self, worker: _Worker) -> None:
        """Half a lease before trying again; new events do not shorten it (each would cost
        every waiting process a write), only the subscription's end does."""
        deadline = time.monotonic() + self.settings.lease_seconds / 2
        while not (self._stopping or worker.gone) and time.monotonic() < deadline:
            await self._pause(worker, deadline - time.monotonic())

    async def _claim(self, sub_id: str, worker: _Worker) -> Cursor | None:
        """Take the lease (or renew this process's own); the cursor as stored."""
        now, sub = time.time(), worker.sub
        claimed = await asyncio.to_thread(
            self.store.claim, sub_id, sub.tenant, sub.start_after, self.owner, _iso(now),
            _iso(now + self.settings.lease_seconds),
        )  # fmt: skip
        worker.lease_until = 0.0 if claimed is None else now + self.settings.lease_seconds
        return claimed

    async def _hold_lease(self, sub_id: str, worker: _Worker) -> bool:
        """Whether the lease has room for one more send, renewed first when it has not;
        False when it could not be renewed (it lapsed: another process may hold it now)."""
        s, now = self.settings, time.time()
        if worker.lease_until - now >= s.lease_needed:
            return True
        renewed = worker.lease_until > now and await asyncio.to_thread(
            self.store.renew, sub_id, self.owner, _iso(now), _iso(now + s.lease_seconds)
        )
        worker.lease_until = now + s.lease_seconds if renewed else 0.0
        if renewed:
            worker.redeliveries = True  # another node's API may have queued some
        return renewed

    async def _may_send(self, sub_id: str, worker: _Worker, generation: int) -> bool:
        """Whether the next send may go: the subscription as loaded is current and enabled,
        and the lease outlasts the send."""
        if worker.gone or not worker.fresh or worker.generation != generation:
            return False
        if self._stopping:
            return False
        return await self._hold_lease(sub_id, worker)

    async def _deliver(
        self, sub_id: str, worker: _Worker, generation: int, batch: _Batch, page: Page
    ) -> _Batch:
        """Send the page's events in order, up to the first that must wait."""
        cursor, continuing = batch.cursor, batch.continuing
        position, failures = cursor.position, cursor.failures
        rows: list[Row] = []
        for event in page.events:
            if not await self._may_send(sub_id, worker, generation):
                return _Batch(Cursor(position, failures), rows, None, continuing)
            rid = delivery_id(sub_id, event.position)
            row = None
            if continuing:  # the delivery tried before (a retry, or enabled again): it goes on
                row = (await asyncio.to_thread(self.store.load, [rid])).get(rid)
                continuing = False
            row = row or new_row(sub_id, event.position, event.type, _iso(time.time()))
            sub = worker.sub
            attempt = await self.sender.send(sub.url, sub.secret, event.id, event.body)
            _record(row, attempt)
            rows.append(row)
            if attempt.ok:
                row["status"], failures, position = "succeeded", 0, event.position
                continue
            failures += 1
            reason = None
            if attempt.gone:
                reason = "the receiver answered 410 Gone"
            elif failures >= self.settings.failures_to_disable:
                reason = f"{failures} delivery attempts failed in a row (last: {attempt.error})"
            if reason is not None:  # the cursor stays before it: enabling retries it first
                row["status"] = "failed"
                return _Batch(Cursor(position), rows, reason, True)
            due = _iso(time.time() + self.settings.delay(failures))
            row.update(status="retrying", nextAttemptAt=due)
            return _Batch(Cursor(position, failures, due), rows, None, True)
        return _Batch(Cursor(max(position, page.next_after), failures), rows, None, continuing)

    async def _disable(self, sub_id: str, worker: _Worker, reason: str) -> None:
        worker.gone = True  # no further send, whatever the disable comes to
        try:
            await asyncio.to_thread(
                self.webhooks.disable, worker.sub.tenant, sub_id, SYSTEM, reason
            )
        except DomainError as e:  # deleted or changed meanwhile: the next refresh decides
            log.warning("webhook %s: not disabled (%s)", sub_id, e)
            self._touch({sub_id})

    async def _redeliver(self, sub_id: str, worker: _Worker) -> bool:
        """Send queued redeliveries (one attempt each); True when some were sent."""
        worker.redeliveries = False
        rows = await asyncio.to_thread(self.store.pending_redeliveries, sub_id, REDELIVERY_BATCH)
        generation = worker.generation
        for row in rows:
            if not await self._may_send(sub_id, worker, generation):
                worker.redeliveries = True  # the rest wait for the subscription or the lease
                return False
            event = await asyncio.to_thread(self.live.log.at, row["position"])
            if event is None:
                row["status"] = "failed"
                row["attempts"].append({"at": _iso(time.time()), "error": "event not found"})
            else:
                sub = worker.sub
                attempt = await self.sender.send(sub.url, sub.secret, event.id, event.body)
                _record(row, attempt)
                row["status"] = "succeeded" if attempt.ok else "failed"
            await asyncio.to_thread(self.store.save, sub_id, worker.sub.tenant, row)
        worker.redeliveries = len(rows) == REDELIVERY_BATCH  # there may be more
        return bool(rows)


def _record(row: Row, attempt: Attempt) -> None:
    """Add an attempt to a delivery record (the latest few are kept, and the count)."""
    at = _iso(time.time())
    entry: dict[str, Any] = {"at": at, "status": attempt.status, "latencyMs": attempt.latency_ms,
                             "response": attempt.response, "error": attempt.error}  # fmt: skip
    row["attempts"] = [*row["attempts"], entry][-ATTEMPTS_KEPT:]
    row["attemptCount"] = row.get("attemptCount", 0) + 1
    row.update(updatedAt=at, nextAttemptAt=None)
