"""The scheduling engine: fires every enabled job on its schedule and records every decision.

It keeps a min-heap of next fire instants, sleeps until the earliest or until the log shows
a change, records all fires due in one tick in one transaction, and runs the executions it
won in a bounded pool. It follows the event log, so a change made through any process
reaches it, and executions started on other nodes count for the concurrency policies.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import heapq
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from application.jobs import Fire, Jobs
from application.limiter import Limiter
from application.misfires import decide_misfires
from application.ports import (
    Clock,
    EngineObserver,
    EngineViews,
    Row,
    TaskOutcome,
    TaskRequest,
    TaskRunner,
    Unobserved,
)
from application.write_batcher import WriteBatcher
from domain.errors import DomainError
from domain.execution import ErrorCode, Execution, Status, Trigger, scheduled_execution_id
from domain.instants import iso_ms, parse_instant
from domain.job import SYSTEM, Job
from domain.ledger import SkippedSlots, SkipReason
from domain.parameters import has_parameters, resolve_parameters
from domain.policies import ConcurrencyPolicy, MisfirePolicy, RetryPolicy
from domain.schedule import Schedule

log = logging.getLogger(__name__)

JOB_TOPICS = frozenset(
    get_topic(c)
    for c in (Job.Created, Job.Updated, Job.Enabled, Job.Disabled, Job.Deleted)  # type: ignore[attr-defined]
)
EXECUTION_TOPICS = frozenset(
    get_topic(c)
    for c in (
        Execution.Scheduled,  # type: ignore[attr-defined]
        Execution.Succeeded,
        Execution.Failed,  # type: ignore[attr-defined]
    )
)
SCHEDULED_TOPIC = get_topic(Execution.Scheduled)  # type: ignore[attr-defined]
CLAIMED_TRIGGERS = frozenset({Trigger.MANUAL.value, Trigger.BACKFILL.value})
#: How long the tick waits before trying again to record fires the store refused.
STORE_RETRY = timedelta(seconds=1)
MAX_UNRECORDED = 100_000
START_GROUP = 1_000  # fires (or skip records) per transaction when an engine starts
#: slots one tick decides at most (the rest in the next, after the backlog check)
TICK_FIRES = 5_000
EPSILON = timedelta(microseconds=1)
#: executions decided but not started yet, and outcomes not written yet, past which the
#: tick loop waits before deciding more slots: under overload fires grow late (up to the
#: misfire grace, then missed), not the memory
BACKLOG = 20_000
#: fires other nodes recorded, remembered per generation (two are kept): at least the last
#: minute of them at a few thousand fires a second
ELSEWHERE = 200_000
#: Outcomes no retry can change.
FINAL_CODES = frozenset({ErrorCode.URL_BLOCKED.value, ErrorCode.UNKNOWN_FUNCTION.value})


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine behaves; the README names the variable behind each."""

    node: str
    max_concurrency: int = 5
    misfire_grace_seconds: float = 10.0
    shutdown_grace_seconds: float = 30.0
    poll_seconds: float = 0.5
    takeover_seconds: float = 60.0
    #: fires of `allow`-policy jobs are recorded this long before their slot and started at
    #: it, so the group commit is not in their lateness (0: decide every fire at its slot)
    decide_ahead_seconds: float = 0.5
    #: with several nodes, each job's nodes take turns this far apart to decide its slot: the
    #: first in the job's order decides, the next (learning from the log that it did) only
    #: steps in when it did not (a dead node), instead of all racing to record every fire
    stagger_seconds: float = 0.2
    #: the store admits no other engine node (SQLite): a slot reached later than the misfire
    #: grace (an overloaded node) is a misfire, decided by the job's policy. With other nodes
    #: possible it is left to the store's verdict: a node that looks dead, its heartbeat
    #: late under load, may have run it, and a skip record cannot conflict with that fire
    single_node: bool = False


@dataclass(slots=True)
class _Entry:
    job: Job
    schedule: Schedule
    active_since: datetime
    next_slot: datetime | None = None
    token: int = 0
    policy: ConcurrencyPolicy = field(init=False)
    rank: int = 0  # this node's turn among the live nodes to decide this job's slots
    ranked: int = -1  # for which set of live nodes `rank` was computed

    def __post_init__(self) -> None:
        # read once per job version, not once per fire
        self.policy = ConcurrencyPolicy(self.job.definition["concurrencyPolicy"])


#: a fire recorded ahead of its slot, held until it: its execution, job and resolved config
_Held = tuple[Execution, Job, "dict[str, Any] | DomainError"]


@dataclass(slots=True)
class _Stats:
    running: int = 0
    queued: int = 0
    fired: int = 0
    won: int = 0
    skipped: int = 0
    deferred: int = 0  # times the loop waited for a backlog to drain before deciding slots
    watches: int = 0  # times this node beat and looked for what dead nodes left
    lateness: list[float] = field(default_factory=list)


def jitter_for(job_id: UUID, slot: datetime, jitter_seconds: int) -> float:
    """A start delay in [0, jitter) that every node derives alike from the job and slot."""
    if jitter_seconds <= 0:
        return 0.0
    digest = hashlib.sha256(f"{job_id}/{slot.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter_seconds


class Engine:
    """Fires jobs on time, exactly once per slot, and records every decision as events."""

    def __init__(
        self,
        jobs: Jobs,
        runner: TaskRunner,
        clock: Clock,
        views: EngineViews,
        settings: EngineSettings,
        observer: EngineObserver | None = None,
    ) -> None:
        self.jobs, self.runner, self.clock, self.views = jobs, runner, clock, views
        self.settings = settings
        self.observer: EngineObserver = observer or Unobserved()  # metrics
        self.node = settings.node
        self.batcher = WriteBatcher(jobs)
        self.stats = _Stats()
        self._entries: dict[UUID, _Entry] = {}
        # (when to decide, seq, job, token, slot): a slot is decided ahead of it (allow
        # jobs), at it (others), later on the node whose turn for the job comes later
        self._heap: list[tuple[datetime, int, UUID, int, datetime]] = []
        self._ahead = settings.decide_ahead_seconds
        self._grace = timedelta(seconds=settings.misfire_grace_seconds)
        self._live: tuple[str, ...] = (settings.node,)  # nodes beating now, this one among them
        self._live_version = 0
        # fires other nodes recorded (from the log): a node whose turn comes later skips them
        self._elsewhere: set[UUID] = set()
        self._elsewhere_before: set[UUID] = set()
        self._seq = itertools.count()
        self._active: dict[UUID, set[UUID]] = {}  # unfinished executions per job, any node
        self._job_of: dict[UUID, UUID] = {}  # job of each unfinished execution
        self._mine: set[UUID] = set()  # executions this engine recorded, until the log says done
        self._tasks: dict[UUID, asyncio.Task[None]] = {}  # executions running in this process
        self._cancel_codes: dict[UUID, str] = {}
        self._queued: dict[UUID, tuple[Execution, Job]] = {}
        self._overlaps: dict[UUID, SkippedSlots] = {}
        self._unrecorded: list[tuple[_Entry, Fire]] = []  # fires the store refused, to retry
        self._unrecorded_skips: list[Any] = []  # runs of missed slots likewise
        self._owed: list[tuple[_Entry, Fire]] = []  # missed fires found at start, to record
        # fires recorded ahead of their slot are held until the clock reaches it, and only
        # then get their tasks: (slot, seq, the slot's fires), and the fires of each slot
        self._ready: list[tuple[datetime, int, list[_Held]]] = []
        self._held: dict[datetime, list[_Held]] = {}
        self._unstarted: set[UUID] = set()  # decided, not started yet (held for their slot,
        # or waiting for a pool slot)
        self._claims: set[UUID] = set()  # taken over from a dead node: start only if we win
        self._drained: asyncio.Event | None = None
        self._failures: dict[UUID, int] = {}
        self._position = 0
        self._limiter: Limiter | None = None
        self._static_configs: dict[tuple[UUID, int], bool] = {}  # task configs without parameters
        self._wake: asyncio.Event | None = None
        self._log_changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        """Start, then fire jobs until `stop()`; running executions get the grace period."""
        self._loop = asyncio.get_running_loop()
        self._limiter = Limiter(self.settings.max_concurrency)
        self._wake, self._log_changed = asyncio.Event(), asyncio.Event()
        self._stopping = asyncio.Event()
        self._drained = asyncio.Event()
        await self._beat()
        await self._start()
        # what start-up loaded lives as long as the engine: out of the collector's way (a
        # full collection walked it all, a pause in the middle of a slot's fires: p99
        # lateness at 1,000 fires a second 80-88 -> 52-60 ms); garbage first, not frozen
        gc.collect()
        gc.freeze()
        self.started.set()
        follower = asyncio.create_task(self._follow_log(), name="engine-log")
        watcher = asyncio.create_task(self._watch_nodes(), name="engine-nodes")
        try:
            await self._tick_loop()
        finally:
            follower.cancel()
            watcher.cancel()
            await self._shutdown()

    def stop(self) -> None:
        """Stop taking fires (thread-safe); `run()` returns after the grace period."""
        if self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._loop.call_soon_threadsafe(self._wake_up)

    def log_changed(self, _position: int | None = None) -> None:
        """Events were written (here or elsewhere): look at the log now (thread-safe)."""
        if self._loop is not None and self._log_changed is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._log_changed.set)

    @property
    def scheduled_jobs(self) -> int:
        """Jobs this engine holds a next fire for."""
        return len(self._entries)

    def _wake_up(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def _shutdown(self) -> None:
        if self._ready:  # recorded already, due within `decide_ahead_seconds`: they run
            last = max(slot for slot, *_ in self._ready)
            bound = self.settings.decide_ahead_seconds + 1  # real seconds, whatever the clock
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(bound):
                    await self.clock.wait_until(last, asyncio.Event())
            self._start_ready(last)
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
            for task in pending:
                self._cancel_codes[self._execution_of(task)] = ErrorCode.INTERRUPTED.value
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
        await self.batcher.drain()
        self.batcher.close()

    def _execution_of(self, task: asyncio.Task[None]) -> UUID:
        return next(k for k, t in self._tasks.items() if t is task)

    # -- start: load, recover, catch up -----------------------------------------------------

    async def _start(self) -> None:
        self._position = await asyncio.to_thread(
            lambda: self.jobs.recorder.max_notification_id() or 0
        )
        ids = await asyncio.to_thread(self.views.enabled_job_ids)
        loaded = await asyncio.to_thread(self.jobs.load_jobs, [UUID(i) for i in ids])
        for job, active_since in loaded:
            if job.enabled and not job.deleted:
                self._entries[job.id] = _Entry(job, job.schedule, active_since)
        await self._recover()
        decided = await asyncio.to_thread(self.views.decided_until)
        now = self.clock.now()
        skips: list[Any] = []
        fires: list[tuple[_Entry, Fire]] = []
        for entry in list(self._entries.values()):
            resume = entry.active_since
            if str(entry.job.id) in decided:
                resume = max(resume, parse_instant(decided[str(entry.job.id)], "decidedUntil"))
            entry_skips, entry_fires = self._misfires(entry, resume, now)
            skips += entry_skips
            fires += entry_fires
        # every job's decision first, then recorded in group commits (one transaction per
        # job made a start with 10,000 due slots take 43 s); the fires owed are recorded by
        # the tick loop, a group at a time, as the pool takes them (back-pressure)
        for i in range(0, len(skips), START_GROUP):
            await self._record_skips(skips[i : i + START_GROUP])
        self._owed = fires
        log.info(
            "engine %s started with %d job(s), %d missed fire(s) to run",
            self.node,
            len(self._entries),
            len(fires),
        )

    # -- other nodes -----------------------------------------------------------------------

    async def _beat(self) -> None:
        """Tell the other nodes this one is alive, and see which others are."""
        now = self.clock.now()
        try:
            await asyncio.to_thread(self.views.beat, self.node, iso_ms(now))
            seen = await asyncio.to_thread(self.views.last_seen)
        except Exception:  # the store is away: the next beat will do
            log.exception("engine %s could not record its heartbeat", self.node)
            return
        bound = now - timedelta(seconds=self.settings.takeover_seconds)
        live = {n for n, at in seen.items() if parse_instant(at, "seenAt") >= bound}
        live = tuple(sorted(live | {self.node}))
        if live != self._live:  # each job's turns are worked out again as it is next scheduled
            self._live, self._live_version = live, self._live_version + 1

    async def _watch_nodes(self) -> None:
        """Beat, and take over what nodes that stopped beating left unfinished."""
        assert self._stopping is not None
        period = self.settings.takeover_seconds / 4
        while not self._stopping.is_set():
            await self.clock.wait_until(
                self.clock.now() + timedelta(seconds=period), self._stopping
            )
            await self._beat()
            try:
                await self._recover(at_start=False)
            except Exception:  # the store is away: look again at the next beat
                log.exception("engine %s could not look for orphaned executions", self.node)
            self.stats.watches += 1

    def _dead(self, node: str, row: Row, seen: dict[str, str], now: datetime) -> bool:
        """Whether `node` has stopped: no heartbeat for `takeover_seconds` (a node never seen
        beating, from before heartbeats: no activity on the execution for that long)."""
        takeover = timedelta(seconds=self.settings.takeover_seconds)
        if node in seen:
            return parse_instant(seen[node], "seenAt") + takeover < now
        last = row.get("nextAttemptAt") or row.get("startedAt") or row["scheduledFor"]
        return parse_instant(last, "at") + takeover < now

    async def _recover(self, at_start: bool = True) -> None:
        """Executions a dead engine left unfinished: failed INTERRUPTED, retried if allowed,
        or run if it never started them. At start that includes this node's own, left by
        its previous process; afterwards only those of nodes that stopped beating."""
        now = self.clock.now()
        seen = await asyncio.to_thread(self.views.last_seen)
        taken: list[tuple[UUID, UUID]] = []
        for row in await asyncio.to_thread(self.views.unfinished):
            execution_id, job_id = UUID(row["id"]), UUID(row["jobId"])
            if execution_id in self._tasks:
                continue  # this process runs it
            mine = row["node"] == self.node
            if (mine and not at_start) or (
                not mine and not self._dead(row["node"], row, seen, now)
            ):
                if at_start:
                    self._track(job_id, execution_id)  # a live node's: it counts as running
                continue
            self._track(job_id, execution_id)
            self._claims.add(execution_id)  # another node may take it over too: one wins
            taken.append((execution_id, job_id))
        # a group at a time, read in one query and written in one group commit: a read and
        # a write each made a restarted node with tens of thousands left take 46-88 s
        for i in range(0, len(taken), START_GROUP):
            await self._recover_group(taken[i : i + START_GROUP], now)

    async def _recover_group(self, taken: list[tuple[UUID, UUID]], now: datetime) -> None:
        executions = await asyncio.to_thread(self.jobs.load_executions, [e for e, _ in taken])
        unscheduled = {j for _, j in taken if j not in self._entries}  # disabled or deleted
        jobs: dict[UUID, Job] = {}
        if unscheduled:
            jobs = {j.id: j for j, _ in await asyncio.to_thread(self.jobs.load_jobs, unscheduled)}
        grace = timedelta(seconds=self.settings.misfire_grace_seconds)
        recorded: list[tuple[Execution, Job | None]] = []  # with its job: launched if stored
        for execution_id, job_id in taken:
            if execution_id in self._tasks:
                continue  # launched meanwhile (a claim seen in the log): it records its start
            execution = executions.get(execution_id)
            if execution is None:  # not in the store: the single read raises, as it did
                execution = await asyncio.to_thread(self.jobs.repository.get, execution_id)
            entry = self._entries.get(job_id)
            job = entry.job if entry is not None else jobs.get(job_id)
            if job is None:  # disabled while the group was read, or not found: raises
                job, _ = await asyncio.to_thread(self.jobs.load_job, job_id)
            if execution.status is Status.PENDING and execution.attempt > 0:
                self._launch(execution, job)  # a stored retry: it resumes at its time
                continue
            if execution.status is Status.PENDING and execution.trigger in CLAIMED_TRIGGERS:
                self._launch(execution, job)  # recorded, never claimed: run it now
                continue
            if (
                execution.status is Status.PENDING
                and execution.attempt == 0
                and now - execution.scheduled_for <= grace
            ):  # recorded (perhaps ahead of its slot) but never started: nothing was called
                self._launch(execution, job)
                continue
            error = {
                "message": "the engine running it stopped",
                "code": ErrorCode.INTERRUPTED.value,
            }
            if self._retry_or_fail(execution, job, error, now):
                recorded.append((execution, job))
            else:
                self._claims.discard(execution_id)
                self._finished(job_id, execution_id)
                recorded.append((execution, None))
        # handed in together, the batcher writes them in one transaction (one by one if
        # another node recorded some first); each keeps its own outcome
        outcomes = await asyncio.gather(
            *(self.batcher.record(execution) for execution, _ in recorded),
            return_exceptions=True,
        )
        failure: BaseException | None = None
        for (execution, job), stored in zip(recorded, outcomes, strict=True):
            if isinstance(stored, BaseException):  # the store is away: raised once the
                failure = failure or stored  # others' outcomes are followed up
            elif job is None:
                continue  # failed for good: nothing follows
            elif stored:
                self._launch(execution, job)
            else:
                self._claims.discard(execution.id)
                self._finished(job.id, execution.id)  # another node took it over first
        if failure is not None:
            raise failure

    async def _record_skips(self, skips: list[Any]) -> None:
        if skips:
            won = await asyncio.to_thread(self.jobs.record_skips, skips)
            self.stats.skipped += sum(s.count for s in won)
            for run in won:
                self.observer.skipped(run.reason, run.count)

    def _misfires(
        self, entry: _Entry, resume_after: datetime, now: datetime
    ) -> tuple[list[Any], list[tuple[_Entry, Fire]]]:
        """What a job owes since `resume_after`: runs of skipped slots and fires to record;
        the job's next slot goes on the heap."""
        definition = entry.job.definition
        decision = decide_misfires(
            entry.schedule,
            resume_after,
            now,
            MisfirePolicy(definition["misfirePolicy"]),
            definition["catchUpWindowSeconds"],
            self.settings.misfire_grace_seconds,
        )
        skips = [
            SkippedSlots.record(
                entry.job.id, entry.job.tenant, s.first, s.last, s.count, s.reason, self.node
            )
            for s in decision.skips
        ]
        fires = [Fire(entry.job.id, slot, Trigger.CATCH_UP) for slot in decision.catch_up]
        fires += [Fire(entry.job.id, slot, Trigger.CRON) for slot in decision.due]
        self._schedule(entry, entry.schedule.next_after(now))
        return skips, [(entry, f) for f in fires]

    # -- the tick --------------------------------------------------------------------------

    def _schedule(self, entry: _Entry, slot: datetime | None) -> None:
        entry.next_slot = slot
        if slot is not None:
            decide_at = slot - self._lead(entry)
            heapq.heappush(
                self._heap, (decide_at, next(self._seq), entry.job.id, entry.token, slot)
            )

    def _lead(self, entry: _Entry) -> timedelta:
        """How long before its slot this node decides the job's fire (negative: after it)."""
        if entry.ranked != self._live_version:
            entry.rank, entry.ranked = self._rank(entry.job.id), self._live_version
        ahead = self._ahead if entry.policy is ConcurrencyPolicy.ALLOW else 0.0
        return timedelta(seconds=ahead - entry.rank * self.settings.stagger_seconds)

    def _recorded_elsewhere(self, job_id: UUID, slot: datetime) -> bool:
        """Whether another node recorded this fire (as far as the log has told this one)."""
        execution_id = scheduled_execution_id(job_id, slot)
        return execution_id in self._elsewhere or execution_id in self._elsewhere_before

    def _rank(self, job_id: UUID) -> int:
        """This node's place in the job's order of live nodes (rendezvous hashing: every node
        computes the same order, and a node's leaving moves only its own jobs)."""
        if len(self._live) == 1:
            return 0
        order = sorted(self._live, key=lambda node: _weight(node, job_id), reverse=True)
        return order.index(self.node)

    async def _tick_loop(self) -> None:
        assert self._stopping is not None and self._wake is not None
        while not self._stopping.is_set():
            now = self.clock.now()
            self.observer.tick_began()
            self._start_ready(now)
            if self._backlog > BACKLOG:  # overloaded: let started work catch up first
                await self._wait_drained()
                continue
            if self._owed:  # what was missed while no engine ran, a group at a time
                group, self._owed = self._owed[:START_GROUP], self._owed[START_GROUP:]
                current = [(e, f) for e, f in group if self._entries.get(e.job.id) is e]
                if current:
                    await self._record_and_run(current)
                continue
            due: list[tuple[_Entry, Fire]] = []
            skips: list[Any] = []
            following: dict[tuple[Schedule, datetime], datetime] = {}  # jobs share patterns
            # a single node's slot reached this late (it was overloaded) is a misfire: its
            # policy decides, as at a start, and lateness stays bounded by the grace
            misfire_edge = now - self._grace if self.settings.single_node else None
            while self._heap and self._heap[0][0] <= now and len(due) < TICK_FIRES:
                _, _, job_id, token, slot = heapq.heappop(self._heap)
                entry = self._entries.get(job_id)
                if entry is None or entry.token != token:
                    continue  # the job changed since this entry was pushed
                if misfire_edge is not None and slot < misfire_edge:
                    entry_skips, entry_fires = self._misfires(entry, slot - EPSILON, now)
                    skips += entry_skips
                    due += entry_fires
                    continue
                if not entry.rank or not self._recorded_elsewhere(job_id, slot):
                    due.append((entry, Fire(job_id, slot)))
                key = (entry.schedule, slot)
                after = following.get(key)
                if after is None:
                    after = following[key] = entry.schedule.next_after(slot)
                self._schedule(entry, after)
            skips, self._unrecorded_skips = self._unrecorded_skips + skips, []
            if skips:
                try:
                    await self._record_skips(skips)
                except Exception:  # the store is away: tried again at the next tick
                    log.exception("could not record %d run(s) of missed slots", len(skips))
                    self._unrecorded_skips = skips
            # fires the store refused earlier, for jobs still as they were
            retrying = [(e, f) for e, f in self._unrecorded if self._entries.get(e.job.id) is e]
            self._unrecorded = []
            if due or retrying:
                await self._fire(retrying + due, now)
                self.observer.tick_ended()
                if self._unrecorded:  # still failing: give the store a moment
                    await self.clock.wait_until(now + STORE_RETRY, self._stopping)
                continue
            await self.clock.wait_until(self._next_wake(now), self._wake)
            self._wake.clear()

    @property
    def _backlog(self) -> int:
        """Executions decided but not started, and outcomes not yet written: past a bound,
        the node decides no more slots until they drain (memory stays bounded)."""
        return len(self._unstarted) + self.batcher.waiting

    async def _wait_drained(self) -> None:
        assert self._drained is not None and self._stopping is not None
        self.stats.deferred += 1
        log.warning(
            "engine %s: %d executions wait to start or to be recorded; deciding slots later",
            self.node,
            self._backlog,
        )
        began = self.clock.now()
        # woken as executions start; outcomes being written are looked at now and then
        while self._backlog > BACKLOG // 2 and not self._stopping.is_set():
            self._drained.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await self._drained.wait()
        waited = (self.clock.now() - began).total_seconds()
        # the pair brackets when slots went undecided (a misfire past the grace is missed)
        log.warning("engine %s: deciding slots again after %.1f s", self.node, waited)

    def _settled(self, execution_id: UUID) -> None:
        """An execution started (or ended before it could): it no longer waits."""
        self._unstarted.discard(execution_id)
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and self._backlog <= BACKLOG // 2:
            self._drained.set()

    def _next_wake(self, now: datetime) -> datetime:
        """When the loop has something to do: a ready fire's slot, or the next slot to decide."""
        deadline = now + timedelta(seconds=60)
        if self._ready:
            deadline = min(deadline, self._ready[0][0])
        if self._heap:
            deadline = min(deadline, self._heap[0][0])
        return deadline

    def _start_ready(self, now: datetime) -> None:
        """Launch the fires held for the slots that have come."""
        while self._ready and self._ready[0][0] <= now:
            slot, _, held = heapq.heappop(self._ready)
            del self._held[slot]
            for execution, job, prepared in held:
                self._launch(execution, job, prepared, decided=True)

    def _hold(self, execution: Execution, job: Job) -> None:
        """Keep a fire recorded ahead of its slot until the slot comes. It gets no task
        before then (a task waiting at a gate cost a turn of the loop per fire), and what
        does not depend on its start is worked out now, outside its lateness."""
        self._track(job.id, execution.id)
        self._unstarted.add(execution.id)
        slot = execution.scheduled_for
        held = self._held.get(slot)
        if held is None:
            held = self._held[slot] = []
            heapq.heappush(self._ready, (slot, next(self._seq), held))
        held.append((execution, job, self._resolved(execution, job)))

    async def _fire(self, due: list[tuple[_Entry, Fire]], now: datetime) -> None:
        fires: list[tuple[_Entry, Fire]] = []
        for entry, fire in due:
            if fire.scheduled_for <= now:  # a fire decided ahead counts when it starts
                self.stats.lateness.append((now - fire.scheduled_for).total_seconds())
            policy = entry.policy
            busy = bool(self._active.get(entry.job.id))
            if (busy and policy is ConcurrencyPolicy.SKIP) or (
                busy and policy is ConcurrencyPolicy.QUEUE and entry.job.id in self._queued
            ):
                await self._skip_overlap(entry, fire.scheduled_for)
            else:
                if busy and policy is ConcurrencyPolicy.REPLACE:
                    self._replace(entry.job.id)
                self._overlaps.pop(entry.job.id, None)  # a fire ends a run of overlaps
                fires.append((entry, fire))
        if len(self.stats.lateness) > 100_000:
            del self.stats.lateness[:50_000]
        if fires:
            await self._record_and_run(fires)

    async def _record_and_run(self, fires: list[tuple[_Entry, Fire]]) -> None:
        jobs = list({id(e.job): e.job for e, _ in fires}.values())
        if len(self._mine) > 1_000_000:  # only a shortcut: forgetting costs a decode, no more
            self._mine.clear()
        # ours before the write: the log follower may read them before this resumes
        identified = [
            Fire(
                f.job_id,
                f.scheduled_for,
                f.trigger,
                scheduled_execution_id(f.job_id, f.scheduled_for),
            )
            for _, f in fires
        ]
        ids = [f.id for f in identified]
        self._mine.update(ids)
        try:
            won = await asyncio.to_thread(self.jobs.record_fires, jobs, identified)
        except Exception:  # the store is away: try these slots again at a later tick
            self._mine.difference_update(ids)
            log.exception("could not record %d fire(s); retrying", len(fires))
            self._unrecorded.extend(fires)
            # a long outage: keep the newest; older slots stay undecided (misfire at restart)
            del self._unrecorded[:-MAX_UNRECORDED]
            return
        self.stats.fired += len(fires)
        self.stats.won += len(won)
        if len(won) < len(ids):  # another node recorded some: theirs, not ours
            won_ids = {e.id for e in won}
            self._mine.difference_update(i for i in ids if i not in won_ids)
        by_job = {e.job.id: e for e, _ in fires}
        now = self.clock.now()
        for execution in won:
            entry = by_job[execution.job_id]
            if execution.scheduled_for > now:  # decided ahead: held until its slot
                self._hold(execution, entry.job)
            elif entry.policy is ConcurrencyPolicy.QUEUE and self._active.get(
                entry.job.id, set()
            ) - {execution.id}:  # (the log follower may have seen this very fire already)
                self._track(entry.job.id, execution.id)
                self._queued[entry.job.id] = (execution, entry.job)
            else:
                self._launch(execution, entry.job)

    async def _skip_overlap(self, entry: _Entry, slot: datetime) -> None:
        """A slot not run because the job still runs: one record per run of such slots."""
        self.stats.skipped += 1
        self.observer.skipped(SkipReason.OVERLAP, 1)
        run = self._overlaps.get(entry.job.id)
        if run is not None and entry.schedule.next_after(run.last) == slot:
            run.extend(slot, 1)
        else:
            run = SkippedSlots.record(
                entry.job.id, entry.job.tenant, slot, slot, 1, SkipReason.OVERLAP, self.node
            )
            self._overlaps[entry.job.id] = run
        if not await self.batcher.record(run):
            self._overlaps.pop(entry.job.id, None)  # another engine records this run

    def _replace(self, job_id: UUID) -> None:
        for execution_id in list(self._active.get(job_id, ())):
            task = self._tasks.get(execution_id)
            if task is not None:
                self._cancel_codes[execution_id] = "REPLACED"
                task.cancel()

    # -- executions ------------------------------------------------------------------------

    def _track(self, job_id: UUID, execution_id: UUID) -> None:
        self._active.setdefault(job_id, set()).add(execution_id)
        self._job_of[execution_id] = job_id

    def _record_later(self, execution: Execution) -> None:
        """Hand the events to the next group commit without waiting (order is kept)."""
        self.batcher.submit(execution)

    def _launch(
        self,
        execution: Execution,
        job: Job,
        prepared: dict[str, Any] | DomainError | None = None,
        decided: bool = False,
    ) -> None:
        self._track(job.id, execution.id)
        # no task name: formatting one per fire cost more than it told (`_tasks` maps ids)
        task = asyncio.create_task(self._execute(execution, job, prepared, decided))
        self._tasks[execution.id] = task
        self._unstarted.add(execution.id)
        task.add_done_callback(lambda _: self._settled(execution.id))  # ended without starting

    async def _execute(
        self,
        execution: Execution,
        job: Job,
        prepared: dict[str, Any] | DomainError | None = None,
        decided: bool = False,  # recorded ahead of its slot: it starts even in a shutdown
    ) -> None:
        assert self._limiter is not None and self._stopping is not None
        try:
            if decided:  # held until its slot, which has come
                late = self.clock.now() - execution.scheduled_for
                self.stats.lateness.append(late.total_seconds())
            delay = jitter_for(
                job.id, execution.scheduled_for, job.definition.get("jitterSeconds", 0)
            )
            start_at = execution.next_attempt_at or execution.scheduled_for + timedelta(
                seconds=delay
            )
            if start_at > self.clock.now():
                await self.clock.wait_until(start_at, self._stopping)
            while decided or not self._stopping.is_set():
                self.stats.queued += 1
                try:
                    await self._limiter.acquire()
                finally:
                    self.stats.queued -= 1
                try:
                    if self._stopping.is_set() and not decided:
                        return  # shutting down: it stays pending, for the next start
                    decided = False
                    self.stats.running += 1
                    self._settled(execution.id)
                    try:
                        execution.start(self.node, self.clock.now())
                        self.observer.started(execution)
                        claimed = execution.trigger in CLAIMED_TRIGGERS and execution.attempt == 1
                        if claimed or execution.id in self._claims:
                            self._claims.discard(execution.id)
                            if not await self.batcher.record(execution):
                                return  # another engine claimed it
                        else:  # this engine's own fire: no need to wait for the write
                            self._record_later(execution)
                        outcome = await self._attempt(execution, job, prepared)
                        prepared = None  # a retry resolves again (the same instant)
                    finally:
                        self.stats.running -= 1
                finally:
                    self._limiter.release()
                # a task that finished without waiting (a quick function) lets the other
                # fires of its slot start before its outcome is recorded; after the release,
                # so the pool's place is not held idle for a turn of the loop
                await asyncio.sleep(0)
                now = self.clock.now()
                if outcome.ok:
                    execution.succeed(outcome.result or {}, now)
                    await self.batcher.record(execution)
                    return
                if self._retry_or_fail(execution, job, outcome.error or {}, now):
                    await self.batcher.record(execution)
                    assert execution.next_attempt_at is not None
                    await self.clock.wait_until(execution.next_attempt_at, self._stopping)
                    continue
                await self.batcher.record(execution)
                return
        except asyncio.CancelledError:
            code = self._cancel_codes.pop(execution.id, ErrorCode.INTERRUPTED.value)
            if execution.status is Status.RUNNING:
                now = self.clock.now()
                error = {"message": f"cancelled: {code.lower()}", "code": code}
                if code == "REPLACED":
                    execution.fail(error, now)
                else:
                    self._retry_or_fail(execution, job, error, now)
                await asyncio.shield(self.batcher.record(execution))
        finally:
            self._tasks.pop(execution.id, None)
            if execution.status in (Status.SUCCEEDED, Status.FAILED):
                self.observer.finished(execution)
                self._finished(job.id, execution.id)
                await self._after_outcome(execution, job)

    async def _attempt(
        self,
        execution: Execution,
        job: Job,
        prepared: dict[str, Any] | DomainError | None = None,
    ) -> TaskOutcome:
        if prepared is None:
            prepared = self._resolved(execution, job)
        if isinstance(prepared, DomainError):
            return TaskOutcome(
                ok=False, error={"message": str(prepared), "code": ErrorCode.UNKNOWN.value}
            )
        request = TaskRequest(
            job_id=job.id,
            execution_id=execution.id,
            task_type=job.definition["taskType"],
            config=prepared,
            scheduled_for=execution.scheduled_for,
            attempt=execution.attempt,
            timeout_ms=int(prepared.get("timeout", 30_000)),
        )
        # the runner enforces the task's timeout; this bound only guards against a runner bug
        hard_limit = request.timeout_ms / 1000 + 30
        try:
            async with asyncio.timeout(hard_limit):  # no task of its own, unlike `wait_for`
                return await self.runner.run(request)
        except TimeoutError:
            return TaskOutcome(
                ok=False, error={"message": "timed out", "code": ErrorCode.TIMEOUT.value}
            )

    def _resolved(self, execution: Execution, job: Job) -> dict[str, Any] | DomainError:
        """The task's config for this execution, parameters resolved against its slot.

        A config without parameters is handed over as the job holds it (runners only read
        it; the function runner gives a function its own copy of the payload)."""
        config = job.definition["taskConfig"]
        if execution.override is None:
            key = (job.id, job.version)
            static = self._static_configs.get(key)
            if static is None:
                if len(self._static_configs) >= 100_000:
                    self._static_configs.clear()
                static = self._static_configs[key] = not has_parameters(config)
            if static:
                return config
        config = dict(config)
        if execution.override is not None:
            key = "body" if job.definition["taskType"] == "HttpInvokerTask" else "payload"
            config[key] = execution.override
        try:
            resolved = resolve_parameters(
                config, execution.scheduled_for, job.definition["timezone"]
            )
        except DomainError as e:
            return e
        assert isinstance(resolved, dict)
        return resolved

    def _retry_or_fail(
        self, execution: Execution, job: Job, error: dict[str, Any], now: datetime
    ) -> bool:
        """Store the next attempt if the policy allows one (True), else the final failure."""
        retry = RetryPolicy.from_dict(job.definition["retry"])
        attempt = max(execution.attempt, 1)
        if (
            error.get("code") not in FINAL_CODES
            and retry.allows(attempt)
            and execution.status is Status.RUNNING
        ):
            next_at = now + timedelta(seconds=retry.delay_before(attempt + 1))
            execution.fail_attempt(error, now, next_at)
            self.observer.retried()
            return True
        if execution.status is Status.PENDING and execution.attempt == 0 and retry.allows(1):
            execution.start(self.node, now)  # interrupted before its first attempt: record one
            execution.fail_attempt(error, now, now)
            self.observer.retried()
            return True
        if execution.status not in (Status.SUCCEEDED, Status.FAILED):
            execution.fail(error, now)
        return False

    def _finished(self, job_id: UUID, execution_id: UUID) -> None:
        self._job_of.pop(execution_id, None)
        active = self._active.get(job_id)
        if active is not None:
            active.discard(execution_id)
            if not active:
                del self._active[job_id]
        queued = self._queued.get(job_id)
        if queued is not None and not self._active.get(job_id, set()) - {queued[0].id}:
            del self._queued[job_id]
            self._launch(*queued)

    async def _after_outcome(self, execution: Execution, job: Job) -> None:
        """Count consecutive failures; pause the job after `pauseAfterFailures` of them."""
        limit = job.definition.get("pauseAfterFailures")
        if execution.status is Status.SUCCEEDED:
            self._failures.pop(job.id, None)
            return
        count = self._failures[job.id] = self._failures.get(job.id, 0) + 1
        if limit and count >= limit:
            reason = f"{count} consecutive failed executions (pauseAfterFailures={limit})"
            with contextlib.suppress(DomainError):  # deleted, or another engine paused it first
                await asyncio.to_thread(self.jobs.disable_job, job.tenant, job.id, SYSTEM, reason)
            self._failures.pop(job.id, None)

    # -- following the log ---------------------------------------------------------------

    async def _follow_log(self) -> None:
        assert self._log_changed is not None
        topics = sorted(JOB_TOPICS | EXECUTION_TOPICS)
        while True:
            self._log_changed.clear()
            try:
                notifications = await asyncio.to_thread(
                    self.jobs.recorder.select_notifications,
                    self._position, 500, None, topics, inclusive_of_start=False,
                )  # fmt: skip
            except Exception:  # the store is away: look again shortly
                log.exception("engine could not read the log")
                notifications = []
            if notifications:
                await self._apply(notifications)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._log_changed.wait(), timeout=self.settings.poll_seconds
                )

    async def _apply(self, notifications: Iterable[Any]) -> None:
        changed: set[UUID] = set()
        for n in notifications:
            self._position = n.id
            execution_id = n.originator_id
            if n.topic in JOB_TOPICS:
                changed.add(n.originator_id)
            elif n.topic == SCHEDULED_TOPIC:
                if execution_id in self._job_of or execution_id in self._mine:
                    continue  # this engine's own fire, known already: no need to decode it
                event = self.jobs.mapper.to_domain_event(n)
                self._track(event.job_id, execution_id)
                if len(self._elsewhere) >= ELSEWHERE:  # two generations: bounded, no cliff
                    self._elsewhere_before, self._elsewhere = self._elsewhere, set()
                self._elsewhere.add(execution_id)
                if event.trigger in CLAIMED_TRIGGERS:
                    await self._claim(execution_id, event.job_id)
            elif execution_id in self._mine:
                self._mine.discard(execution_id)  # finished here, and seen done in the log
            elif execution_id not in self._tasks:  # finished on another node
                job_id = self._job_of.get(execution_id)
                if job_id is not None:
                    self._finished(job_id, execution_id)
        for job_id in changed:
            await self._reload(job_id)
        if changed:
            self._wake_up()

    async def _claim(self, execution_id: UUID, job_id: UUID) -> None:
        """A manual or backfill execution recorded anywhere: try to be the node that runs it."""
        entry = self._entries.get(job_id)
        try:
            execution = await asyncio.to_thread(self.jobs.repository.get, execution_id)
            job = entry.job if entry else (await asyncio.to_thread(self.jobs.load_job, job_id))[0]
        except Exception:
            log.exception("could not load execution %s", execution_id)
            return
        if execution.status is Status.PENDING and execution.attempt == 0:
            self._launch(execution, job)

    async def _reload(self, job_id: UUID) -> None:
        try:
            job, active_since = await asyncio.to_thread(self.jobs.load_job, job_id)
        except DomainError:
            return
        old = self._entries.get(job_id)
        if job.deleted or not job.enabled:
            if old is not None:
                del self._entries[job_id]
                self._overlaps.pop(job_id, None)
            return
        if old is not None and old.job.version == job.version:
            return
        entry = _Entry(job, job.schedule, active_since, token=(old.token + 1) if old else 0)
        self._entries[job_id] = entry
        now = self.clock.now()
        if old is not None and old.next_slot is not None and old.active_since == active_since:
            self._schedule(entry, old.next_slot)  # same schedule: keep the next slot
        else:
            self._schedule(entry, entry.schedule.next_after(max(now, active_since)))


def _weight(node: str, job_id: UUID) -> int:
    """A node's weight for a job, the same on every node (Python's own hash is per process)."""
    digest = hashlib.blake2b(f"{node}/{job_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def utc_now() -> datetime:
    """Now, in UTC (for callers without a clock)."""
    return datetime.now(UTC)
