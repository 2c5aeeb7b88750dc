"""Passive outlier detection of the app: what live traffic says ejects it from readiness (Envoy's rules).

The gateway counts outcomes per request (``gateway.outlier.PassiveCounters``, compiled, no I/O) and
calls back here when an inline rule trips (consecutive 5xx, consecutive connect failures). A timer here
reads the counters once per ``window`` for the error-ratio rule. An ejection makes the app check not
ready (``/readyz`` 503, ``failing: app (outlier: 5 consecutive 5xx)``) for ``base_ejection_time``
times the number of ejections in a row, at most ``max_ejection_time``; each window without an
ejection lowers that multiplier by one again (Envoy's decay). The app is back when the ejection time
is over and its active probe has passed ``rise`` times in a row since the ejection.

The gateway side is reached through ``PassiveSource``, so this module does not import the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.probing.app_check import OutlierSettings
from sidecar.probing.health import HealthModel

log = logging.getLogger(__name__)

ERROR_RATIO = "error_ratio"
RULE_TEXT = {
    "consecutive_5xx": "{count} consecutive 5xx",
    "consecutive_connect_failures": "{count} consecutive connect failures",
}
REASONS = ("consecutive_5xx", "consecutive_connect_failures", ERROR_RATIO)


class PassiveSource(Protocol):
    """What the detector needs of the gateway's per-request counters."""

    def configure(
        self, consecutive_5xx: int, consecutive_connect: int, tripped: Callable[[str, int], None]
    ) -> None: ...

    def rearm(self) -> None: ...

    def take_window(self) -> tuple[int, int]: ...


class OutlierDetector:
    """Ejects the app check on what live traffic shows, and counts ejections by reason."""

    def __init__(
        self,
        settings: OutlierSettings,
        health: HealthModel,
        check: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.health = health
        self.check = check
        self.clock = clock
        self.ejections: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        self.multiplier = 0
        self.last_reason = ""
        self.exposed = settings.enabled  # its metrics are shown once detection was ever on
        self._source: PassiveSource | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False

    @property
    def ejected(self) -> bool:
        state = self.health.states.get(self.check)
        return bool(state is not None and state.ejected)

    def attach(self, source: PassiveSource) -> None:
        """Start judging the traffic ``source`` counts (the gateway's counters)."""
        self._source = source
        self._configure_source()

    def _configure_source(self) -> None:
        if self._source is None:
            return
        s = self.settings
        if s.enabled:
            self._source.configure(s.consecutive_5xx, s.consecutive_connect_failures, self._tripped)
        else:  # off: no inline rule trips (0 turns a rule off)
            self._source.configure(0, 0, self._tripped)

    def start(self) -> None:
        """The error-ratio timer (inline rules need none)."""
        self._started = True
        if self._task is None and self.settings.enabled and self.settings.error_ratio > 0:
            self._task = asyncio.get_running_loop().create_task(self._windows(), name="outlier-windows")

    async def stop(self) -> None:
        self._started = False
        await self._stop_timer()

    async def _stop_timer(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def reconfigure(self, settings: OutlierSettings, check: str) -> None:
        """A reload (SIGHUP): the new rules, thresholds and times apply from now on.

        The counters start afresh under the new thresholds; the error-ratio timer restarts with the new
        window; an ejection in progress keeps the end it was given, later ones use the new times.
        Turning detection off stops both rules (the app check's active probe still judges the app).
        """
        timer = (settings.enabled, settings.error_ratio, settings.window)
        restart = timer != (self.settings.enabled, self.settings.error_ratio, self.settings.window)
        self.settings = settings
        self.check = check
        self.exposed = self.exposed or settings.enabled
        if not settings.enabled:
            self.multiplier = 0
        self._configure_source()
        if restart and self._started:
            await self._stop_timer()
            self.start()

    async def _windows(self) -> None:
        while True:
            await asyncio.sleep(self.settings.window)
            self.sweep()

    def sweep(self) -> None:
        """One window: eject on the error ratio, or let the multiplier decay while all is well."""
        if self._source is None:
            return
        requests, errors = self._source.take_window()
        if self.ejected:
            return
        s = self.settings
        if s.error_ratio > 0 and requests >= s.min_requests and errors >= s.error_ratio * requests:
            self.eject(ERROR_RATIO, f"{errors} of {requests} requests failed in {s.window:g}s")
        elif self.multiplier > 0:
            self.multiplier -= 1

    def _tripped(self, rule: str, count: int) -> None:
        self.eject(rule, RULE_TEXT.get(rule, rule + " {count}").format(count=count))

    def eject(self, rule: str, text: str) -> None:
        """Take the app out of readiness now, for the current ejection time.

        Not while it is starting (no active pass yet): it is out of readiness already, and a starting
        app is ``starting``, not failing. The counters are re-armed for when it has started.
        """
        state = self.health.states.get(self.check)
        if state is None or state.ejected:
            return
        if not state.started:
            if self._source is not None:
                self._source.rearm()
            return
        s = self.settings
        self.multiplier += 1
        duration = min(s.base_ejection_time * self.multiplier, max(s.base_ejection_time, s.max_ejection_time))
        self.ejections[rule] += 1
        self.last_reason = f"outlier: {text}"
        self.health.eject(self.check, self.last_reason, self.clock() + duration, self._returned)
        log.warning(
            "app ejected",
            extra={"check": self.check, "reason": self.last_reason, "ejection_seconds": duration},
        )

    def _returned(self) -> None:
        log.info("app back in rotation", extra={"check": self.check})
        if self._source is not None:
            self._source.rearm()


class OutlierMetrics(Collector):
    """``sidecar_app_ejections_total{reason}`` and ``sidecar_app_ejected``, read at scrape time."""

    def __init__(self, detector: OutlierDetector) -> None:
        self._detector = detector

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        detector = self._detector
        if not detector.exposed:
            return
        ejections = CounterMetricFamily(
            "sidecar_app_ejections",
            "Times live traffic ejected the app from readiness (outlier detection), by rule.",
            labels=["reason"],
        )
        for reason in REASONS:
            ejections.add_metric([reason], detector.ejections[reason])
        ejected = GaugeMetricFamily(
            "sidecar_app_ejected", "1 while outlier detection keeps the app out of readiness, else 0."
        )
        ejected.add_metric([], 1.0 if detector.ejected else 0.0)
        yield from (ejections, ejected)
