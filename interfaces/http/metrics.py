"""Prometheus metrics: gauges read at scrape time from the engine and the read models.

No label per job (the number of jobs is unbounded); per projection only (a fixed set).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from application.engine import Engine
from interfaces.composition import Core


class _Collector:
    def __init__(self, core: Core, engine: Engine | None) -> None:
        self.core, self.engine = core, engine

    def collect(self):  # type: ignore[no-untyped-def]  # prometheus_client's collector protocol
        head = self.core.jobs.recorder.max_notification_id() or 0
        yield GaugeMetricFamily(
            "cronsource_log_position", "Position of the last event in the log", value=head
        )
        lag = GaugeMetricFamily(
            "cronsource_projection_lag",
            "Log positions a read model is behind",
            labels=["projection"],
        )
        for name, state in self.core.projections.lag(head).items():
            lag.add_metric([name], state["lag"])
        yield lag
        running = self.core.executions_view.count_status(None, "running")
        pending = self.core.executions_view.count_status(None, "pending")
        yield GaugeMetricFamily(
            "cronsource_executions_running", "Executions running now", value=running
        )
        yield GaugeMetricFamily(
            "cronsource_executions_pending", "Executions waiting to run or retry", value=pending
        )
        if self.engine is not None:
            stats = self.engine.stats
            yield GaugeMetricFamily(
                "cronsource_engine_jobs",
                "Jobs this engine schedules",
                value=self.engine.scheduled_jobs,
            )
            yield CounterMetricFamily(
                "cronsource_fires", "Slots this engine tried to record", value=stats.fired
            )
            yield CounterMetricFamily(
                "cronsource_fires_won", "Slots this engine recorded (and so ran)", value=stats.won
            )
            yield CounterMetricFamily(
                "cronsource_slots_skipped", "Slots recorded as skipped", value=stats.skipped
            )


def metrics_endpoint(core: Core, engine: Engine | None) -> Callable[[], tuple[bytes, str]]:
    """What `/metrics` serves."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(core, engine))  # type: ignore[arg-type]

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
