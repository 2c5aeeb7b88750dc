"""Traces over OTLP, against local receivers that decode the real protobuf payloads.

The sidecar runs in process: the health/metrics app on a loopback port (``create_app`` with a
``tracing`` section) and a gateway sharing it (``Gateway.for_app``), in front of a real aiohttp app
that records the headers it receives. Checked: the span tree (caller -> server span -> client span
-> the app's ``traceparent``), the semantic-convention attributes and statuses, the resource, the
trace ID as the exemplar in OpenMetrics output and in the correlation index, gRPC, probe spans, and
that a dead collector costs requests no latency while what it loses is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sidecar.app_keys import CORRELATION, TRACING
from sidecar.config import Settings
from sidecar.gateway.service import Gateway
from sidecar.gateway.settings import GatewaySettings
from sidecar.server import create_app
from tests.integration.gateway_support import HOST, Sidecar, Upstream, run_upstream
from tests.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver, ReceivedSpan
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
FAST_EXPORT = {"schedule_delay": "20ms"}


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own OTEL_* variables must not leak into these tests' configuration."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


async def start_sidecar(
    upstream: str, tracing: dict[str, Any] | None, **settings: Any
) -> AsyncIterator[Sidecar]:
    config = Settings(
        routes={"templates": ["/users/{id}"]},
        gateway=GatewaySettings(
            upstream=upstream, listen=f"{HOST}:{free_port()}", access_log={"enabled": False}
        ),
        default_checks=False,
        tracing=tracing or {},
        **settings,
    )
    app = create_app(config)
    server = TestServer(app, host=HOST, port=free_port())
    await server.start_server()
    gateway = Gateway.for_app(config.gateway, app)
    await gateway.start()
    try:
        yield Sidecar(server, gateway)
    finally:
        await gateway.close()
        await server.close()


def received_traceparent(upstream: Upstream, index: int = -1) -> str:
    headers = {k.lower(): v for k, v in upstream.seen[index]["headers"]}
    return headers["traceparent"]


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head = line.split(" # ")[0]
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(head.rsplit(" ", 1)[1])
    return None


def of_trace(trace_id: str, count: int = 2) -> Any:
    return lambda spans: len([s for s in spans if s.trace_id == trace_id]) >= count


def by_kind(spans: list[ReceivedSpan], trace_id: str) -> dict[str, ReceivedSpan]:
    return {s.kind: s for s in spans if s.trace_id == trace_id}


async def test_a_continued_trace_becomes_caller_server_client_app_over_otlp_http() -> None:
    async with OtlpHttpReceiver() as receiver, run_upstream() as app:
        tracing = {"endpoint": receiver.endpoint, **FAST_EXPORT, "service_version": "1.2.3"}
        async for sidecar in start_sidecar(app.url, tracing, service_name="checkout"):
            headers = {
                "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
                "tracestate": "vendor=abc",
                "X-Request-ID": "req-otlp-1",
                "User-Agent": "tracing-test/1.0",
            }
            async with (
                aiohttp.ClientSession() as client,
                client.get(sidecar.gateway_url + "/users/7?token=secret", headers=headers) as resp,
            ):
                assert resp.status == 200
                await resp.read()
            spans = await receiver.wait_for(of_trace(TRACE_ID))
            kinds = by_kind(spans, TRACE_ID)
            server, client_span = kinds["SERVER"], kinds["CLIENT"]

            # the tree: caller -> server span -> client span -> the app's traceparent
            assert server.parent_span_id == CALLER_SPAN
            assert client_span.parent_span_id == server.span_id
            app_traceparent = received_traceparent(app)
            assert app_traceparent == f"00-{TRACE_ID}-{client_span.span_id}-01"
            assert server.span_id not in (CALLER_SPAN, client_span.span_id)
            assert server.trace_state == client_span.trace_state == "vendor=abc"
            assert server.start_ns <= client_span.start_ns <= client_span.end_ns <= server.end_ns

            assert server.name == "GET /users/{id}"
            assert server.status == "UNSET"
            assert server.scope == "sidecar.gateway"
            attributes = server.attributes
            assert attributes["http.request.method"] == "GET"
            assert attributes["url.path"] == "/users/7"
            assert attributes["url.scheme"] == "http"
            assert attributes["http.route"] == "/users/{id}"
            assert attributes["http.response.status_code"] == 200
            assert attributes["server.address"] == HOST
            assert attributes["server.port"] == sidecar.gateway.port
            assert attributes["client.address"] == HOST
            assert attributes["user_agent.original"] == "tracing-test/1.0"
            assert attributes["network.protocol.version"] == "1.1"
            assert attributes["http.request.header.x-request-id"] == ("req-otlp-1",)
            assert "error.type" not in attributes
            assert "secret" not in repr(server) + repr(client_span)

            assert client_span.name == "GET"
            assert client_span.status == "UNSET"
            assert client_span.attributes["server.address"] == HOST
            assert client_span.attributes["server.port"] == app.port
            assert client_span.attributes["url.full"] == f"http://{HOST}:{app.port}/users/7"
            assert client_span.attributes["http.response.status_code"] == 200

            resource = server.resource
            assert resource["service.name"] == "checkout"
            assert resource["service.version"] == "1.2.3"
            assert resource["host.name"]
            assert resource["telemetry.sdk.language"] == "python"

            # the exemplar on the duration histogram is this trace
            text = await sidecar.scrape()
            exemplars = re.findall(
                r'^http_server_request_duration_seconds_bucket\{[^}]*http_route="/users/\{id\}"[^}]*\} \S+ '
                r'# \{trace_id="([0-9a-f]{32})"\}',
                text,
                re.MULTILINE,
            )
            assert exemplars == [server.trace_id]
            # and the correlation index (admin /debug/requests/<id>) has the trace ID of the request
            timeline = sidecar.server.app[CORRELATION].get("req-otlp-1")
            assert timeline is not None
            assert timeline["trace_id"] == TRACE_ID
            assert [e["record"]["trace_id"] for e in timeline["timeline"] if e["kind"] == "access"] == [
                TRACE_ID
            ]
            assert sample(text, "sidecar_otel_spans_exported_total") == 2
            assert sample(text, "sidecar_otel_spans_dropped_total", reason="queue_full") == 0
            exporter: Any = sidecar.server.app[TRACING].processor.exporter.inner
            assert exporter.fast_batches >= 1  # the fast encoder, not the SDK's fallback, sent them


async def test_new_traces_statuses_and_errors() -> None:
    async with OtlpHttpReceiver() as receiver, run_upstream() as app:
        async for sidecar in start_sidecar(app.url, {"endpoint": receiver.endpoint, **FAST_EXPORT}):
            async with aiohttp.ClientSession() as client:
                for path in ("/echo", "/status/503", "/status/404"):
                    async with client.get(sidecar.gateway_url + path) as resp:
                        await resp.read()
            new, failed, missing = (received_traceparent(app, i).split("-") for i in range(3))
            spans = await receiver.wait_for(lambda s: len(s) >= 6)

            root = by_kind(spans, new[1])
            assert root["SERVER"].parent_span_id == ""  # a trace the gateway started
            assert root["CLIENT"].span_id == new[2]
            assert new[3] == "01"
            assert root["SERVER"].resource["service.name"] == "app"  # the default service_name

            error = by_kind(spans, failed[1])
            assert error["SERVER"].status == "ERROR"  # 5xx: the server's error
            assert error["SERVER"].attributes["error.type"] == "503"
            assert error["SERVER"].attributes["http.route"] == "/status/{id}"
            assert error["CLIENT"].status == "ERROR"

            client_error = by_kind(spans, missing[1])
            assert client_error["SERVER"].status == "UNSET"  # 4xx is the client's error, not the server's
            assert "error.type" not in client_error["SERVER"].attributes
            assert client_error["SERVER"].attributes["http.response.status_code"] == 404
            assert client_error["CLIENT"].status == "ERROR"  # ... but a failed call for the client span


async def test_an_unreachable_app_gives_a_server_span_with_the_proxy_error() -> None:
    async with OtlpHttpReceiver() as receiver:
        dead_app = f"http://{HOST}:{free_port()}"
        async for sidecar in start_sidecar(dead_app, {"endpoint": receiver.endpoint, **FAST_EXPORT}):
            async with (
                aiohttp.ClientSession() as client,
                client.get(sidecar.gateway_url + "/echo", headers={"X-Request-ID": "dead-app"}) as resp,
            ):
                assert resp.status == 502
            spans = await receiver.wait_for(lambda s: len(s) >= 1)
            await asyncio.sleep(0.1)
            assert [s.kind for s in receiver.spans] == ["SERVER"]  # the app never got a traceparent
            server = spans[0]
            assert server.status == "ERROR"
            assert server.attributes["error.type"] == "upstream_refused"
            assert server.attributes["http.response.status_code"] == 502


async def test_sampling_follows_the_caller_and_the_ratio_decides_new_traces() -> None:
    async with OtlpHttpReceiver() as receiver, run_upstream() as app:
        tracing = {"endpoint": receiver.endpoint, "sample_ratio": 0.0, **FAST_EXPORT}
        async for sidecar in start_sidecar(app.url, tracing):
            async with aiohttp.ClientSession() as client:
                async with client.get(sidecar.gateway_url + "/echo") as resp:
                    await resp.read()
                async with client.get(
                    sidecar.gateway_url + "/echo", headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
                ) as resp:
                    await resp.read()
            assert received_traceparent(app, 0).endswith("-00")  # the app is told: not sampled
            assert received_traceparent(app, 1).endswith("-01")  # the caller sampled it: followed
            spans = await receiver.wait_for(of_trace(TRACE_ID))
            await asyncio.sleep(0.1)
            assert {s.trace_id for s in receiver.spans} == {TRACE_ID}
            assert len(spans) == 2


async def test_otlp_grpc_export() -> None:
    async with OtlpGrpcReceiver() as receiver, run_upstream() as app:
        tracing = {
            "endpoint": receiver.endpoint,
            "protocol": "grpc",
            **FAST_EXPORT,
            "headers": {"X-Api-Key": "k"},
        }
        async for sidecar in start_sidecar(app.url, tracing):
            async with (
                aiohttp.ClientSession() as client,
                client.post(
                    sidecar.gateway_url + "/echo",
                    data=b"hello",
                    headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
                ) as resp,
            ):
                await resp.read()
            kinds = by_kind(await receiver.wait_for(of_trace(TRACE_ID)), TRACE_ID)
            assert kinds["SERVER"].parent_span_id == CALLER_SPAN
            assert kinds["SERVER"].name == "POST /echo"
            assert kinds["CLIENT"].parent_span_id == kinds["SERVER"].span_id
            assert received_traceparent(app) == f"00-{TRACE_ID}-{kinds['CLIENT'].span_id}-01"
            assert receiver.headers[0]["x-api-key"] == "k"
            exporter: Any = sidecar.server.app[TRACING].processor.exporter.inner
            assert exporter.fast_batches >= 1


async def test_probe_spans_when_asked_for() -> None:
    async with OtlpHttpReceiver() as receiver:
        checks = [
            {
                "name": "collector",
                "kind": "tcp",
                "target": f"{HOST}:{receiver.port}",
                "interval": 0.3,
                "timeout": 0.2,
            }
        ]
        async for _sidecar in start_sidecar(
            f"http://{HOST}:1", {"endpoint": receiver.endpoint, "probes": True, **FAST_EXPORT}, checks=checks
        ):
            spans = await receiver.wait_for(lambda s: any(x.name == "check collector" for x in s))
            probe = next(s for s in spans if s.name == "check collector")
            assert probe.kind == "INTERNAL"
            assert probe.parent_span_id == ""
            assert probe.scope == "sidecar.probes"
            assert probe.attributes == {
                "sidecar.check.name": "collector",
                "sidecar.check.kind": "tcp",
                "sidecar.check.status": "pass",
            }
            assert 0 < probe.end_ns - probe.start_ns < 1e9


async def test_a_refusing_collector_is_counted_as_failed_exports() -> None:
    async with OtlpHttpReceiver() as receiver, run_upstream() as app:
        receiver.status = 400  # not retryable: the batch is lost at once
        async for sidecar in start_sidecar(app.url, {"endpoint": receiver.endpoint, **FAST_EXPORT}):
            async with aiohttp.ClientSession() as client:
                for _ in range(3):
                    async with client.get(sidecar.gateway_url + "/echo") as resp:
                        await resp.read()
            deadline = time.monotonic() + 10
            while True:
                text = await sidecar.scrape()
                lost = sample(text, "sidecar_otel_spans_dropped_total", reason="export_failed") or 0
                if lost >= 6 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert lost == 6
            assert (sample(text, "sidecar_otel_export_failures_total") or 0) >= 1
            assert sample(text, "sidecar_otel_spans_exported_total") == 0


async def _p50_ms(url: str, requests: int) -> float:
    timings = []
    async with aiohttp.ClientSession() as client:
        for _ in range(requests):
            started = time.perf_counter()
            async with client.get(url) as resp:
                await resp.read()
                assert resp.status == 200
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


@contextlib.asynccontextmanager
async def silent_collector() -> AsyncIterator[str]:
    """Accepts connections and reads requests, never answers: a hung collector."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, HOST, 0)
    try:
        yield f"http://{HOST}:{server.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        server.close()


@contextlib.asynccontextmanager
async def refusing_collector() -> AsyncIterator[str]:
    yield f"http://{HOST}:{free_port()}"  # nothing listens there: connections are refused


@pytest.mark.parametrize("collector", [refusing_collector, silent_collector], ids=["refused", "silent"])
async def test_a_dead_collector_costs_requests_no_latency_and_losses_are_counted(collector: Any) -> None:
    requests = 400
    async with run_upstream() as app, collector() as dead:
        async for plain in start_sidecar(app.url, None):
            await _p50_ms(plain.gateway_url + "/echo", 50)  # warm-up
            without = await _p50_ms(plain.gateway_url + "/echo", requests)
            assert TRACING not in plain.server.app
        tracing = {
            "endpoint": dead,
            "max_queue_size": 16,
            "max_export_batch_size": 8,
            "schedule_delay": "10ms",
            "timeout": "500ms",
        }
        async for traced in start_sidecar(app.url, tracing):
            await _p50_ms(traced.gateway_url + "/echo", 50)
            started = time.monotonic()
            with_dead = await _p50_ms(traced.gateway_url + "/echo", requests)
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + 5  # a silent collector fails a batch only at the timeout
            while True:
                text = await traced.scrape()
                if sample(text, "sidecar_otel_export_failures_total") or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            queue_full = sample(text, "sidecar_otel_spans_dropped_total", reason="queue_full") or 0
            failed = sample(text, "sidecar_otel_spans_dropped_total", reason="export_failed") or 0
            failures = sample(text, "sidecar_otel_export_failures_total") or 0
            queued = sample(text, "sidecar_otel_queue_spans") or 0
            stop_started = time.monotonic()
        stop_took = time.monotonic() - stop_started
    print(f"p50 without tracing {without:.3f} ms, with a dead collector {with_dead:.3f} ms")
    assert with_dead < without * 2.5 + 0.5, (without, with_dead)
    assert elapsed < 20
    assert queue_full > 0 and failed > 0 and failures > 0
    assert failures <= 4  # failed batches back off (1 s, 2 s, ...): no tight retry loop on the export thread
    assert queue_full + failed + queued <= 2 * (requests + 50)  # every span is accounted for at most once
    assert stop_took < 6  # the stop waits for the dead collector at most its flush budget
