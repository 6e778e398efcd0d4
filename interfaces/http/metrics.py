"""`/metrics`: what the process counted as it worked (`infrastructure.metrics`), and gauges
read at scrape time from the engine, the projections and the read models.

No label per job (the number of jobs is unbounded); per projection only (a fixed set).
docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from application.engine import Engine
from interfaces.composition import Core
from interfaces.http.health import Probe


@dataclass(frozen=True, slots=True)
class _Reading:
    head: int
    running: int
    pending: int


class _Gauges:
    """Read at scrape time; the store's part from the last reading (None: no answer)."""

    def __init__(self, core: Core, engine: Engine | None) -> None:
        self.core, self.engine = core, engine
        self.reading: _Reading | None = None

    def collect(self) -> Iterator[Metric]:
        reading = self.reading
        yield GaugeMetricFamily(
            "cronsource_store_up",
            "Whether the store answered this scrape (within 2 s)",
            value=int(reading is not None),
        )
        if reading is not None:
            yield GaugeMetricFamily(
                "cronsource_log_position", "Position of the last event in the log", reading.head
            )
            lag = GaugeMetricFamily(
                "cronsource_projection_lag",
                "Log positions a read model is behind the log's head",
                labels=["projection"],
            )
            for name, state in self.core.projections.lag(reading.head).items():
                lag.add_metric([name], state["lag"])
            yield lag
            yield GaugeMetricFamily(
                "cronsource_executions_running",
                "Executions running now, on any node (read model)",
                reading.running,
            )
            yield GaugeMetricFamily(
                "cronsource_executions_pending",
                "Executions waiting to run or retry, on any node (read model)",
                reading.pending,
            )
        position = GaugeMetricFamily(
            "cronsource_projection_position",
            "The last log position a read model has applied in this process",
            labels=["projection"],
        )
        for name, runner in self.core.projections.runners.items():
            position.add_metric([name], runner.position)
        yield position
        if self.engine is not None:
            yield from self._engine(self.engine)

    def _engine(self, engine: Engine) -> Iterator[Metric]:
        stats = engine.stats
        yield GaugeMetricFamily(
            "cronsource_engine_jobs", "Jobs this engine schedules", engine.scheduled_jobs
        )
        yield GaugeMetricFamily(
            "cronsource_engine_running", "Executions this engine runs now", stats.running
        )
        yield GaugeMetricFamily(
            "cronsource_engine_queued",
            "Executions of this engine waiting for a free slot of the pool",
            stats.queued,
        )
        records = CounterMetricFamily(
            "cronsource_slot_records",
            "Fires this engine tried to record: won (it runs them) or lost (another node did)",
            labels=["result"],
        )
        records.add_metric(["won"], stats.won)
        records.add_metric(["lost"], stats.fired - stats.won)
        yield records


def metrics_endpoint(
    core: Core, engine: Engine | None
) -> Callable[[], Awaitable[tuple[bytes, str]]]:
    """What `/metrics` serves (rendered on the event loop, where the engine counts)."""
    gauges = _Gauges(core, engine)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(core.metrics)  # type: ignore[arg-type]
    registry.register(gauges)  # type: ignore[arg-type]
    ProcessCollector(registry=registry)

    def read() -> _Reading:
        views = core.executions_view
        return _Reading(
            core.store_head(),
            views.count_status(None, "running"),
            views.count_status(None, "pending"),
        )

    probe = Probe(read)

    async def render() -> tuple[bytes, str]:
        try:
            gauges.reading = await probe()
        except Exception:  # noqa: BLE001  # the store is away: cronsource_store_up says so
            gauges.reading = None
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
