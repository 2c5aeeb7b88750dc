"""The Grafana dashboards in ``dashboards/``: generated from ``dashboards/generate.py`` and up to date,
importable (structure, data source variable, unique ids, a grid that fits), and every query parses and
uses only metrics the sidecar exports or the recording rules of ``alerts/`` produce."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.promql_names import exported_metric_names, referenced_names
from tests.servers import require_binary
from tests.unit.alerts.test_alert_rules import recorded_names

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "table", "state-timeline"}
# What Grafana puts in place of the variables when it runs a query (single values, as the e2e uses).
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$job": "sidecar",
    "$instance": ".*",
    "$check": ".*",
    "$queue": ".*",
    "$service": ".*",
}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def dashboards() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_text())) for p in dashboard_files()]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def substitute(expr: str) -> str:
    for variable in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(variable, SUBSTITUTIONS[variable])
    return expr


def all_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression with variables substituted) of every target."""
    return [
        (name, panel["title"], substitute(t["expr"]))
        for name, dashboard in dashboards()
        for panel in panels(dashboard)
        for t in panel["targets"]
    ]


def test_committed_dashboards_are_generated_and_up_to_date() -> None:
    generated = load_generator().generated()
    assert sorted(generated) == [p.name for p in dashboard_files()]
    for name, text in generated.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} is stale: run python dashboards/generate.py"


def test_the_expected_dashboards_exist() -> None:
    titles = {d["title"] for _, d in dashboards()}
    assert titles == {
        "Sidecar overview",
        "Sidecar dependencies",
        "Sidecar queues",
        "Sidecar host and process",
        "Sidecar SLO",
    }
    uids = [d["uid"] for _, d in dashboards()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize(("name", "dashboard"), dashboards(), ids=[p.name for p in dashboard_files()])
def test_dashboard_structure(name: str, dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    assert variables["job"]["current"]["value"] == "sidecar", "the job convention of the alert rules"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
            assert variable["query"]["query"].startswith("label_values("), variable["name"]

    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid), panel["title"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{name}: {panel['title']!r} overlaps another panel"
        occupied |= cells

    used = set()
    for panel in panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]
            used |= set(re.findall(r"\$(\w+)", target["expr"]))
    assert used - {"__rate_interval"} <= set(variables), (
        f"{name}: undefined variables {used - set(variables)}"
    )


def test_every_query_uses_only_exported_metrics() -> None:
    exported = exported_metric_names() | recorded_names()
    unknown = {}
    for name, title, expr in all_queries():
        names = referenced_names(expr)
        assert names, f"{name} / {title}: no metric in {expr!r}"
        if missing := names - exported:
            unknown[f"{name} / {title}"] = missing
    assert not unknown, f"panels over metrics the sidecar does not export: {unknown}"


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each expression as the body of a recording rule."""
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": expr} for i, (_, _, expr) in enumerate(all_queries())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    done = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
