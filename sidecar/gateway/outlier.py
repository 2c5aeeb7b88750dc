"""Passive health of the app, counted from the requests the gateway already finishes (no extra I/O).

``GatewayContext.record`` calls ``PassiveCounters.observe`` once per finished request: a few integer
updates on a native object, no allocation. The counters know Envoy's two inline rules (consecutive
5xx, consecutive connect failures) and trip as soon as one is reached; the windowed error ratio and
everything that follows a trip (how long the app is ejected, readiness, metrics) belong to the probe
flow (``sidecar.probing.outlier``), which reads and resets ``requests``/``errors`` on its own timer.

What counts:

- a response from the app: a success below 500, a 5xx failure at 500 and above;
- the gateway's own ``upstream_*`` answers (refused, reset, timeout, nonsense: 502/504), which are
  failures of the app as Envoy maps locally originated errors to 5xx; ``refused`` and the two connect
  errors also count as connect failures;
- nothing else: a client that left, a rate limit or the concurrency cap say nothing about the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

_CONNECT_ERRORS: Final = ("upstream_refused", "upstream_connect_timeout", "upstream_connect_error")
_UPSTREAM: Final = "upstream_"
OFF: Final = 1 << 30  # a threshold never reached: the rule is off

CONSECUTIVE_5XX: Final = "consecutive_5xx"
CONSECUTIVE_CONNECT: Final = "consecutive_connect_failures"


def _ignore(rule: str, count: int) -> None:
    """The trip callback before the probe flow attaches its own."""


class PassiveCounters:
    """Per-request outcome counters of the app; ``tripped(rule, count)`` fires once per arming."""

    def __init__(self) -> None:
        self.requests = 0  # answered by the app or failed towards it, since the last window sweep
        self.errors = 0
        self.consecutive_5xx = 0
        self.consecutive_connect = 0
        self.max_5xx = OFF
        self.max_connect = OFF
        self.armed = False  # no rule trips until the probe flow arms the counters
        self.tripped: Callable[[str, int], None] = _ignore

    def configure(
        self, consecutive_5xx: int, consecutive_connect: int, tripped: Callable[[str, int], None]
    ) -> None:
        """Set the inline rules (0 turns one off) and the callback; arms the counters."""
        self.max_5xx = consecutive_5xx or OFF
        self.max_connect = consecutive_connect or OFF
        self.tripped = tripped
        self.rearm()

    def rearm(self) -> None:
        """Start counting afresh (after an ejection ended): old failures do not trip again."""
        self.consecutive_5xx = 0
        self.consecutive_connect = 0
        self.armed = True

    def take_window(self) -> tuple[int, int]:
        """(requests, errors) since the last call, and start a new window; for the ratio rule."""
        window = (self.requests, self.errors)
        self.requests = 0
        self.errors = 0
        return window

    def observe(self, status: int, error: str) -> None:
        """One finished request: ``status`` sent to the client, ``error`` as the access line has it."""
        if error:
            if not error.startswith(_UPSTREAM):
                return  # the client left, or the gateway refused it: nothing about the app
            self.requests += 1
            self.errors += 1
            self.consecutive_5xx += 1
            if error in _CONNECT_ERRORS:
                self.consecutive_connect += 1
                if self.consecutive_connect >= self.max_connect and self.armed:
                    self.armed = False
                    self.tripped(CONSECUTIVE_CONNECT, self.consecutive_connect)
                    return
            if self.consecutive_5xx >= self.max_5xx and self.armed:
                self.armed = False
                self.tripped(CONSECUTIVE_5XX, self.consecutive_5xx)
            return
        self.requests += 1
        if status < 500:
            self.consecutive_5xx = 0
            self.consecutive_connect = 0
            return
        self.errors += 1
        self.consecutive_5xx += 1
        self.consecutive_connect = 0
        if self.consecutive_5xx >= self.max_5xx and self.armed:
            self.armed = False
            self.tripped(CONSECUTIVE_5XX, self.consecutive_5xx)
