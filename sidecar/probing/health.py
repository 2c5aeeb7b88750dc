"""Readiness with hysteresis, drain, and the IETF health document, all computed from cached results.

Nothing here does I/O: a load balancer polling /readyz reads a verdict that was computed when the
last probe result arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collectors.base import Status
from sidecar import __version__
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.probing.settings import CheckConfig


@dataclass(slots=True)
class CheckState:
    """Hysteresis state of one check: ready flips only after ``fall`` failures or ``rise`` passes in a row."""

    critical: bool
    rise: int
    fall: int
    ready: bool | None = None  # None until the first result
    passes: int = 0
    failures: int = 0
    transitions: int = 0

    def observe(self, status: Status) -> None:
        if status is Status.FAIL:
            self.failures += 1
            self.passes = 0
        else:
            self.passes += 1
            self.failures = 0
        if self.ready is None:
            self.ready = status is not Status.FAIL
        elif self.ready and self.failures >= self.fall:
            self.ready = False
            self.transitions += 1
        elif not self.ready and self.passes >= self.rise:
            self.ready = True
            self.transitions += 1


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict /readyz serves: ready or not, and in words why."""

    ready: bool
    reason: str  # "ok", "starting", "draining" or "failing"
    failing: tuple[str, ...] = ()
    starting: tuple[str, ...] = ()


@dataclass
class HealthModel:
    """Tracks every check's hysteresis state and the sidecar's draining flag."""

    store: ResultStore
    service_name: str = "app"
    states: dict[str, CheckState] = field(default_factory=dict)
    component_types: dict[str, str] = field(default_factory=dict)
    draining: bool = False
    readiness_changes: int = 0
    _readiness: Readiness = field(default_factory=lambda: Readiness(False, "starting"))

    def __post_init__(self) -> None:
        self.store.subscribe(self._on_result)

    def configure(self, checks: list[CheckConfig]) -> None:
        """Adopt the configured checks, keeping the state of those that did not change."""
        fresh: dict[str, CheckState] = {}
        for check in checks:
            old = self.states.get(check.name)
            same = old and (old.critical, old.rise, old.fall) == (check.is_critical, check.rise, check.fall)
            fresh[check.name] = old if old and same else CheckState(check.is_critical, check.rise, check.fall)
        self.states = fresh
        self.component_types = {c.name: c.collector_class.component_type for c in checks}
        self._recompute()

    def drain(self) -> None:
        """Fail readiness at once (SIGTERM or an admin call) so load balancers stop sending traffic."""
        self.draining = True
        self._recompute()

    def undrain(self) -> None:
        self.draining = False
        self._recompute()

    @property
    def readiness(self) -> Readiness:
        return self._readiness

    def check_ready(self, name: str) -> bool | None:
        """Whether one check passes after hysteresis; ``None`` before its first result."""
        return self.states[name].ready

    def _on_result(self, result: CheckResult) -> None:
        state = self.states.get(result.check)
        if state is not None:
            state.observe(result.status)
            self._recompute()

    def _recompute(self) -> None:
        critical = {n: s for n, s in self.states.items() if s.critical}
        starting = tuple(n for n, s in critical.items() if s.ready is None)
        failing = tuple(n for n, s in critical.items() if s.ready is False)
        if self.draining:
            verdict = Readiness(False, "draining", failing, starting)
        elif failing:
            verdict = Readiness(False, "failing", failing, starting)
        elif starting:
            verdict = Readiness(False, "starting", failing, starting)
        else:
            verdict = Readiness(True, "ok")
        if verdict.ready != self._readiness.ready and self._readiness.reason != "starting":
            self.readiness_changes += 1
        self._readiness = verdict

    def health_document(self) -> dict[str, Any]:
        """``application/health+json`` per draft-inadarei-api-health-check."""
        checks: dict[str, list[dict[str, Any]]] = {}
        statuses: list[Status] = []
        for name, _kind in self.store.checks():
            state = self.states.get(name)
            result = self.store.latest(name)
            if result is None:
                component = self.component_types.get(name, "component")
                checks[f"{name}:status"] = [
                    _entry(name, component, None, "", Status.WARN, "no result yet", None)
                ]
                continue
            status = result.status
            if status is Status.FAIL and state is not None and not state.critical:
                statuses.append(Status.WARN)
            else:
                statuses.append(status)
            when = _iso(result.finished_at)
            component = self.component_types.get(name, "component")
            if result.status is Status.FAIL:
                output = f"{result.reason}: {result.output}" if result.output else str(result.reason)
                checks[f"{name}:responseTime"] = [
                    _entry(name, component, result.duration_seconds, "s", status, output, when)
                ]
                continue
            for measurement, value in result.measurements.items():
                checks[f"{name}:{measurement}"] = [
                    _entry(name, component, value.value, value.unit, status, result.output, when)
                ]
            if not result.measurements:
                checks[f"{name}:responseTime"] = [
                    _entry(name, component, result.duration_seconds, "s", status, result.output, when)
                ]
        readiness = self._readiness
        overall = Status.worst(statuses)
        if not readiness.ready:
            overall = (
                Status.FAIL
                if readiness.reason in ("failing", "draining")
                else Status.worst([overall, Status.WARN])
            )
        document: dict[str, Any] = {
            "status": overall.value,
            "version": __version__.split(".")[0],
            "releaseId": __version__,
            "serviceId": self.service_name,
            "description": f"observability sidecar for {self.service_name}",
            "checks": checks,
        }
        if readiness.reason != "ok":
            document["output"] = _readiness_text(readiness)
        return document


def _entry(
    name: str, kind: str, value: Any, unit: str, status: Status, output: str, when: str | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"componentId": name, "componentType": kind, "status": status.value}
    if value is not None:
        entry["observedValue"] = value
        if unit:
            entry["observedUnit"] = unit
    if when:
        entry["time"] = when
    if output:
        entry["output"] = output
    return entry


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _readiness_text(readiness: Readiness) -> str:
    if readiness.reason == "draining":
        return "draining: shutting down or taken out of rotation"
    if readiness.reason == "starting":
        return "starting: waiting for the first result of " + ", ".join(readiness.starting)
    return "failing: " + ", ".join(readiness.failing)
