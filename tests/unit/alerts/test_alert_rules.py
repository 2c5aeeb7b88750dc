"""The alerting and recording rules in ``alerts/``: valid for promtool, unit-tested alert by alert,
documented (severity, summary, description, a runbook section that exists), and only over metrics the
sidecar exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql_names import exported_metric_names, referenced_names
from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "alerts"
RULE_TESTS = ALERTS / "tests"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/observability-sidecar/observability-sidecar/blob/main/docs/runbooks.md#"
SEVERITIES = {"page", "ticket"}
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")  # level:metric:operations


def rule_files() -> list[Path]:
    return sorted(ALERTS.glob("*.rules.yml"))


def groups() -> list[dict[str, Any]]:
    found = []
    for path in rule_files():
        found += yaml.safe_load(path.read_text())["groups"]
    return found


def rules() -> list[dict[str, Any]]:
    return [rule for group in groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {github_anchor(m) for m in re.findall(r"^#+ (.+)$", RUNBOOKS.read_text(), flags=re.M)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ALERTS
    )


def test_there_are_rule_files_and_tests() -> None:
    assert len(rule_files()) >= 4
    assert sorted(RULE_TESTS.glob("*_test.yml"))


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", *[p.name for p in rule_files()])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass() -> None:
    tests = [str(p.relative_to(ALERTS)) for p in sorted(RULE_TESTS.glob("*_test.yml"))]
    done = promtool("test", "rules", *tests)
    assert done.returncode == 0, done.stdout + done.stderr


def test_group_and_alert_names_are_unique() -> None:
    names = [g["name"] for g in groups()]
    assert len(names) == len(set(names)), names  # the PrometheusRule builder merges all files
    alert_names = [a["alert"] for a in alerts()]
    assert len(alert_names) == len(set(alert_names)), alert_names


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_is_documented(alert: dict[str, Any]) -> None:
    name = alert["alert"]
    assert re.fullmatch(r"Sidecar[A-Z][A-Za-z0-9]+", name), name
    assert alert.get("labels", {}).get("severity") in SEVERITIES, name
    annotations = alert.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: no {key}"
    assert "{{" in annotations["summary"] + annotations["description"], f"{name}: name the labels"
    url = annotations["runbook_url"]
    assert url == RUNBOOK_BASE + name.lower(), f"{name}: runbook_url should be {RUNBOOK_BASE}{name.lower()}"
    assert name.lower() in runbook_anchors(), f"docs/runbooks.md has no section '### {name}'"


def test_every_runbook_section_belongs_to_an_alert() -> None:
    sections = set(re.findall(r"^### (\S+)$", RUNBOOKS.read_text(), flags=re.M))
    assert sections == {a["alert"] for a in alerts()}


def test_recording_rules_follow_the_naming_convention() -> None:
    for name in recorded_names():
        assert RECORD_NAME.match(name), name


def test_every_rule_selects_only_exported_metrics() -> None:
    exported = exported_metric_names()
    recorded = recorded_names()
    unknown: dict[str, set[str]] = {}
    for rule in rules():
        names = referenced_names(rule["expr"])
        assert names, f"no metric found in {rule['expr']!r}"
        names -= recorded
        if missing := names - exported:
            unknown[rule.get("alert") or rule["record"]] = missing
    assert not unknown, f"rules over metrics the sidecar does not export: {unknown}"


def test_every_rule_keeps_to_the_sidecar_job() -> None:
    for rule in rules():
        for selector in re.findall(r"[a-z_]+\{[^}]*\}", rule["expr"]):
            assert 'job="sidecar"' in selector, f"{rule.get('alert') or rule['record']}: {selector}"


def _unit_test_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(RULE_TESTS.glob("*_test.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases += test.get("alert_rule_test", [])
    return cases


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing = {c["alertname"] for c in _unit_test_cases() if c.get("exp_alerts")}
    silent = {c["alertname"] for c in _unit_test_cases() if not c.get("exp_alerts")}
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), f"never tested firing: {sorted(names - firing)}"
    assert names - silent == set(), f"never tested silent: {sorted(names - silent)}"
    assert (firing | silent) - names == set(), "tests name alerts that do not exist"


def test_every_alert_is_tested_before_and_after_its_for() -> None:
    """A silent case at or before the first firing time, so the `for:` delay is exercised."""

    def seconds(text: str) -> int:
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([dhms])", text))

    cases = _unit_test_cases()
    for alert in alerts():
        name = alert["alert"]
        fire = [seconds(c["eval_time"]) for c in cases if c["alertname"] == name and c.get("exp_alerts")]
        quiet = [seconds(c["eval_time"]) for c in cases if c["alertname"] == name and not c.get("exp_alerts")]
        assert quiet and min(quiet) < min(fire), f"{name}: no silent evaluation before it fires"
