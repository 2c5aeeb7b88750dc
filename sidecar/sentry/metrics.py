"""Counters of what happened to every event, rendered into the app's registry at scrape time.

Plain integers updated on the event loop and a client_python custom collector that only reads them, so a
scrape never waits for the forwarder. Every label value comes from a fixed list (cardinality bounded by
construction): outcomes, drop reasons, send-failure reasons and the relay's answer codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

OUTCOMES = ("sent", "spooled", "deduplicated", "rate_limited", "dropped", "rejected")
DROP_REASONS = ("queue_full", "spool_full", "spool_corrupt", "shutdown", "opaque_item", "spool_error")
SEND_FAILURES = ("connect", "timeout", "http_5xx", "http_auth", "http_other")
RELAY_CODES = ("200", "400", "401", "403", "404", "408", "413", "415", "503")


def _zeros(keys: Iterable[str]) -> dict[str, int]:
    return dict.fromkeys(keys, 0)


@dataclass(slots=True)
class SentryStats:
    """What the forwarder did, by outcome and reason; also read by tests and the debug view."""

    outcomes: dict[str, int] = field(default_factory=lambda: _zeros(OUTCOMES))
    drops: dict[str, int] = field(default_factory=lambda: _zeros(DROP_REASONS))
    send_failures: dict[str, int] = field(default_factory=lambda: _zeros(SEND_FAILURES))
    relay: dict[str, int] = field(default_factory=lambda: _zeros(RELAY_CODES))

    def count(self, outcome: str, n: int = 1) -> None:
        self.outcomes[outcome] += n

    def drop(self, reason: str, n: int = 1, *, items: bool = False) -> None:
        """Count a drop by reason; whole events also count as outcome ``dropped``, single items do not."""
        self.drops[reason] += n
        if not items:
            self.outcomes["dropped"] += n

    def relay_answer(self, status: int) -> None:
        key = str(status)
        if key in self.relay:
            self.relay[key] += 1


class SentryMetrics(Collector):
    """``sidecar_sentry_*`` families from the stats and the spool's current size."""

    def __init__(self, stats: SentryStats, spool_size: Callable[[], tuple[int, int]]) -> None:
        self._stats = stats
        self._spool_size = spool_size

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "sidecar_sentry_events",
            "Events for the app's Sentry project by outcome (an event can be spooled, then sent).",
            labels=["outcome"],
        )
        for outcome, value in self._stats.outcomes.items():
            events.add_metric([outcome], value)
        drops = CounterMetricFamily(
            "sidecar_sentry_dropped",
            "Events (or, for opaque_item, envelope items) dropped before reaching Sentry, by reason.",
            labels=["reason"],
        )
        for reason, value in self._stats.drops.items():
            drops.add_metric([reason], value)
        failures = CounterMetricFamily(
            "sidecar_sentry_send_failures",
            "Attempts to send to Sentry that failed and will be retried, by reason.",
            labels=["reason"],
        )
        for reason, value in self._stats.send_failures.items():
            failures.add_metric([reason], value)
        relay = CounterMetricFamily(
            "sidecar_sentry_relay_requests",
            "Requests to the Sentry relay endpoints by HTTP status answered.",
            labels=["code"],
        )
        for code, value in self._stats.relay.items():
            relay.add_metric([code], value)
        events_now, bytes_now = self._spool_size()
        spool_events = GaugeMetricFamily(
            "sidecar_sentry_spool_events", "Events waiting in the spool for Sentry to accept them."
        )
        spool_events.add_metric([], events_now)
        spool_bytes = GaugeMetricFamily(
            "sidecar_sentry_spool_bytes", "Bytes of events waiting in the spool for Sentry to accept them."
        )
        spool_bytes.add_metric([], bytes_now)
        yield from (events, drops, failures, relay, spool_events, spool_bytes)
