"""The log as public events: read in pages with filters, and followed live.

`EventLog` reads stored events in log order and turns each public one into its envelope,
attributed to its tenant (and job) by its aggregate's first event, so a deleted job's events
stay its tenant's. `LiveLog` follows the head in one thread, builds each envelope once, keeps
the latest in a bounded ring and hands every new batch to its listeners (the stream, the
webhook dispatcher).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper

from application.projection_runner import follow
from application.public_events import (
    ALL_TYPES,
    READ_TOPICS,
    Owner,
    PublicEvent,
    envelope,
    owner_of_first,
)
from domain.errors import InvalidField
from domain.ledger import SkippedSlots
from domain.webhook import check_globs, glob_regex

log = logging.getLogger(__name__)

READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which public events a reader wants: one tenant's, of some types, of one job or app."""

    tenant: str
    types: re.Pattern[str] | None = None
    job_id: str | None = None
    application_id: str | None = None

    @classmethod
    def parse(
        cls, tenant: str, types: str | None, job_id: str | None, field: str = "types"
    ) -> EventFilter:
        """From query parameters: `types` comma-separated globs, `jobId` a job's id."""
        pattern = None
        if types:
            globs = [g.strip() for g in types.split(",") if g.strip()]
            pattern = glob_regex(check_globs(field, globs, ALL_TYPES))
        if job_id is not None:
            try:
                job_id = str(UUID(job_id))
            except ValueError:
                raise InvalidField("jobId", "must be a job id (UUID)") from None
        return cls(tenant, pattern, job_id)

    def matches(self, event: PublicEvent) -> bool:
        """Whether the reader gets this event."""
        return (
            event.tenant == self.tenant
            and (self.types is None or self.types.match(event.type) is not None)
            and (self.job_id is None or event.job_id == self.job_id)
            and (self.application_id is None or event.application_id == self.application_id)
        )


@dataclass(frozen=True, slots=True)
class Page:
    """Public events in log order, and the position the read got to (resume after it)."""

    events: list[PublicEvent]
    next_after: int
    more: bool


#: Aggregates whose owner is remembered (least recently used forgotten first): about 0.8 KB
#: each, so some 16 MB; an owner forgotten is looked up again (one indexed read).
OWNER_CACHE = 20_000
#: An event's cost in the ring or a client's buffer beyond its body (the object, its strings).
EVENT_OVERHEAD = 400


class Owners:
    """Whom each aggregate's events belong to: remembered from first events as they pass,
    looked up in the log (its first event) for aggregates first seen mid-log."""

    def __init__(
        self, recorder: ApplicationRecorder, mapper: Mapper[Any], size: int = OWNER_CACHE
    ) -> None:
        self.recorder, self.mapper, self.size = recorder, mapper, size
        self._owners: OrderedDict[UUID, Owner | None] = OrderedDict()
        self._job_apps: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many owners are remembered."""
        return len(self._owners)

    def note(self, event: Any) -> Owner | None:
        """Learn from a first event; the owner of any event (None: internal aggregate)."""
        if event.originator_version == 1:
            if isinstance(event, SkippedSlots.Skipped):  # type: ignore[attr-defined]
                self.of(event.job_id)  # a skip's application comes from its job
            with self._lock:
                owner = owner_of_first(event, self._job_apps)
            self._remember(event.originator_id, owner)
            return owner
        return self.of(event.originator_id)

    def of(self, originator_id: UUID) -> Owner | None:
        """The owner of an aggregate's events."""
        with self._lock:
            if originator_id in self._owners:
                self._owners.move_to_end(originator_id)  # least recently used goes first
                return self._owners[originator_id]
        stored = self.recorder.select_events(originator_id, lte=1)
        owner = None
        if stored:
            first = self.mapper.to_domain_event(stored[0])
            if isinstance(first, SkippedSlots.Skipped):  # type: ignore[attr-defined]
                self.of(first.job_id)  # a skip's application comes from its job
            with self._lock:
                owner = owner_of_first(first, self._job_apps)
        self._remember(originator_id, owner)
        return owner

    def _remember(self, originator_id: UUID, owner: Owner | None) -> None:
        with self._lock:
            self._owners[originator_id] = owner
            if len(self._owners) > self.size:
                self._owners.popitem(last=False)
            if owner is not None and owner.kind == "job" and owner.application_id is not None:
                self._job_apps[str(originator_id)] = owner.application_id
                self._job_apps.move_to_end(str(originator_id))
                if len(self._job_apps) > self.size:
                    self._job_apps.popitem(last=False)


class EventLog:
    """Reads the log as public events."""

    def __init__(
        self, recorder: ApplicationRecorder, mapper: Mapper[Any], owner_cache: int = OWNER_CACHE
    ) -> None:
        self.recorder, self.mapper = recorder, mapper
        self.owners = Owners(recorder, mapper, owner_cache)

    def head(self) -> int:
        """The log's last position."""
        return self.recorder.max_notification_id() or 0

    def read_all(self, after: int, limit: int = READ_BATCH, stop: int | None = None) -> Page:
        """Every tenant's public events after `after` (one batch of stored events)."""
        head = self.head() if stop is None else stop
        if head <= after:
            return Page([], after, False)
        notifications = self.recorder.select_notifications(
            start=after, limit=limit, stop=head, topics=READ_TOPICS, inclusive_of_start=False
        )
        events = self.to_public(notifications)
        full = len(notifications) == limit
        return Page(events, notifications[-1].id if full else head, full)

    def to_public(self, notifications: Sequence[Any]) -> list[PublicEvent]:
        """Envelopes of the public events among stored ones, in order."""
        events = []
        for notification in notifications:
            event = self.mapper.to_domain_event(notification)
            owner = self.owners.note(event)
            if owner is None:
                continue
            public = envelope(event, notification.id, owner)
            if public is not None:
                events.append(public)
        return events

    def read(
        self,
        wanted: EventFilter,
        after: int,
        limit: int,
        scan: int = 20_000,
        stop: int | None = None,
    ) -> Page:
        """The reader's events after `after` (up to `stop`), at most `limit`, looking at most
        `scan` stored events: a page can be short (even empty) while `more` says the log goes
        on."""
        head = self.head() if stop is None else min(stop, self.head())
        found: list[PublicEvent] = []
        position, scanned = after, 0
        while position < head and scanned < scan:
            size = min(READ_BATCH, scan - scanned)
            page = self.read_all(position, size, head)
            scanned += size
            for event in page.events:
                if wanted.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return Page(found, event.position, True)
            position = page.next_after
            if not page.more:
                position = head
        return Page(found, position, position < head)

    def at(self, position: int) -> PublicEvent | None:
        """The public event at one position, if that one is public."""
        page = self.read_all(position - 1, 1, position)
        return next((e for e in page.events if e.position == position), None)


Listener = Callable[[list[PublicEvent], int], None]

#: The ring's bounds: at most this many of the latest events, and at most this many bytes
#: (an execution's result can be 64 KiB: a count alone would not bound the memory).
RING_EVENTS = 10_000
RING_BYTES = 16 * 1024 * 1024


def event_cost(event: PublicEvent) -> int:
    """Roughly what keeping an event costs: its body and the object around it."""
    return len(event.body) + EVENT_OVERHEAD


class LiveLog:
    """Follows the log's head in a thread; each new public event is built once, kept in a
    ring of the latest (bounded in count and bytes), and handed to every listener with the
    head reached."""

    def __init__(
        self, log: EventLog, ring_size: int = RING_EVENTS, ring_bytes: int = RING_BYTES
    ) -> None:
        self.log = log
        self.ring_size, self.ring_bytes = ring_size, ring_bytes
        self._ring: deque[PublicEvent] = deque()
        self._positions: deque[int] = deque()
        self._ring_cost = 0
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.position = 0
        self.ring_start = 0  # the ring holds every public event after this position

    @property
    def listeners(self) -> int:
        """How many listeners are called after each batch."""
        return len(self._listeners)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(events, head)` from the follower thread after each batch."""
        with self._lock:  # not while an idle follower skips ahead (see `step`)
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener`."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def wake(self, _position: int | None = None) -> None:
        """The log moved (this process wrote, or the store said so): look now."""
        self._wake.set()

    def start(self, poll_interval: float = 0.5) -> None:
        """Follow from the head as it is now."""
        self.position = self.ring_start = self.log.head()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._follow, args=(poll_interval,), name="live-log", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def recent(self, after: int, limit: int) -> Page | None:
        """Public events after `after` from the ring, or None when it no longer holds them."""
        with self._lock:
            if after < self.ring_start:
                return None
            i = bisect.bisect_right(self._positions, after)
            events = list(itertools.islice(self._ring, i, i + limit))
            position = self.position
        if len(events) == limit:
            return Page(events, events[-1].position, True)
        return Page(events, max(after, position), False)

    def read_all(self, after: int, limit: int = READ_BATCH) -> Page:
        """Every tenant's public events after `after`: from the ring, else from the log."""
        page = self.recent(after, limit)
        if page is not None:
            return page
        return self.log.read_all(after, limit, stop=self.position or None)

    def from_ring(self, wanted: EventFilter, after: int, limit: int) -> Page | None:
        """The reader's events after `after` up to where the live log stands, looked for in
        the ring (in memory), or None when the ring no longer holds them."""
        found: list[PublicEvent] = []
        with self._lock:
            if after < self.ring_start:
                return None
            start = bisect.bisect_right(self._positions, after)
            for event in itertools.islice(self._ring, start, None):
                if wanted.matches(event):
                    found.append(event)
                    if len(found) == limit:
                        return Page(found, event.position, True)
            return Page(found, max(after, self.position), False)

    def read(self, wanted: EventFilter, after: int, limit: int) -> Page:
        """The reader's events after `after`, up to where the live log stands: from the ring,
        else from the log (see `EventLog.read`; it blocks)."""
        page = self.from_ring(wanted, after, limit)
        if page is not None:
            return page
        return self.log.read(wanted, after, limit, stop=self.position or None)

    def step(self) -> bool:
        """Read the next batch after the head; False when there was none."""
        if self._skip_unheard():
            return False
        page = self.log.read_all(self.position, READ_BATCH)
        if page.next_after <= self.position:
            return False
        with self._lock:
            self._keep(page.events)
            self.position = page.next_after
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(page.events, page.next_after)
            except Exception:  # one listener's trouble must not stop the others
                log.exception("a live log listener failed")
        return True

    def _keep(self, events: list[PublicEvent]) -> None:
        """Add to the ring, dropping the oldest beyond its bounds (under the lock)."""
        for event in events:
            self._ring.append(event)
            self._positions.append(event.position)
            self._ring_cost += event_cost(event)
        while self._ring and (
            len(self._ring) > self.ring_size or self._ring_cost > self.ring_bytes
        ):
            dropped = self._ring.popleft()
            self._positions.popleft()
            self._ring_cost -= event_cost(dropped)
            self.ring_start = dropped.position

    def _skip_unheard(self) -> bool:
        """With nobody listening, move to the head without building events nobody reads (an
        engine writing thousands of events a second would pay for each); readers that come
        later read the log itself for what the ring does not hold."""
        if self._listeners:
            return False
        head = self.log.head()
        with self._lock:
            if self._listeners:
                return False
            if head > self.position:
                self._ring.clear()
                self._positions.clear()
                self._ring_cost = 0
                self.position = self.ring_start = head
        return True

    def _follow(self, poll_interval: float) -> None:
        follow(self.step, self._wake, self._stopping, lambda: poll_interval, "the live event log")


#: A stream client's buffer: at most this many bytes of events it has not read yet.
CLIENT_BUFFER_BYTES = 1024 * 1024


class LiveReader:
    """One live reader (a stream client): the log from `after` up to where the live log stood
    when it joined, then each new event from a bounded buffer. A reader that falls more than
    `buffer` events (or `buffer_bytes` bytes) behind is marked `overflowed` (the buffer is
    dropped, not grown)."""

    def __init__(
        self,
        live: LiveLog,
        wanted: EventFilter,
        after: int | None,
        buffer: int,
        buffer_bytes: int = CLIENT_BUFFER_BYTES,
    ) -> None:
        self.live, self.wanted = live, wanted
        self.limit, self.limit_bytes = buffer, buffer_bytes
        self.loop = asyncio.get_running_loop()
        self.ready = asyncio.Event()
        self.overflowed = False
        self._buffer: deque[PublicEvent] = deque()
        self._buffered = 0  # bytes
        live.add_listener(self._offer)  # first, then the position: no event falls between
        self.joined_at = live.position
        self.cursor = self.joined_at if after is None else after  # all up to here is handled

    def close(self) -> None:
        """Stop taking events."""
        self.live.remove_listener(self._offer)

    def _offer(self, events: list[PublicEvent], _head: int) -> None:
        mine = [e for e in events if self.wanted.matches(e)]
        if mine and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._push, mine)

    def _push(self, events: list[PublicEvent]) -> None:
        if self.overflowed:
            return
        cost = sum(event_cost(e) for e in events)
        if (
            len(self._buffer) + len(events) > self.limit
            or self._buffered + cost > self.limit_bytes
        ):
            self.overflowed = True
            self._buffer.clear()
            self._buffered = 0
        else:
            self._buffer.extend(events)
            self._buffered += cost
        self.ready.set()

    @property
    def caught_up(self) -> bool:
        """Whether every event up to the joining point has been handed out."""
        return self.cursor >= self.joined_at

    async def next_batch(self, limit: int = READ_BATCH) -> list[PublicEvent]:
        """The next events after the cursor (empty: none now, wait on `ready`)."""
        if not self.caught_up:
            page = self.live.recent(self.cursor, limit)
            if page is not None:
                mine = [e for e in page.events if e.position <= self.joined_at]
                mine = [e for e in mine if self.wanted.matches(e)]
                stop = min(page.next_after, self.joined_at)
            else:
                page = await asyncio.to_thread(
                    self.live.log.read, self.wanted, self.cursor, limit, 20_000, self.joined_at
                )
                mine, stop = page.events, page.next_after
            self.cursor = max(self.cursor, stop)
            return mine
        self.ready.clear()
        batch = [e for e in self._buffer if e.position > self.cursor]
        self._buffer.clear()
        self._buffered = 0
        if batch:
            self.cursor = batch[-1].position
        return batch
