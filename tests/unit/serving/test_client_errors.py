"""The health app answers client errors per route, with no middleware: the same answers as the middleware."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sidecar.config import load_settings
from sidecar.core.bodies import BodyError
from sidecar.server import create_app
from sidecar.serving.errors import answering_client_errors, client_errors

pytestmark = pytest.mark.timeout(60)
AiohttpClient = Callable[[web.Application], Any]


async def refused_body(_request: web.Request) -> web.Response:
    raise BodyError(413, "too large", limit=10)


async def client_gone(_request: web.Request) -> web.Response:
    raise ConnectionResetError("peer reset")


async def bug(_request: web.Request) -> web.Response:
    raise RuntimeError("a bug in the sidecar")


async def not_found(_request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="no such thing")


HANDLERS = {"/refused": refused_body, "/gone": client_gone, "/bug": bug, "/missing": not_found}


def middleware_app() -> web.Application:
    app = web.Application(middlewares=[client_errors])
    for path, handler in HANDLERS.items():
        app.router.add_get(path, handler)
    return app


def wrapped_app() -> web.Application:
    app = web.Application()
    for path, handler in HANDLERS.items():
        app.router.add_get(path, answering_client_errors(handler))
    return app


async def answers(client: TestClient[Any, Any]) -> dict[str, tuple[int, bytes]]:
    got = {}
    for path in [*HANDLERS, "/no-route"]:
        response = await client.get(path)
        got[path] = (response.status, await response.read())
    return got


async def test_wrapped_routes_answer_as_the_middleware_does(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sidecar.serving.errors")
    by_middleware = await answers(await aiohttp_client(middleware_app()))
    logged_by_middleware = [r for r in caplog.records if r.name == "sidecar.serving.errors"]
    caplog.clear()
    by_wrapper = await answers(await aiohttp_client(wrapped_app()))
    logged_by_wrapper = [r for r in caplog.records if r.name == "sidecar.serving.errors"]
    assert by_wrapper == by_middleware
    assert by_wrapper["/refused"] == (413, orjson.dumps({"error": "too large"}))
    assert by_wrapper["/gone"][0] == 400
    assert by_wrapper["/bug"] == (
        500,
        orjson.dumps({"error": "internal error in the sidecar; it has been logged"}),
    )
    assert by_wrapper["/missing"] == (404, b"no such thing")
    assert by_wrapper["/no-route"][0] == 404
    # only the bug is logged, once, with its traceback and route
    for logged in (logged_by_middleware, logged_by_wrapper):
        assert len(logged) == 1
        assert logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], RuntimeError)
        assert logged[0].__dict__["route"] == "/bug"


def test_health_app_runs_no_middleware_without_metrics_auth(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n")
    assert list(create_app(load_settings(path, environ={})).middlewares) == []
    path.write_text("default_checks: false\nmetrics_auth: {bearer_token: scrape-token-123}\n")
    chain = list(create_app(load_settings(path, environ={})).middlewares)
    assert chain[0] is client_errors and len(chain) == 2  # credentials checked inside the error mapping
