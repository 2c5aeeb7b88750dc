"""The ceiling: the smallest aiohttp app answering 200 "ok", on uvloop, run like the sidecar runs."""

import asyncio
import sys

import uvloop
from aiohttp import web


async def ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok", content_type="text/plain")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/readyz", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
