"""Which metric names are an exporter's (and so exempt from promtool's naming rules).

The sidecar reproduces redis_exporter, postgres_exporter, mysqld_exporter, node_exporter and
blackbox_exporter families under their exact names, so the community mixins work unchanged. Some of
those names break a ``promtool check metrics`` rule (``pg_locks_count`` is a gauge ending in
``_count``; ``node_memory_MemTotal_bytes`` is camelCase). Those findings, and only those, are
accepted; every name of the sidecar's own must still pass.
"""

from __future__ import annotations

import importlib
import pkgutil

import collectors
from collectors.base import MetricSpec

# Families whose names are built at run time from what the server or host reports.
DYNAMIC_EXPORTER_PREFIXES = ("mysql_global_status_", "mysql_global_variables_", "node_memory_")


def collector_specs() -> list[MetricSpec]:
    """Every MetricSpec declared at module level in collectors/, once per name."""
    specs: dict[str, MetricSpec] = {}
    for module_info in pkgutil.iter_modules(collectors.__path__):
        module = importlib.import_module(f"collectors.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, MetricSpec):
                specs.setdefault(value.name, value)
    return list(specs.values())


def exporter_names() -> frozenset[str]:
    return frozenset(spec.name for spec in collector_specs() if spec.exporter)


def is_exporter_name(name: str) -> bool:
    return name in exporter_names() or name.startswith(DYNAMIC_EXPORTER_PREFIXES)


def own_findings(promtool_output: str) -> list[str]:
    """promtool's findings minus naming-rule findings on exporter names (``<name> <rule text>``)."""
    return [
        line
        for line in promtool_output.splitlines()
        if line.strip() and not is_exporter_name(line.split(" ", 1)[0])
    ]
