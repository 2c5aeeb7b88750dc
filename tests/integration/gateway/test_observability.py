"""What the gateway tells: RED metrics on the sidecar's /metrics (with trace exemplars in OpenMetrics),
the access log (one JSON line per request, secrets masked, sampled successes) and the correlation index."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from sidecar.app_keys import CORRELATION, HTTP_METRICS
from sidecar.config import Settings
from sidecar.core.own_logs import request_context
from sidecar.gateway.service import Gateway
from sidecar.gateway.settings import GatewaySettings
from sidecar.server import create_app
from tests.integration.gateway_support import (
    HOST,
    RunningGateway,
    Sidecar,
    raw_exchange,
    run_gateway,
    run_upstream,
)
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def start_sidecar(upstream: str, **gateway: object) -> AsyncIterator[Sidecar]:
    settings = Settings(
        routes={"templates": ["/users/{id}"]},
        gateway=GatewaySettings(
            upstream=upstream, listen=f"{HOST}:{free_port()}", access_log={"enabled": False}, **gateway
        ),
    )
    app = create_app(settings)
    server = TestServer(app, host=HOST, port=free_port())
    await server.start_server()
    gw = Gateway.for_app(settings.gateway, app)
    await gw.start()
    try:
        yield Sidecar(server, gw)
    finally:
        await gw.close()
        await server.close()


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head = line.split(" # ")[0]
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(head.rsplit(" ", 1)[1])
    return None


async def test_red_metrics_with_route_templates_status_and_trace_exemplars() -> None:
    async with run_upstream() as app:
        async for sidecar in start_sidecar(app.url):
            async with aiohttp.ClientSession() as client:
                for user in (1, 2, 3):
                    async with client.get(f"{sidecar.gateway_url}/users/{user}") as resp:
                        await resp.read()
                async with client.post(sidecar.gateway_url + "/echo", data=b"x" * 5000) as resp:
                    await resp.read()
                async with client.request("PROPFIND", sidecar.gateway_url + "/echo") as resp:
                    await resp.read()
                traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                async with client.get(
                    sidecar.gateway_url + "/status/503", headers={"traceparent": traceparent}
                ):
                    pass
            text = await sidecar.scrape()
            count = "http_server_request_duration_seconds_count"
            assert (
                sample(
                    text,
                    count,
                    http_request_method="GET",
                    http_route="/users/{id}",
                    http_response_status_code="200",
                )
                == 3
            )
            assert sample(text, count, http_request_method="_OTHER", http_route="/echo") == 1
            assert (
                sample(
                    text, count, http_route="/status/{id}", http_response_status_code="503", error_type="503"
                )
                == 1
            )
            assert sample(text, "http_server_request_body_size_bytes_sum", http_request_method="POST") == 5000
            assert sample(text, "http_server_response_body_size_bytes_count", http_route="/users/{id}") == 3
            exemplars = re.findall(
                r'^http_server_request_duration_seconds_bucket\{[^}]*http_route="/status/\{id\}"[^}]*\} \S+ '
                r'# \{trace_id="([0-9a-f]{32})"\}',
                text,
                re.MULTILINE,
            )
            assert exemplars == ["4bf92f3577b34da6a3ce929d0e0e4736"]


async def test_active_requests_gauge_counts_requests_in_flight() -> None:
    async with run_upstream() as app:
        async for sidecar in start_sidecar(app.url):
            async with aiohttp.ClientSession() as client:
                task = asyncio.create_task(client.get(sidecar.gateway_url + "/slow?delay=0.6"))
                await asyncio.sleep(0.3)
                during = sample(
                    await sidecar.scrape(), "http_server_active_requests", http_request_method="GET"
                )
                resp = await task
                await resp.read()
                resp.release()
            after = sample(await sidecar.scrape(), "http_server_active_requests", http_request_method="GET")
            assert (during, after) == (1, 0)


async def test_gateway_requests_are_known_to_log_derived_metrics() -> None:
    async with run_upstream() as app:
        async for sidecar in start_sidecar(app.url):
            async with (
                aiohttp.ClientSession() as client,
                client.get(sidecar.gateway_url + "/echo", headers={"X-Request-ID": "seen-once"}) as resp,
            ):
                await resp.read()
            http = sidecar.server.app[HTTP_METRICS]
            assert http.first_sighting("seen-once", "logs") is False  # the log line will not count it again
            assert sidecar.server.app[CORRELATION].get("seen-once") is not None


async def test_access_log_lines_have_the_fields_and_no_secrets(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    async with (
        run_upstream() as app,
        run_gateway(app.url, templates=("/users/{id}",), access_log={"path": str(log_file)}) as gw,
        aiohttp.ClientSession() as client,
    ):
        headers = {
            "Authorization": "Bearer s3cret-token",
            "Cookie": "session=c00kie-value",
            "User-Agent": "pytest-agent/1",
            "X-Request-ID": "log-1",
        }
        async with client.post(
            gw.url + "/users/7?api_key=k3y-value&page=2", data=b"abc", headers=headers
        ) as r:
            body = await r.read()
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["request_id"] == "log-1"
    assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"])
    assert record["method"] == "POST"
    assert record["route"] == "/users/{id}"
    assert record["path"] == "/users/7?api_key=***&page=***"
    assert record["status"] == 200
    assert record["bytes_in"] == 3
    assert record["bytes_out"] == len(body)
    assert record["client"] == "127.0.0.1"
    assert record["user_agent"] == "pytest-agent/1"
    assert 0 < record["upstream_ms"] <= record["duration_ms"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    raw = lines[0]
    for secret in ("s3cret-token", "c00kie-value", "k3y-value", "Authorization", "Cookie"):
        assert secret not in raw


async def test_sampling_drops_successes_but_never_errors(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    async with (
        run_upstream() as app,
        run_gateway(app.url, access_log={"path": str(log_file), "sample_success": 0.0}) as gw,
        aiohttp.ClientSession() as client,
    ):
        for path in ("/echo", "/echo", "/status/404", "/status/500", "/echo"):
            async with client.get(gw.url + path) as resp:
                await resp.read()
    statuses = [json.loads(line)["status"] for line in log_file.read_text().splitlines()]
    assert statuses == [404, 500]


async def test_proxy_failures_are_always_logged_even_when_sampling_everything_out(tmp_path: Path) -> None:
    log_file = tmp_path / "access.log"
    async with run_gateway(
        f"http://{HOST}:{free_port()}", access_log={"path": str(log_file), "sample_success": 0.0}
    ) as gw:
        resp = await raw_exchange(gw.port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 502
    record = json.loads(log_file.read_text())
    assert record["status"] == 502
    assert record["error"] == "upstream_refused"
    assert record["request_id"] == resp.header("X-Request-ID")


async def test_logging_context_is_cleared_between_requests() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        await raw_exchange(gw.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: r-1\r\n\r\n")
        assert request_context.get() is None  # nothing leaked into this (unrelated) task's context


async def test_a_request_id_is_remembered_before_the_app_sees_the_request() -> None:
    """Accounting runs after the writes, but an ID is remembered before the app can log it."""
    seen_by_app: list[bool] = []
    gateways: list[RunningGateway] = []

    async def handler(request: web.Request) -> web.Response:
        # What a log line the app writes while handling the request would find: already counted.
        seen_by_app.append(gateways[0].http_metrics.first_sighting(request.headers["X-Request-ID"], "logs"))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/log-first", handler)
    async with run_upstream(app) as upstream, run_gateway(upstream.url) as gw:
        gateways.append(gw)
        for n in range(3):
            request = f"GET /log-first HTTP/1.1\r\nHost: x\r\nX-Request-ID: early-{n}\r\n\r\n".encode()
            assert (await raw_exchange(gw.port, request)).status == 200
        assert seen_by_app == [False, False, False]
        assert all(gw.correlation.get(f"early-{n}") is not None for n in range(3))


async def test_a_request_cut_by_closing_the_gateway_is_still_recorded(tmp_path: Path) -> None:
    """Finished requests are recorded after the loop's writes; closing must not leave any unrecorded."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/slow", slow)
    log_file = tmp_path / "access.log"
    async with (
        run_upstream(app) as upstream,
        run_gateway(upstream.url, access_log={"path": str(log_file)}) as gw,
    ):
        _reader, writer = await asyncio.open_connection(HOST, gw.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Request-ID: cut-1\r\n\r\n")
        await writer.drain()
        while gw.gateway.ctx.active == 0:  # the request reached the gateway and waits for the app
            await asyncio.sleep(0.01)
        await gw.gateway.close()
        release.set()
        writer.close()
        assert gw.correlation.get("cut-1") is not None
        record = json.loads(log_file.read_text())
        assert record["request_id"] == "cut-1"
        assert (
            sample(generate_latest(gw.registry).decode(), "http_server_request_duration_seconds_count") == 1
        )
