"""The real sidecar process with ``logs.rules`` and OTLP log export: lines posted to its admin listener
become rule metrics on ``/metrics`` (clean for ``promtool check metrics``) and OTLP log records at a
local receiver; a real SIGHUP swaps the rules, keeping the counters of the rule that did not change."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import urllib.request

import orjson
import pytest
import yaml

from tests.e2e.sidecar_process import SidecarProcess, metric_value
from tests.otlp_receivers import OtlpHttpReceiver
from tests.servers import require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

JOBS = {
    "name": "app_jobs_total",
    "type": "counter",
    "help": "Finished jobs by queue.",
    "match": {"all": [{"field": "@message", "equals": "job completed"}]},
    "labels": {"queue": {"field": "queue"}},
}
LOGINS = {
    "name": "app_login_failures_total",
    "type": "counter",
    "help": "Failed logins.",
    "match": {"all": [{"field": "@message", "equals": "login failed"}]},
}
LINES = b"".join(
    orjson.dumps(line) + b"\n"
    for line in (
        {"level": 30, "msg": "job completed", "queue": "email", "reqId": "e2e-1"},
        {"level": 30, "msg": "job completed", "queue": "email"},
        {"level": 40, "msg": "login failed", "user": "x"},
    )
)


def config(rules: list[dict[str, object]], endpoint: str) -> str:
    return yaml.safe_dump(
        {
            "default_checks": False,
            "logs": {"rules": rules, "otlp": {"endpoint": endpoint, "flush_interval": 0.1}},
        }
    )


def post(sidecar: SidecarProcess) -> None:
    req = urllib.request.Request(f"{sidecar.admin}/ingest/logs?source=app", data=LINES, method="POST")
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200


def scrape(sidecar: SidecarProcess) -> str:
    status, body = sidecar.get("/metrics")
    assert status == 200
    return body.decode()


def wait_metric(sidecar: SidecarProcess, name: str, want: float | None, **labels: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        text = scrape(sidecar)
        if metric_value(text, name, **labels) == want:
            return text
        assert time.monotonic() < deadline, f"{name}{labels} never became {want}:\n{sidecar.logs()}"
        time.sleep(0.1)


async def test_rules_otlp_logs_and_sighup_in_the_real_process() -> None:
    promtool = require_binary("promtool")
    async with OtlpHttpReceiver() as receiver:
        sidecar = SidecarProcess(config([JOBS, LOGINS], receiver.endpoint))
        with sidecar:
            await asyncio.to_thread(post, sidecar)
            text = await asyncio.to_thread(wait_metric, sidecar, "app_jobs_total", 2, queue="email")
            assert metric_value(text, "app_login_failures_total") == 1
            checked = subprocess.run(
                [promtool, "check", "metrics"],
                input=text.encode(),
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
            records = await receiver.wait_for_logs(3, timeout=20)
            assert {r.body for r in records} == {"job completed", "login failed"}
            assert any(r.attributes.get("request.id") == "e2e-1" for r in records)

            changed = {
                **LOGINS,
                "match": {"all": [{"field": "@message", "one_of": ["login failed", "auth failed"]}]},
            }
            sidecar.config_path.write_text(config([JOBS, changed], receiver.endpoint))
            sidecar.signal(signal.SIGHUP)
            await asyncio.to_thread(wait_metric, sidecar, "app_login_failures_total", None)  # reset
            text = scrape(sidecar)
            assert metric_value(text, "app_jobs_total", queue="email") == 2  # unchanged rule: kept
            await asyncio.to_thread(post, sidecar)
            await asyncio.to_thread(wait_metric, sidecar, "app_jobs_total", 4, queue="email")
            assert metric_value(scrape(sidecar), "app_login_failures_total") == 1  # changed: from zero
