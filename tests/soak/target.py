"""A soak test's HTTP target, in a process of its own: answers and notes every call.

    python -m tests.soak.target --port 0 --calls calls.txt

`GET /ok/<job>?s=<slot>` answers 200, `GET /fail/<job>?s=<slot>` answers 500. Each call is
one line of `calls.txt`: `<job> <slot> <received, epoch seconds> <status>`, written before
the answer goes out, flushed every second and at SIGTERM. The port it listens on is the
first line it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import TextIO

from aiohttp import web


def application(calls: TextIO) -> web.Application:
    """Answers by path, noting each call."""

    async def answer(request: web.Request) -> web.Response:
        received = time.time()
        status = 200 if request.match_info["outcome"] == "ok" else 500
        slot = request.query.get("s", "-")
        calls.write(f"{request.match_info['job']} {slot} {received:.6f} {status}\n")
        body = b'{"ok": true}' if status == 200 else b'{"ok": false}'
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{outcome:ok|fail}/{job}", answer)
    return app


async def serve(port: int, path: str) -> None:
    with open(path, "a", buffering=1 << 20) as calls:
        runner = web.AppRunner(application(calls), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        sockets = site._server.sockets if site._server else []  # the bound port
        sys.stdout.write(f"{sockets[0].getsockname()[1]}\n")
        sys.stdout.flush()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), 1.0)
            except TimeoutError:
                calls.flush()
        await runner.cleanup()
        calls.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--calls", required=True, help="the file each call is noted in")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.calls))


if __name__ == "__main__":
    main()
