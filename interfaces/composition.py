"""The composition root: the only place that reads configuration and picks adapters."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from application.engine import Engine, EngineSettings
from application.event_log import (
    CLIENT_BUFFER_BYTES,
    OWNER_CACHE,
    RING_BYTES,
    RING_EVENTS,
    EventLog,
    LiveLog,
)
from application.jobs import Jobs
from application.ports import Clock
from application.projection_runner import LogFollower, ProjectionRunner, ProjectionSet
from application.projections import all_projections
from application.queries import Queries
from application.retention import Retention
from application.webhook_dispatcher import DEFAULT_SCHEDULE, DeliverySettings, Dispatcher
from application.webhooks import Webhooks, WebhooksProjection
from domain.instants import iso_ms
from infrastructure.bulk_events import binary_inserts, select_events_of
from infrastructure.clock import SystemClock
from infrastructure.functions import FunctionRegistry, FunctionTaskRunner
from infrastructure.http_runner import HttpTaskRunner
from infrastructure.metrics import CountedSender, Metrics
from infrastructure.nodes import SqlNodes
from infrastructure.read_models import (
    SqlExecutionsView,
    SqlJobsView,
    SqlLedgerView,
    SqlProjectionStore,
    SqlSkipsView,
)
from infrastructure.sql import Database
from infrastructure.store import StoreConfigError, StoreUrl, read_models
from infrastructure.task_runners import TaskRunners
from infrastructure.url_guard import UrlGuard
from infrastructure.webhook_sender import WebhookSender
from infrastructure.webhook_store import SqlDeliveryStore, SqlWebhooksView
from interfaces.projection_worker import ProjectionProcess

OFF = ("off", "0", "false", "no")  # a switch's values that turn it off


def engine_enabled(env: Mapping[str, str]) -> bool:
    """Whether `serve` runs the engine too (`CRONSOURCE_ENGINE`, default on)."""
    return env.get("CRONSOURCE_ENGINE", "on").lower() not in OFF


@dataclass(frozen=True)
class Settings:
    """Configuration from the environment (every variable is in the README)."""

    data_dir: Path = Path("cronsource-data")
    database_url: str = ""
    cipher_key: str | None = None
    node: str = field(default_factory=socket.gethostname)
    poll_seconds: float = 0.5
    allow_targets: str = ""
    functions: str = ""
    max_concurrency: int = 5
    retention_days: int = 30
    failed_retention_days: int = 90
    misfire_grace_seconds: float = 10.0
    shutdown_grace_seconds: float = 30.0
    decide_ahead_seconds: float = 0.5
    projections: str = "thread"  # or "process": the read models folded by a worker process
    # event subscribers (issue 6)
    webhooks: bool = True
    webhook_retry_schedule: str = ""
    webhook_disable_after: int = 0
    webhook_timeout_seconds: float = 10.0
    sse_buffer: int = 1000
    sse_heartbeat_seconds: float = 15.0
    sse_buffer_bytes: int = CLIENT_BUFFER_BYTES
    webhook_lease_seconds: float = 30.0
    webhook_delivery_retention_days: int = 30
    events_ring: int = RING_EVENTS
    events_ring_bytes: int = RING_BYTES
    events_owner_cache: int = OWNER_CACHE
    # operations
    ready_max_lag: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `CRONSOURCE_*` variables; explicit overrides (CLI flags) win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get("CRONSOURCE_DATA_DIR"):
            values["data_dir"] = Path(env["CRONSOURCE_DATA_DIR"])
        if env.get("CRONSOURCE_DATABASE_URL"):
            values["database_url"] = env["CRONSOURCE_DATABASE_URL"]
        if env.get("CRONSOURCE_CIPHER_KEY"):
            values["cipher_key"] = env["CRONSOURCE_CIPHER_KEY"]
        if env.get("CRONSOURCE_NODE"):
            values["node"] = env["CRONSOURCE_NODE"]
        numbers = {
            "CRONSOURCE_PROJECTION_POLL_SECONDS": ("poll_seconds", float),
            "SCHEDULER_MAX_CONCURRENCY": ("max_concurrency", int),
            "SCHEDULER_LOG_RETENTION_DAYS": ("retention_days", int),
            "SCHEDULER_FAILED_RETENTION_DAYS": ("failed_retention_days", int),
            "CRONSOURCE_MISFIRE_GRACE_SECONDS": ("misfire_grace_seconds", float),
            "CRONSOURCE_SHUTDOWN_GRACE_SECONDS": ("shutdown_grace_seconds", float),
            "CRONSOURCE_DECIDE_AHEAD_SECONDS": ("decide_ahead_seconds", float),
            "CRONSOURCE_WEBHOOK_DISABLE_AFTER": ("webhook_disable_after", int),
            "CRONSOURCE_WEBHOOK_TIMEOUT_SECONDS": ("webhook_timeout_seconds", float),
            "CRONSOURCE_SSE_BUFFER": ("sse_buffer", int),
            "CRONSOURCE_SSE_HEARTBEAT_SECONDS": ("sse_heartbeat_seconds", float),
            "CRONSOURCE_SSE_BUFFER_BYTES": ("sse_buffer_bytes", int),
            "CRONSOURCE_WEBHOOK_LEASE_SECONDS": ("webhook_lease_seconds", float),
            "CRONSOURCE_WEBHOOK_DELIVERY_RETENTION_DAYS": ("webhook_delivery_retention_days", int),
            "CRONSOURCE_EVENTS_RING": ("events_ring", int),
            "CRONSOURCE_EVENTS_RING_BYTES": ("events_ring_bytes", int),
            "CRONSOURCE_EVENTS_OWNER_CACHE": ("events_owner_cache", int),
            "CRONSOURCE_READY_MAX_LAG": ("ready_max_lag", int),
        }
        for variable, (name, kind) in numbers.items():
            if env.get(variable):
                try:
                    values[name] = kind(env[variable])
                except ValueError:
                    raise StoreConfigError(
                        f"{variable}: {env[variable]!r} is not a number"
                    ) from None
        if int(values.get("max_concurrency", 5)) < 1:  # type: ignore[call-overload]
            raise StoreConfigError("SCHEDULER_MAX_CONCURRENCY: must be at least 1")
        if not 0 <= float(values.get("decide_ahead_seconds", 0.5)) <= 10:  # type: ignore[arg-type]
            raise StoreConfigError("CRONSOURCE_DECIDE_AHEAD_SECONDS: must be from 0 to 10")
        for variable, name in (
            ("CRONSOURCE_ALLOW_TARGETS", "allow_targets"),
            ("CRONSOURCE_FUNCTIONS", "functions"),
            ("CRONSOURCE_WEBHOOK_RETRY_SCHEDULE", "webhook_retry_schedule"),
        ):
            if env.get(variable):
                values[name] = env[variable]
        if env.get("CRONSOURCE_PROJECTIONS"):
            values["projections"] = env["CRONSOURCE_PROJECTIONS"].strip().lower()
        if values.get("projections", "thread") not in ("thread", "process"):
            raise StoreConfigError("CRONSOURCE_PROJECTIONS: must be thread or process")
        if env.get("CRONSOURCE_WEBHOOKS"):
            values["webhooks"] = env["CRONSOURCE_WEBHOOKS"].lower() not in OFF
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.delivery  # noqa: B018  # refuse a bad schedule or lease now, not at the first delivery
        return settings

    @property
    def delivery(self) -> DeliverySettings:
        """How webhook deliveries are retried and given up on."""
        return delivery_settings(
            self.webhook_retry_schedule,
            self.webhook_disable_after,
            self.webhook_timeout_seconds,
            self.webhook_lease_seconds,
        )

    @property
    def retention(self) -> Retention:
        """How long finished executions stay in the read model."""
        return Retention(self.retention_days, self.failed_retention_days)

    @property
    def store(self) -> StoreUrl:
        """The store: `CRONSOURCE_DATABASE_URL`, else a SQLite file in the data dir."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'cronsource.db').as_posix()}"
        return StoreUrl.parse(url)


class Core:
    """The event-sourced core wired to its stores: commands, projections, queries."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        store = settings.store
        self.views_db: Database = store.views_database()  # first: it creates a missing schema
        self.guard = UrlGuard.from_setting(settings.allow_targets)
        self.functions = FunctionRegistry.discover(settings.functions)
        env = store.event_store_env(settings.cipher_key)
        if _has_table(self.views_db, store.kind, f"{Jobs.name}_events"):
            # a node joining a running store creates nothing: the library's table creation
            # waits for the other nodes' writers' table lock, and on a busy store it ran past
            # the lock timeout and the node could not start (the soak's restarted node)
            env["CREATE_TABLE"] = env["CRONSOURCE_CREATE_TABLE"] = "no"
        with self.views_db.startup_lock():  # processes starting together: one at a time
            self.jobs = Jobs(
                env=env,
                node=settings.node,
                check_url=self.guard.check_url_blocking,
                function_names=self.functions.names,
                select_events_of=select_events_of,
                observer=self.metrics,
            )
            binary_inserts(self.jobs.recorder)
            self.views = read_models(self.views_db)
        self.jobs_view: SqlJobsView = self.views["jobs"]  # type: ignore[assignment]
        self.executions_view: SqlExecutionsView = self.views["executions"]  # type: ignore[assignment]
        self.ledger_view: SqlLedgerView = self.views["ledger"]  # type: ignore[assignment]
        self.skips_view: SqlSkipsView = self.views["skips"]  # type: ignore[assignment]
        self.nodes = SqlNodes(self.views_db)
        recorder, mapper = self.jobs.recorder, self.jobs.mapper
        self.projections = ProjectionSet(
            ProjectionRunner(recorder, mapper, p, self.views[p.name])
            for p in [*all_projections(), WebhooksProjection()]
        )
        self.jobs.on_recorded(self.projections.wake)
        self.queries = Queries(self.jobs_view, self.executions_view)
        self._follower: LogFollower | None = None
        self.projection_worker: ProjectionProcess | None = None
        self._log_listeners: list[Callable[[int | None], None]] = []
        # event subscribers: the log as public events, followed live; webhooks
        self.event_log = EventLog(recorder, mapper, settings.events_owner_cache)
        self.live = LiveLog(self.event_log, settings.events_ring, settings.events_ring_bytes)
        self.jobs.on_recorded(self.live.wake)
        self._log_listeners.append(self.live.wake)
        self.webhooks_view: SqlWebhooksView = self.views["webhooks"]  # type: ignore[assignment]
        self.deliveries = SqlDeliveryStore(self.views_db)
        self.webhooks = Webhooks(
            self.jobs, self.event_log, self.deliveries, self.guard.check_url_blocking
        )

    def scratch_views(self, db: Database) -> dict[str, SqlProjectionStore]:
        """Read models in another database, for `replay --verify`."""
        return read_models(db)

    def task_runner(self) -> TaskRunners:
        """The runners of every task type (HTTP through the URL guard; registered functions)."""
        return TaskRunners(
            {
                "HttpInvokerTask": HttpTaskRunner(
                    self.guard, on_blocked=self.metrics.job_url_blocked
                ),
                "FunctionTask": FunctionTaskRunner(self.functions),
            }
        )

    def engine(self, clock: Clock | None = None) -> Engine:
        """An engine on this core (run it with `await engine.run()`)."""
        s = self.settings
        engine = Engine(
            self.jobs,
            self.task_runner(),
            clock or SystemClock(),
            self.engine_views(),
            EngineSettings(
                node=s.node,
                max_concurrency=s.max_concurrency,
                misfire_grace_seconds=s.misfire_grace_seconds,
                shutdown_grace_seconds=s.shutdown_grace_seconds,
                poll_seconds=s.poll_seconds,
                decide_ahead_seconds=s.decide_ahead_seconds,
                single_node=s.store.kind == "sqlite",  # several engine nodes need PostgreSQL
            ),
            observer=self.metrics,
        )
        self.jobs.on_recorded(engine.log_changed)
        self._log_listeners.append(engine.log_changed)
        return engine

    def webhook_dispatcher(self) -> Dispatcher:
        """A webhook dispatcher on this core (run it with `await dispatcher.run()`)."""
        s = self.settings
        return Dispatcher(
            self.webhooks,
            self.live,
            self.deliveries,
            CountedSender(
                WebhookSender(
                    self.guard, s.webhook_timeout_seconds, self.metrics.webhook_url_blocked
                ),
                self.metrics,
            ),
            self._enabled_webhooks,
            s.node,
            s.delivery,
        )

    def store_head(self) -> int:
        """The log's last position, once the read models' database has answered too (raises
        when either cannot be read)."""
        with self.views_db.read() as c:
            c.execute("SELECT 1")
        return self.jobs.recorder.max_notification_id() or 0

    def _enabled_webhooks(self) -> dict[str, int]:
        self.projections["webhooks"].catch_up()
        return self.webhooks_view.enabled_versions()

    def prune_deliveries(self, now: datetime | None = None) -> int:
        """Delete finished webhook deliveries older than their retention; the rows removed."""
        days = self.settings.webhook_delivery_retention_days
        if days <= 0:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
        return self.deliveries.prune(iso_ms(cutoff) or "")

    def prune(self, now: datetime | None = None) -> int:
        """Apply retention to the executions read model now; returns the rows removed."""
        self.projections["executions"].catch_up()
        cutoffs = self.settings.retention.cutoffs(now or datetime.now(UTC))
        return self.executions_view.prune(cutoffs)

    def engine_views(self) -> CoreEngineViews:
        """The read models an engine reads at start, caught up first."""
        return CoreEngineViews(self)

    def start(self, live: bool = True) -> None:
        """Follow the log: projections in a thread (or a worker process), woken by this
        process and the store; and the live log for event subscribers (unless `live` is off)."""
        if self.settings.projections == "process":
            self.projection_worker = ProjectionProcess(self.settings, self.projections.observed)
            self.projections.follow_elsewhere(self.projection_worker.wake)
            self.projection_worker.start()
        else:
            self.projections.start(self.settings.poll_seconds)
        if live:
            self.live.start(self.settings.poll_seconds)
        self._follower = LogFollower(self.jobs.recorder, self._notice)
        self._follower.start()

    def _notice(self, position: int) -> None:
        """Another process wrote to the log (PostgreSQL tells at once)."""
        self.projections.wake(position)
        for listener in self._log_listeners:
            listener(position)

    def close(self) -> None:
        """Stop following and close connections."""
        if self._follower is not None:
            self._follower.stop()
        self.live.stop()
        if self.projection_worker is not None:
            self.projection_worker.stop()
        self.projections.stop()
        self.views_db.close()
        self.jobs.close()


def _has_table(db: Database, kind: str, table: str) -> bool:
    """Whether the store's schema holds `table` (a catalog read: it takes no table lock)."""
    query = (
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        if kind == "sqlite"
        else "SELECT 1 FROM information_schema.tables WHERE table_schema=current_schema() "
        "AND table_name=?"
    )
    with db.read() as c:
        c.execute(query, (table,))
        return c.fetchone() is not None


class CoreEngineViews:
    """The engine's start-up reads, each after the projections caught up with the log."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def enabled_job_ids(self) -> list[str]:
        self.core.projections.catch_up()
        return self.core.jobs_view.enabled_job_ids()

    def decided_until(self) -> dict[str, str]:
        self.core.projections["ledger"].catch_up()
        return self.core.ledger_view.decided_until()

    def unfinished(self) -> list[dict[str, object]]:
        self.core.projections["executions"].catch_up()
        return self.core.executions_view.unfinished()

    def beat(self, node: str, at: str) -> None:
        self.core.nodes.beat(node, at)

    def last_seen(self) -> dict[str, str]:
        return self.core.nodes.last_seen()


def delivery_settings(
    schedule: str, disable_after: int, timeout: float = 10.0, lease: float = 30.0
) -> DeliverySettings:
    """Webhook retry settings from `CRONSOURCE_WEBHOOK_RETRY_SCHEDULE` (seconds, e.g.
    `5,300,1800`), `CRONSOURCE_WEBHOOK_DISABLE_AFTER`, `CRONSOURCE_WEBHOOK_TIMEOUT_SECONDS`
    and `CRONSOURCE_WEBHOOK_LEASE_SECONDS`."""
    delays = DEFAULT_SCHEDULE
    if schedule.strip():
        try:
            delays = tuple(float(d) for d in schedule.replace(" ", "").split(",") if d)
        except ValueError:
            delays = ()
        if not delays or any(d < 0 for d in delays):
            raise StoreConfigError(
                f"CRONSOURCE_WEBHOOK_RETRY_SCHEDULE: {schedule!r} must be seconds, e.g. 5,300,1800"
            )
    if disable_after < 0:
        raise StoreConfigError("CRONSOURCE_WEBHOOK_DISABLE_AFTER: must be 0 or more")
    margin = DeliverySettings.lease_margin_seconds
    if timeout <= 0 or lease <= timeout + margin:
        raise StoreConfigError(
            f"CRONSOURCE_WEBHOOK_LEASE_SECONDS ({lease:g}) must exceed "
            f"CRONSOURCE_WEBHOOK_TIMEOUT_SECONDS ({timeout:g}) + {margin:g}"
        )
    return DeliverySettings(
        retry_schedule=delays, disable_after=disable_after, timeout_seconds=timeout,
        lease_seconds=lease,
    )  # fmt: skip
