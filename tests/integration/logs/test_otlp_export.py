"""OTLP log export against local receivers that decode what they get (tests/otlp_receivers.py):
HTTP/protobuf and gRPC; real gateway access records; and a receiver that is down, slow or refusing,
while the pipeline goes on without waiting."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.config import Settings
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.otlp_export import LogExporter, plan_log_export
from sidecar.logs.parse import LogParser
from sidecar.logs.pipeline import LogPipeline
from tests.integration.gateway_support import run_gateway, run_upstream
from tests.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def exporter_for(
    endpoint: str, protocol: str = "http/protobuf", **otlp: Any
) -> tuple[LogExporter, CollectorRegistry]:
    settings = Settings(
        default_checks=False,
        service_name="shop",
        logs={"otlp": {"endpoint": endpoint, "protocol": protocol, "flush_interval": 0.05, **otlp}},
    )
    plan = plan_log_export(settings, {})
    assert plan is not None
    registry = CollectorRegistry()
    return LogExporter(plan, registry, env={}), registry


def pipeline_into(exporter: LogExporter) -> LogPipeline:
    pipeline = LogPipeline(LogParser(), LogMetrics(CollectorRegistry()))
    pipeline.record_sinks.append(exporter.add_record)
    return pipeline


LINES = [
    orjson.dumps(
        {
            "level": 50,
            "time": 1_700_000_000_123,
            "msg": "payment failed",
            "reqId": "req-7",
            "trace_id": TRACE,
            "span_id": SPAN,
            "order": {"id": 7, "items": [1, 2]},
            "password": "hunter2-hunter2",
        }
    ),
    b'{"event": "user signed in", "level": "info", "timestamp": "2024-05-01T10:00:00Z", "user_id": 3}',
    b"WARN disk almost full",
]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_lines_arrive_with_severity_body_attributes_ids_and_resource(protocol: str) -> None:
    receiver_type = OtlpGrpcReceiver if protocol == "grpc" else OtlpHttpReceiver
    async with receiver_type() as receiver:
        exporter, registry = exporter_for(receiver.endpoint, protocol, headers={"X-Api-Key": "k-123"})
        await exporter.start()
        try:
            pipeline_into(exporter).feed("api", LINES)
            received = await receiver.wait_for_logs(3)
        finally:
            await exporter.stop()
    by_body = {r.body: r for r in received}
    failed = by_body["payment failed"]
    assert (failed.severity_number, failed.severity_text) == (17, "ERROR")
    assert failed.trace_id == TRACE and failed.span_id == SPAN
    assert failed.time_ns == 1_700_000_000_123_000_000
    assert failed.attributes["request.id"] == "req-7"
    assert failed.attributes["log.source"] == "api"
    assert failed.attributes["order"] == {"id": 7, "items": (1, 2)}
    assert failed.attributes["password"] == "***"
    assert "msg" not in failed.attributes and "level" not in failed.attributes
    assert failed.resource["service.name"] == "shop" and failed.scope == "sidecar.logs"
    signed_in = by_body["user signed in"]
    assert (signed_in.severity_number, signed_in.attributes["user_id"]) == (9, 3)
    assert signed_in.trace_id == ""
    assert by_body["WARN disk almost full"].severity_number == 13
    headers = receiver.headers[0]
    assert headers.get("x-api-key") == "k-123"
    assert value(registry, "sidecar_otlp_log_records_exported_total") == 3


async def test_gateway_access_records_become_log_records() -> None:
    async with OtlpHttpReceiver() as receiver, run_upstream() as upstream:
        exporter, _registry = exporter_for(receiver.endpoint)
        await exporter.start()
        try:
            async with run_gateway(upstream.url, templates=("/status/{code}",)) as running:
                running.gateway.ctx.access.sink = exporter.add_access
                async with aiohttp.ClientSession() as session:
                    for code in (200, 503):
                        async with session.get(
                            f"{running.url}/status/{code}",
                            headers={"X-Request-ID": f"gw-{code}", "traceparent": f"00-{TRACE}-{SPAN}-01"},
                        ) as response:
                            await response.read()
                received = await receiver.wait_for_logs(2)
        finally:
            await exporter.stop()
    by_id = {r.attributes["request.id"]: r for r in received}
    ok, failed = by_id["gw-200"], by_id["gw-503"]
    assert ok.scope == "sidecar.gateway" and ok.body == "GET /status/{code} 200"
    assert ok.severity_number == 9 and failed.severity_number == 17
    assert ok.trace_id == TRACE
    assert ok.attributes["status"] == 200 and ok.attributes["method"] == "GET"
    assert ok.time_ns > 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_receiver_down_the_pipeline_never_waits_and_drops_are_counted(protocol: str) -> None:
    port = free_port()  # nothing listens there
    exporter, registry = exporter_for(
        f"http://127.0.0.1:{port}",
        protocol,
        max_retries=2,
        retry_initial=0.02,
        retry_max=0.05,
        max_queue=200,
        max_batch=50,
    )
    await exporter.start()
    pipeline = pipeline_into(exporter)
    try:
        started = time.thread_time()  # this thread's CPU: waiting for the machine's busy cores is not counted
        for _ in range(10):
            pipeline.feed("api", LINES * 20)  # 600 lines into a queue of 200, synchronously: nothing awaits
        assert time.thread_time() - started < 0.25  # parsing and appending only; no encoding, no I/O
        assert value(registry, "sidecar_otlp_log_records_dropped_total", reason="queue_full") > 0
        deadline = time.monotonic() + 10
        while value(registry, "sidecar_otlp_log_records_dropped_total", reason="export_failed") < 50:
            assert time.monotonic() < deadline, "no batch given up after its retries"
            await asyncio.sleep(0.05)
        assert value(registry, "sidecar_otlp_log_export_failures_total", reason="connection") >= 3
    finally:
        await exporter.stop(flush_seconds=0.2)
    dropped = sum(
        value(registry, "sidecar_otlp_log_records_dropped_total", reason=r)
        for r in ("queue_full", "export_failed", "shutdown")
    )
    assert dropped == 600  # every line is accounted for
    assert value(registry, "sidecar_otlp_log_queue_records") == 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_slow_receiver_times_out_then_the_retry_gets_through(protocol: str) -> None:
    receiver_type = OtlpGrpcReceiver if protocol == "grpc" else OtlpHttpReceiver
    async with receiver_type() as receiver:
        receiver.delay = 1.0
        exporter, registry = exporter_for(
            receiver.endpoint, protocol, timeout=0.2, retry_initial=0.05, max_retries=10
        )
        await exporter.start()
        try:
            pipeline_into(exporter).feed("api", LINES)
            deadline = time.monotonic() + 10
            while value(registry, "sidecar_otlp_log_export_failures_total", reason="timeout") < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            receiver.delay = 0.0
            received = await receiver.wait_for_logs(3)
        finally:
            await exporter.stop()
    assert len({r.body for r in received}) == 3
    assert value(registry, "sidecar_otlp_log_records_dropped_total", reason="export_failed") == 0


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_refusing_receiver_retry_later_is_retried_a_refusal_is_dropped(protocol: str) -> None:
    import grpc

    receiver_type = OtlpGrpcReceiver if protocol == "grpc" else OtlpHttpReceiver
    async with receiver_type() as receiver:
        exporter, registry = exporter_for(receiver.endpoint, protocol, retry_initial=0.05, max_retries=10)

        def refuse(later: bool) -> None:
            if isinstance(receiver, OtlpGrpcReceiver):
                receiver.grpc_code = (
                    grpc.StatusCode.UNAVAILABLE if later else grpc.StatusCode.INVALID_ARGUMENT
                )
            else:
                receiver.status = 503 if later else 400

        def accept() -> None:
            if isinstance(receiver, OtlpGrpcReceiver):
                receiver.grpc_code = None
            else:
                receiver.status = 200

        await exporter.start()
        try:
            refuse(later=False)
            pipeline_into(exporter).feed("api", LINES)
            deadline = time.monotonic() + 10
            while value(registry, "sidecar_otlp_log_records_dropped_total", reason="rejected") < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert receiver.attempts == 1  # a refusal is not retried

            refuse(later=True)
            pipeline_into(exporter).feed("api", LINES)
            while receiver.attempts < 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            accept()
            received = await receiver.wait_for_logs(3)
        finally:
            await exporter.stop()
    assert len(received) == 3
    assert value(registry, "sidecar_otlp_log_export_failures_total", reason="rejected") == 1
    retried = "connection" if protocol == "grpc" else "retryable"
    assert value(registry, "sidecar_otlp_log_export_failures_total", reason=retried) >= 2
    assert value(registry, "sidecar_otlp_log_records_exported_total") == 3


def test_endpoint_resolution_and_environment() -> None:
    base = Settings(default_checks=False)
    assert plan_log_export(base, {}) is None  # off by default
    assert plan_log_export(base, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is None  # traces only
    plan = plan_log_export(base, {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c:4318/custom/logs"})
    assert plan is not None and plan.target == "http://c:4318/custom/logs"  # used as it is
    on = Settings(
        default_checks=False, logs={"otlp": {"enabled": True}}, tracing={"endpoint": "http://t:4318"}
    )
    plan = plan_log_export(on, {})
    assert plan is not None and plan.target == "http://t:4318/v1/logs"
    grpc_plan = plan_log_export(on, {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert grpc_plan is not None and (grpc_plan.protocol, grpc_plan.target) == ("grpc", "t:4318")
    assert plan_log_export(on, {"OTEL_LOGS_EXPORTER": "none"}) is None
    headers = plan_log_export(on, {"OTEL_EXPORTER_OTLP_LOGS_HEADERS": "api-key=a%20b"})
    assert headers is not None and headers.headers == {"api-key": "a b"}
