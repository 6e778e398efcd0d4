"""API latency and throughput against a real `cronsource serve`, from a second process.

    python -m bench.api --store sqlite --store postgres

GET /jobs (a page of 50 out of 10,000 jobs) and GET /jobs/{id} at a bounded rate (default
200 requests/s) for a window, and create-job throughput; prints JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench.core import emit, store
from infrastructure.auth import AuthSettings, mint_token
from interfaces.composition import Core, Settings

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-" + "z" * 40


def job(i: int) -> dict[str, Any]:
    return {"name": f"job-{i:05d}", "pattern": "0 2 * * *", "enabled": i % 3 != 0,
            "taskConfig": {"url": "https://93.184.215.14/hook", "method": "POST", "body": {"i": i}}}  # fmt: skip


def populate(url: str, data_dir: Path, count: int) -> list[str]:
    core = Core(Settings(data_dir=data_dir, database_url=url))
    ids = [str(core.jobs.create_job("bench", job(i), by="bench").id) for i in range(count)]
    core.projections.catch_up()
    core.close()
    return ids


def serve(url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CRONSOURCE_DATABASE_URL": url,
           "CRONSOURCE_DATA_DIR": str(data_dir), "CRONSOURCE_JWT_SECRET": SECRET,
           "CRONSOURCE_ENGINE": "off", "CRONSOURCE_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "interfaces.cli", "serve", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(600):
        try:
            if (
                httpx.get(f"http://127.0.0.1:{port}/_/scheduler/healthz", timeout=1).status_code
                == 200
            ):
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start")


async def timed_load(
    base: str, token: str, paths: list[str], rate: float, seconds: float
) -> list[float]:
    """Send GETs at a fixed rate (open loop: a slow answer does not slow the sending)."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    # aiohttp sets TCP_NODELAY; a client that writes headers and body apart can add tens of
    # milliseconds of delayed-ACK wait that belong to the client, not the server
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as client:

        async def one(path: str) -> None:
            nonlocal errors
            started = time.perf_counter()
            async with client.get(base + path) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

        tasks = []
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = start + n / rate
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            tasks.append(asyncio.create_task(one(random.choice(paths))))
            n += 1
        await asyncio.gather(*tasks)
    if errors:
        raise RuntimeError(f"{errors} request(s) failed")
    _ = elapsed
    return latencies


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return round(values[max(0, min(len(values) - 1, int(p * len(values) + 0.5) - 1))], 2)


async def creates(base: str, token: str, count: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    first = 100_000 * concurrency  # each run its own names
    queue = list(range(first, first + count))
    async with aiohttp.ClientSession(headers=headers) as client:

        async def worker() -> None:
            while queue:
                i = queue.pop()
                async with client.post(base + "/jobs", json=job(i)) as response:
                    body = await response.text()
                    if response.status != 201:
                        raise RuntimeError(body)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--creates", type=int, default=1000)
    args = parser.parse_args()
    emit(bench="host", cpus=os.cpu_count(), load_1m=round(os.getloadavg()[0], 2))
    for kind in args.store or ["sqlite", "postgres"]:
        with store(kind) as url, tempfile.TemporaryDirectory() as d:
            ids = populate(url, Path(d), args.jobs)
            port = random.randint(20000, 60000)
            proc = serve(url, Path(d), port)
            try:
                base = f"http://127.0.0.1:{port}/_/scheduler"
                token = mint_token(
                    AuthSettings(secret=SECRET), SECRET, subject="bench", tenant="bench"
                )
                for concurrency in (1, 8):
                    rate = asyncio.run(creates(base, token, args.creates, concurrency))
                    emit(bench="api-create", store=kind, concurrency=concurrency, creates=args.creates,
                         creates_per_s=round(rate))  # fmt: skip
                pages = [f"/jobs?page={p}&pageSize=50" for p in range(1, args.jobs // 50 + 1)]
                for name, paths in (
                    ("GET /jobs (page of 50)", pages),
                    ("GET /jobs/{id}", [f"/jobs/{i}" for i in ids]),
                ):
                    latencies = asyncio.run(
                        timed_load(base, token, paths, args.rate, args.seconds)
                    )
                    emit(bench="api-latency", store=kind, endpoint=name, jobs=args.jobs, rate=args.rate,
                         requests=len(latencies), p50_ms=pct(latencies, 0.5), p99_ms=pct(latencies, 0.99),
                         max_ms=round(max(latencies), 2), mean_ms=round(statistics.mean(latencies), 2))  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
