"""The real ``python -m sidecar run`` process configured for tracing by the standard ``OTEL_*`` variables
alone: its spans reach a local OTLP/HTTP receiver with the Kubernetes resource attributes and the
headers, and what is still queued when SIGTERM arrives is exported before the process exits."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest

from tests.e2e.sidecar_process import SidecarProcess, request
from tests.integration.gateway_support import HOST, run_upstream
from tests.otlp_receivers import OtlpHttpReceiver
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def test_otel_variables_alone_configure_tracing_and_sigterm_flushes_the_queue() -> None:
    async with OtlpHttpReceiver() as receiver, run_upstream() as app:
        port = free_port()
        config = (
            "default_checks: false\n"
            f"gateway:\n  listen: {HOST}:{port}\n  drain_period: 0\n  access_log: {{enabled: false}}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            {
                "SIDECAR_UPSTREAM": app.url,
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,authorization=Bearer%20t0ken",
                "OTEL_SERVICE_NAME": "storefront",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging",
                "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before the stop: the flush must send it
                "POD_NAME": "storefront-7d9f-abcde",
                "POD_NAMESPACE": "shop",
                "NODE_NAME": "node-3",
            }
        )
        process = SidecarProcess(config, env=env)
        process.env = env | {k: v for k, v in process.env.items() if k.startswith("SIDECAR_")}
        await asyncio.to_thread(process.start)
        try:
            async with aiohttp.ClientSession() as client:
                for n in range(5):
                    async with client.get(f"http://{HOST}:{port}/users/{n}") as resp:
                        assert resp.status == 200
            status, body = await asyncio.to_thread(request, process.base + "/metrics")
            assert status == 200 and b"sidecar_otel_spans_dropped_total" in body
            await asyncio.sleep(0.3)
            assert receiver.spans == []  # still queued
            code = await asyncio.to_thread(process.stop)
        finally:
            await asyncio.to_thread(process.__exit__, None, None, None)
        assert code == 0, process.logs()
        spans = await receiver.wait_for(lambda s: len(s) >= 10, timeout=5)
        assert sorted(s.kind for s in spans) == ["CLIENT"] * 5 + ["SERVER"] * 5
        resource = spans[0].resource
        assert resource["service.name"] == "storefront"
        assert resource["k8s.pod.name"] == "storefront-7d9f-abcde"
        assert resource["k8s.namespace.name"] == "shop"
        assert resource["k8s.node.name"] == "node-3"
        assert resource["deployment.environment.name"] == "staging"
        assert receiver.headers[0]["x-tenant"] == "acme"
        assert receiver.headers[0]["authorization"] == "Bearer t0ken"
        received = {{k.lower(): v for k, v in seen["headers"]}["traceparent"] for seen in app.seen}
        clients = {f"00-{s.trace_id}-{s.span_id}-01" for s in spans if s.kind == "CLIENT"}
        assert received == clients
        logs = process.logs()
        assert "tracing on" in logs
        assert "t0ken" not in logs
