"""The collector that renders check results and readiness into the Prometheus registry.

Scrapes read a snapshot: the families are built from the latest results (client_python's custom-collector
pattern) and never await anything. ``/metrics`` reads them as plain rows (``exposition_rows``), in steps,
without client_python's per-sample objects; ``collect`` gives the same families to client_python.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from collectors.base import Sample, Status
from sidecar import __version__
from sidecar.serving.text_exposition import FamilyRows

if TYPE_CHECKING:
    from sidecar.probing.health import HealthModel
    from sidecar.probing.results import ResultStore

CHECK_LABELS = ("check", "kind")
_STATUSES = tuple((status, status.value) for status in Status)  # iterating the enum per check is slow
_PAUSE_EVERY = 32  # rows built between two points where a render may give the loop back (some 10 us)


class CheckMetrics(Collector):
    """``sidecar_check_*``, ``sidecar_ready`` and every collector's own samples, from cached results."""

    def __init__(self, store: ResultStore, health: HealthModel) -> None:
        self._store = store
        self._health = health

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with configuration; describe nothing so registration never scrapes

    def collect(self) -> Iterator[Metric]:
        """The same families as client_python Metrics (``registry.collect()``, ``generate_latest``)."""
        for family in self.exposition_rows():
            if family is not None:
                yield family.to_metric()

    def exposition_rows(self) -> Iterator[FamilyRows | None]:
        """Every family as plain rows, from one snapshot of the results; ``None`` where a render may pause.

        The snapshot (results, failure counts, hysteresis state, readiness) is taken in one step, so
        every family agrees with every other even when a probe finishes while a long render is paused;
        building and encoding the rows then goes in steps (a pause point every ``_PAUSE_EVERY`` rows or
        so: a check may carry thousands of samples, such as one per queue).
        """
        health = self._health
        snapshot = [
            (
                check,
                kind,
                sorted(self._store.failures(check).items()),
                self._ready(check),
                self._store.latest(check),
            )
            for check, kind in list(self._store.checks())
        ]
        readiness, draining, changes = health.readiness.ready, health.draining, health.readiness_changes
        up = FamilyRows.new(
            "sidecar_check_up", "gauge", "1 if the check's last probe did not fail, else 0.", CHECK_LABELS
        )
        status = FamilyRows.new(
            "sidecar_check_status",
            "gauge",
            "One-hot status of the check's last probe.",
            [*CHECK_LABELS, "status"],
        )
        duration = FamilyRows.new(
            "sidecar_check_duration_seconds", "gauge", "Duration of the check's last probe.", CHECK_LABELS
        )
        last = FamilyRows.new(
            "sidecar_check_last_run_timestamp_seconds",
            "gauge",
            "Unix time at which the check's last probe finished.",
            CHECK_LABELS,
        )
        ready = FamilyRows.new(
            "sidecar_check_ready",
            "gauge",
            "1 if the check passes after hysteresis (rise/fall), else 0.",
            [*CHECK_LABELS, "critical"],
        )
        failures = FamilyRows.new(
            "sidecar_check_failures", "counter", "Failed probes by reason.", [*CHECK_LABELS, "reason"]
        )
        families: dict[str, FamilyRows] = {}
        built = 0  # rows since the last pause point
        groups: dict[str, list[Sample]] = {}  # one check's samples by family: the result's own objects
        for check, kind, failed, state, result in snapshot:
            if built >= _PAUSE_EVERY:
                built = 0
                yield None
            built += 8  # the check's own rows (up, status, duration, ...), roughly
            for reason, count in failed:
                failures.rows.append(((check, kind, reason), count))
            if state is not None:
                is_ready, critical = state
                ready.rows.append(((check, kind, "true" if critical else "false"), 1.0 if is_ready else 0.0))
            if result is None:
                continue
            labels = (check, kind)
            up.rows.append((labels, 1.0 if result.up else 0.0))
            for value, text in _STATUSES:
                status.rows.append(((check, kind, text), 1.0 if result.status is value else 0.0))
            duration.rows.append((labels, result.duration_seconds))
            last.rows.append((labels, result.finished_at))
            filed = 0  # samples filed at the last pause
            for count in self._samples(check, result.samples, families, groups, _PAUSE_EVERY - built):
                filed, built = count, 0
                yield None
            built += len(result.samples) - filed
        ready_now = FamilyRows.new("sidecar_ready", "gauge", "1 if /readyz answers 200, else 0.")
        ready_now.rows.append(((), 1.0 if readiness else 0.0))
        draining_now = FamilyRows.new("sidecar_draining", "gauge", "1 while the sidecar is draining, else 0.")
        draining_now.rows.append(((), 1.0 if draining else 0.0))
        changed = FamilyRows.new(
            "sidecar_readiness_changes", "counter", "Times readiness changed after start-up."
        )
        changed.rows.append(((), changes))
        info = FamilyRows.new(
            "sidecar_build_info", "gauge", "Build information; always 1.", ["version", "python_version"]
        )
        info.rows.append(((__version__, platform.python_version()), 1.0))
        for family in (up, status, duration, last, ready, failures, ready_now, draining_now, changed, info):
            yield family  # the encoder may give the loop back after any family
        for family in families.values():
            yield family  # the encoder may give the loop back after any family

    @staticmethod
    def _samples(
        check: str,
        samples: tuple[Sample, ...],
        families: dict[str, FamilyRows],
        groups: dict[str, list[Sample]],
        first_pause: int,
    ) -> Iterator[int]:
        """File one check's samples under their families, as the result's own objects (no tuple per
        row); yields where a render may pause (after ``first_pause`` samples, then every
        ``_PAUSE_EVERY``) the count of samples filed so far."""
        groups.clear()
        countdown = first_pause
        for index, sample in enumerate(samples, 1):
            items = groups.get(sample.spec.name)
            if items is None:
                family = families.get(sample.spec.name)
                if family is None:
                    spec = sample.spec
                    # exporter families keep their exact names: a counter's ends in _total (the
                    # catalogue test holds every collector to it); an exporter's counter without it
                    # is declared untyped, which both formats carry under the exact name
                    family = families[spec.name] = FamilyRows.exact(
                        spec.name, spec.type, spec.help, ["check", *spec.labels]
                    )
                items = groups[sample.spec.name] = []
                family.groups.append((check, items))
            items.append(sample)
            countdown -= 1
            if countdown <= 0:
                countdown = _PAUSE_EVERY
                yield index

    def _ready(self, check: str) -> tuple[bool, bool] | None:
        """(ready, critical) after hysteresis, None while the check is still starting."""
        state = self._health.states.get(check)
        if state is None or state.ready is None:
            return None
        return state.ready, state.critical
