"""A soak's books: every (job, slot) once, no event lost, memory flat, lateness per minute.

`account` reads what the run left (the read models, the log, the targets' notes, the RSS
samples) and returns the summary, with a `problems` list that must be empty; `write_summary`
keeps it as JSON and text under a git-ignored folder and prints the text.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from application.slot_ledger import slot_ledger
from domain.instants import iso_ms
from tests.soak.harness import (
    ROOT,
    TENANT,
    Incarnation,
    Run,
    harness_core,
    node_env,
    seconds_of,
    window_instants,
)


@dataclass(slots=True)
class Noted:
    """The calls a target got for one (job, slot): a full soak has over a million."""

    count: int
    first: float  # received, epoch seconds
    ok: bool  # one was answered 200


Calls = dict[tuple[str, str], Noted]  # (job number, slot) -> its calls
FINAL = ("succeeded", "failed", "skipped")
EXAMPLES = 5  # problems of one kind listed at most


def read_calls(files: list[Path]) -> Calls:
    """What the targets noted: `<job> <slot> <received> <status>` per line."""
    calls: Calls = {}
    for path in files:
        with path.open() as f:
            for line in f:
                job, slot, received, status = line.split()
                noted = calls.get((job, slot))
                if noted is None:
                    calls[(job, slot)] = Noted(1, float(received), status == "200")
                else:
                    noted.count += 1
                    noted.first = min(noted.first, float(received))
                    noted.ok = noted.ok or status == "200"
    return calls


class Books:
    """Counts, and problems with a few examples of each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.problems: dict[str, list[str]] = {}

    def problem(self, kind: str, example: str) -> None:
        self.counts[f"problem: {kind}"] += 1
        examples = self.problems.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(example)

    def listed(self) -> list[str]:
        return [
            f"{kind} ({self.counts[f'problem: {kind}']}x), e.g. {'; '.join(examples)}"
            for kind, examples in self.problems.items()
        ]


def account(run: Run) -> dict[str, Any]:
    """Check the run; the summary, its `problems` empty when every check passed."""
    books = Books()
    calls = read_calls(run.calls_files)
    core = harness_core(run.database_url, run.workdir)
    try:
        core.projections.catch_up()
        lateness, skipped = _ledgers(run, core, calls, books)
    finally:
        core.close()
    _unrecorded_calls(run, calls, books)
    late = sorted(late for _, late in lateness)
    worst = late[-1] if late else 0.0
    _skips_only_after_kills(run, skipped, worst, books, _deferrals(run))
    memory = [_memory(run, i, books) for i in run.incarnations]
    verify = replay_verify(run)
    if not verify["ok"]:
        books.problem("replay --verify failed", verify["output"][-500:])
    errors = _node_log_errors(run)
    for line in errors["tracebacks"]:
        books.problem("a node logged a traceback", line)
    if not run.drained:
        books.problem(
            "not every slot was decided and finished", f"after {run.drain_seconds:.0f} s"
        )
    return _summary(run, books, lateness, memory, verify, errors)


def _ledgers(
    run: Run, core: Any, calls: Calls, books: Books
) -> tuple[list[tuple[float, float]], list[float]]:
    """Each job's slots in the window, from the slot ledger, against its executions, its skip
    records and the targets' notes; (slot, lateness) of each call, and the skipped slots."""
    start, end = window_instants(run)
    since, until = iso_ms(start) or "", iso_ms(end) or ""
    now = datetime.now(UTC)
    killed = run.killed_nodes
    lateness: list[tuple[float, float]] = []
    skipped: list[float] = []
    for number, job_id in enumerate(run.job_ids):
        failing = run.config.failing(number)
        ledger = slot_ledger(
            core.jobs, core.executions_view, core.skips_view, TENANT, job_id, start, end, now
        )
        rows, _ = core.executions_view.list_executions(
            TENANT, job_id=job_id, since=since, until=until, limit=10 * run.config.seconds + 100
        )
        rows = [r for r in rows if r["trigger"] != "manual"]
        by_slot = {r["scheduledFor"]: r for r in rows}
        for slot, count in Counter(r["scheduledFor"] for r in rows).items():
            if count > 1:
                books.problem("a slot recorded twice", f"job {number} {slot}")
        runs = core.skips_view.skips_between(TENANT, job_id, since, until)
        for slot in by_slot:
            if any(r["from"] <= slot <= r["to"] for r in runs):
                books.problem("a slot both run and skipped", f"job {number} {slot}")
        if len(ledger) != run.config.seconds:
            books.problem(
                "a job owed another number of slots",
                f"job {number}: {len(ledger)}, not {run.config.seconds}",
            )
        for entry in ledger:
            outcome, slot = entry["outcome"], entry["slot"]
            books.counts[f"slots {outcome}"] += 1
            noted = calls.pop((str(number), slot[:19]), None)
            if outcome not in FINAL:
                books.problem("a slot not accounted for", f"job {number} {slot}: {outcome}")
                continue
            if outcome == "skipped":
                books.counts[f"skipped {entry['reason']}"] += 1
                skipped.append(seconds_of(slot))
                if entry["reason"] != "MISSED":
                    books.problem(
                        "a skip the misfire policy does not make",
                        f"job {number} {slot}: {entry['reason']}",
                    )
                if noted is not None:
                    books.problem("a skipped slot was called", f"job {number} {slot}")
                continue
            code = (entry.get("error") or {}).get("code")
            if outcome == "failed":
                books.counts[f"failed {code}"] += 1
            _check_outcome(books, number, slot, outcome, code, failing, noted)
            row = by_slot.get(slot, {})
            if code == "INTERRUPTED" and row.get("node") not in killed:
                books.problem("interrupted on a node nobody killed", f"job {number} {slot}")
            if noted is not None and noted.count > 1:
                books.counts["target calls repeated"] += 1
                if row.get("node") not in killed:
                    books.problem(
                        "a slot called twice on a node nobody killed",
                        f"job {number} {slot} ({row.get('node')})",
                    )
            if noted is not None:
                lateness.append((seconds_of(slot), noted.first - seconds_of(slot)))
    return lateness, skipped


def _check_outcome(
    books: Books,
    number: int,
    slot: str,
    outcome: str,
    code: str | None,
    failing: bool,
    noted: Noted | None,
) -> None:
    """The outcome agrees with the target: what answers 500 never succeeds, what answers 200
    never fails on its status, and a success was received."""
    if outcome == "succeeded" and failing:
        books.problem("a failing target's job succeeded", f"job {number} {slot}")
    if outcome == "failed" and code == "HTTP_STATUS" and not failing:
        books.problem("a healthy target's job failed on its status", f"job {number} {slot}")
    if outcome == "succeeded" and (noted is None or not noted.ok):
        books.problem("succeeded, but the target has no such call", f"job {number} {slot}")


def _unrecorded_calls(run: Run, calls: Calls, books: Books) -> None:
    """What is left of the targets' notes in the window was called without a record."""
    t0, t1 = run.window
    for (job, slot), noted in calls.items():
        at = seconds_of(slot + "Z") if slot != "-" else 0
        if t0 <= at < t1:
            books.problem(
                "called, but no execution records it", f"job {job} {slot} x{noted.count}"
            )


def _skips_only_after_kills(
    run: Run,
    skipped: list[float],
    worst: float,
    books: Books,
    deferrals: list[tuple[float, float]],
) -> None:
    """A slot is skipped as MISSED only while no engine could run it: from a kill (less the
    lateness the engine had then, at most the worst seen) until the restarted node runs; or
    while an overloaded node decided no slots (the pair of warnings it logs brackets that),
    which its misfire policy then decides."""
    slack = worst + run.config.misfire_grace_seconds + 2
    for slot in skipped:
        if any(k["at"] - slack <= slot <= k["ready_at"] for k in run.kills):
            continue
        if any(began - slack <= slot <= ended for began, ended in deferrals):
            books.counts["skipped MISSED while a node was overloaded"] += 1
            continue
        when = datetime.fromtimestamp(slot, UTC).isoformat()
        books.problem("a slot missed while an engine ran", when)


def _log_records(incarnation: Incarnation) -> list[dict[str, Any]]:
    """A node's log lines as records (`level`, `message`, `time`, `exception`): JSON lines as
    the engine writes them, or text lines."""
    records: list[dict[str, Any]] = []
    for line in incarnation.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(orjson.loads(line))
                continue
            except orjson.JSONDecodeError:
                pass
        level = next((lv for lv in ("CRITICAL", "ERROR", "WARNING") if f" {lv} " in line), "")
        records.append({"level": level, "message": line, "text": True})
    return records


def _deferrals(run: Run) -> list[tuple[float, float]]:
    """When each node decided no slots, overloaded: from "deciding slots later" to "deciding
    slots again" (or the node's end)."""
    windows: list[tuple[float, float]] = []
    for incarnation in run.incarnations:
        began: float | None = None
        for record in _log_records(incarnation):
            message, at = record.get("message", ""), record.get("time")
            if at is None:
                continue
            t = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            if "deciding slots later" in message and began is None:
                began = t
            elif "deciding slots again" in message and began is not None:
                windows.append((began, t))
                began = None
        if began is not None:
            windows.append((began, incarnation.ended_at or time.time()))
    return windows


def _memory(run: Run, incarnation: Incarnation, books: Books) -> dict[str, Any]:
    """RSS at half its life and at its end (medians of the samples there), for a node that
    lived to the end; growth over the last half judged once it lived `min_life_seconds`."""
    samples = incarnation.rss_mb
    life = (incarnation.ended_at or time.time()) - incarnation.ready_at
    report: dict[str, Any] = {
        "node": incarnation.name,
        "killed": incarnation.killed,
        "life_s": round(life, 1),
        "samples": len(samples),
        "rss_max_mb": round(max((m for _, m in samples), default=0), 1),
        "rss_first_mb": round(samples[0][1], 1) if samples else None,
    }

    def around(lo: float, hi: float) -> float | None:
        inside = [
            m
            for t, m in samples
            if incarnation.ready_at + lo * life <= t <= incarnation.ready_at + hi * life
        ]
        return statistics.median(inside) if inside else None

    half, end = around(0.5, 0.6), around(0.9, 1.0)
    report["rss_half_mb"] = round(half, 1) if half else None
    report["rss_end_mb"] = round(end, 1) if end else None
    if half and end:
        report["growth_pct"] = round(100 * (end / half - 1), 1)
    judged = not incarnation.killed and life >= run.config.min_life_seconds and half and end
    report["judged"] = bool(judged)
    if judged and report["growth_pct"] >= 10:
        books.problem(
            "memory grew over a node's last half of life",
            f"{incarnation.name}: {half:.0f} -> {end:.0f} MB",
        )
    return report


def replay_verify(run: Run) -> dict[str, Any]:
    """`cronsource replay --verify` on the store: rebuilds every read model from the log in
    a scratch store and compares it with the live one (an event lost shows as a difference)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "interfaces.cli", "replay", "--verify"],
        env=node_env(run, "soak-verify"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return {
        "ok": done.returncode == 0,
        "seconds": round(time.monotonic() - started, 1),
        "output": (done.stdout + done.stderr).strip(),
    }


def _node_log_errors(run: Run) -> dict[str, Any]:
    errors, tracebacks, warnings = [], [], 0
    for incarnation in run.incarnations:
        for record in _log_records(incarnation):
            level, message = record.get("level"), str(record.get("message", ""))
            if level in ("ERROR", "CRITICAL"):
                errors.append(f"{incarnation.name}: {message[:300]}")
            warnings += level == "WARNING"
            if record.get("exception") or (record.get("text") and message.startswith("Traceback")):
                tracebacks.append(f"{incarnation.name}: see {incarnation.log}")
    return {
        "errors": len(errors),
        "first_errors": errors[:EXAMPLES],
        "warnings": warnings,
        "tracebacks": tracebacks,
    }


def _percentile(values: list[float], p: float) -> float:
    """Nearest rank, as bench/ computes it."""
    return values[max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))]


def _lateness(run: Run, lateness: list[tuple[float, float]]) -> dict[str, Any]:
    """Target receive time - slot, in ms: over the window and per minute of it."""

    def stats(values: list[float]) -> dict[str, Any]:
        v = sorted(values)
        if not v:
            return {"calls": 0}
        return {
            "calls": len(v),
            "p50_ms": round(_percentile(v, 50) * 1000, 1),
            "p99_ms": round(_percentile(v, 99) * 1000, 1),
            "max_ms": round(v[-1] * 1000, 1),
        }

    t0 = run.window[0]
    minutes: dict[int, list[float]] = {}
    for slot, late in lateness:
        minutes.setdefault(int((slot - t0) // 60), []).append(late)
    return {
        "overall": stats([late for _, late in lateness]),
        "by_minute": [{"minute": m, **stats(v)} for m, v in sorted(minutes.items())],
    }


def _commit() -> str | None:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or None


def _summary(
    run: Run,
    books: Books,
    lateness: list[tuple[float, float]],
    memory: list[dict[str, Any]],
    verify: dict[str, Any],
    errors: dict[str, Any],
) -> dict[str, Any]:
    config, t0 = run.config, run.window[0]
    problems = books.listed()
    return {
        "scenario": run.scenario.name,
        "store": run.scenario.store,
        "nodes": list(run.scenario.nodes),
        "smoke": config.smoke,
        "commit": _commit(),
        "started": run.started,
        "host_cpus": os.cpu_count(),
        "load_1m_at_end": round(os.getloadavg()[0], 2),
        "jobs": config.jobs,
        "seconds": config.seconds,
        "kill_every_s": config.kill_every,
        "failing_jobs": sum(config.failing(n) for n in range(config.jobs)),
        "max_concurrency": config.max_concurrency,
        "slots_owed": config.jobs * config.seconds,
        "counts": dict(sorted(books.counts.items())),
        "kills": [
            {
                "node": k["node"],
                "at_s": round(k["at"] - t0, 1),
                "down_s": round(k["ready_at"] - k["at"], 1),
            }
            for k in run.kills
        ],
        "drain_s": round(run.drain_seconds, 1),
        "drained": run.drained,
        "lateness": _lateness(run, lateness),
        "memory": memory,
        "replay_verify": {**verify, "output": verify["output"][-2000:]},
        "node_logs": errors,
        "problems": problems,
        "passed": not problems,
    }


def human(summary: dict[str, Any]) -> str:
    """The summary as text, for a terminal and for bench/README.md."""
    s, late = summary, summary["lateness"]["overall"]
    counts = s["counts"]
    lines = [
        f"soak {s['scenario']} ({'smoke' if s['smoke'] else 'full'}), commit {s['commit']}, "
        f"started {s['started']}, {s['host_cpus']} CPUs, load {s['load_1m_at_end']} at the end",
        f"  {s['jobs']} jobs every second for {s['seconds']} s on {s['store']} "
        f"({len(s['nodes'])} node(s)), {s['failing_jobs']} calling a failing target, "
        f"a node SIGKILLed every {s['kill_every_s']:g} s",
        f"  slots owed {s['slots_owed']}: "
        + ", ".join(
            f"{k.removeprefix('slots ')} {v}" for k, v in counts.items() if k.startswith("slots ")
        ),
        "  failed by code: "
        + (
            ", ".join(
                f"{k.removeprefix('failed ')} {v}"
                for k, v in counts.items()
                if k.startswith("failed ")
            )
            or "none"
        ),
        "  skipped by reason: "
        + (
            ", ".join(
                f"{k.removeprefix('skipped ')} {v}"
                for k, v in counts.items()
                if k.startswith("skipped ")
            )
            or "none"
        ),
        f"  target calls repeated (a killed node's): {counts.get('target calls repeated', 0)}",
        "  kills: "
        + (
            ", ".join(
                f"{k['node']} at {k['at_s']} s (back after {k['down_s']} s)" for k in s["kills"]
            )
            or "none"
        ),
        f"  drained in {s['drain_s']} s: {s['drained']}",
        f"  lateness (target receive - slot): p50 {late.get('p50_ms')} ms, "
        f"p99 {late.get('p99_ms')} ms, max {late.get('max_ms')} ms over {late['calls']} calls",
        "  per minute (p50 / p99 / max ms): "
        + "; ".join(
            f"{m['minute']}: {m.get('p50_ms')} / {m.get('p99_ms')} / {m.get('max_ms')}"
            for m in s["lateness"]["by_minute"]
        ),
        "  memory: "
        + "; ".join(
            f"{m['node']}{' (killed)' if m['killed'] else ''} {m['life_s']:.0f} s, "
            f"{m['rss_first_mb']} -> {m['rss_half_mb']} -> {m['rss_end_mb']} MB"
            f" ({m.get('growth_pct', '?')} % over its last half{'' if m['judged'] else ', not judged'})"
            for m in s["memory"]
        ),
        f"  replay --verify: {'passed' if s['replay_verify']['ok'] else 'FAILED'} "
        f"in {s['replay_verify']['seconds']} s",
        f"  node logs: {s['node_logs']['errors']} ERROR line(s), "
        f"{s['node_logs']['warnings']} WARNING line(s)",
        "  result: " + ("passed" if s["passed"] else "FAILED: " + " | ".join(s["problems"])),
    ]
    return "\n".join(lines)


def write_summary(summary: dict[str, Any], out_dir: Path) -> Path:
    """`soak-<scenario>[-smoke].json` and `.txt` under `out_dir` (git-ignored); prints the text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"soak-{summary['scenario']}{'-smoke' if summary['smoke'] else ''}"
    (out_dir / f"{stem}.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    text = human(summary)
    (out_dir / f"{stem}.txt").write_text(text + "\n")
    print(text)
    return out_dir / f"{stem}.json"
