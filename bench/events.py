"""Event subscribers end to end, against a real `cronsource serve`, from a second process.

    python -m bench.events --store sqlite                       # latency, then fan-out
    python -m bench.events --store postgres                     # CRONSOURCE_BENCH_POSTGRES_URL

`latency`: job changes through the API at a steady rate; from each event's commit (its
`time`) to its arrival at a webhook receiver and at an SSE client, both in this process.
`fan-out`: N subscriptions (one receiver path each) while job changes arrive at R events/s;
each second, how many deliveries are owed but not yet received (the lag) and the slowest
arrival. `--match job` gives each subscription one job's events (R deliveries/s in all),
`--match all` gives every subscription every event (N × R deliveries/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench.api import SECRET, serve
from bench.core import emit, store
from infrastructure.auth import AuthSettings, mint_token
from tests.e2e.conftest import free_port


def _event_time(envelope: dict[str, Any]) -> float:
    return datetime.fromisoformat(envelope["time"].replace("Z", "+00:00")).timestamp()


def _percentiles(samples: list[float]) -> dict[str, float | int]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    pick = lambda p: ordered[min(len(ordered) - 1, int(p * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": round(pick(0.50) * 1000, 1),
            "p99_ms": round(pick(0.99) * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}  # fmt: skip


class Receivers:
    """An aiohttp server: each path's arrivals (position, latency from the event's commit)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[tuple[int, float]]] = {}
        self.port = free_port()

    async def start(self) -> web.AppRunner:
        async def handle(request: web.Request) -> web.Response:
            now = time.time()
            envelope = orjson.loads(await request.read())
            self.arrivals.setdefault(request.path, []).append(
                (envelope["position"], now - _event_time(envelope))
            )
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


async def sse_client(session: aiohttp.ClientSession, api: str, out: list[float],
                     ready: asyncio.Event) -> None:  # fmt: skip
    """Follow the stream; each event's latency from its commit."""
    async with session.get(f"{api}/events/stream", headers={"Accept": "text/event-stream"}) as r:
        ready.set()
        async for line in r.content:
            if line.startswith(b"data: "):
                out.append(time.time() - _event_time(orjson.loads(line[6:])))


async def create_jobs(session: aiohttp.ClientSession, api: str, count: int) -> list[str]:
    ids, prefix = [], os.urandom(3).hex()
    for i in range(count):
        body = {"name": f"b-{prefix}-{i}", "pattern": "0 2 * * *", "taskType": "FunctionTask",
                "taskConfig": {"function": "noop"}}  # fmt: skip
        async with session.post(f"{api}/jobs", json=body) as r:
            ids.append((await r.json())["id"])
    return ids


async def write_at_rate(session: aiohttp.ClientSession, api: str, job_ids: list[str],
                        rate: float, seconds: float, written: list[int]) -> None:  # fmt: skip
    """Job changes at a fixed rate (open loop), round-robin over the jobs."""
    errors = 0

    async def change(i: int) -> None:
        nonlocal errors
        job_id = job_ids[i % len(job_ids)]
        async with session.put(f"{api}/jobs/{job_id}", json={"description": f"v{i}"}) as r:
            if r.status == 200:
                written.append(i)
            else:  # two changes of one job at once: one answers 409 and records nothing
                errors += 1

    tasks, start, i = [], time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        while i < due:
            tasks.append(asyncio.create_task(change(i)))
            i += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    if errors:
        emit(**{"conflicts": errors, "written": len(written)})


async def subscribe(session: aiohttp.ClientSession, api: str, url: str, **fields: Any) -> None:
    body = {"url": url, "eventTypes": ["scheduler.job.updated"], **fields}
    async with session.post(f"{api}/webhooks", json=body) as r:
        assert r.status == 201, await r.text()


async def latency(api: str, headers: dict[str, str], rate: float, seconds: float) -> None:
    receivers = Receivers()
    runner = await receivers.start()
    async with aiohttp.ClientSession(headers=headers) as session:
        (job_id,) = await create_jobs(session, api, 1)
        await subscribe(session, api, receivers.url("latency"))
        streamed: list[float] = []
        ready = asyncio.Event()
        follower = asyncio.create_task(sse_client(session, api, streamed, ready))
        await ready.wait()
        written: list[int] = []
        await write_at_rate(session, api, [job_id], rate, seconds, written)
        deadline = time.monotonic() + 30
        while (
            len(receivers.arrivals.get("/latency", [])) < len(written)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)
        follower.cancel()
    await runner.cleanup()
    hooks = [lat for _, lat in receivers.arrivals.get("/latency", [])]
    emit(**{"bench": "latency", "rate": rate, "seconds": seconds, "written": len(written),
          "webhook": _percentiles(hooks), "sse": _percentiles([s for s in streamed if s >= 0])})  # fmt: skip


async def fan_out(api: str, headers: dict[str, str], subscriptions: int, rate: float,
                  seconds: float, match: str) -> None:  # fmt: skip
    receivers = Receivers()
    runner = await receivers.start()
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=64)
    ) as session:
        job_ids = await create_jobs(session, api, subscriptions if match == "job" else 1)
        for n in range(subscriptions):
            only = {"jobId": job_ids[n]} if match == "job" else {}
            await subscribe(session, api, receivers.url(f"s{n}"), **only)
        written: list[int] = []
        writer = asyncio.create_task(write_at_rate(session, api, job_ids, rate, seconds, written))
        started = time.monotonic()
        timeline = []
        per_event = 1 if match == "job" else subscriptions
        while not writer.done() or _received(receivers) < len(written) * per_event:
            await asyncio.sleep(1.0)
            received = _received(receivers)
            lag = len(written) * per_event - received
            timeline.append(lag)
            emit(**{"bench": "fan-out", "t": round(time.monotonic() - started), "written": len(written),
                  "delivered": received, "lag": lag})  # fmt: skip
            if time.monotonic() - started > seconds + 15:
                break
    await runner.cleanup()
    lat = [x for arrivals in receivers.arrivals.values() for _, x in arrivals]
    emit(**{"bench": "fan-out-summary", "subscriptions": subscriptions, "rate": rate, "match": match,
          "seconds": seconds, "deliveries_per_s_owed": rate * per_event,
          "lag_first_half_max": max(timeline[: len(timeline) // 2] or [0]),
          "lag_second_half_max": max(timeline[len(timeline) // 2 :] or [0]),
          "drain_seconds_after_writes": round(time.monotonic() - started - seconds, 1),
          "latency": _percentiles(lat)})  # fmt: skip


def _received(receivers: Receivers) -> int:
    return sum(len(a) for a in receivers.arrivals.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--latency-rate", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--match", default="job", choices=["job", "all"])
    parser.add_argument("--skip", default="", help="comma-separated: latency, fan-out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as scratch, store(args.store) as url:
        data_dir = Path(scratch)
        os.environ["CRONSOURCE_ALLOW_TARGETS"] = "127.0.0.0/8"
        port = free_port()
        proc = serve(url, data_dir, port)
        try:
            api = f"http://127.0.0.1:{port}/_/scheduler"
            token = mint_token(
                AuthSettings(secret=SECRET), SECRET, subject="bench", tenant="bench"
            )
            headers = {"Authorization": f"Bearer {token}"}
            emit(**{"load_1m": os.getloadavg()[0], "store": args.store})
            if "latency" not in args.skip:
                asyncio.run(latency(api, headers, args.latency_rate, args.latency_seconds))
            if "fan-out" not in args.skip:
                asyncio.run(fan_out(api, headers, args.subscriptions, args.rate, args.seconds, args.match))  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
