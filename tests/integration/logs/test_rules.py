"""The rules of docs/logs.md ("the usual cases") on real log lines: pino and winston (Node, from the
lockfile in tests/integration/node_logs) and structlog, read through each source: tailed files, the
HTTP ingest endpoint of the real admin app, and standard input through a pipe. Then a reload through
the real SIGHUP path keeps the counters of the rules that did not change."""

from __future__ import annotations

import io
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.app_keys import HEALTH, REGISTRY, STORE
from sidecar.config import Settings
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.settings import LogSettings
from sidecar.logs.wiring import add_log_admin_routes
from sidecar.server import create_app, reload_checks
from sidecar.serving.admin_api import create_admin_app
from tests.integration.logs.test_sources import NODE_DIR, wait_until
from tests.servers import require_binary, skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

DOCS = Path(__file__).parents[3] / "docs" / "logs.md"
AiohttpClient = Callable[[web.Application], Any]


def docs_rules() -> list[dict[str, Any]]:
    """The YAML block of docs/logs.md marked as the usual cases, as configuration."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    block = next(b for b in blocks if "docs example: the usual cases" in b)
    rules: list[dict[str, Any]] = yaml.safe_load(block)["logs"]["rules"]
    return rules


def node_events(tmp_path: Path) -> tuple[Path, Path]:
    node = require_binary("node")
    if not (NODE_DIR / "node_modules" / "winston").is_dir():
        skip_or_fail("tests/integration/node_logs has no node_modules: run npm ci there (tests/run.sh does)")
    pino, winston = tmp_path / "pino.log", tmp_path / "winston.log"
    subprocess.run(
        [node, str(NODE_DIR / "emit_events.js"), str(pino), str(winston)],
        check=True,
        timeout=30,
        cwd=NODE_DIR,
    )
    return pino, winston


def structlog_events() -> bytes:
    """The same events as the Node script, written by structlog's JSON renderer (``event`` is the message)."""
    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
    )
    logger.info("business event", event_type="user.signup")
    logger.info("job completed", queue="email", duration_ms=60.5)
    logger.info("job completed", queue="email")  # no duration: counted as missing_field
    logger.warning("login failed", reason="bad_password")
    logger.info("cache lookup", cache="hit")
    return stream.getvalue().encode()


def lines_counted(registry: CollectorRegistry) -> float:
    return sum(
        s.value
        for m in registry.collect()
        if m.name == "sidecar_log_lines"
        for s in m.samples
        if s.name == "sidecar_log_lines_total"
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def assert_usual_cases(registry: CollectorRegistry, per_source: int = 1) -> None:
    """What pino + winston + structlog's events give under the docs' rules (``per_source``: times fed)."""
    n = per_source
    assert sample(registry, "app_business_events_total", type="order.created") == 3 * n
    assert sample(registry, "app_business_events_total", type="user.signup") == 2 * n
    assert sample(registry, "app_order_amount_total") == pytest.approx(65.4 * n)
    email = {"queue": "email"}
    assert sample(registry, "app_job_duration_seconds_count", **email) == 3 * n
    assert sample(registry, "app_job_duration_seconds_sum", **email) == pytest.approx(2.5805 * n)
    assert sample(registry, "app_job_duration_seconds_bucket", le="0.1", **email) == 1 * n
    assert sample(registry, "app_job_duration_seconds_bucket", le="5.0", **email) == 3 * n
    assert sample(registry, "app_job_duration_seconds_count", queue="images") == 1 * n
    assert sample(registry, "app_job_duration_seconds_count", queue="reports") == 1 * n
    assert sample(registry, "app_login_failures_total", reason="bad_password") == 2 * n
    assert sample(registry, "app_login_failures_total", reason="unknown_user") == 1 * n
    assert sample(registry, "app_login_failures_total", reason="locked") == 1 * n
    assert sample(registry, "app_login_failures_total", reason="_other") == 1 * n
    assert sample(registry, "app_cache_lookups_total", result="hit") == 4 * n
    assert sample(registry, "app_cache_lookups_total", result="miss") == 2 * n
    jobs = "app_job_duration_seconds"
    assert sample(registry, "sidecar_log_rule_errors_total", rule=jobs, reason="non_numeric") == 1 * n
    assert sample(registry, "sidecar_log_rule_errors_total", rule=jobs, reason="missing_field") == 1 * n
    overflow = {"rule": "app_login_failures_total", "label": "reason"}
    assert sample(registry, "sidecar_log_rule_label_overflow_total", **overflow) == 1 * n


async def test_docs_rules_on_real_pino_winston_and_structlog_files(tmp_path: Path) -> None:
    pino, winston = node_events(tmp_path)
    structured = tmp_path / "structlog.log"
    structured.write_bytes(structlog_events())
    settings = LogSettings.model_validate(
        {
            "files": [
                {"path": str(path), "start": "beginning", "source": path.stem}
                for path in (pino, winston, structured)
            ],
            "state_dir": str(tmp_path / "state"),
            "poll_interval": 0.03,
            "rules": docs_rules(),
        }
    )
    registry = CollectorRegistry()
    runtime = LogRuntime(settings, registry)
    await runtime.start()
    try:
        total = sum(len(p.read_bytes().splitlines()) for p in (pino, winston, structured))
        await wait_until(lambda: lines_counted(registry) >= total)
    finally:
        await runtime.stop()
    assert_usual_cases(registry)


async def test_docs_rules_on_http_ingest_and_stdin_then_sighup_reload(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    pino, winston = node_events(tmp_path)
    lines = pino.read_bytes() + winston.read_bytes() + structlog_events()
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml.safe_dump({"default_checks": False, "logs": {"rules": docs_rules()}}))
    settings = Settings(default_checks=False, logs={"rules": docs_rules()})
    core = create_app(settings)
    admin = create_admin_app(settings, core[STORE], core[HEALTH])
    add_log_admin_routes(admin, core)
    http = await aiohttp_client(admin)

    response = await http.post("/ingest/logs?source=app", data=lines)
    assert response.status == 200
    assert_usual_cases(core[REGISTRY])

    # standard input: the same lines through a pipe, into a runtime of its own
    read_fd, write_fd = os.pipe()
    stdin_registry = CollectorRegistry()
    stdin_settings = LogSettings.model_validate({"stdin": True, "rules": docs_rules()})
    stdin_runtime = LogRuntime(stdin_settings, stdin_registry, stdin_fd=read_fd)
    await stdin_runtime.start()
    try:
        os.write(write_fd, lines)
        os.close(write_fd)
        await wait_until(lambda: lines_counted(stdin_registry) >= len(lines.splitlines()))
    finally:
        await stdin_runtime.stop()
    assert_usual_cases(stdin_registry)

    # SIGHUP's path: the cache rule changes (a third result), the others do not
    rules = docs_rules()
    cache = next(r for r in rules if r["name"] == "app_cache_lookups_total")
    cache["labels"]["result"]["allow"] = ["hit", "miss", "stale"]
    config.write_text(yaml.safe_dump({"default_checks": False, "logs": {"stdin": True, "rules": rules}}))
    await reload_checks(core, config)
    registry = core[REGISTRY]
    assert sample(registry, "app_business_events_total", type="order.created") == 3  # kept
    assert sample(registry, "app_cache_lookups_total", result="hit") is None  # changed: from zero
    response = await http.post("/ingest/logs?source=app", data=lines)
    assert response.status == 200
    assert sample(registry, "app_business_events_total", type="order.created") == 6
    assert sample(registry, "app_cache_lookups_total", result="hit") == 4
