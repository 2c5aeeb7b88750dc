"""The latest result of every check: the single source of truth for health endpoints and /metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from collectors.base import Measurement, Reason, Sample, Status


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One finished probe: its verdict, how long it took, what it measured, and why it failed."""

    check: str
    kind: str
    status: Status
    duration_seconds: float
    finished_at: float  # wall-clock seconds, for /health "time"
    reason: Reason | None = None
    output: str = ""
    measurements: dict[str, Measurement] = field(default_factory=dict)
    samples: tuple[Sample, ...] = ()
    info: dict[str, str] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.status is not Status.FAIL


Listener = Callable[[CheckResult], None]


class ResultStore:
    """Latest results and failure counters per check, with listeners notified on every new result.

    Everything here is synchronous and in-memory: scrapes and readiness polls read it without I/O.
    """

    def __init__(self) -> None:
        self._latest: dict[str, CheckResult] = {}
        self._failures: dict[str, Counter[str]] = {}
        self._kinds: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self.started_at = time.time()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def register(self, check: str, kind: str) -> None:
        """Declare a configured check so it is known (and reported as starting) before its first result."""
        self._kinds[check] = kind
        self._failures.setdefault(check, Counter())

    def forget(self, check: str) -> None:
        """Drop a removed check entirely, so its series disappear from /metrics."""
        self._latest.pop(check, None)
        self._failures.pop(check, None)
        self._kinds.pop(check, None)

    def record(self, result: CheckResult) -> None:
        if result.check not in self._kinds:
            return  # a late result of a check removed while its probe was in flight
        self._latest[result.check] = result
        if result.status is Status.FAIL:
            self._failures[result.check][(result.reason or Reason.UNEXPECTED).value] += 1
        for listener in self._listeners:
            listener(result)

    def latest(self, check: str) -> CheckResult | None:
        return self._latest.get(check)

    def checks(self) -> Iterator[tuple[str, str]]:
        """(check, kind) for every configured check, in configuration order."""
        yield from self._kinds.items()

    def failures(self, check: str) -> Counter[str]:
        return self._failures.get(check, Counter())
