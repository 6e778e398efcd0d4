"""Prometheus metrics kept by the process: what the engine, the event store and the webhook
sender report as they work, exposed through prometheus-client's exposition.

Each observation costs under a microsecond (the engine makes two per fire, thousands of fires
a second; timeit: 0.4 µs at a start, 0.7 µs at an end, 1.0 µs for a failure); with
prometheus-client's own instruments (a lock per value: `Histogram.observe` 1.1 µs,
`Counter.inc` 0.5 µs, about twice that on a busy machine) an end cost 2.0 µs. So the counts
are kept in plain lists and turned into metric families at scrape time. Every observation is
made on one thread at a time: the engine's and the webhooks' on the event loop, the store's
by the group commit's single writer. No label names a job (there are too many); every label
takes its values from a small fixed set, all exposed from the start (at 0);
docs/operations.md lists them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from application.webhook_dispatcher import Attempt, Sender
from domain.execution import ErrorCode, Status, Trigger
from domain.ledger import SkipReason

#: error codes a failed execution is counted under ("REPLACED" is the engine's own)
FAILURE_CODES = (*(c.value for c in ErrorCode), "REPLACED")
SKIP_REASONS = tuple(r.value for r in SkipReason)
TRIGGERS = tuple(t.value for t in Trigger)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
SHORT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Histogram:
    """Counts per bucket (`le` bounds, +Inf last) and a sum, written by one thread at a time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative counts by bound, as the exposition wants them."""
        counts, running, out = list(self.counts), 0, []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class Metrics:
    """The process's metrics; matches the application's `EngineObserver` and `StoreObserver`."""

    def __init__(self) -> None:
        self.fires = dict.fromkeys(
            [("succeeded", "")]
            + [("failed", code) for code in FAILURE_CODES]
            + [("skipped", reason) for reason in SKIP_REASONS],
            0,
        )
        self.lateness = {t: Histogram(SECONDS) for t in TRIGGERS}
        self.durations = {s: Histogram((*SECONDS, 1800.0)) for s in ("succeeded", "failed")}
        self.retries = 0
        self.url_blocks = {"job": 0, "webhook": 0}
        self.deliveries = {"succeeded": 0, "failed": 0}
        self.ticks = Histogram(SHORT_SECONDS)
        self.writes = Histogram((*SHORT_SECONDS, 10.0))
        self.write_errors = {"conflict": 0, "error": 0}
        self._tick_began = 0.0

    # -- the engine (application.ports.EngineObserver) ---------------------------------------

    def started(self, execution: Any) -> None:
        """An attempt began: a fire's first attempt counts its lateness."""
        if execution.attempt == 1:
            late = (execution.started_at - execution.scheduled_for).total_seconds()
            self.lateness[execution.trigger].observe(late)

    def finished(self, execution: Any) -> None:
        """An execution ended: its outcome, and how long its last attempt ran."""
        if execution.status is Status.SUCCEEDED:
            outcome, key = "succeeded", ("succeeded", "")
        else:
            outcome, key = "failed", ("failed", (execution.error or {}).get("code"))
            if key not in self.fires:
                key = ("failed", ErrorCode.UNKNOWN.value)
        self.fires[key] += 1
        if execution.started_at is not None and execution.finished_at is not None:
            seconds = (execution.finished_at - execution.started_at).total_seconds()
            self.durations[outcome].observe(seconds)

    def retried(self) -> None:
        """An attempt failed and another follows."""
        self.retries += 1

    def skipped(self, reason: str, slots: int) -> None:
        """Slots decided not to run, and why."""
        self.fires["skipped", reason] += slots

    def tick_began(self) -> None:
        """The engine's loop looks at what is due."""
        self._tick_began = time.perf_counter()

    def tick_ended(self) -> None:
        """The engine has recorded and launched what was due."""
        self.ticks.observe(time.perf_counter() - self._tick_began)

    # -- the event store (application.ports.StoreObserver) -----------------------------------

    def written(self, seconds: float) -> None:
        """One transaction of events was stored."""
        self.writes.observe(seconds)

    def write_refused(self) -> None:
        """The store refused a write: another writer recorded those events first."""
        self.write_errors["conflict"] += 1

    def write_failed(self) -> None:
        """A write failed (the store unreachable, or another error)."""
        self.write_errors["error"] += 1

    # -- outgoing calls ----------------------------------------------------------------------

    def job_url_blocked(self) -> None:
        """The URL guard stopped a job's call."""
        self.url_blocks["job"] += 1

    def webhook_url_blocked(self) -> None:
        """The URL guard stopped a webhook delivery."""
        self.url_blocks["webhook"] += 1

    def webhook_sent(self, ok: bool) -> None:
        """A delivery attempt ended."""
        self.deliveries["succeeded" if ok else "failed"] += 1

    # -- exposition --------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The metrics as prometheus-client families (a registry's collector)."""
        fires = CounterMetricFamily(
            "cronsource_fires",
            "Executions ended (succeeded, failed by error code) and slots skipped (by reason)",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), value in list(self.fires.items()):
            fires.add_metric([outcome, reason], value)
        yield fires
        yield _histograms(
            "cronsource_fire_lateness_seconds",
            "From a fire's scheduled instant to the start of its first attempt",
            "trigger",
            self.lateness,
        )
        yield _histograms(
            "cronsource_execution_duration_seconds",
            "How long an execution's last attempt ran, by outcome",
            "outcome",
            self.durations,
        )
        yield CounterMetricFamily(
            "cronsource_retries", "Failed attempts that another attempt follows", self.retries
        )
        yield _counters(
            "cronsource_url_blocks", "Outgoing calls the URL guard stopped", "caller",
            self.url_blocks,
        )  # fmt: skip
        yield _counters(
            "cronsource_webhook_deliveries", "Webhook delivery attempts, by result", "result",
            self.deliveries,
        )  # fmt: skip
        yield _histograms(
            "cronsource_engine_tick_seconds",
            "One engine tick: deciding the due slots, recording their fires, launching them",
            None,
            {"": self.ticks},
        )
        yield _histograms(
            "cronsource_store_write_seconds",
            "One event-store transaction (a group commit), successful ones",
            None,
            {"": self.writes},
        )
        yield _counters(
            "cronsource_store_write_errors",
            "Event-store writes refused (conflict: another writer was first) or failed (error)",
            "kind",
            self.write_errors,
        )


def _counters(name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in list(values.items()):
        family.add_metric([value], count)
    return family


def _histograms(
    name: str, doc: str, label: str | None, histograms: dict[str, Histogram]
) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    for value, histogram in histograms.items():
        family.add_metric([value] if label else [], histogram.buckets(), histogram.total)
    return family


class CountedSender:
    """A webhook sender whose attempts are counted."""

    def __init__(self, inner: Sender, metrics: Metrics) -> None:
        self.inner, self.metrics = inner, metrics

    async def send(self, url: str, secret: str, message_id: str, body: bytes) -> Attempt:
        attempt = await self.inner.send(url, secret, message_id, body)
        self.metrics.webhook_sent(attempt.ok)
        return attempt

    async def close(self) -> None:
        await self.inner.close()
