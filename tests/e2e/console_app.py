"""The small app the console's browser test proxies to: fast, slow and failing routes (aiohttp).

Run as ``python tests/e2e/console_app.py PORT``; answers ``GET /``, ``/orders/{id}`` (a few ms),
``/slow`` (120 ms) and ``/boom`` (500).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def index(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def order(request: web.Request) -> web.Response:
    await asyncio.sleep(0.003)
    return web.json_response({"order": request.match_info["order_id"]})


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.12)
    return web.Response(text="slow\n")


async def boom(request: web.Request) -> web.Response:
    return web.Response(status=500, text="internal error\n")


def main() -> None:
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/orders/{order_id}", order)
    app.router.add_get("/slow", slow)
    app.router.add_get("/boom", boom)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
