"""Soak: many jobs every second at local targets for minutes, nodes SIGKILLed and restarted.

Not part of the default run (marker `soak`); the README's "Soak test" section has the command.
One node on SQLite, three engine nodes on PostgreSQL; `CRONSOURCE_SOAK_JOBS` jobs (2,000) fire
every second for `CRONSOURCE_SOAK_SECONDS` (600) at a target process on 127.0.0.1, 1 % of them
at a path that answers 500; every `CRONSOURCE_SOAK_KILL_EVERY` seconds (120) a node is
SIGKILLed and started again. Afterwards:

- every (job, slot) of the run is accounted for exactly once: succeeded, failed (`HTTP_STATUS`
  for the failing jobs, `INTERRUPTED` for what a kill cut short), or skipped only as the
  misfire policy (`runAll`, 60 s window) says; the nodes are given time to decide what the run
  left undecided (a node that fell behind);
- no slot reached its target twice;
- `cronsource replay --verify` passes: the read models are what the log makes;
- memory is flat: a node's RSS (its projection worker's included) grew less than 10 % over
  the last half of each life of 100 s or more;
- lateness (scheduled -> started) p50 / p99, overall and per minute, is reported.

The summary is printed and written to `tests/soak/results/` (not in git); its last result goes
into `bench/README.md`.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from application.slot_ledger import slot_ledger
from domain.instants import iso_ms, parse_instant
from interfaces.composition import Core, Settings

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "soak" / "results"
JOBS = int(os.environ.get("CRONSOURCE_SOAK_JOBS", "2000"))
SECONDS = int(os.environ.get("CRONSOURCE_SOAK_SECONDS", "600"))
KILL_EVERY = int(os.environ.get("CRONSOURCE_SOAK_KILL_EVERY", "120"))
DRAIN_SECONDS = int(os.environ.get("CRONSOURCE_SOAK_DRAIN_SECONDS", "300"))
FAILING_EVERY = 100  # 1 % of the jobs call the failing path
SAMPLE_SECONDS = 5.0
FLAT_LIFE_SECONDS = 100  # lives at least this long are judged for flat memory


class Node:
    """One `cronsource engine` process, started again after each kill."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.env = name, env
        self.proc: subprocess.Popen[str] | None = None
        self.lives: list[list[tuple[float, float]]] = []  # RSS samples (t, MB) per life

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "interfaces.cli", "engine"],
            stdout=subprocess.PIPE, text=True, env={**self.env, "CRONSOURCE_NODE": self.name},
            cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "running" in line, f"node {self.name} did not start: {line!r}"
        self.lives.append([])

    def kill(self) -> None:
        assert self.proc is not None  # its projection worker ends when its input closes
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def sample(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = [self.proc.pid, *_children(self.proc.pid)]
        self.lives[-1].append((time.time(), sum(_rss_mb(p) for p in pids)))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def _growth(life: list[tuple[float, float]]) -> float | None:
    """RSS growth over the second half of a life (its last sample against its middle one)."""
    if len(life) < 4 or life[-1][0] - life[0][0] < FLAT_LIFE_SECONDS:
        return None
    middle_t = (life[0][0] + life[-1][0]) / 2
    middle = next(mb for t, mb in life if t >= middle_t)
    return (life[-1][1] - middle) / middle


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[max(0, min(len(values) - 1, round(p / 100 * len(values)) - 1))]


def _jobs(core: Core, port: int) -> list[tuple[Any, bool]]:
    made = []
    for i in range(JOBS):
        failing = i % FAILING_EVERY == FAILING_EVERY - 1
        path = "fail" if failing else "ok"
        doc = {
            "name": f"soak-{i}",
            "pattern": "* * * * * *",
            "misfirePolicy": "runAll",
            "catchUpWindowSeconds": 60,
            "taskConfig": {
                "url": f"http://127.0.0.1:{port}/{path}/{i}?slot=${{T:YYYY-MM-DDTHH:mm:ss}}",
                "method": "GET",
                "timeout": 10_000,
            },
        }
        made.append((core.jobs.create_job("soak", doc, by="soak").id, failing))
    return made


def test_soak(database_url: str, tmp_path: Path) -> None:
    store = "sqlite" if database_url.startswith("sqlite") else "postgres"
    nodes_count = 1 if store == "sqlite" else 3
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CRONSOURCE_DATABASE_URL": database_url,
        "CRONSOURCE_DATA_DIR": str(tmp_path),
        "CRONSOURCE_ALLOW_TARGETS": "127.0.0.0/8",
        "CRONSOURCE_PROJECTIONS": "process",
        "SCHEDULER_MAX_CONCURRENCY": "200",
        "CRONSOURCE_LOG_LEVEL": "WARNING",
        "CRONSOURCE_SHUTDOWN_GRACE_SECONDS": "20",
    }
    target = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "soak" / "target.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    core = Core(Settings(data_dir=tmp_path, database_url=database_url))
    nodes = [Node(f"soak-{n + 1}", env) for n in range(nodes_count)]
    try:
        assert target.stdout is not None
        port = int(target.stdout.readline())
        jobs = _jobs(core, port)
        for node in nodes:
            node.start()
        run_start = time.time()
        kills, next_kill, next_sample = 0, run_start + KILL_EVERY, run_start
        while (now := time.time()) < run_start + SECONDS:
            if now >= next_sample:
                for node in nodes:
                    node.sample()
                next_sample += SAMPLE_SECONDS
            if now >= next_kill:
                doomed = nodes[-1]  # the others live the whole run: their memory is judged
                doomed.kill()
                doomed.start()
                kills += 1
                next_kill += KILL_EVERY
            time.sleep(max(0.0, min(next_sample, next_kill) - time.time()))
        run_end = time.time()
        window = (
            datetime.fromtimestamp(int(run_start) + 3, UTC),
            datetime.fromtimestamp(int(run_end) - 2, UTC),
        )
        # the nodes keep running until they decided every slot of the window (or give up)
        drain_deadline = time.time() + DRAIN_SECONDS
        while True:
            core.projections.catch_up()
            open_slots = _open_slots(core, jobs, window)
            if not open_slots or time.time() > drain_deadline:
                break
            for node in nodes:
                node.sample()
            time.sleep(SAMPLE_SECONDS)
        drained = time.time()
        for node in nodes:
            node.stop()
        core.projections.catch_up()
        summary = _account(core, jobs, window, _calls(port))
        verify = subprocess.run(
            [sys.executable, "-m", "interfaces.cli", "replay", "--verify"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        growths = {
            node.name: [g for life in node.lives if (g := _growth(life)) is not None]
            for node in nodes
        }
        summary.update(
            store=store, nodes=nodes_count, jobs=JOBS, seconds=SECONDS, kills=kills,
            kill_every_s=KILL_EVERY, drain_s=round(drained - run_end, 1),
            slots_open_after_drain=open_slots, replay_verify_exit=verify.returncode,
            replay_verify_tail=verify.stdout.strip().splitlines()[-6:],
            rss_growth_last_half=growths,
            rss_mb={n.name: [[round(mb) for _, mb in life] for life in n.lives] for n in nodes},
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        )  # fmt: skip
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"soak-{store}-{int(time.time())}.json"
        out.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        print(
            f"\nsoak summary ({out}):\n"
            + orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
        )

        assert summary["unaccounted"] == 0, summary["unaccounted_examples"]
        assert summary["called_twice"] == 0, summary["called_twice_examples"]
        assert summary["unexpected_failures"] == 0, summary["unexpected_failure_examples"]
        assert verify.returncode == 0, verify.stdout[-2000:]
        assert all(g < 0.10 for gs in growths.values() for g in gs), growths
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait()
        if target.stdin is not None:
            target.stdin.close()
        target.wait(timeout=30)
        core.close()


def _calls(port: int) -> Counter[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_counts", timeout=60) as response:
        return Counter(orjson.loads(response.read()))


def _ledger(core: Core, job_id: Any, window: tuple[datetime, datetime]) -> list[dict[str, Any]]:
    return slot_ledger(
        core.jobs, core.executions_view, core.skips_view, "soak", job_id, *window,
        datetime.now(UTC),
    )  # fmt: skip


def _open_slots(core: Core, jobs: list[tuple[Any, bool]], window: Any) -> int:
    """Slots of the window not yet ended: undecided, pending or running."""
    return sum(
        1
        for job_id, _ in jobs
        for entry in _ledger(core, job_id, window)
        if entry["outcome"] not in ("succeeded", "failed", "skipped")
    )


def _account(
    core: Core, jobs: list[tuple[Any, bool]], window: Any, calls: Counter[str]
) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    unaccounted, unexpected, twice, lateness = [], [], [], []
    per_minute: dict[int, list[float]] = {}
    for i, (job_id, failing) in enumerate(jobs):
        found, _ = core.executions_view.list_executions(
            "soak", job_id=str(job_id), since=iso_ms(window[0]), until=iso_ms(window[1]),
            limit=100_000,
        )  # fmt: skip
        rows = {r["scheduledFor"]: r for r in found}
        for entry in _ledger(core, job_id, window):
            outcome = entry["outcome"]
            code = (entry.get("error") or {}).get("code")
            outcomes[f"{outcome}:{code or entry.get('reason') or entry.get('trigger')}"] += 1
            if outcome not in ("succeeded", "failed", "skipped"):
                unaccounted.append((i, entry["slot"], outcome))
                continue
            if outcome == "skipped" and entry["reason"] != "OUTSIDE_CATCH_UP_WINDOW":
                unaccounted.append((i, entry["slot"], entry["reason"]))  # runAll skips no other
            if outcome == "failed" and code not in (
                "INTERRUPTED",
                *(("HTTP_STATUS",) if failing else ()),
            ):
                unexpected.append((i, entry["slot"], code))
            slot_text = entry["slot"][:19]
            n = calls.get(f"{i} {slot_text}", 0)
            if n > 1 or (outcome == "succeeded" and n != 1):
                twice.append((i, entry["slot"], n))
            row = rows.get(entry["slot"])
            if row is not None and row.get("startedAt") and row["trigger"] == "cron":
                late = (
                    parse_instant(row["startedAt"], "s") - parse_instant(row["scheduledFor"], "s")
                ).total_seconds()
                lateness.append(late)
                minute = int(
                    (parse_instant(row["scheduledFor"], "s") - window[0]).total_seconds() // 60
                )
                per_minute.setdefault(minute, []).append(late)
    return {
        "window": [w.isoformat() for w in window],
        "slots": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "unaccounted": len(unaccounted),
        "unaccounted_examples": unaccounted[:10],
        "unexpected_failures": len(unexpected),
        "unexpected_failure_examples": unexpected[:10],
        "called_twice": len(twice),
        "called_twice_examples": twice[:10],
        "lateness_ms": {
            "p50": _ms(_pct(lateness, 50)),
            "p99": _ms(_pct(lateness, 99)),
            "max": _ms(max(lateness, default=None)),
            "mean": _ms(statistics.fmean(lateness) if lateness else None),
        },
        "lateness_ms_per_minute": {
            str(m): {"p50": _ms(_pct(v, 50)), "p99": _ms(_pct(v, 99))}
            for m, v in sorted(per_minute.items())
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
