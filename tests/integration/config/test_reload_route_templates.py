"""A reload with new ``routes.templates``: what it applies and what waits for a restart, as the warning says.

The log rules are compiled again with the new templates, so a rule's ``normalise: route`` label follows
them at once; the ``http_route`` label of ``http_server_*`` (gateway traffic and access lines) comes
from the normaliser built at start-up and keeps the old templates until the next restart. The warning
names the setting as applied in part, not as restart-only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from sidecar.app_keys import HEALTH, REGISTRY, STORE
from sidecar.config import load_settings
from sidecar.logs.wiring import add_log_admin_routes
from sidecar.server import create_app, reload_checks
from sidecar.serving.admin_api import create_admin_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

AiohttpClient = Callable[[web.Application], Any]
RULE = {
    "name": "app_hits_total",
    "type": "counter",
    "help": "hits by route",
    "labels": {"route": {"field": "@url", "normalise": "route"}},
}
LINE = (
    b'{"level": "info", "msg": "done", "method": "GET", "url": "/v/alpha", "status": 200, "duration": 12}\n'
)


async def folded_in(read: Callable[[], float | None], expected: float) -> None:
    """Access lines reach the request histogram within ``logs.access.FLUSH_INTERVAL`` (0.1 s)."""
    deadline = time.monotonic() + 2.0
    while read() != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert read() == expected


def write(path: Path, templates: list[str]) -> None:
    config = {"default_checks": False, "routes": {"templates": templates}, "logs": {"rules": [RULE]}}
    path.write_text(yaml.safe_dump(config))


async def test_new_route_templates_reach_log_rules_and_the_warning_says_what_waits(
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "sidecar.yaml"
    write(path, ["/w/{id}"])
    settings = load_settings(path, environ={})
    core = create_app(settings)
    admin = create_admin_app(settings, core[STORE], core[HEALTH])
    add_log_admin_routes(admin, core)
    http = await aiohttp_client(admin)
    registry = core[REGISTRY]
    duration = "http_server_request_duration_seconds_count"
    access = {"http_request_method": "GET", "http_response_status_code": "200", "error_type": ""}

    assert (await http.post("/ingest/logs?source=app", data=LINE)).status == 200
    assert registry.get_sample_value("app_hits_total", {"route": "/v/alpha"}) == 1
    await folded_in(lambda: registry.get_sample_value(duration, {**access, "http_route": "/v/alpha"}), 1)

    write(path, ["/v/{name}"])
    with caplog.at_level(logging.WARNING, logger="sidecar.server"):
        await reload_checks(core, path)
    warnings = [r for r in caplog.records if r.getMessage().startswith("reload: ")]
    assert [r.getMessage() for r in warnings] == [
        "reload: some changed settings are applied in part, the rest at the next restart"
    ]
    (applied,) = [getattr(r, "applied_in_part", None) for r in warnings]
    assert list(applied) == ["routes.templates"] and "logs.rules labels" in applied["routes.templates"]
    assert not any(hasattr(r, "restart_required") for r in warnings), "routes.templates is not restart-only"

    assert (await http.post("/ingest/logs?source=app", data=LINE)).status == 200
    # the rule follows the new template at once...
    assert registry.get_sample_value("app_hits_total", {"route": "/v/{name}"}) == 1
    # ...the access-line histogram keeps the templates it started with, as the warning says
    await folded_in(lambda: registry.get_sample_value(duration, {**access, "http_route": "/v/alpha"}), 2)
    assert registry.get_sample_value(duration, {**access, "http_route": "/v/{name}"}) is None
