"""The example Alertmanager configuration: valid for amtool, pages to the pager, tickets to the ticket
receiver, grouped by alert and check, and a page inhibits tickets about the same check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.servers import require_binary
from tests.unit.alerts.test_alert_rules import alerts

CONFIG = Path(__file__).resolve().parents[3] / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("amtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_amtool_check_config() -> None:
    done = amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=SidecarCriticalDependencyDown", "check=db"], "pager"),
        (["severity=ticket", "alertname=SidecarCheckWarning", "check=jobs"], "ticket"),
        (["alertname=SomethingElse"], "ticket"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    done = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def test_every_alert_severity_has_its_own_route() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    routed = {m for r in config["route"]["routes"] for m in r["matchers"]}
    for alert in alerts():
        assert f'severity="{alert["labels"]["severity"]}"' in routed, alert["alert"]
    assert {"alertname", "check"} <= set(config["route"]["group_by"])


def test_a_page_inhibits_tickets_about_the_same_check() -> None:
    (rule,) = yaml.safe_load(CONFIG.read_text())["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="page"']
    assert rule["target_matchers"] == ['severity="ticket"']
    assert {"check", "instance", "service", "slo"} <= set(rule["equal"])
