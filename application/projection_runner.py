"""Follows the event log and applies each projection's events in batches, exactly once."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from application.ports import ProjectionStore
from application.projections import Projection

log = logging.getLogger(__name__)

#: how long a catch-up waits for the process that follows the log before doing it itself
ELSEWHERE_WAIT_SECONDS = 30.0


def follow(
    step: Callable[[], bool],
    wake: threading.Event,
    stopping: threading.Event,
    rest: Callable[[], float],
    what: str,
) -> None:
    """A follower thread's loop: `step` until it finds nothing, then wait to be woken or for
    `rest()` seconds; a failing step (the store away) is logged and retried with backoff."""
    failures = 0
    while not stopping.is_set():
        wake.clear()
        try:
            while step() and not stopping.is_set():
                pass
            failures = 0
        except Exception:  # the follower must survive a store outage; it logs the stack
            failures += 1
            log.exception("%s failed to follow the log", what)
            stopping.wait(min(30.0, 0.1 * 2**failures))
            continue
        wake.wait(rest())


class ProjectionRunner:
    """One projection kept up to date from the log: one store transaction per batch of events.

    A batch's rows and its last log position commit together, guarded by the position the
    batch started from, so two processes following one log never apply an event twice.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        projection: Projection,
        store: ProjectionStore,
        *,
        batch_size: int = 2000,
    ) -> None:
        self.recorder, self.mapper = recorder, mapper
        self.projection, self.store = projection, store
        self.batch_size = batch_size
        self._topic_list = sorted(projection.topics)
        self._position = store.position()  # as committed in the store
        # read through with nothing of this projection's in it: not committed (a write per
        # projection per batch of others' events would cost more than the events), but
        # known, so read-your-writes need not wait for a commit that changes nothing
        self._seen = self._position
        self._committed_at = time.monotonic()
        # one applier at a time in this process (the follower, a catch-up asked for by a
        # request): a batch read before another thread moved on must not be applied after it
        self._lock = threading.RLock()
        self._changed = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._followed = False  # by a thread of its own or its set's, or another process
        self._elsewhere = False  # followed by another process, which reports its positions
        self._listeners: list[Callable[[str, int, int], None]] = []
        self.poll_interval = 0.5

    @property
    def name(self) -> str:
        """The projection's name."""
        return self.projection.name

    #: an idle position is committed when it is this far ahead of the stored one, or this old
    IDLE_COMMIT_EVENTS = 10_000
    IDLE_COMMIT_SECONDS = 5.0

    @property
    def position(self) -> int:
        """The last log position applied (as this process last saw it)."""
        return max(self._position, self._seen)

    # -- applying ------------------------------------------------------------------------

    def step(self, stop: int | None = None) -> bool:
        """Apply the next batch of the log (up to `stop`); False when there was none.

        Only the projection's own topics are read (the store filters them); when a batch
        comes back short, every event up to the head read before it has been seen, so the
        position moves to that head even if the last events were not this projection's.
        """
        head = stop if stop is not None else (self.recorder.max_notification_id() or 0)
        with self._lock:
            start = self.position
            if head <= start:
                return False
            self._apply_read(*self._read(start, head))
            return True

    def _read(self, start: int, head: int) -> tuple[Sequence[Any], int]:
        """The next batch after `start` of this projection's events up to `head`, and the
        position it reaches (a short batch has seen everything up to `head`)."""
        notifications = self.recorder.select_notifications(
            start=start,
            limit=self.batch_size,
            stop=head,
            topics=self._topic_list,
            inclusive_of_start=False,
        )
        last = notifications[-1].id if len(notifications) == self.batch_size else head
        return notifications, last

    def _apply_read(self, notifications: Sequence[Any], last: int) -> None:
        if not notifications and not self._idle_is_due(last):
            self._moved_seen(last)
        else:
            self.apply(notifications, self.mapper.to_domain_event, last)

    def _idle_is_due(self, last: int) -> bool:
        """Whether an idle stretch of the log should now be committed as read (so a restart
        does not read it again)."""
        return (
            last - self._position >= self.IDLE_COMMIT_EVENTS
            or time.monotonic() - self._committed_at >= self.IDLE_COMMIT_SECONDS
        )

    def apply(
        self, notifications: Sequence[Any], decode: Callable[[Any], Any], last: int | None = None
    ) -> None:
        """Fold a batch that follows this projection's position into its store, in one commit;
        the position moves to `last` (default: the batch's last notification)."""
        with self._lock:
            self._apply(notifications, decode, last)

    def _apply(
        self, notifications: Sequence[Any], decode: Callable[[Any], Any], last: int | None
    ) -> None:
        start = self._position
        topics = self.projection.topics
        events = [decode(n) for n in notifications if n.topic in topics]
        changes: dict[str, Any] = {}
        if events:
            key, creates = self.projection.key, self.projection.creates
            keys = [key(e) for e in events]
            first: dict[str, Any] = {}
            for k, event in zip(keys, events, strict=True):
                first.setdefault(k, event)
            rows: dict[str, Any] = self.store.load(
                [k for k, event in first.items() if not creates(event)]
            )
            for k, event in zip(keys, events, strict=True):
                rows[k] = changes[k] = self.projection.apply(rows.get(k), event)
        if last is None:
            last = notifications[-1].id
        if self.store.commit(changes, expected=start, position=last):
            self._committed_at = time.monotonic()
            self._moved(last)
        else:  # another process applied this batch first: carry on from where it got to
            self._lost(self.store.position())

    def catch_up(
        self, stop: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply every event up to the log's head (or `stop`), in this thread; `progress` is
        told the position reached after each batch. When another process follows the log for
        this projection, wait for it first (it is likely ahead)."""
        if stop is None:
            stop = self.recorder.max_notification_id() or 0
        if self._elsewhere and self.wait_for(stop, ELSEWHERE_WAIT_SECONDS):
            return self.position
        with self._lock:
            while self.position < stop:
                before = self.position
                # the next batch is read (the store's time) while this one is folded (ours)
                with _ReadAhead(self._read, before, stop) as batches:
                    for notifications, last in batches:
                        self._apply_read(notifications, last)
                        if progress is not None:
                            progress(self.position)
                        if self.position != last:  # another process applied some first
                            break
                if self.position <= before:  # no progress: nothing more to read
                    break
            return self.position

    def reset(self) -> None:
        """Drop the read model: it starts again from the beginning of the log."""
        with self._lock:
            self.store.reset()
            self._moved(0, force=True)

    def rebuild(self) -> int:
        """Drop the read model and apply the whole log again."""
        self.reset()
        return self.catch_up()

    def _moved(self, position: int, *, force: bool = False) -> None:
        with self._changed:
            if force or position > self._position:
                self._position = position
            if force or position > self._seen:
                self._seen = position
            self._changed.notify_all()
        self._report()

    def _lost(self, stored: int) -> None:
        """A commit found another position in the store: take it as ours (what was seen of the
        log stays seen: no event of this projection's lies there)."""
        with self._changed:
            self._position = stored
            self._seen = max(self._seen, stored)
            self._changed.notify_all()
        self._report()

    def _moved_seen(self, position: int) -> None:
        with self._changed:
            self._seen = max(self._seen, position)
            self._changed.notify_all()
        self._report()

    def _report(self) -> None:
        for listener in self._listeners:
            listener(self.name, self._position, self._seen)

    def listen(self, listener: Callable[[str, int, int], None]) -> None:
        """Call `listener(name, committed, seen)` whenever this projection moves."""
        self._listeners.append(listener)

    def observed(self, committed: int, seen: int) -> None:
        """Where the process that follows the log for this one has got to."""
        with self._changed:
            self._position = max(self._position, committed)
            self._seen = max(self._seen, seen)
            self._elsewhere = True  # from now on a catch-up waits for that process first
            self._changed.notify_all()

    # -- following -----------------------------------------------------------------------

    def wake(self) -> None:
        """New events were written: look now rather than at the next poll."""
        self._wake.set()

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until this projection has applied `position` (read-your-writes)."""
        if not self._followed:  # nobody follows the log in this process: apply it here
            self.catch_up(position)
            return self.position >= position
        self.wake()
        with self._changed:
            return self._changed.wait_for(lambda: self.position >= position, timeout)

    def start(self, poll_interval: float = 0.5) -> None:
        """Follow the log in a thread: at once when woken, else every `poll_interval`."""
        self.poll_interval = poll_interval
        self._stopping.clear()
        self._followed = True
        self._thread = threading.Thread(
            target=self._follow, name=f"projection-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following; a batch in progress finishes first."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._followed = False

    def _follow(self) -> None:
        follow(
            self.step, self._wake, self._stopping, lambda: self.poll_interval,
            f"projection {self.name}",
        )  # fmt: skip


class ProjectionSet:
    """All projections of a process: woken together, waited on together, and followed by one
    thread that reads each new stretch of the log once for all of them (each projection
    reading the same rows in a thread of its own cost more than applying them)."""

    def __init__(self, runners: Iterable[ProjectionRunner], batch_size: int = 2000) -> None:
        self.runners = {r.name: r for r in runners}
        self.batch_size = batch_size
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._retry_at: dict[str, float] = {}  # a projection whose batch failed rests a while
        self._failures: dict[str, int] = {}
        self._elsewhere_wake: Callable[[int | None], None] | None = None

    def __getitem__(self, name: str) -> ProjectionRunner:
        return self.runners[name]

    def wake(self, position: int | None = None) -> None:
        """Events were written (by this process or, via the store's notice, another)."""
        if self._elsewhere_wake is not None:
            self._elsewhere_wake(position)
            return
        self._wake.set()
        for runner in self.runners.values():
            runner.wake()

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Block until every projection has applied `position`; False on timeout."""
        deadline = time.monotonic() + timeout
        return all(
            r.wait_for(position, max(0.0, deadline - time.monotonic()))
            for r in self.runners.values()
        )

    def catch_up(self) -> None:
        """Apply the whole log to every projection, in this thread."""
        for runner in self.runners.values():
            runner.catch_up()

    def rebuild_all(
        self, batch_size: int = 5000, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Drop every read model and rebuild them in one pass over the log: each event is
        read and decoded once, then folded into each projection that wants it. `progress`
        is told the position reached and the head after each batch."""
        runners = list(self.runners.values())
        for runner in runners:
            runner.reset()
        recorder, mapper = runners[0].recorder, runners[0].mapper
        head = recorder.max_notification_id() or 0
        position = 0
        while position < head:
            notifications = recorder.select_notifications(
                start=position, limit=batch_size, stop=head, inclusive_of_start=False
            )
            if not notifications:
                break
            decode = _DecodeOnce(mapper)
            for runner in runners:
                runner.apply(notifications, decode)
            position = notifications[-1].id
            if progress is not None:
                progress(position, head)
        return position

    def start(self, poll_interval: float = 0.5) -> None:
        """Follow the log in a thread: at once when woken, else every `poll_interval`."""
        self._stopping.clear()
        for runner in self.runners.values():
            runner._followed = True
            runner._wake = self._wake  # a reader waiting on one projection wakes the thread
        self._thread = threading.Thread(
            target=self._follow, args=(poll_interval,), name="projections", daemon=True
        )
        self._thread.start()

    def follow_elsewhere(self, wake: Callable[[int | None], None]) -> None:
        """Another process follows the log for these projections (it reports its positions to
        `observed`); waiting readers and this process's writes wake it through `wake`."""
        self._elsewhere_wake = wake
        forward = _Forward(wake)
        for runner in self.runners.values():  # until it reports, a catch-up is done here
            runner._followed = True
            runner._wake = forward  # type: ignore[assignment]

    def observed(self, name: str, committed: int, seen: int) -> None:
        """A position reported by the process that follows the log for this set."""
        runner = self.runners.get(name)
        if runner is not None:
            runner.observed(committed, seen)

    def stop(self) -> None:
        """Stop following; a batch in progress finishes first."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._elsewhere_wake = None
        for runner in self.runners.values():
            runner._followed = runner._elsewhere = False

    def step(self) -> bool:
        """Read the next stretch of the log once and apply it to every projection behind;
        False when every projection has seen the head."""
        runners = [
            r for r in self.runners.values() if self._retry_at.get(r.name, 0) <= time.monotonic()
        ]
        if not runners:
            return False
        recorder, mapper = runners[0].recorder, runners[0].mapper
        head = recorder.max_notification_id() or 0
        start = min(r.position for r in runners)
        if head <= start:
            return False
        topics = sorted({t for r in runners for t in r.projection.topics})
        notifications = recorder.select_notifications(
            start=start, limit=self.batch_size, stop=head, topics=topics, inclusive_of_start=False
        )
        last = notifications[-1].id if len(notifications) == self.batch_size else head
        decode = _DecodeOnce(mapper)
        for runner in runners:
            try:
                with runner._lock:  # read before another thread may have moved it on: filter now
                    if runner.position >= last:
                        continue
                    mine = [
                        n
                        for n in notifications
                        if n.id > runner.position and n.topic in runner.projection.topics
                    ]
                    if mine or runner._idle_is_due(last):
                        runner.apply(mine, decode, last)
                    else:
                        runner._moved_seen(last)
                self._failures.pop(runner.name, None)
            except Exception:  # one projection's trouble must not stop the others
                failures = self._failures[runner.name] = self._failures.get(runner.name, 0) + 1
                self._retry_at[runner.name] = time.monotonic() + min(30.0, 0.1 * 2**failures)
                log.exception(
                    "projection %s failed to apply a batch", runner.name,
                    extra={"position": runner.position},
                )  # fmt: skip
        return True

    def _follow(self, poll_interval: float) -> None:
        def rest() -> float:
            if not self._retry_at:
                return poll_interval
            # look again when a resting projection may retry
            soonest = max(0.0, min(self._retry_at.values()) - time.monotonic())
            self._retry_at = {k: v for k, v in self._retry_at.items() if v > time.monotonic()}
            return min(poll_interval, soonest)

        follow(self.step, self._wake, self._stopping, rest, "projections")

    def lag(self, head: int) -> dict[str, dict[str, int]]:
        """Each projection's position and how many log positions it is behind `head`."""
        return {
            name: {"position": r.position, "lag": max(0, head - r.position)}
            for name, r in self.runners.items()
        }


class _ReadAhead:
    """Reads batches `read(start, stop) -> (batch, reached)` in a thread, one ahead of the
    consumer, until `stop` is reached; the reader's errors reach the consumer."""

    _END = object()

    def __init__(
        self, read: Callable[[int, int], tuple[Sequence[Any], int]], start: int, stop: int
    ) -> None:
        self._read, self._start, self._stop = read, start, stop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="read-ahead", daemon=True)

    def __enter__(self) -> Iterator[tuple[Sequence[Any], int]]:
        self._thread.start()
        return self._batches()

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        while self._thread.is_alive():  # unblock a reader waiting to hand over a batch
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()

    def _batches(self) -> Iterator[tuple[Sequence[Any], int]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _run(self) -> None:
        position = self._start
        try:
            while position < self._stop and not self._closing.is_set():
                batch = self._read(position, self._stop)
                self._put(batch)
                position = batch[1]
            self._put(self._END)
        except BaseException as e:  # noqa: BLE001  # handed to the consumer
            self._put(e)

    def _put(self, item: Any) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.05)
                return


class _Forward:
    """A runner's wake-up event when another process follows the log: it tells that process."""

    def __init__(self, wake: Callable[[int | None], None]) -> None:
        self._tell = wake

    def set(self) -> None:
        self._tell(None)


class _DecodeOnce:
    """Decodes each notification of a batch at most once, however many projections want it."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper, self.decoded = mapper, {}

    def __call__(self, notification: Any) -> Any:
        event = self.decoded.get(notification.id)
        if event is None:
            event = self.decoded[notification.id] = self.mapper.to_domain_event(notification)
        return event


class LogFollower:
    """Wakes projections when another process writes: the store's notice, else a timer.

    PostgreSQL tells subscribers at once (LISTEN/NOTIFY); SQLite cannot be subscribed to,
    so there the runners' own poll interval is the bound on cross-process staleness.
    """

    def __init__(self, recorder: ApplicationRecorder, on_notice: Callable[[int], None]) -> None:
        self.recorder, self.on_notice = recorder, on_notice
        self._thread: threading.Thread | None = None
        self._subscription: Any = None
        self._stopping = threading.Event()

    def start(self) -> bool:
        """Start following; False when the store offers no subscription."""
        try:
            self._subscription = self.recorder.subscribe(gt=self.recorder.max_notification_id())
        except NotImplementedError:
            return False
        self._thread = threading.Thread(target=self._follow, name="log-follower", daemon=True)
        self._thread.start()
        return True

    def _follow(self) -> None:
        try:
            with self._subscription as subscription:
                for notification in subscription:
                    self.on_notice(notification.id)
                    if self._stopping.is_set():
                        break
        except Exception:  # a lost connection ends following; runners still poll
            if not self._stopping.is_set():
                log.exception("log subscription ended; projections fall back to polling")

    def stop(self) -> None:
        """Stop following."""
        self._stopping.set()
        if self._subscription is not None:
            self._subscription.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
