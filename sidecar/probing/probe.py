"""The template around every collector: time it, bound it, judge it, and turn any failure into data.

Collectors only do I/O. Here, once for all of them, the probe is timed, cut off at its timeout,
its measurements compared with the configured thresholds, and every exception mapped to a reason
with a message that carries no secret (postgres_exporter's "a failed scrape is up=0, not an error").
"""

from __future__ import annotations

import asyncio
import ssl
import time

from collectors.base import CheckTarget, Collector, Measurement, Observation, ProbeError, Reason, Status
from sidecar.core.redaction import redact_text, url_secrets
from sidecar.probing.results import CheckResult
from sidecar.probing.settings import CheckConfig, Threshold

MAX_OUTPUT = 300


class Probe:
    """A configured check bound to its collector instance."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self.collector: Collector = config.collector_class(  # type: ignore[type-arg]
            _target_of(config), config.typed_options
        )
        self._secrets = [*url_secrets(config.target), *self.collector.secrets()]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def kind(self) -> str:
        return self.config.kind

    async def run(self) -> CheckResult:
        """One probe, never raising (except cancellation of the caller)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout):
                observation = await self.collector.collect()
        except TimeoutError:
            return self.failed(Reason.TIMEOUT, f"no answer within {self.config.timeout:g}s", started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self.failed(self._reason(exc), self._describe(exc), started)
        return self._judged(observation, time.perf_counter() - started)

    def failed(self, reason: Reason, message: str, started: float) -> CheckResult:
        duration = time.perf_counter() - started
        return CheckResult(
            check=self.name,
            kind=self.kind,
            status=Status.FAIL,
            duration_seconds=duration,
            finished_at=time.time(),
            reason=reason,
            output=self.redact(message),
            samples=tuple(self.collector.outcome_samples(None, duration)),
        )

    def redact(self, text: str) -> str:
        return redact_text(text, self._secrets)[:MAX_OUTPUT]

    def _judged(self, observation: Observation, duration: float) -> CheckResult:
        status = observation.status
        notes = [observation.output] if observation.output else []
        for verdict, thresholds in ((Status.WARN, self.config.warn), (Status.FAIL, self.config.fail)):
            for measurement, threshold in thresholds.items():
                crossed = _crossed(observation.measurements.get(measurement), threshold)
                if crossed is not None:
                    notes.append(f"{measurement} {crossed} {threshold}")
                    status = Status.worst([status, verdict])
        reason = Reason.UNHEALTHY if status is Status.FAIL else None
        return CheckResult(
            check=self.name,
            kind=self.kind,
            status=status,
            duration_seconds=duration,
            finished_at=time.time(),
            reason=reason,
            output=self.redact("; ".join(notes)),
            measurements=observation.measurements,
            samples=(*self.collector.outcome_samples(observation, duration), *observation.samples),
            info=observation.info,
        )

    def _reason(self, exc: Exception) -> Reason:
        if isinstance(exc, ProbeError):
            return exc.reason
        specific = self.collector.classify_error(exc)
        if specific is not None:
            return specific
        if isinstance(exc, TimeoutError):
            return Reason.TIMEOUT
        if isinstance(exc, ssl.SSLError):
            return Reason.PROTOCOL
        if isinstance(exc, ConnectionError | OSError | EOFError):
            return Reason.CONNECT
        return Reason.UNEXPECTED

    @staticmethod
    def _describe(exc: BaseException) -> str:
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _crossed(measurement: Measurement | None, threshold: Threshold) -> str | None:
    """The measured value as text when it crosses the threshold, else ``None``."""
    if measurement is None or isinstance(measurement.value, str):
        return None
    value = float(measurement.value)
    return f"{value:g}" if threshold.crossed(value) else None


def _target_of(config: CheckConfig) -> CheckTarget:
    return CheckTarget(name=config.name, target=config.target, timeout=config.timeout)
