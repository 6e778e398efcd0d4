"""Runs a soak: targets and `cronsource engine` nodes as processes, kills, RSS samples.

`run_soak` creates the jobs, starts the targets and the nodes, lets every job fire for the
configured time while a node is SIGKILLed and restarted on a schedule, waits until every slot
of the window is decided and finished, stops everything with SIGTERM, and returns what
happened (`Run`), which `accounting` then checks.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.instants import iso_ms
from interfaces.composition import Core, Settings

ROOT = Path(__file__).resolve().parents[2]
TENANT = "soak"
ALLOW = "127.0.0.0/8"
KILL_OFFSET = 0.02  # seconds after a slot


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


@dataclass(frozen=True)
class SoakConfig:
    """What to run, from `CRONSOURCE_SOAK_*` variables (the README lists them)."""

    jobs: int = 2_000
    seconds: int = 600
    kill_every: float = 120.0  # 0: no kills
    fail_percent: float = 1.0
    targets: int = 2
    max_concurrency: int = 200
    drain_seconds: float = 300.0
    sample_seconds: float = 5.0
    min_life_seconds: float = 60.0  # a node younger than this is reported, not judged
    misfire_grace_seconds: float = 10.0
    smoke: bool = False
    out_dir: Path = ROOT / "bench" / "results"

    @classmethod
    def from_env(cls) -> SoakConfig:
        smoke = os.environ.get("CRONSOURCE_SOAK_SMOKE", "") not in ("", "0", "off", "no")
        base = cls(jobs=50, seconds=40, kill_every=20, sample_seconds=1,
                   min_life_seconds=15, drain_seconds=120) if smoke else cls()  # fmt: skip
        number = _env_number
        return cls(
            jobs=int(number("CRONSOURCE_SOAK_JOBS", base.jobs)),
            seconds=int(number("CRONSOURCE_SOAK_SECONDS", base.seconds)),
            kill_every=number("CRONSOURCE_SOAK_KILL_EVERY", base.kill_every),
            fail_percent=number("CRONSOURCE_SOAK_FAIL_PERCENT", base.fail_percent),
            targets=int(number("CRONSOURCE_SOAK_TARGETS", base.targets)),
            max_concurrency=int(number("CRONSOURCE_SOAK_MAX_CONCURRENCY", base.max_concurrency)),
            drain_seconds=number("CRONSOURCE_SOAK_DRAIN_SECONDS", base.drain_seconds),
            sample_seconds=number("CRONSOURCE_SOAK_SAMPLE_SECONDS", base.sample_seconds),
            min_life_seconds=number("CRONSOURCE_SOAK_MIN_LIFE_SECONDS", base.min_life_seconds),
            smoke=smoke,
            out_dir=Path(os.environ.get("CRONSOURCE_SOAK_OUT") or base.out_dir),
        )

    def failing(self, job: int) -> bool:
        """Whether job number `job` calls a target that answers 500 (spread evenly)."""
        count = max(1, round(self.jobs * self.fail_percent / 100)) if self.fail_percent else 0
        return count > 0 and job % math.ceil(self.jobs / count) == 0


@dataclass(frozen=True)
class Scenario:
    """A store and the engine nodes on it; `victim` is the node killed and restarted."""

    name: str
    store: str  # sqlite | postgresql
    nodes: tuple[str, ...]
    victim: str


@dataclass
class Incarnation:
    """One process of a node: from its start to its end, and whether it was killed."""

    node: str
    number: int
    proc: subprocess.Popen[bytes]
    log: Path
    spawned_at: float
    ready_at: float = 0.0
    ended_at: float = 0.0
    killed: bool = False
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (time, MB)

    @property
    def name(self) -> str:
        return f"{self.node}#{self.number}"


@dataclass
class Run:
    """What happened: when the window was, which processes ran, what the targets noted."""

    config: SoakConfig
    scenario: Scenario
    database_url: str
    workdir: Path
    job_ids: list[str]
    window: tuple[float, float] = (0.0, 0.0)  # [t0, t1) on slot time, epoch seconds
    incarnations: list[Incarnation] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    calls_files: list[Path] = field(default_factory=list)
    drained: bool = False
    drain_seconds: float = 0.0
    started: str = ""

    @property
    def killed_nodes(self) -> set[str]:
        return {i.node for i in self.incarnations if i.killed}


def node_env(run: Run, node: str) -> dict[str, str]:
    config = run.config
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CRONSOURCE_DATABASE_URL": run.database_url,
        "CRONSOURCE_DATA_DIR": str(run.workdir),
        "CRONSOURCE_NODE": node,
        "CRONSOURCE_ALLOW_TARGETS": ALLOW,
        "SCHEDULER_MAX_CONCURRENCY": str(config.max_concurrency),
        "CRONSOURCE_MISFIRE_GRACE_SECONDS": str(config.misfire_grace_seconds),
        "CRONSOURCE_SHUTDOWN_GRACE_SECONDS": "10",
        "CRONSOURCE_LOG_LEVEL": "WARNING",
    }


def _spawn(run: Run, node: str) -> Incarnation:
    """`cronsource engine` as `node`, back when it says it runs."""
    number = sum(1 for i in run.incarnations if i.node == node) + 1
    log = run.workdir / f"{node}-{number}.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the node
        proc = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "engine"],
            stdout=out, stderr=subprocess.STDOUT, env=node_env(run, node), cwd=ROOT,
        )  # fmt: skip
    incarnation = Incarnation(node, number, proc, log, time.time())
    run.incarnations.append(incarnation)
    return incarnation


def _wait_ready(incarnation: Incarnation, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while b"running with" not in incarnation.log.read_bytes():
        if incarnation.proc.poll() is not None or time.monotonic() > deadline:
            incarnation.proc.kill()
            tail = incarnation.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{incarnation.name} did not start:\n{tail}")
        time.sleep(0.05)
    incarnation.ready_at = time.time()


def _start_nodes(run: Run, nodes: tuple[str, ...]) -> None:
    started = [_spawn(run, node) for node in nodes]
    for incarnation in started:
        _wait_ready(incarnation, 120 + run.config.jobs * 0.05)


def _stop(incarnation: Incarnation, sig: int = signal.SIGTERM) -> None:
    if incarnation.proc.poll() is None:
        incarnation.proc.send_signal(sig)
        try:
            incarnation.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            incarnation.proc.kill()
            incarnation.proc.wait(timeout=30)
    incarnation.ended_at = incarnation.ended_at or time.time()


class RssSampler(threading.Thread):
    """Samples each live node's resident memory (`/proc/PID/status`) every few seconds."""

    def __init__(self, run: Run) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.run_, self.stopping = run, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.run_.config.sample_seconds):
            for incarnation in list(self.run_.incarnations):
                if incarnation.ready_at and incarnation.proc.poll() is None:
                    rss = rss_mb(incarnation.proc.pid)
                    if rss is not None:
                        incarnation.rss_mb.append((time.time(), rss))


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def targets(run: Run) -> Iterator[list[int]]:
    """The target processes; yields their ports."""
    procs, ports = [], []
    try:
        for k in range(run.config.targets):
            calls = run.workdir / f"calls-{k}.txt"
            run.calls_files.append(calls)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.soak.target", "--calls", str(calls)],
                stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            ports.append(int(proc.stdout.readline()))
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def job_doc(config: SoakConfig, number: int, ports: list[int]) -> dict[str, Any]:
    port = ports[number % len(ports)]
    outcome = "fail" if config.failing(number) else "ok"
    return {
        "name": f"soak-{number}", "pattern": "* * * * * *", "taskType": "HttpInvokerTask",
        "taskConfig": {"url": f"http://127.0.0.1:{port}/{outcome}/{number}"
                              "?s=${T:YYYY-MM-DDTHH:mm:ss}",
                       "method": "GET", "timeout": 10_000},
    }  # fmt: skip


def harness_core(database_url: str, workdir: Path) -> Core:
    """This process's view of the store: it creates the jobs and reads the read models."""
    return Core(Settings(data_dir=workdir, database_url=database_url, allow_targets=ALLOW,
                         node="soak-harness"))  # fmt: skip


def _sleep_until(at: float) -> None:
    while (left := at - time.time()) > 0:
        time.sleep(min(left, 1.0))


def _decided(core: Core, run: Run) -> bool:
    """Whether every job decided each slot of the window, and none of them still runs."""
    t0, t1 = run.window
    last = iso_ms(datetime.fromtimestamp(t1 - 1, UTC)) or ""
    decided = core.ledger_view.decided_until()
    if any(decided.get(job_id, "") < last for job_id in run.job_ids):
        return False
    since, until = (iso_ms(datetime.fromtimestamp(t, UTC)) for t in (t0, t1))
    for status in ("pending", "running"):
        _, unfinished = core.executions_view.list_executions(
            TENANT, status=status, since=since, until=until, limit=1
        )
        if unfinished:
            return False
    return True


def run_soak(config: SoakConfig, scenario: Scenario, database_url: str, workdir: Path) -> Run:
    """Run one soak; what happened, for `accounting`."""
    core = harness_core(database_url, workdir)
    run = Run(config, scenario, database_url, workdir, job_ids=[],
              started=datetime.now(UTC).isoformat(timespec="seconds"))  # fmt: skip
    sampler = RssSampler(run)
    try:
        with targets(run) as ports:
            for number in range(config.jobs):
                written = core.jobs.create_job(TENANT, job_doc(config, number, ports), by="soak")
                run.job_ids.append(str(written.id))
            _start_nodes(run, scenario.nodes)
            sampler.start()
            t0 = math.ceil(max(i.ready_at for i in run.incarnations)) + 2.0
            run.window = (t0, t0 + config.seconds)
            # a kill lands just after a slot's fires went out, while calls are in flight
            kill = t0 + config.kill_every + KILL_OFFSET if config.kill_every > 0 else math.inf
            while kill < run.window[1]:
                _sleep_until(kill)
                _kill_and_restart(run, scenario.victim)
                kill += config.kill_every
            _sleep_until(run.window[1])
            _drain(core, run)
            for incarnation in run.incarnations:
                _stop(incarnation)
        sampler.stopping.set()
        sampler.join(timeout=10)
    finally:
        for incarnation in run.incarnations:  # a failure above: leave nothing running
            if incarnation.proc.poll() is None:
                incarnation.proc.kill()
                incarnation.proc.wait(timeout=30)
        core.close()
    return run


def _kill_and_restart(run: Run, node: str) -> None:
    victim = next(i for i in reversed(run.incarnations) if i.node == node)
    at = time.time()
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=30)
    victim.killed, victim.ended_at = True, time.time()
    successor = _spawn(run, node)
    _wait_ready(successor, 120 + run.config.jobs * 0.05)
    run.kills.append({"node": node, "at": at, "ready_at": successor.ready_at})


def _drain(core: Core, run: Run) -> None:
    """Wait (bounded) until every slot of the window is decided and finished."""
    started = time.monotonic()
    deadline = started + run.config.drain_seconds
    while not _decided(core, run):
        if time.monotonic() > deadline:
            break
        time.sleep(run.config.sample_seconds)  # each look counts rows: not too often
    else:
        run.drained = True
    run.drain_seconds = time.monotonic() - started


def window_instants(run: Run) -> tuple[datetime, datetime]:
    t0, t1 = run.window
    return datetime.fromtimestamp(t0, UTC), datetime.fromtimestamp(t1, UTC)


def seconds_of(instant: str) -> float:
    """Epoch seconds of an ISO instant as the API writes them."""
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()
