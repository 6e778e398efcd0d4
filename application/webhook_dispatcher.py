"""Delivers each subscription's events in log order, at least once, retried and recorded.

One worker per enabled subscription follows the live log from the subscription's cursor.
It sends each matching event, then commits the delivery records together with the cursor's
new position (guarded by the position it started from and its lease), so a crash repeats a
delivery at worst and never skips one. A failed send blocks the subscription's later events
(log order) and is retried on the schedule, each delay stretched by random jitter; after a
run of failures the subscription is disabled by the system, with the reason, as an event.
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
from uuid import UUID

from application.event_log import EventFilter, LiveLog, Page
from application.projections import Row
from application.public_events import PublicEvent
from application.webhooks import Cursor, Webhooks, delivery_id, new_row, subscription_filter
from domain.instants import iso_ms
from domain.job import SYSTEM
from domain.webhook import Subscription

log = logging.getLogger(__name__)

#: Standard Webhooks' suggested schedule (seconds after each failed attempt).
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
ATTEMPTS_KEPT = 25


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send came to."""

    ok: bool
    retry: bool  # worth retrying: 5xx, 408, 429, timeout, connection error
    status: int | None
    latency_ms: int
    response: str | None
    error: str | None


class Sender(Protocol):
    """Posts one signed message."""

    async def send(self, url: str, secret: str, message_id: str, body: bytes) -> Attempt: ...

    async def close(self) -> None: ...


class DeliveryStore(Protocol):
    """Cursors and delivery rows (see `infrastructure.webhook_store`)."""

    def claim(self, subscription_id: str, tenant: str, start_after: int, owner: str, now: str,
              until: str) -> Cursor | None: ...  # fmt: skip

    def load(self, ids: Iterable[str]) -> dict[str, Row]: ...

    def commit(self, subscription_id: str, tenant: str, owner: str, expected: int,
               cursor: Cursor, rows: list[Row], lease_until: str) -> bool: ...  # fmt: skip

    def pending_redeliveries(self, subscription_id: str, limit: int) -> list[Row]: ...

    def save(self, subscription_id: str, tenant: str, row: Row) -> None: ...


@dataclass(frozen=True)
class DeliverySettings:
    """How deliveries are retried and given up on (every value is configurable)."""

    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    disable_after: int = 0  # failed attempts in a row; 0: when the schedule is used up
    jitter: float = 0.2  # each delay is stretched by up to this fraction, at random
    lease_seconds: float = 30.0
    batch: int = 100
    commit_idle_seconds: float = 2.0  # how long a cursor move with no delivery may wait
    refresh_seconds: float = 5.0  # how often subscriptions and redeliveries are looked for

    @property
    def failures_to_disable(self) -> int:
        """Failed attempts in a row that disable a subscription."""
        return self.disable_after or len(self.retry_schedule) + 1

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
        enabled_ids: Callable[[], list[str]],
        node: str,
        settings: DeliverySettings | None = None,
    ) -> None:
        self.webhooks, self.live, self.store, self.sender = webhooks, live, store, sender
        self.enabled_ids, self.node = enabled_ids, node
        self.settings = settings or DeliverySettings()
        self._workers: dict[str, _Worker] = {}
        self._touched: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until `stop()`."""
        self._loop, self._changed = asyncio.get_running_loop(), asyncio.Event()
        self.live.add_listener(self._on_events)
        try:
            known: set[str] = set()
            while not self._stopping:
                self._changed.clear()
                try:
                    known = await self._refresh(known)
                except Exception:  # the dispatcher must outlive a store outage; it logs the stack
                    log.exception("webhook subscriptions could not be read")
                try:
                    await asyncio.wait_for(self._changed.wait(), self.settings.refresh_seconds)
                except TimeoutError:
                    known = set()  # look at every subscription again
        finally:
            self.live.remove_listener(self._on_events)
            for worker in list(self._workers.values()):
                if worker.task is not None:
                    worker.task.cancel()
            await asyncio.gather(
                *(w.task for w in self._workers.values() if w.task), return_exceptions=True
            )
            self._workers.clear()
            await self.sender.close()

    def stop(self) -> None:
        """Stop delivering; sends in flight are abandoned (they will be repeated)."""
        self._stopping = True
        if self._loop is not None and self._changed is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._changed.set)

    def poke(self, subscription_id: str) -> None:
        """Something was queued for this subscription (a redelivery): look now."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poke, subscription_id)

    def _poke(self, subscription_id: str) -> None:
        worker = self._workers.get(subscription_id)
        if worker is not None:
            worker.wake.set()

    def _on_events(self, events: list[PublicEvent], _head: int) -> None:
        """From the live log's thread: wake the workers; note changed subscriptions."""
        touched = {
            e.envelope["subject"] for e in events if e.type.startswith("scheduler.webhook.")
        }
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake_all, touched)

    def _wake_all(self, touched: set[str]) -> None:
        for worker in self._workers.values():
            worker.wake.set()
        if touched and self._changed is not None:
            self._touched |= touched
            self._changed.set()

    async def _refresh(self, known: set[str]) -> set[str]:
        """Start workers for new enabled subscriptions; stop those disabled or deleted."""
        ids = set(await asyncio.to_thread(self.enabled_ids))
        touched, self._touched = self._touched, set()
        for sub_id in (ids - known) | touched:
            sub = await asyncio.to_thread(self._load, sub_id)
            worker = self._workers.get(sub_id)
            if sub is None or not sub.enabled:
                if worker is not None:
                    self._workers.pop(sub_id)
                    worker.wake.set()  # it sees it is gone and returns
                continue
            if worker is None:
                worker = self._workers[sub_id] = _Worker(sub, subscription_filter(sub))
                worker.task = asyncio.create_task(self._work(sub_id), name=f"webhook-{sub_id}")
            else:
                worker.sub, worker.wanted = sub, subscription_filter(sub)
                worker.wake.set()
        return ids

    def _load(self, sub_id: str) -> Subscription | None:
        try:
            sub = self.webhooks.jobs.repository.get(UUID(sub_id))
        except Exception:  # noqa: BLE001  # a missing or malformed id is no subscription
            return None
        return sub if isinstance(sub, Subscription) and not sub.deleted else None

    # -- one subscription ------------------------------------------------------------------

    async def _work(self, sub_id: str) -> None:
        failures = 0
        while not self._stopping:
            worker = self._workers.get(sub_id)
            if worker is None:
                return
            try:
                await self._follow(sub_id, worker)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # a worker must outlive a store outage; it logs the stack
                failures += 1
                log.exception("webhook %s: delivery failed", sub_id)
                await asyncio.sleep(min(30.0, 0.1 * 2**failures))

    async def _follow(self, sub_id: str, worker: _Worker) -> None:
        s = self.settings
        cursor: Cursor | None = None
        committed: Cursor | None = None
        lease_end = last_commit = 0.0
        while not self._stopping and self._workers.get(sub_id) is worker:
            sub, now = worker.sub, time.time()
            if cursor is None or now > lease_end - s.lease_seconds / 2:
                claimed = await asyncio.to_thread(
                    self.store.claim, sub_id, sub.tenant, sub.start_after, self.node,
                    _iso(now), _iso(now + s.lease_seconds),
                )  # fmt: skip
                if claimed is None:  # another node delivers this one
                    cursor = None
                    await self._pause(worker, s.lease_seconds / 2)
                    continue
                if committed is None or claimed.position != committed.position:
                    cursor = committed = claimed
                lease_end = now + s.lease_seconds
            assert cursor is not None and committed is not None
            if await self._redeliver(sub_id, worker):
                continue
            if cursor.next_attempt_at is not None:
                wait = _epoch(cursor.next_attempt_at) - time.time()
                if wait > 0:
                    await self._pause(worker, min(wait, s.refresh_seconds))
                    continue
            worker.wake.clear()
            page = self.live.recent(cursor.position, s.batch)
            if page is None:
                page = await asyncio.to_thread(self.live.read_all, cursor.position, s.batch)
            disable: str | None = None
            rows: list[Row] = []
            if page.events or page.next_after > cursor.position:
                cursor, rows, disable = await self._deliver(worker, cursor, page)
            moved = cursor != committed
            idle = time.monotonic() - last_commit > s.commit_idle_seconds
            if rows or disable or (moved and idle):
                if disable:
                    await asyncio.to_thread(
                        self.webhooks.disable, sub.tenant, sub_id, SYSTEM, disable
                    )
                now = time.time()
                if not await asyncio.to_thread(
                    self.store.commit, sub_id, sub.tenant, self.node, committed.position,
                    cursor, rows, _iso(now + s.lease_seconds),
                ):  # fmt: skip
                    log.warning("webhook %s: another node moved its cursor", sub_id)
                    cursor = committed = None
                    continue
                committed, lease_end, last_commit = cursor, now + s.lease_seconds, time.monotonic()
            if not page.more and not rows:
                await self._pause(worker, s.commit_idle_seconds if moved else s.refresh_seconds)

    async def _pause(self, worker: _Worker, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.wake.wait(), max(0.0, seconds))
        worker.wake.clear()

    async def _deliver(
        self, worker: _Worker, cursor: Cursor, page: Page
    ) -> tuple[Cursor, list[Row], str | None]:
        """Send the page's matching events in order, up to the first that must wait."""
        sub_id = str(worker.sub.id)
        position, failures = cursor.position, cursor.failures
        retrying = cursor.next_attempt_at is not None
        rows: list[Row] = []
        for event in page.events:
            if not worker.wanted.matches(event):
                position = event.position
                continue
            if self._workers.get(sub_id) is not worker or not worker.sub.enabled:
                return Cursor(position, failures), rows, None
            row = None
            if retrying:  # the delivery that failed before: its record goes on
                rid = delivery_id(sub_id, event.position)
                row = (await asyncio.to_thread(self.store.load, [rid])).get(rid)
                retrying = False
            row = row or new_row(sub_id, event.position, event.type, _iso(time.time()))
            attempt = await self.sender.send(
                worker.sub.url, worker.sub.secret, event.id, event.body
            )
            _record(row, attempt)
            rows.append(row)
            if attempt.ok:
                row["status"], failures, position = "succeeded", 0, event.position
                continue
            failures += 1
            if failures >= self.settings.failures_to_disable:
                row["status"], position = "failed", event.position
                reason = f"{failures} delivery attempts failed in a row (last: {attempt.error})"
                return Cursor(position, 0), rows, reason
            if not attempt.retry:  # the receiver refused this message: the next one follows
                row["status"], position = "failed", event.position
                continue
            due = _iso(time.time() + self.settings.delay(len(row["attempts"])))
            row.update(status="retrying", nextAttemptAt=due)
            return Cursor(position, failures, due), rows, None
        return Cursor(max(position, page.next_after), failures), rows, None

    async def _redeliver(self, sub_id: str, worker: _Worker) -> bool:
        """Send queued redeliveries (one attempt each); True when there were some."""
        rows = await asyncio.to_thread(self.store.pending_redeliveries, sub_id, 20)
        for row in rows:
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
        return bool(rows)


def _record(row: Row, attempt: Attempt) -> None:
    """Add an attempt to a delivery record (the latest few are kept, and the count)."""
    at = _iso(time.time())
    entry: dict[str, Any] = {"at": at, "status": attempt.status, "latencyMs": attempt.latency_ms,
                             "response": attempt.response, "error": attempt.error}  # fmt: skip
    row["attempts"] = [*row["attempts"], entry][-ATTEMPTS_KEPT:]
    row["attemptCount"] = row.get("attemptCount", 0) + 1
    row.update(updatedAt=at, nextAttemptAt=None)
