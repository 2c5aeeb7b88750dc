"""/readyz serves the answer encoded at the last readiness change, with the headers ``text=`` gave it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sidecar.app_keys import HEALTH
from sidecar.config import load_settings
from sidecar.server import create_app

pytestmark = pytest.mark.timeout(60)
AiohttpClient = Callable[[web.Application], Any]


async def test_readyz_follows_readiness_with_the_same_head(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n")
    app = create_app(load_settings(path, environ={}))
    client = await aiohttp_client(app)
    response = await client.get("/readyz")
    assert (response.status, await response.text()) == (200, "ok")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == "2"
    app[HEALTH].drain()
    response = await client.get("/readyz")
    assert (response.status, await response.text()) == (503, "draining")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    verbose = await client.get("/readyz?verbose")
    assert verbose.status == 503
    assert (await verbose.text()).splitlines()[-2:] == ["[-]draining", "readyz check failed"]
    app[HEALTH].undrain()
    assert (await (await client.get("/readyz")).text()) == "ok"
