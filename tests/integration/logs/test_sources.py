"""Log sources end to end: real pino, pino-http, winston and bunyan output (Node) tailed from files;
standard input through a pipe; and the real sidecar process reading its stdin and serving the metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.settings import LogSettings
from sidecar.logs.sources.channel import Batch, SourceChannel
from tests.e2e.sidecar_process import SidecarProcess
from tests.servers import require_binary, skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NODE_DIR = Path(__file__).parents[1] / "node_logs"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def wait_until(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def node_fixtures(tmp_path: Path) -> list[Path]:
    node = require_binary("node")
    if not (NODE_DIR / "node_modules" / "pino-http").is_dir():
        skip_or_fail(
            "tests/integration/node_logs has no node_modules: run npm install there (tests/run.sh does)"
        )
    paths = [tmp_path / name for name in ("pino.log", "winston.log", "bunyan.log")]
    subprocess.run([node, str(NODE_DIR / "emit.js"), *map(str, paths)], check=True, timeout=30, cwd=NODE_DIR)
    return paths


async def test_real_node_logger_output(tmp_path: Path) -> None:
    pino, winston, bunyan = node_fixtures(tmp_path)
    settings = LogSettings.model_validate(
        {
            "files": [
                {"path": str(pino), "start": "beginning", "source": "pino"},
                {"path": str(winston), "start": "beginning", "source": "winston"},
                {"path": str(bunyan), "start": "beginning", "source": "bunyan"},
            ],
            "state_dir": str(tmp_path / "state"),
            "poll_interval": 0.03,
        }
    )
    registry = CollectorRegistry()
    index = CorrelationIndex()
    errors: list[tuple[str | None, str | None]] = []
    runtime = LogRuntime(settings, registry, HttpMetrics(registry, RouteNormaliser()), index)
    runtime.pipeline.error_sinks.append(
        lambda r: errors.append((r.error.type, r.error.value) if r.error else (None, None))
    )
    await runtime.start()
    try:
        await wait_until(
            lambda: value(registry, "sidecar_log_lines_total", source="bunyan", level="error") == 1
        )
        await wait_until(
            lambda: value(registry, "sidecar_log_lines_total", source="winston", level="error") == 1
        )
        await wait_until(lambda: value(registry, "sidecar_log_lines_total", source="pino", level="info") == 3)
    finally:
        await runtime.stop()
    assert value(registry, "sidecar_log_lines_total", source="pino", level="error") == 1
    assert value(registry, "sidecar_log_lines_total", source="winston", level="info") == 2  # info + http
    assert value(registry, "sidecar_log_lines_total", source="winston", level="warn") == 1
    assert value(registry, "sidecar_log_lines_total", source="bunyan", level="info") == 1
    for source in ("pino", "winston", "bunyan"):
        for reason in ("invalid_json", "invalid_utf8", "binary", "too_long"):
            assert value(registry, "sidecar_log_lines_rejected_total", source=source, reason=reason) == 0
    ok = {
        "http_request_method": "GET",
        "http_route": "/users/{id}",
        "http_response_status_code": "200",
        "error_type": "",
    }
    assert value(registry, "http_server_request_duration_seconds_count", **ok) == 1
    missing = {**ok, "http_route": "/missing/{id}", "http_response_status_code": "404"}
    assert value(registry, "http_server_request_duration_seconds_count", **missing) == 1
    assert sorted(errors) == [("TypeError", "cannot read properties of undefined (reading 'id')")] * 3
    for request_id in ("pino-req-1", "pino-req-2", "winston-req-1", "bunyan-req-1"):
        assert index.get(request_id) is not None, request_id


async def test_stdin_through_a_pipe() -> None:
    read_fd, write_fd = os.pipe()
    settings = LogSettings(stdin=True)
    registry = CollectorRegistry()
    runtime = LogRuntime(settings, registry, stdin_fd=read_fd)
    await runtime.start()
    try:
        os.write(
            write_fd,
            b'{"level":30,"msg":"a"}\n{"level":40,"msg":"b"}\nERROR c\n{"level":30,"msg":"no newline"}',
        )
        os.close(write_fd)
        await wait_until(
            lambda: value(registry, "sidecar_log_lines_total", source="stdin", level="info") == 2
        )
        assert value(registry, "sidecar_log_lines_total", source="stdin", level="warn") == 1
        assert value(registry, "sidecar_log_lines_total", source="stdin", level="error") == 1
        assert runtime.stdin is not None and runtime.stdin.done.is_set()
    finally:
        await runtime.stop()
        os.close(read_fd)


async def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    registry = CollectorRegistry()
    metrics = LogMetrics(registry)
    channel = SourceChannel("stdin", 2, lambda source, batch: None, metrics.drop)
    assert channel.offer(Batch([b"1"])) and channel.offer(Batch([b"2"]))
    assert not channel.offer(Batch([b"3", b"4", b"5"]))
    assert value(registry, "sidecar_log_lines_dropped_total", source="stdin", reason="queue_full") == 3


def test_real_sidecar_process_reads_stdin_and_serves_the_metrics(tmp_path: Path) -> None:
    config = "default_checks: false\nlog_level: warning\nlogs:\n  stdin: true\n"
    sidecar = SidecarProcess(config)
    sidecar.env["SIDECAR_LOGS__STATE_DIR"] = str(tmp_path / "state")
    read_fd, write_fd = os.pipe()
    stdin_copy = os.dup(0)
    try:
        os.dup2(read_fd, 0)  # the child inherits this as its standard input
        sidecar.start()
    finally:
        os.dup2(stdin_copy, 0)
        os.close(stdin_copy)
        os.close(read_fd)
    try:
        lines = b"".join(
            b'{"level":30,"time":1700000000000,"reqId":"e2e-%d","req":{"method":"GET","url":"/items/%d"},'
            b'"res":{"statusCode":200},"responseTime":5,"msg":"request completed"}\n' % (i, i)
            for i in range(50)
        )
        os.write(write_fd, lines + b"\xff bad bytes\n")
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline:
            text = sidecar.get("/metrics")[1].decode()
            if 'sidecar_log_lines_total{level="info",source="stdin"} 50.0' in text:
                break
            time.sleep(0.1)
        assert 'sidecar_log_lines_total{level="info",source="stdin"} 50.0' in text
        assert 'sidecar_log_lines_rejected_total{reason="invalid_utf8",source="stdin"} 1.0' in text
        assert 'http_route="/items/{id}"' in text
        assert "sidecar_correlation_requests 50.0" in text
        with urllib.request.urlopen(f"{sidecar.admin}/debug/requests/e2e-7", timeout=5) as response:
            assert response.status == 200
    finally:
        os.close(write_fd)
        sidecar.stop()
