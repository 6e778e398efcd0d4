"""Benchmarks of the scheduling engine, one measurement per process, in the peer harness's schema.

    python -m bench --scenario fire-accuracy --jobs 1000 --seconds 30 --system cronsource-sqlite

Prints ONE JSON line with the fields and definitions of `../shared/peer-bench/peer_bench.py`'s
children (`scenario system jobs rep seconds fires lateness_ms_p50 lateness_ms_p99
lateness_ms_max cpu_s_per_1000_fires peak_rss_mb` and the extras it documents), so that its
driver runs this beside the peers (`--project-cmd`) and `summarize` compares them. Scenarios:

- fire-accuracy   N jobs `* * * * * *`, a trivial task; lateness = task start - scheduled time
- http-fires      the same with a real HttpInvokerTask GET to `--url`, <= --concurrency in flight
- job-crud        N creates, N updates (pattern), a list, N deletes through `core.jobs`,
                  with the engine running
- restart-catchup N `* * * * *` jobs created, NO engine for `--gap-minutes` of real time, then
                  a fresh engine starts and catches up (misfirePolicy runAll)
- engine-start    N jobs stored by another process, then a fresh Core + engine: time to
                  running, RSS, and (optional) the first minute burst of the N jobs

Every fire goes through the real engine: recorded as events (Scheduled, Started, Succeeded) by
group commit, with the read-model projections following in threads as `cronsource engine`
runs them. Run on purpose, never in CI; see bench/README.md (## Engine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

PG_URL = os.environ.get(
    "CRONSOURCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SCENARIOS = ("fire-accuracy", "http-fires", "job-crud", "restart-catchup", "engine-start")
SYSTEMS = ("cronsource-sqlite", "cronsource-postgres")
TENANT = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATE: dict[str, Any] = {}  # what the watchdog needs: the database to drop, whether we printed


# -- output (the harness's helpers, same definitions) ----------------------------------------


def emit(row: dict[str, Any]) -> None:
    if "error" not in row:
        STATE["emitted"] = True  # the watchdog then only cleans up
    sys.stdout.write(orjson.dumps(row).decode() + "\n")
    sys.stdout.flush()


def r3(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def pct(sorted_vals: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (as the harness computes it)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def lat_fields(lat_s: list[float], prefix: str = "lateness_ms") -> dict[str, float | None]:
    v = sorted(lat_s)
    return {
        f"{prefix}_p50": r3(pct(v, 50) * 1000) if v else None,  # type: ignore[operator]
        f"{prefix}_p99": r3(pct(v, 99) * 1000) if v else None,  # type: ignore[operator]
        f"{prefix}_max": r3(v[-1] * 1000) if v else None,
    }


def peak_rss_mb() -> float | None:
    """This process's peak RSS plus its projection worker's (`CRONSOURCE_PROJECTIONS=process`):
    a node is both."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    worker = STATE.get("worker_pid")
    if worker:
        with contextlib.suppress(OSError), open(f"/proc/{worker}/status") as f:
            own += next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024.0
    return r3(own)


def worker_cpu_s() -> float:
    """CPU seconds of the projection worker, if the node runs one (counted with the node)."""
    worker = STATE.get("worker_pid")
    if not worker:
        return 0.0
    try:
        with open(f"/proc/{worker}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_now_mb() -> float | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return r3(int(line.split()[1]) / 1024.0)
    return None


def code_version() -> dict[str, str | None]:
    """The commit and a fingerprint of the source under test (others edit it meanwhile)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        head = None
    digest = hashlib.sha1()
    for package in ("application", "domain", "infrastructure", "interfaces"):
        for f in sorted((root / package).rglob("*.py")):
            digest.update(f.read_bytes())
    return {"commit": head, "source_sha1": digest.hexdigest()[:10]}


def process_age_s() -> float:
    """Seconds since the OS started this process (10 ms resolution)."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return time.time() - (btime + start_ticks / CLK_TCK)


# -- CPU: this process, the host, the PostgreSQL server -----------------------------------------


def host_cpu() -> tuple[int, int]:
    """(total, idle+iowait) jiffies from /proc/stat (user..steal; guest is inside user)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v), v[3] + v[4]


def postgres_cpu(dbname: str | None) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds of PostgreSQL processes: (backends of `dbname`, server-wide helpers).

    Backends of other databases (other people's work on the same server) are left out.
    """
    ours: dict[int, float] = {}
    aux: dict[int, float] = {}
    if not dbname:
        return ours, aux
    needle = dbname.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if needle in cmd:
            ours[int(name)] = cpu
        elif b"(" not in cmd and b"[local]" not in cmd:  # postmaster, walwriter, checkpointer…
            aux[int(name)] = cpu
    return ours, aux


def _delta(a: dict[int, float], b: dict[int, float]) -> float:
    """CPU used between two samples (a process born in between counts from zero)."""
    return sum(v - a.get(pid, 0.0) for pid, v in b.items())


class WindowSampler(threading.Thread):
    """Samples CPU exactly at wall times t0 and t1, even while the event loop is busy
    (the harness's sampler, reading /proc instead of psutil)."""

    def __init__(self, t0: float, t1: float, dbname: str | None) -> None:
        super().__init__(daemon=True)
        self.t0, self.t1, self.dbname = t0, t1, dbname
        self.cpu: dict[str, float] = {}
        self.host: dict[str, tuple[int, int]] = {}
        self.pg: dict[str, tuple[dict[int, float], dict[int, float]]] = {}

    def run(self) -> None:
        for key, t in (("t0", self.t0), ("t1", self.t1)):
            while (d := t - time.time()) > 0:
                time.sleep(min(d, 0.05))
            self.cpu[key] = time.process_time()
            self.cpu["worker_" + key] = worker_cpu_s()
            self.host[key] = host_cpu()
            if self.dbname:
                self.pg[key] = postgres_cpu(self.dbname)

    def result(self, seconds: float) -> tuple[float | None, dict[str, Any]]:
        out: dict[str, Any] = {}
        if "t1" not in self.cpu:
            return None, out
        worker = self.cpu["worker_t1"] - self.cpu["worker_t0"]
        cpu = self.cpu["t1"] - self.cpu["t0"] + worker  # a node's CPU: its worker's too
        out["worker_cpu_util"] = r3(worker / seconds)
        (ta, ia), (tb, ib) = self.host["t0"], self.host["t1"]
        tot, idle = tb - ta, ib - ia
        out["host_cpu_busy_pct"] = r3(100.0 * (tot - idle) / tot) if tot > 0 else None
        out["proc_cpu_util"] = r3(cpu / seconds)
        if "t1" in self.pg:
            (oa, xa), (ob, xb) = self.pg["t0"], self.pg["t1"]
            out["db_cpu_util"] = r3(_delta(oa, ob) / seconds)
            out["db_aux_cpu_util"] = r3(_delta(xa, xb) / seconds)
        else:
            out["db_cpu_util"] = None
        return cpu, out


# -- stores and the core --------------------------------------------------------------------


@contextlib.contextmanager
def fresh_store(system: str) -> Iterator[tuple[str, str | None]]:
    """(store URL, PostgreSQL database name or None): a SQLite file in a temp dir, or a fresh
    PostgreSQL database, created here and dropped after."""
    if system == "cronsource-sqlite":
        with tempfile.TemporaryDirectory(prefix="cronsource-bench-engine-") as d:
            STATE["tmpdir"] = d
            yield f"sqlite:///{d}/cronsource.db", None
        return
    name = f"cronsource_bench_engine_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}", name
    finally:
        drop_database(name)


def drop_database(name: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]


def configure(url: str, max_concurrency: int, allow_targets: str = "") -> None:
    """The settings, as `cronsource engine` reads them: through the environment."""
    os.environ.update(
        CRONSOURCE_DATABASE_URL=url,
        SCHEDULER_MAX_CONCURRENCY=str(max_concurrency),
        CRONSOURCE_NODE=f"bench-{os.getpid()}",
        CRONSOURCE_SHUTDOWN_GRACE_SECONDS="2",
    )
    if allow_targets:
        os.environ["CRONSOURCE_ALLOW_TARGETS"] = allow_targets
    else:
        os.environ.pop("CRONSOURCE_ALLOW_TARGETS", None)


def new_core() -> Any:
    from interfaces.composition import Core, Settings

    core = Core(Settings.from_env())
    start = core.start

    def started(*args: Any, **kwargs: Any) -> None:  # note the worker's pid for accounting
        start(*args, **kwargs)
        if core.projection_worker is not None:
            STATE["worker_pid"] = core.projection_worker.pid

    core.start = started
    return core


def function_job(i: int, pattern: str, **extra: Any) -> dict[str, Any]:
    return {
        "applicationId": "bench", "name": f"j{i}", "pattern": pattern,
        "taskType": "FunctionTask", "taskConfig": {"function": "noop", "payload": {}}, **extra,
    }  # fmt: skip


def http_job(i: int, url: str) -> dict[str, Any]:
    return {
        "applicationId": "bench", "name": f"h{i}", "pattern": "* * * * * *",
        "taskType": "HttpInvokerTask", "taskConfig": {"url": url, "method": "GET"},
    }  # fmt: skip


def create_jobs(core: Any, docs: list[dict[str, Any]]) -> tuple[list[Any], float]:
    started = time.perf_counter()
    ids = [core.jobs.create_job(TENANT, doc, by="bench").id for doc in docs]
    return ids, time.perf_counter() - started


# -- task runners: the engine calls these where it would call the real runners --------------


OK = {"data": {"ok": True}, "durationMs": 0}  # what FunctionTask `noop` returns


class Recorder:
    """Every task start as (scheduled, start, job id), and HTTP calls as the harness keeps them."""

    def __init__(self) -> None:
        self.fires: list[tuple[float, float, Any]] = []
        self.http: list[tuple[float, float, float, float, bool]] = []
        self.t0, self.t1 = float("inf"), float("-inf")  # window on *scheduled* time [t0, t1)
        self.win_started = 0
        self.win_done = 0
        self.errors = 0

    def start(self, request: Any) -> tuple[float, float]:
        t = time.time()
        s = request.scheduled_for.timestamp()
        self.fires.append((s, t, request.job_id))
        if self.t0 <= s < self.t1:
            self.win_started += 1
        return s, t


class TrivialRunner:
    """The trivial task: note the start, succeed at once (the engine records it all)."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def run(self, request: Any) -> Any:
        from application.ports import TaskOutcome

        self.rec.start(request)
        return TaskOutcome(ok=True, result=dict(OK))

    async def close(self) -> None:
        return None


class TimedRunner:
    """The real runners (HTTP through the URL guard), timed around each call.

    The engine admits an execution to its bounded pool (max_concurrency) before the task
    starts, so for cronsource task start and HTTP send are the same moment.
    """

    def __init__(self, inner: Any, rec: Recorder) -> None:
        self.inner, self.rec = inner, rec

    async def run(self, request: Any) -> Any:
        s, t = self.rec.start(request)
        outcome = await self.inner.run(request)
        done = time.time()
        ok = bool(outcome.ok and (outcome.result or {}).get("status") == 200)
        if not outcome.ok:
            self.rec.errors += 1
        self.rec.http.append((s, t, t, done, ok))
        if ok and self.rec.t0 <= s < self.rec.t1:
            self.rec.win_done += 1
        return outcome

    async def close(self) -> None:
        await self.inner.close()


async def start_engine(core: Any, runner_for: Any, timeout: float) -> tuple[Any, Any]:
    """`core.engine()` exactly as `cronsource engine` builds it, its runner swapped for the
    bench's; returns (engine, its task) once `engine.started` is set."""
    engine = core.engine()
    engine.runner = runner_for(engine.runner)
    task = asyncio.create_task(engine.run(), name="engine")
    ready = asyncio.create_task(engine.started.wait())
    await asyncio.wait([task, ready], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
        raise RuntimeError("the engine stopped before it started")
    if not engine.started.is_set():
        raise RuntimeError(f"the engine did not start within {timeout} s")
    return engine, task


def finish() -> None:
    """Exit now (the row is out, the store removed): tearing down asyncio.run would first
    cancel and wait for every execution task a saturated engine left queued."""
    sys.stdout.flush()
    os._exit(0)


async def stop_engine(engine: Any, task: Any, timeout: float = 3.0) -> None:
    engine.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(task), timeout)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(engine.runner.close(), 5)


def close_core(core: Any, timeout: float = 5.0) -> None:
    """Close in a thread, bounded: a projection far behind must not hold the process."""
    t = threading.Thread(target=core.close, daemon=True)
    t.start()
    t.join(timeout)


def engine_fields(engine: Any, core: Any) -> dict[str, Any]:
    s = engine.stats
    tick = sorted(s.lateness)
    try:
        head = core.jobs.recorder.max_notification_id() or 0
        lag = max(v["lag"] for v in core.projections.lag(head).values())
    except Exception:  # noqa: BLE001  # diagnostics only
        head, lag = None, None
    return {
        "engine_fired": s.fired, "engine_won": s.won, "engine_skipped": s.skipped,
        "engine_tick_lateness_ms_p99": r3(pct(tick, 99) * 1000) if tick else None,  # type: ignore[operator]
        "log_head": head, "projection_lag_events": lag,
    }  # fmt: skip


async def sleep_until(t: float) -> None:
    while (d := t - time.time()) > 0:
        await asyncio.sleep(min(d, 0.5))


# -- scenarios ------------------------------------------------------------------------------


async def scen_fires(a: argparse.Namespace, meta: dict[str, Any], http: bool) -> dict[str, Any]:
    n = a.jobs
    rec = Recorder()
    if http and not a.url.startswith("http://127.0.0.1:"):
        raise SystemExit("http-fires target must be on 127.0.0.1")
    # a trivial task must not be throttled: one slot per job; HTTP: the harness's in-flight bound
    concurrency = a.max_concurrency or (a.concurrency if http else max(n, 1))
    with fresh_store(a.system) as (url, dbname):
        STATE["dbname"] = dbname
        configure(url, concurrency, "127.0.0.0/8" if http else "")
        p0 = time.perf_counter()
        core = new_core()
        docs = [http_job(i, a.url) if http else function_job(i, "* * * * * *") for i in range(n)]
        _, create_s = create_jobs(core, docs)
        p1 = time.perf_counter()
        if not a.no_projections:
            core.start()
        engine, _ = await start_engine(
            core,
            (lambda real: TimedRunner(real, rec)) if http else (lambda _: TrivialRunner(rec)),
            timeout=a.child_timeout,
        )
        setup_s = time.perf_counter() - p0
        start_s = time.perf_counter() - p1
        t0 = math.ceil(time.time() + a.warmup) - 0.5  # fires are at whole seconds
        t1 = t0 + a.seconds
        rec.t0, rec.t1 = t0, t1
        sampler = WindowSampler(t0, t1, dbname)
        sampler.start()
        await sleep_until(t1)
        expected = n * a.seconds
        drain_deadline = t1 + a.drain
        while time.time() < drain_deadline:
            if (rec.win_done if http else rec.win_started) >= expected:
                break
            await asyncio.sleep(0.05)
        t_end = time.time()
        sampler.join(timeout=2)
        cpu, extra = sampler.result(a.seconds)
        diag = engine_fields(engine, core)

        # ---- analysis (the harness's definitions)
        fires_list = list(rec.fires)
        started_in_window = sum(1 for s, t, _ in fires_list if t0 <= t < t1)
        per_sec: dict[int, int] = {}
        per_sec_lat: dict[int, list[float]] = {}
        lats: list[float] = []
        seen: set[tuple[Any, float]] = set()
        duplicates = 0
        for s, t, job_id in fires_list:
            if t0 <= s < t1:
                lats.append(t - s)
                k = round(s)
                per_sec[k] = per_sec.get(k, 0) + 1
                per_sec_lat.setdefault(k, []).append(t - s)
                if (job_id, s) in seen:
                    duplicates += 1
                seen.add((job_id, s))
        censored = 0
        for k in range(math.ceil(t0), math.ceil(t1)):
            miss = n - per_sec.get(k, 0)
            if miss > 0:
                censored += miss
                lats.extend([t_end - k] * miss)
                per_sec_lat.setdefault(k, []).extend([t_end - k] * miss)
        row = dict(meta)
        row.update(seconds=a.seconds, setup_s=r3(setup_s), expected_fires=expected)
        if http:
            done_ok = [h for h in rec.http if h[4] and t0 <= h[3] < t1]
            fires = len(done_ok)
            win_http = [h for h in rec.http if t0 <= h[0] < t1]
            row.update(
                fires=fires, http_fires_per_s=r3(fires / a.seconds), offered_per_s=n,
                job_starts=started_in_window, concurrency=concurrency,
                http_errors=rec.errors, http_failed=sum(1 for h in rec.http if not h[4]),
                window_fires_completed=sum(1 for h in win_http if h[4]),
            )  # fmt: skip
        else:
            fires = started_in_window
            row.update(fires=fires, fires_per_s=r3(fires / a.seconds))
        row.update(lat_fields(lats))
        if http:
            row.update(lat_fields([h[2] - h[0] for h in win_http], "http_send_lateness_ms"))
            row.update(lat_fields([h[3] - h[0] for h in win_http], "http_e2e_ms"))
        row.update(
            cpu_s_per_1000_fires=r3(cpu / fires * 1000) if (cpu is not None and fires) else None,
            peak_rss_mb=peak_rss_mb(),
            lateness_censored=censored,
        )
        row.update(extra)
        row.update(trend_fields(per_sec_lat))
        row.update(
            create_s=r3(create_s), start_s=r3(start_s), max_concurrency=concurrency,
            duplicate_starts=duplicates, projections=not a.no_projections, **diag,
        )  # fmt: skip
        row["saturated"] = bool(
            fires < 0.95 * expected or censored or (row["lateness_ms_p50"] or 0) > 1000
        )
        emit(row)
        # a saturated engine holds 100,000s of queued executions: no graceful stop, no
        # core.close() (the process exits now and the store is removed)
        engine.stop()
    finish()
    return row


def trend_fields(per_sec_lat: dict[int, list[float]]) -> dict[str, Any]:
    """Does lateness grow over the window? Per-second p50: least-squares slope, first and
    last quarter (censored fires included at their lower bound)."""
    keys = sorted(per_sec_lat)
    if len(keys) < 4:
        return {}
    p50 = [pct(sorted(per_sec_lat[k]), 50) * 1000 for k in keys]  # type: ignore[operator]
    xs = [k - keys[0] for k in keys]
    mx, my = statistics.fmean(xs), statistics.fmean(p50)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, p50, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    q = max(1, len(keys) // 4)
    first = sorted(v for k in keys[:q] for v in per_sec_lat[k])
    last = sorted(v for k in keys[-q:] for v in per_sec_lat[k])
    return {
        "lateness_trend_ms_per_s": r3(slope),
        "lateness_ms_p50_first_quarter": r3(pct(first, 50) * 1000),  # type: ignore[operator]
        "lateness_ms_p50_last_quarter": r3(pct(last, 50) * 1000),  # type: ignore[operator]
        "lateness_ms_p99_first_quarter": r3(pct(first, 99) * 1000),  # type: ignore[operator]
        "lateness_ms_p99_last_quarter": r3(pct(last, 99) * 1000),  # type: ignore[operator]
    }


async def scen_crud(a: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    n = a.jobs
    ea = [f"{i % 60} {i % 24} 1 1 *" for i in range(n)]  # far-future: no fires (as the peers)
    eb = [f"{(i + 7) % 60} {(i + 5) % 24} 1 1 *" for i in range(n)]
    rec = Recorder()
    with fresh_store(a.system) as (url, dbname):
        STATE["dbname"] = dbname
        configure(url, a.max_concurrency or 100)
        core = new_core()
        if not a.no_projections:
            core.start()
        engine, task = await start_engine(core, lambda _: TrivialRunner(rec), a.child_timeout)
        jobs = core.jobs
        times: dict[str, float] = {}
        out: dict[str, Any] = {}

        def ops() -> None:  # as an API handler would: in a worker thread, the loop keeps firing
            p = time.perf_counter()
            ids = [
                jobs.create_job(TENANT, function_job(i, ea[i]), by="bench").id for i in range(n)
            ]
            times["add"] = time.perf_counter() - p
            p = time.perf_counter()
            last = 0
            for i, job_id in enumerate(ids):
                last = jobs.update_job(TENANT, job_id, {"pattern": eb[i]}, by="bench").position
            times["update"] = time.perf_counter() - p
            p = time.perf_counter()
            core.projections["jobs"].wait_for(last, timeout=60)
            times["list_wait"] = time.perf_counter() - p
            p = time.perf_counter()
            listed: list[Any] = []
            while True:
                page = core.queries.list_jobs(TENANT, offset=len(listed), limit=500)
                listed += page.items
                if not page.items or len(listed) >= page.total:
                    break
            times["list"] = time.perf_counter() - p
            out["listed"] = len(listed)
            new_patterns = set(eb)
            out["updated_in_list"] = sum(1 for r in listed if r.get("pattern") in new_patterns)
            p = time.perf_counter()
            for job_id in ids:
                jobs.delete_job(TENANT, job_id, by="bench")
            times["remove"] = time.perf_counter() - p

        cpu0 = time.process_time()
        h0 = host_cpu()
        await asyncio.to_thread(ops)
        for _ in range(100):  # let the engine see the last changes (bounded)
            if engine.scheduled_jobs == 0:
                break
            await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu0
        h1 = host_cpu()
        diag = engine_fields(engine, core)
        row = dict(meta)
        row.update(
            seconds=r3(times["add"] + times["update"] + times["remove"]), fires=0,
            lateness_ms_p50=None, lateness_ms_p99=None, lateness_ms_max=None,
            cpu_s_per_1000_fires=None, cpu_s_per_1000_ops=r3(cpu / (3 * n) * 1000),
            peak_rss_mb=peak_rss_mb(),
            add_ops_s=r3(n / times["add"]), update_ops_s=r3(n / times["update"]),
            remove_ops_s=r3(n / times["remove"]), list_ms=r3(times["list"] * 1000),
            list_projection_wait_ms=r3(times["list_wait"] * 1000), listed=out["listed"],
            listed_with_new_pattern=out["updated_in_list"],
            engine_jobs_after=engine.scheduled_jobs,
            host_cpu_busy_pct=r3(100.0 * ((h1[0] - h0[0]) - (h1[1] - h0[1])) / (h1[0] - h0[0]))
            if h1[0] > h0[0] else None,
            projections=not a.no_projections, **diag,
        )  # fmt: skip
        emit(row)
        await stop_engine(engine, task)  # no core.close(): the process exits, the store goes
    finish()
    return row


def create_in_child(n: int, pattern: str, extra: dict[str, Any]) -> float:
    """Store N jobs from another process (this one's RSS must not include creating them)."""
    cmd = [
        sys.executable, "-m", "bench", "--scenario", "_create", "--jobs", str(n),
        "--system", "cronsource-sqlite", "--pattern", pattern,
        "--job-extra", orjson.dumps(extra).decode(),
    ]  # fmt: skip
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    if cp.returncode != 0:
        raise RuntimeError(f"creating jobs failed: {cp.stderr[-2000:]}")
    return float(orjson.loads(cp.stdout.strip().splitlines()[-1])["create_s"])


def scen_create(a: argparse.Namespace) -> None:
    core = new_core()
    extra = orjson.loads(a.job_extra) if a.job_extra else {}
    _, create_s = create_jobs(core, [function_job(i, a.pattern, **extra) for i in range(a.jobs)])
    p = time.perf_counter()
    core.projections.catch_up()  # as the API leaves them: the read models up to date
    catch_up_s = time.perf_counter() - p
    core.close()
    emit({"create_s": create_s, "projections_catch_up_s": catch_up_s})


async def scen_start(a: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    """Restart to running with N stored jobs; RSS; then the first burst of N fires (optional)."""
    n = a.jobs
    rec = Recorder()
    with fresh_store(a.system) as (url, dbname):
        STATE["dbname"] = dbname
        configure(url, a.max_concurrency or max(n, 1))
        if a.pattern == "* * * * *" and 60 - time.time() % 60 < 10 + n * 0.0025:
            # no slot between creating and starting (that case is restart-catchup's): the
            # engine would first record every job's catch-up fire, one transaction per job
            await sleep_until(math.ceil(time.time() / 60) * 60 + 0.5)
        create_s = create_in_child(n, a.pattern, {})
        age_at_main = STATE["age_at_main"]
        p = time.perf_counter()
        import interfaces.composition  # noqa: F401  # what a fresh process imports first

        import_s = time.perf_counter() - p
        rss_before = rss_now_mb()
        cpu0 = time.process_time()
        p0 = time.perf_counter()
        core = new_core()
        if not a.no_projections:
            core.start()
        p1 = time.perf_counter()
        engine, task = await start_engine(core, lambda _: TrivialRunner(rec), a.child_timeout)
        ready = time.perf_counter()
        start_cpu = time.process_time() - cpu0
        row = dict(meta)
        row.update(
            seconds=None, fires=0, lateness_ms_p50=None, lateness_ms_p99=None,
            lateness_ms_max=None, cpu_s_per_1000_fires=None, pattern=a.pattern,
            create_s=r3(create_s), restart_to_running_s=r3(ready - p0),
            core_open_s=r3(p1 - p0), engine_start_s=r3(ready - p1),
            import_s=r3(import_s), start_cpu_s=r3(start_cpu),
            # a fresh `cronsource engine` process: interpreter, imports, core, engine
            process_to_running_s=r3(age_at_main + import_s + ready - p0),
            engine_jobs=engine.scheduled_jobs, rss_before_core_mb=rss_before,
            rss_running_mb=rss_now_mb(),
        )  # fmt: skip
        if a.burst:  # wait for the next slot of every job (a whole minute for `* * * * *`)
            await asyncio.sleep(2)
            nexts = [e.next_slot for e in engine._entries.values() if e.next_slot is not None]
            slot = min(nexts).timestamp() if nexts else None
            if slot is not None and slot - time.time() < a.child_timeout - 30:
                due = sum(1 for x in nexts if x.timestamp() == slot)
                rec.t0, rec.t1 = slot, slot + 0.5
                await sleep_until(slot)
                c0, h0 = time.process_time(), host_cpu()
                deadline = slot + a.drain
                while rec.win_started < due and time.time() < deadline:
                    await asyncio.sleep(0.05)
                t_end = time.time()
                c1, h1 = time.process_time(), host_cpu()
                lats = [t - s for s, t, _ in rec.fires if s == slot]
                censored = due - len(lats)
                lats += [t_end - slot] * censored
                row.update(lat_fields(lats))
                row.update(
                    fires=len(lats) - censored, burst_fires_due=due, lateness_censored=censored,
                    burst_done_ms=r3((t_end - slot) * 1000),
                    cpu_s_per_1000_fires=r3((c1 - c0) / max(1, due) * 1000),
                    host_cpu_busy_pct=r3(100.0 * ((h1[0] - h0[0]) - (h1[1] - h0[1]))
                                         / (h1[0] - h0[0])) if h1[0] > h0[0] else None,
                )  # fmt: skip
        row.update(
            peak_rss_mb=peak_rss_mb(), rss_end_mb=rss_now_mb(), **engine_fields(engine, core)
        )
        emit(row)
        await stop_engine(engine, task)  # no core.close(): the process exits, the store goes
    finish()
    return row


async def scen_restart(a: argparse.Namespace, meta: dict[str, Any]) -> dict[str, Any]:
    """N `* * * * *` jobs (runAll), no engine for `--gap-minutes` of REAL time, then restart.

    No clock is faked: the jobs are created, this process waits until `gap` minute slots have
    passed (plus the misfire grace, so the last one is a misfire too), then starts a fresh
    Core + engine, which catches every missed slot up.
    """
    n = a.jobs
    rec = Recorder()
    with fresh_store(a.system) as (url, dbname):
        STATE["dbname"] = dbname
        configure(url, a.max_concurrency or max(n, 1))
        extra = {"misfirePolicy": "runAll", "catchUpWindowSeconds": 3600}
        if 60 - time.time() % 60 < 5 + n * 0.005:  # create them all inside one minute
            await sleep_until(math.ceil(time.time() / 60) * 60 + 0.5)
        created_at = time.time()
        create_s = create_in_child(n, "* * * * *", extra)
        first_slot = math.floor(created_at / 60) * 60 + 60
        last_slot = first_slot + 60 * (a.gap_minutes - 1)
        grace = float(os.environ.get("CRONSOURCE_MISFIRE_GRACE_SECONDS", "10"))
        restart_at = max(last_slot + grace + 1, time.time())
        if 60 - (restart_at % 60) < 4:  # keep the restart away from the next slot
            restart_at += 60 - (restart_at % 60) + 0.5
        import interfaces.composition  # noqa: F401  # imports are not part of the restart

        await sleep_until(restart_at)
        t_restart = time.time()
        rec.t0, rec.t1 = float("-inf"), t_restart  # catch-up fires = scheduled before restart
        slots = n * len(range(int(first_slot), int(t_restart) + 1, 60))
        cpu0 = time.process_time()
        p0 = time.perf_counter()
        core = new_core()
        if not a.no_projections:
            core.start()
        engine, task = await start_engine(core, lambda _: TrivialRunner(rec), a.child_timeout)
        ready_s = time.perf_counter() - p0
        deadline = time.time() + a.drain
        while time.time() < deadline and rec.win_started < slots:
            await asyncio.sleep(0.02)
        cpu = time.process_time() - cpu0
        fires = rec.win_started
        caught = [(s, t) for s, t, _ in rec.fires if s < t_restart]
        t_done = max((t for _, t in caught), default=t_restart)
        first = min((t for _, t in caught), default=None)
        lats = [t - max(s, t_restart) for s, t in caught]
        row = dict(meta)
        row.update(
            policy="runAll", gap_minutes=a.gap_minutes, seconds=r3(t_done - t_restart),
            fires=fires, missed_slots=slots, missed_events=engine.stats.skipped,
            coalesced_away=slots - fires - engine.stats.skipped, create_s=r3(create_s),
            ready_ms=r3(ready_s * 1000), start_call_ms=r3(ready_s * 1000),
            first_fire_ms=r3((first - t_restart) * 1000) if first else None,
            catchup_done_ms=r3((t_done - t_restart) * 1000), completed=fires >= slots,
            clock="real (no store rewrite; the process waited the gap)",
        )  # fmt: skip
        row.update(lat_fields(lats))
        row.update(
            cpu_s_per_1000_fires=r3(cpu / fires * 1000) if fires else None, cpu_s=r3(cpu),
            peak_rss_mb=peak_rss_mb(), **engine_fields(engine, core),
        )  # fmt: skip
        emit(row)
        await stop_engine(engine, task)  # no core.close(): the process exits, the store goes
    finish()
    return row


# -- entry ----------------------------------------------------------------------------------


def remove_store() -> None:
    """On a hard exit: the temp dir or the database must not be left behind."""
    if STATE.get("tmpdir"):
        shutil.rmtree(STATE["tmpdir"], ignore_errors=True)
    if STATE.get("dbname"):
        with contextlib.suppress(Exception):
            drop_database(STATE["dbname"])


def start_watchdog(limit_s: float, meta: dict[str, Any]) -> None:
    def wd() -> None:
        time.sleep(limit_s)
        if not STATE.get("emitted"):
            emit(dict(meta, error=f"watchdog fired after {limit_s}s"))
        remove_store()
        os._exit(3)

    threading.Thread(target=wd, daemon=True).start()


def child_timeout(a: argparse.Namespace) -> int:
    """The harness's bound for this measurement (its driver kills 15 s after it)."""
    if a.scenario in ("fire-accuracy", "http-fires"):
        return int(a.warmup + a.seconds + a.drain + 60 + a.jobs * 0.01)
    if a.scenario == "restart-catchup":
        return int(60 * a.gap_minutes + 60 + a.drain + a.jobs * 0.05)
    if a.scenario == "engine-start":
        return int(150 + a.jobs * 0.02 + a.drain)
    return int(120 + a.jobs * 0.05)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", required=True, choices=[*SCENARIOS, "_create"])
    ap.add_argument("--system", default="cronsource-sqlite", choices=SYSTEMS)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=20, help="measurement window (s)")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--drain", type=float, default=20.0,
                    help="max wait after the window for window fires to start/complete")  # fmt: skip
    ap.add_argument("--url", nargs="?", const="", default="",
                    help="http-fires: the harness's target on 127.0.0.1 (may be empty otherwise)")  # fmt: skip
    ap.add_argument("--concurrency", type=int, default=100, help="http-fires: max in flight")
    ap.add_argument("--max-concurrency", type=int, default=0,
                    help="SCHEDULER_MAX_CONCURRENCY (default: jobs; http-fires: --concurrency)")  # fmt: skip
    ap.add_argument("--rep", type=int, default=1)
    ap.add_argument("--workdir", nargs="?", const="", default="",
                    help="accepted, unused (a temp dir is used)")  # fmt: skip
    ap.add_argument("--gap-minutes", type=int, default=2, help="restart-catchup: real minutes")
    ap.add_argument("--pattern", default="* * * * *", help="engine-start: the jobs' pattern")
    ap.add_argument("--no-burst", dest="burst", action="store_false",
                    help="engine-start: do not wait for the jobs' first slot")  # fmt: skip
    ap.add_argument("--no-projections", action="store_true",
                    help="diagnosis: do not run the read-model projections in this process")  # fmt: skip
    ap.add_argument("--job-extra", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child-timeout", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    STATE["age_at_main"] = process_age_s()
    a = parse_args(argv)
    if a.scenario == "_create":
        scen_create(a)
        return
    import importlib.metadata

    meta = dict(
        scenario=a.scenario, system=a.system, jobs=a.jobs, rep=a.rep,
        eventsourcing_version=importlib.metadata.version("eventsourcing"),
        python=platform.python_version(), host_cpus=os.cpu_count(),
        started=datetime.now(UTC).isoformat(timespec="seconds"), **code_version(),
    )  # fmt: skip
    a.child_timeout = a.child_timeout or child_timeout(a)
    start_watchdog(a.child_timeout, meta)
    if a.scenario == "fire-accuracy":
        coro = scen_fires(a, meta, http=False)
    elif a.scenario == "http-fires":
        coro = scen_fires(a, meta, http=True)
    elif a.scenario == "job-crud":
        coro = scen_crud(a, meta)
    elif a.scenario == "restart-catchup":
        coro = scen_restart(a, meta)
    else:
        coro = scen_start(a, meta)
    try:
        asyncio.run(coro)
    except Exception as e:  # noqa: BLE001  # one error line, in the schema's shape
        emit(dict(meta, error=f"{type(e).__name__}: {e}"))
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        sys.stdout.flush()
        remove_store()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)  # do not wait for leftover threads and connections
