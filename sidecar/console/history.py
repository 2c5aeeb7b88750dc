"""What the Overview shows beyond the latest result: each check's recent history and when things changed.

The result store keeps only the latest result; this keeps, per check, a bounded ring of the last
``points`` results (time, status, latency) for the sparklines, and when each check's hysteresis
verdict and the overall readiness last changed ("since when"). It listens to the store, so it costs
one append per probe result and nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from collectors.base import Status
from sidecar.probing.health import HealthModel, Readiness
from sidecar.probing.results import CheckResult, ResultStore

MAX_TRANSITIONS = 20


@dataclass(frozen=True, slots=True)
class Point:
    """One probe result, reduced to what a sparkline draws."""

    at: float
    status: Status
    seconds: float


@dataclass(slots=True)
class CheckTrack:
    """One check's ring of points and when its readiness (after hysteresis) last changed."""

    points: deque[Point]
    ready: bool | None = None
    since: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Transition:
    """The readiness verdict changed at ``at`` to ``ready`` for ``reason``."""

    at: float
    ready: bool
    reason: str


class CheckHistory:
    """Bounded per-check history plus readiness transitions, fed by the result store."""

    def __init__(self, store: ResultStore, health: HealthModel, points: int = 120) -> None:
        self.store = store
        self.health = health
        self.points = points
        self.tracks: dict[str, CheckTrack] = {}
        self.transitions: deque[Transition] = deque(maxlen=MAX_TRANSITIONS)
        self._verdict: tuple[bool, str] | None = None
        self.readiness_since = time.time()
        self.version = 0  # bumped when a status or a verdict changes: what the event stream announces
        self.closing = False
        self._waiters: set[asyncio.Future[None]] = set()
        store.subscribe(self._on_result)  # after the health model's own listener: its state is fresh

    def _on_result(self, result: CheckResult) -> None:
        track = self.tracks.get(result.check)
        if track is None:
            track = self.tracks[result.check] = CheckTrack(deque(maxlen=self.points))
        before = track.points[-1].status if track.points else None
        track.points.append(Point(result.finished_at, result.status, result.duration_seconds))
        moved = result.status is not before
        state = self.health.states.get(result.check)
        if state is not None and state.ready != track.ready:
            track.ready = state.ready
            track.since = result.finished_at
            moved = True
        verdict = self._verdict
        self.readiness()
        if moved or verdict != self._verdict:
            self.changed()  # only what changes a colour: the 2 s poll shows the new latencies

    def changed(self) -> None:
        """Wake every stream waiting in ``wait_change`` (one future each; nothing when nobody waits)."""
        self.version += 1
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_change(self, seen: int, keepalive: float) -> int:
        """The version once it is past ``seen``, or after ``keepalive`` seconds, whichever comes first."""
        if self.version == seen and not self.closing:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(keepalive):
                        await waiter
            finally:
                self._waiters.discard(waiter)
        return self.version

    def close(self) -> None:
        """Shutdown: end every event stream now rather than at its next keep-alive."""
        self.closing = True
        self.changed()

    def readiness(self) -> Readiness:
        """The current verdict, noting a change (drain and undrain change it without a result)."""
        verdict = self.health.readiness
        key = (verdict.ready, verdict.reason)
        if key != self._verdict:
            now = time.time()
            self._verdict = key
            self.readiness_since = now
            self.transitions.append(Transition(now, verdict.ready, verdict.reason))
        return verdict

    def track(self, check: str) -> CheckTrack | None:
        return self.tracks.get(check)

    def forget_missing(self) -> None:
        """Drop the history of checks no longer configured (after a reload)."""
        known = {name for name, _kind in self.store.checks()}
        for name in list(self.tracks):
            if name not in known:
                del self.tracks[name]
