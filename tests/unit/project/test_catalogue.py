"""The README's metric catalogue names every metric the sidecar can export (metric names are public API)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from sidecar.app_keys import REGISTRY
from sidecar.config import Settings
from sidecar.server import Server
from sidecar.serving.listeners import rejection_recorder
from tests.exporter_names import collector_specs, own_findings
from tests.servers import require_binary

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()
_COUNTER_SUFFIX = re.compile(r"_total$")


def collector_metric_names() -> set[str]:
    return {spec.name for spec in collector_specs()}


def sidecar_metric_names() -> set[str]:
    """Families of a fully wired server (gateway on, listeners' rejection counter registered)."""
    server = Server(Settings(default_checks=False, gateway={"upstream": "http://127.0.0.1:9"}))
    registry = server.app[REGISTRY]
    rejection_recorder(registry, "health")
    names = set()
    for family in registry.collect():
        if family.name.startswith(("process_", "python_")):
            continue
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def test_every_exported_metric_is_in_the_readme() -> None:
    missing = sorted(n for n in collector_metric_names() | sidecar_metric_names() if f"`{n}`" not in README)
    assert not missing, f"add these to the README's metric catalogue: {missing}"


def test_metric_specs_follow_conventions() -> None:
    for spec in collector_specs():
        assert spec.help, spec.name
        if spec.exporter:  # the exporter's name as it is; counters always end in _total (OpenMetrics)
            assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", spec.name), spec.name
            assert spec.type != "counter" or spec.name.endswith("_total"), spec.name
            continue
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", spec.name), spec.name
        assert spec.type != "untyped", spec.name
        assert (spec.type == "counter") == spec.name.endswith("_total"), spec.name


def test_every_collector_metric_spec_passes_promtool() -> None:
    """All collectors' families, each with the ``check`` label the sidecar adds, as one exposition.

    Only the exporters' own names may break a naming rule (tests/exporter_names.py says why).
    """
    promtool = require_binary("promtool")
    lines: list[str] = []
    for spec in collector_specs():
        lines += [f"# HELP {spec.name} {spec.help}", f"# TYPE {spec.name} {spec.type}"]
        labels = ",".join(f'{label}="x"' for label in (*spec.labels, "check"))
        lines.append(f"{spec.name}{{{labels}}} 1")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        check=False,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "error while linting" not in result.stderr, result.stderr
    assert own_findings(result.stdout + result.stderr) == []
