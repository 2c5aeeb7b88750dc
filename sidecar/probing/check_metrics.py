"""The collector that renders check results and readiness into the Prometheus registry.

Scrapes read a snapshot: ``CheckMetrics.collect`` runs synchronously on the event loop and only
walks the latest results (client_python's custom-collector pattern); it never awaits anything.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collectors.base import MetricSpec, Status
from sidecar import __version__

if TYPE_CHECKING:
    from sidecar.probing.health import HealthModel
    from sidecar.probing.results import ResultStore

CHECK_LABELS = ["check", "kind"]


class CheckMetrics(Collector):
    """``sidecar_check_*``, ``sidecar_ready`` and every collector's own samples, from cached results."""

    def __init__(self, store: ResultStore, health: HealthModel) -> None:
        self._store = store
        self._health = health

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with configuration; describe nothing so registration never scrapes

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "sidecar_check_up", "1 if the check's last probe did not fail, else 0.", labels=CHECK_LABELS
        )
        status = GaugeMetricFamily(
            "sidecar_check_status",
            "One-hot status of the check's last probe.",
            labels=[*CHECK_LABELS, "status"],
        )
        duration = GaugeMetricFamily(
            "sidecar_check_duration_seconds", "Duration of the check's last probe.", labels=CHECK_LABELS
        )
        last = GaugeMetricFamily(
            "sidecar_check_last_run_timestamp_seconds",
            "Unix time at which the check's last probe finished.",
            labels=CHECK_LABELS,
        )
        ready = GaugeMetricFamily(
            "sidecar_check_ready",
            "1 if the check passes after hysteresis (rise/fall), else 0.",
            labels=[*CHECK_LABELS, "critical"],
        )
        failures = CounterMetricFamily(
            "sidecar_check_failures", "Failed probes by reason.", labels=[*CHECK_LABELS, "reason"]
        )
        families: dict[str, Metric] = {}
        for check, kind in self._store.checks():
            labels = [check, kind]
            for reason, count in sorted(self._store.failures(check).items()):
                failures.add_metric([*labels, reason], count)
            state = self._health.states.get(check)
            if state is not None and state.ready is not None:
                ready.add_metric(
                    [*labels, "true" if state.critical else "false"], 1.0 if state.ready else 0.0
                )
            result = self._store.latest(check)
            if result is None:
                continue
            up.add_metric(labels, 1.0 if result.up else 0.0)
            for value in Status:
                status.add_metric([*labels, value.value], 1.0 if result.status is value else 0.0)
            duration.add_metric(labels, result.duration_seconds)
            last.add_metric(labels, result.finished_at)
            for sample in result.samples:
                family = families.get(sample.spec.name)
                if family is None:
                    family = families[sample.spec.name] = _family(sample.spec)
                label_map = dict(
                    zip(("check", *sample.spec.labels), (check, *sample.label_values), strict=True)
                )
                family.add_sample(sample.spec.name, label_map, sample.value)
        readiness = self._health.readiness
        ready_now = GaugeMetricFamily("sidecar_ready", "1 if /readyz answers 200, else 0.")
        ready_now.add_metric([], 1.0 if readiness.ready else 0.0)
        draining = GaugeMetricFamily("sidecar_draining", "1 while the sidecar is draining, else 0.")
        draining.add_metric([], 1.0 if self._health.draining else 0.0)
        changes = CounterMetricFamily("sidecar_readiness_changes", "Times readiness changed after start-up.")
        changes.add_metric([], self._health.readiness_changes)
        info = GaugeMetricFamily(
            "sidecar_build_info", "Build information; always 1.", labels=["version", "python_version"]
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield from (up, status, duration, last, ready, failures, ready_now, draining, changes, info)
        yield from families.values()


def _family(spec: MetricSpec) -> Metric:
    """An empty family whose samples carry exactly ``spec.name``.

    Counters end in ``_total`` (the catalogue test holds every collector to it; OpenMetrics
    requires it), so the family name is the name without it, as client_python expects. Exporter
    families that are counters under a name without ``_total`` (``pg_stat_database_xact_commit``)
    are declared untyped, which both formats carry under the exact name.
    """
    if spec.type == "counter":
        return Metric(spec.name.removesuffix("_total"), spec.help, "counter")
    return Metric(spec.name, spec.help, "unknown" if spec.type == "untyped" else "gauge")
