"""The soak test's HTTP target, a process of its own: `/ok/<job>` answers 200, `/fail/<job>`
500; each call is counted by (job, slot) so the test can tell a slot called twice."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from aiohttp import web


def main() -> None:
    calls: Counter[str] = Counter()

    async def ok(request: web.Request) -> web.Response:
        calls[f"{request.match_info['job']} {request.query.get('slot', '')}"] += 1
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        calls[f"{request.match_info['job']} {request.query.get('slot', '')}"] += 1
        return web.Response(status=500, text="failing on purpose")

    async def counts(_request: web.Request) -> web.Response:
        return web.json_response(dict(calls))

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/ok/{job}", ok)
        app.router.add_get("/fail/{job}", fail)
        app.router.add_get("/_counts", counts)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF

    asyncio.run(serve())


if __name__ == "__main__":
    main()
