"""The app behind the gateway as a check: a real sidecar (``Server``), a real app killed and restarted.

Passive detection must take the app out of readiness from live traffic well before its active probe
(every 5 s here) could notice; the active probe brings it back after the ejection time and ``rise``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from sidecar.config import load_settings
from sidecar.server import Server, reload_checks
from tests.servers import free_port

HOST = "127.0.0.1"


class App:
    """A small app on a fixed port that can be stopped and started again, and told to fail."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(_request: web.Request) -> web.Response:
            return web.Response(status=self.status, text="app")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@asynccontextmanager
async def sidecar(tmp_path: Path, app: App, app_check: dict[str, object]) -> AsyncIterator[Server]:
    config = {
        "listen": f"{HOST}:{free_port()}",
        "admin_listen": f"{HOST}:{free_port()}",
        "default_checks": False,
        "gateway": {
            "upstream": f"http://{HOST}:{app.port}",
            "listen": f"{HOST}:{free_port()}",
            "access_log": {"enabled": False},
            "connect_timeout": 0.5,
        },
        "app_check": app_check,
    }
    path = tmp_path / "sidecar.yaml"
    path.write_text(yaml.safe_dump(config))
    server = Server(load_settings(path, environ={}), path)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with client.get(url) as response:
        return response.status, await response.text()


async def wait_for(client: aiohttp.ClientSession, url: str, status: int, within: float) -> tuple[float, str]:
    """Poll ``url`` every 20 ms until it answers ``status``; (seconds it took, body)."""
    started = time.perf_counter()
    while True:
        code, text = await get(client, url)
        if code == status:
            return time.perf_counter() - started, text
        assert time.perf_counter() - started < within, f"{url} still {code} {text!r} after {within}s"
        await asyncio.sleep(0.02)


async def load(client: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> None:
    """Steady traffic through the gateway, ~100 requests a second, until ``stop``."""
    while not stop.is_set():
        try:
            async with client.get(url) as response:
                await response.read()
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.01)


async def test_a_killed_app_is_ejected_by_live_traffic_and_back_after_it_returns(tmp_path: Path) -> None:
    app = App()
    await app.start()
    check = {
        "interval": 5,
        "rise": 2,
        "outlier": {"base_ejection_time": 0.5, "consecutive_connect_failures": 3},
    }
    async with sidecar(tmp_path, app, check) as server, aiohttp.ClientSession() as client:
        health = f"http://{server.settings.listen}"
        await wait_for(client, f"{health}/readyz", 200, within=3)
        stop = asyncio.Event()
        traffic = asyncio.create_task(load(client, f"http://{server.settings.gateway.listen}/", stop))
        await asyncio.sleep(0.3)
        await app.stop()
        took, text = await wait_for(client, f"{health}/readyz", 503, within=2)
        assert took < 1.0, f"passive detection took {took:.2f}s"
        assert text == "failing: app (outlier: 3 consecutive connect failures)"
        _, verbose = await get(client, f"{health}/readyz?verbose")
        assert "[-]app ejected: outlier: 3 consecutive connect failures" in verbose
        _, metrics = await get(client, f"{health}/metrics")
        assert 'sidecar_app_ejections_total{reason="consecutive_connect_failures"} 1.0' in metrics
        assert "sidecar_app_ejected 1.0" in metrics
        await app.start()
        await wait_for(client, f"{health}/readyz", 200, within=2 * 5 + 2)
        async with client.get(f"http://{server.settings.admin_listen}/debug/checks") as response:
            checks = {c["check"]: c for c in (await response.json())["checks"]}
        assert checks["app"]["ejected"] is None and checks["app"]["ready"] is True
        stop.set()
        await traffic
    await app.stop()


async def test_5xx_from_a_live_app_eject_it_though_its_port_still_answers(tmp_path: Path) -> None:
    app = App()
    await app.start()
    check = {"interval": 0.5, "rise": 1, "outlier": {"base_ejection_time": 1, "consecutive_5xx": 5}}
    async with sidecar(tmp_path, app, check) as server, aiohttp.ClientSession() as client:
        health = f"http://{server.settings.listen}"
        gateway = f"http://{server.settings.gateway.listen}"
        await wait_for(client, f"{health}/readyz", 200, within=3)
        app.status = 503
        for _ in range(5):
            assert (await get(client, f"{gateway}/x"))[0] == 503
        code, text = await get(client, f"{health}/readyz")
        assert (code, text) == (503, "failing: app (outlier: 5 consecutive 5xx)")
        async with client.get(f"{health}/health") as response:
            document = await response.json(content_type=None)
        assert document["status"] == "fail"
        assert document["checks"]["app:responseTime"][0]["output"].startswith("outlier: 5 consecutive 5xx")
        app.status = 200
        await wait_for(client, f"{health}/readyz", 200, within=3)
    await app.stop()


async def test_a_starting_app_is_starting_and_startupz_waits_for_its_first_pass(tmp_path: Path) -> None:
    app = App()
    check = {"interval": 0.3, "startup_grace": 30, "path": "/health", "expect_status": [200]}
    async with sidecar(tmp_path, app, check) as server, aiohttp.ClientSession() as client:
        health = f"http://{server.settings.listen}"
        await asyncio.sleep(1.0)  # three failed probes: still starting, within the grace
        assert await get(client, f"{health}/readyz") == (503, "starting: app")
        assert await get(client, f"{health}/startupz") == (503, "starting: app")
        await app.start()
        await wait_for(client, f"{health}/startupz", 200, within=3)
        await wait_for(client, f"{health}/readyz", 200, within=3)
        _, metrics = await get(client, f"{health}/metrics")
        assert 'sidecar_check_up{check="app",kind="http"} 1.0' in metrics
    await app.stop()


async def test_an_app_on_a_unix_socket_is_probed_through_the_socket(tmp_path: Path) -> None:
    socket_path = str(tmp_path / "app.sock")

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, socket_path).start()
    try:
        for app_check in ({"interval": 0.3}, {"interval": 0.3, "path": "/health"}):
            config = {
                "listen": f"{HOST}:{free_port()}",
                "admin_listen": f"{HOST}:{free_port()}",
                "default_checks": False,
                "gateway": {"upstream": f"unix:{socket_path}", "listen": f"{HOST}:{free_port()}"},
                "app_check": app_check,
            }
            path = tmp_path / "sidecar.yaml"
            path.write_text(yaml.safe_dump(config))
            settings = load_settings(path, environ={})
            assert settings.checks[0].kind == ("http" if "path" in app_check else "tcp")
            server = Server(settings, path)
            await server.start()
            try:
                async with aiohttp.ClientSession() as client:
                    await wait_for(client, f"http://{settings.listen}/readyz", 200, within=3)
            finally:
                await server.shutdown()
    finally:
        await runner.cleanup()


async def reload_with(server: Server, **changes: dict[str, object]) -> None:
    """Rewrite the running sidecar's file with ``changes`` merged into its sections, then SIGHUP's reload."""
    assert server.config_path is not None
    config = yaml.safe_load(server.config_path.read_text())
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    server.config_path.write_text(yaml.safe_dump(config))
    await reload_checks(server.app, server.config_path)


async def test_a_reload_applies_changed_outlier_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [n for n in os.environ if n.startswith(("SIDECAR_", "SENTRY_", "OTEL_"))]:
        monkeypatch.delenv(name)
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    app = App()
    await app.start()
    off = {"enabled": False, "consecutive_5xx": 2, "base_ejection_time": 0.5}
    async with sidecar(tmp_path, app, {"interval": 0.3, "rise": 1, "outlier": off}) as server:
        async with aiohttp.ClientSession() as client:
            health = f"http://{server.settings.listen}"
            gateway = f"http://{server.settings.gateway.listen}"
            await wait_for(client, f"{health}/readyz", 200, within=3)
            app.status = 503
            for _ in range(6):
                assert (await get(client, f"{gateway}/x"))[0] == 503
            assert await get(client, f"{health}/readyz") == (200, "ok"), "detection is off"
            assert "sidecar_app_ejections_total" not in (await get(client, f"{health}/metrics"))[1]

            # turned on by a reload, with a gateway setting changed too (that one needs a restart)
            await reload_with(
                server,
                app_check={"outlier": {**off, "enabled": True, "consecutive_5xx": 3}},
                gateway={"read_timeout": 30},
            )
            warned = [r for r in caplog.records if r.getMessage().startswith("reload: some changed settings")]
            assert [getattr(r, "restart_required", None) for r in warned] == [["gateway.read_timeout"]]
            for _ in range(3):
                assert (await get(client, f"{gateway}/x"))[0] == 503
            assert await get(client, f"{health}/readyz") == (503, "failing: app (outlier: 3 consecutive 5xx)")
            _, metrics = await get(client, f"{health}/metrics")
            assert 'sidecar_app_ejections_total{reason="consecutive_5xx"} 1.0' in metrics
            app.status = 200
            await wait_for(client, f"{health}/readyz", 200, within=3)

            # a higher threshold from a reload: three 5xx in a row no longer eject, the fifth does
            await reload_with(server, app_check={"outlier": {**off, "enabled": True, "consecutive_5xx": 5}})
            app.status = 503
            for _ in range(4):
                assert (await get(client, f"{gateway}/x"))[0] == 503
            assert (await get(client, f"{health}/readyz"))[0] == 200
            assert (await get(client, f"{gateway}/x"))[0] == 503
            assert await get(client, f"{health}/readyz") == (503, "failing: app (outlier: 5 consecutive 5xx)")
            app.status = 200
            await wait_for(client, f"{health}/readyz", 200, within=3)

            # and off again: failures are the active probe's business only
            await reload_with(server, app_check={"outlier": off})
            app.status = 503
            for _ in range(8):
                assert (await get(client, f"{gateway}/x"))[0] == 503
            assert (await get(client, f"{health}/readyz"))[0] == 200
    await app.stop()
