"""The console over HTTP, in process: login, cookies, CSRF, headers, every page, hostile input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from collectors.base import Status
from sidecar.config import Settings, load_settings
from sidecar.probing.results import CheckResult
from sidecar.server import Server

pytestmark = pytest.mark.timeout(60)
AiohttpClient = Callable[[web.Application], Any]
TOKEN = "console-token-0123456789abcdef"
PAGES = (
    "/console",
    "/console/traffic",
    "/console/queues",
    "/console/errors",
    "/console/request",
    "/console/logs",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "SIDECAR_LISTEN",
        "SIDECAR_ADMIN_LISTEN",
        "SIDECAR_ADMIN_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


def settings_from(tmp_path: Path, text: str = "") -> Settings:
    path = tmp_path / "sidecar.yaml"
    path.write_text("default_checks: false\n" + text)
    return load_settings(path, environ={})


async def console_client(
    aiohttp_client: AiohttpClient, settings: Settings
) -> tuple[TestClient[Any, Any], Server]:
    server = Server(settings)
    client: TestClient[Any, Any] = await aiohttp_client(server.admin_app)
    return client, server


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def login(client: TestClient[Any, Any]) -> None:
    page = await client.get("/console/login")
    token = csrf_of(await page.text())
    answer = await client.post("/console/login", data={"csrf": token, "token": TOKEN}, allow_redirects=False)
    assert answer.status == 303


async def test_pages_need_a_login_and_the_login_sets_a_strict_cookie(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client, _ = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    for path in PAGES:
        answer = await client.get(path, allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"].startswith("/console/login?next=")
    assert (await client.get("/console?part=live")).status == 401
    assert (await client.get("/console/api/logs")).status == 401
    page = await client.get("/console/login")
    token = csrf_of(await page.text())
    wrong = await client.post("/console/login", data={"csrf": token, "token": "nope"})
    assert wrong.status == 401 and TOKEN not in await wrong.text()
    right = await client.post("/console/login", data={"csrf": token, "token": TOKEN}, allow_redirects=False)
    assert right.status == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    for path in PAGES:
        answer = await client.get(path)
        assert answer.status == 200, path
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
        assert answer.headers["Cache-Control"] == "no-store"
        html = await answer.text()
        assert "<script>" not in html and " style=" not in html


async def test_the_bearer_token_opens_the_console_for_scripts(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client, _ = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/console?part=live", headers=headers)).status == 200
    assert (await client.get("/console/api/logs", headers=headers)).status == 200
    # the rest of the admin API is unchanged: bearer only
    assert (await client.get("/debug/checks")).status == 401
    assert (await client.get("/debug/checks", headers=headers)).status == 200


async def test_failed_logins_are_throttled(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    client, _ = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    token = csrf_of(await (await client.get("/console/login")).text())
    statuses = [
        (await client.post("/console/login", data={"csrf": token, "token": f"guess{i}"})).status
        for i in range(7)
    ]
    assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]
    # even the right token waits out the window
    assert (await client.post("/console/login", data={"csrf": token, "token": TOKEN})).status == 429


async def test_drain_needs_the_csrf_token_and_a_same_origin(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client, server = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    await login(client)
    page = await client.get("/console")
    token = csrf_of(await page.text())
    assert (await client.post("/console/drain", data={"csrf": "forged"})).status == 403
    assert (await client.post("/console/drain")).status == 403
    other = await client.post(
        "/console/drain", data={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert other.status == 403
    from sidecar.app_keys import HEALTH

    assert not server.app[HEALTH].draining
    done = await client.post("/console/drain", data={"csrf": token}, allow_redirects=False)
    assert done.status == 303 and server.app[HEALTH].draining
    back = await client.post("/console/undrain", headers={"X-CSRF-Token": token})
    assert back.status == 200 and await back.json() == {"draining": False}
    assert not server.app[HEALTH].draining


async def test_without_a_token_the_console_is_open_but_posts_still_need_csrf(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client, _ = await console_client(aiohttp_client, settings_from(tmp_path))
    assert (await client.get("/console")).status == 200
    assert (await client.get("/", allow_redirects=False)).headers["Location"] == "/console"
    assert (await client.post("/console/drain")).status == 403


async def test_hostile_requests_get_4xx_never_5xx(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    client, _ = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    await login(client)
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/console/static/../../config.py", {}),
        ("GET", "/console/static/.hidden.js", {}),
        ("GET", "/console/static/" + "a" * 5000 + ".js", {}),
        ("GET", "/console/request?q=" + "x" * 100_000, {}),
        ("GET", "/console/request?q=%00%ff%fe", {}),
        ("GET", "/console/request?q=" + "ab" * 16, {}),
        ("GET", "/console/traffic?window=abc", {}),
        ("GET", "/console/traffic?window=-5", {}),
        ("GET", "/console/api/logs?after=zzz&level=%00&source=" + "s" * 1000, {}),
        ("GET", "/console/queues/failed?check=nope&queue=x", {}),
        ("GET", "/console/queues/failed", {}),
        ("DELETE", "/console", {}),
        ("PUT", "/console/drain", {}),
        (
            "POST",
            "/console/drain",
            {"data": b"\xff\xfe" * 100, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        ),
        (
            "POST",
            "/console/login",
            {"data": b"csrf=%ZZ&token=%FF", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        ),
        ("POST", "/console/nothing", {"headers": {"X-CSRF-Token": "x"}}),
        ("GET", "/console/login?next=//evil.example/x", {}),
        ("GET", "/console/nothing/at/all", {}),
    ]
    for method, path, kwargs in cases:
        answer = await client.request(method, path, allow_redirects=False, **kwargs)
        assert answer.status < 500, (method, path[:80], answer.status)
    login_next = await client.get("/console/login?next=//evil.example/x", allow_redirects=False)
    assert login_next.headers.get("Location", "/console").startswith("/console")
    client.session.cookie_jar.clear()
    garbage = await client.get(
        "/console", headers={"Cookie": "sidecar_console=" + "x." * 300}, allow_redirects=False
    )
    assert garbage.status == 303


async def test_the_overview_shows_results_and_the_request_page_finds_ids(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client, server = await console_client(aiohttp_client, settings_from(tmp_path))
    from sidecar.app_keys import CORRELATION, STORE

    store = server.app[STORE]
    store.register("db", "postgres")
    store.record(
        CheckResult("db", "postgres", Status.FAIL, 0.25, 1_700_000_000.0, output="connect refused <b>")
    )
    html = await (await client.get("/console?part=live")).text()
    assert 'data-check="db" data-status="fail"' in html
    assert "connect refused &lt;b&gt;" in html and "<b>" not in html
    index = server.app[CORRELATION]
    line = b'{"request_id":"r-1","trace_id":"0af7651916cd43dd8448eb211c80319c","method":"GET","status":502}\n'
    index.add_access_line("r-1", line, 1_700_000_000.0)
    found = await (await client.get("/console/request?q=r-1")).text()
    assert 'id="request-id">r-1<' in found
    by_trace = await (await client.get("/console/request?q=0af7651916cd43dd8448eb211c80319c")).text()
    assert 'id="request-id">r-1<' in by_trace
    missing = await (await client.get("/console/request?q=<script>")).text()
    assert "&lt;script&gt;" in missing and "<script>" not in missing.split("</head>")[1]


async def test_static_files_are_served_with_etags(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    client, _ = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    js = await client.get("/console/static/console.js")  # no login needed: nothing secret in it
    assert js.status == 200 and js.headers["Content-Type"].startswith("text/javascript")
    again = await client.get("/console/static/console.js", headers={"If-None-Match": js.headers["ETag"]})
    assert again.status == 304
    assert (await client.get("/console/static/console.css")).status == 200


def test_the_console_can_be_switched_off(tmp_path: Path) -> None:
    server = Server(settings_from(tmp_path, "console: {enabled: false}\n"))
    paths = {r.resource.canonical for r in server.admin_app.router.routes() if r.resource is not None}
    assert not any(p.startswith("/console") for p in paths)


async def test_the_event_stream_announces_each_probe_result(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    client, server = await console_client(aiohttp_client, settings_from(tmp_path, f"admin_token: {TOKEN}\n"))
    assert (await client.get("/console/api/events")).status == 401
    from sidecar.app_keys import STORE

    store = server.app[STORE]
    store.register("db", "postgres")
    stream = await client.get("/console/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    assert await stream.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
    store.record(CheckResult("db", "postgres", Status.FAIL, 0.1, 1_700_000_000.0))
    async with asyncio.timeout(5):
        event = await stream.content.readuntil(b"\n\n")
    assert event.startswith(b"event: checks\ndata: ")
    from sidecar.console.state import CONSOLE

    server.admin_app[CONSOLE].history.close()  # what shutdown does: the stream ends at once
    async with asyncio.timeout(5):
        assert await stream.content.read() == b""
