"""Readiness with hysteresis, drain, and the IETF health document, all computed from cached results.

Nothing here does I/O: a load balancer polling /readyz reads a verdict that was computed when the
last probe result arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collectors.base import Status
from sidecar import __version__
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.probing.settings import CheckConfig


@dataclass(slots=True)
class CheckState:
    """Hysteresis state of one check: ready flips only after ``fall`` failures or ``rise`` passes in a row.

    Two more ways out of and into rotation, both for the app behind the gateway: a check with a
    ``startup_grace`` stays ``starting`` (``ready is None``) through failed probes until its first pass
    or the end of the grace (the Kubernetes startup-probe pattern); and an ejection (passive outlier
    detection, ``probing.outlier``) makes it not ready until the ejection time is over *and* the
    active probe has passed ``rise`` times in a row since.
    """

    critical: bool
    rise: int
    fall: int
    startup_grace: float | None = None
    configured_at: float = 0.0  # monotonic time the check was configured: the grace starts here
    ready: bool | None = None  # None until the first result (or, with a grace, the first pass)
    passes: int = 0
    failures: int = 0
    transitions: int = 0
    started: bool = False  # passed at least once: start-up is over
    ejected: str = ""  # why it is ejected ("outlier: 5 consecutive 5xx"), empty when not
    ejected_until: float = 0.0
    on_return: Callable[[], None] | None = None

    def observe(self, status: Status, now: float = 0.0) -> bool:
        """Count one probe result; True when an ejection ended with it."""
        if status is Status.FAIL:
            self.failures += 1
            self.passes = 0
        else:
            self.passes += 1
            self.failures = 0
            self.started = True
        if self.ejected:
            if now >= self.ejected_until and self.passes >= self.rise:
                self.ejected = ""
                self.ready = True
                self.transitions += 1
                return True
            return False
        if self.ready is None:
            if status is not Status.FAIL:
                self.ready = True
            elif self.startup_grace is None or now - self.configured_at >= self.startup_grace:
                self.ready = False
        elif self.ready and self.failures >= self.fall:
            self.ready = False
            self.transitions += 1
        elif not self.ready and self.passes >= self.rise:
            self.ready = True
            self.transitions += 1
        return False

    def eject(self, reason: str, until: float) -> None:
        """Out of rotation until ``until`` and ``rise`` passes after this moment."""
        if self.ready:
            self.transitions += 1
        self.ejected = reason
        self.ejected_until = until
        self.ready = False
        self.passes = 0


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict /readyz serves: ready or not, and in words why."""

    ready: bool
    reason: str  # "ok", "starting", "draining" or "failing"
    failing: tuple[str, ...] = ()
    starting: tuple[str, ...] = ()
    why: tuple[str, ...] = ()  # per failing check, what took it out ("outlier: ...") or ""

    @property
    def status(self) -> int:
        """The HTTP status /readyz answers with."""
        return 200 if self.ready else 503

    def summary(self) -> str:
        """/readyz's body: ``ok``, or why not (``failing: db``, ``starting: app``, ``draining``)."""
        if self.ready:
            return "ok"
        if self.reason == "failing":
            return "failing: " + self.failing_text()
        if self.reason == "starting":
            return "starting: " + ", ".join(self.starting)
        return self.reason

    def failing_text(self) -> str:
        """``app (outlier: 5 consecutive 5xx), db``: the failing checks, with an ejection's reason."""
        why = self.why or ("",) * len(self.failing)
        pairs = zip(self.failing, why, strict=True)
        return ", ".join(f"{name} ({reason})" if reason else name for name, reason in pairs)


@dataclass
class HealthModel:
    """Tracks every check's hysteresis state and the sidecar's draining flag."""

    store: ResultStore
    service_name: str = "app"
    states: dict[str, CheckState] = field(default_factory=dict)
    component_types: dict[str, str] = field(default_factory=dict)
    draining: bool = False
    readiness_changes: int = 0
    clock: Callable[[], float] = time.monotonic
    _readiness: Readiness = field(default_factory=lambda: Readiness(False, "starting"))
    answer: tuple[int, bytes] = (503, b"starting: ")
    """/readyz's status and body, encoded when readiness is recomputed (a result, an ejection, a drain)
    rather than on every probe: load balancers poll far more often than results change."""

    def __post_init__(self) -> None:
        self.store.subscribe(self._on_result)

    def configure(self, checks: list[CheckConfig]) -> None:
        """Adopt the configured checks, keeping the state of those that did not change."""
        fresh: dict[str, CheckState] = {}
        now = self.clock()
        for check in checks:
            old = self.states.get(check.name)
            wanted = (check.is_critical, check.rise, check.fall, check.startup_grace)
            same = old and (old.critical, old.rise, old.fall, old.startup_grace) == wanted
            fresh[check.name] = (
                old
                if old and same
                else CheckState(check.is_critical, check.rise, check.fall, check.startup_grace, now)
            )
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

    @property
    def started(self) -> tuple[bool, tuple[str, ...]]:
        """(start-up over, the checks still starting): every check with a ``startup_grace`` passed once.

        Sticky, as a startupProbe is: once the app has started, later failures are readiness's business.
        """
        waiting = tuple(n for n, s in self.states.items() if s.startup_grace is not None and not s.started)
        return not waiting, waiting

    def eject(
        self, name: str, reason: str, until: float, on_return: Callable[[], None] | None = None
    ) -> None:
        """Take a check out of rotation now (passive outlier detection); back after ``until`` and ``rise``."""
        state = self.states.get(name)
        if state is None:
            return
        state.eject(reason, until)
        state.on_return = on_return
        self._recompute()

    def check_ready(self, name: str) -> bool | None:
        """Whether one check passes after hysteresis; ``None`` before its first result."""
        return self.states[name].ready

    def _on_result(self, result: CheckResult) -> None:
        state = self.states.get(result.check)
        if state is not None:
            returned = state.observe(result.status, self.clock())
            self._recompute()
            if returned and state.on_return is not None:
                state.on_return()

    def _recompute(self) -> None:
        critical = {n: s for n, s in self.states.items() if s.critical}
        starting = tuple(n for n, s in critical.items() if s.ready is None)
        failing = tuple(n for n, s in critical.items() if s.ready is False)
        why = tuple(critical[n].ejected for n in failing)
        if self.draining:
            verdict = Readiness(False, "draining", failing, starting, why)
        elif failing:
            verdict = Readiness(False, "failing", failing, starting, why)
        elif starting:
            verdict = Readiness(False, "starting", failing, starting)
        else:
            verdict = Readiness(True, "ok")
        if verdict.ready != self._readiness.ready and self._readiness.reason != "starting":
            self.readiness_changes += 1
        self._readiness = verdict
        self.answer = (verdict.status, verdict.summary().encode())

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
            note = result.output
            if status is Status.FAIL:
                note = f"{result.reason}: {note}" if note else str(result.reason)
            if state is not None and state.ejected:  # passing probes, but live traffic says otherwise
                status = Status.FAIL
                note = f"{state.ejected}; {note}" if note else state.ejected
            elif state is not None and state.ready is None and status is Status.FAIL:
                status = Status.WARN  # within its start-up grace: starting, not failing
                note = f"starting: {note}"
            if status is Status.FAIL and state is not None and not state.critical:
                statuses.append(Status.WARN)
            else:
                statuses.append(status)
            when = _iso(result.finished_at)
            component = self.component_types.get(name, "component")
            if result.status is Status.FAIL:
                checks[f"{name}:responseTime"] = [
                    _entry(name, component, result.duration_seconds, "s", status, note, when)
                ]
                continue
            for measurement, value in result.measurements.items():
                checks[f"{name}:{measurement}"] = [
                    _entry(name, component, value.value, value.unit, status, note, when)
                ]
            if not result.measurements:
                checks[f"{name}:responseTime"] = [
                    _entry(name, component, result.duration_seconds, "s", status, note, when)
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
    return "failing: " + readiness.failing_text()
