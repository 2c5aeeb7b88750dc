"""The correlation index seen from outside: ``GET /debug/requests/{id}`` and its size as metrics.

The lookup answers from memory (the index is bounded), behind the admin listener's token check like
every admin route. The metrics are a snapshot collector: a scrape reads three numbers, never the
index's contents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.app_keys import CORRELATION
from sidecar.correlation.index import CorrelationIndex

MAX_ID_CHARS = 256


async def debug_request(request: web.Request) -> web.Response:
    """One request's timeline in time order: gateway access record, log lines, Sentry events, trace ID."""
    request_id = request.match_info["request_id"]
    found = request.app[CORRELATION].get(request_id) if len(request_id) <= MAX_ID_CHARS else None
    if found is None:
        return web.Response(
            body=orjson.dumps(
                {
                    "error": "no such request ID in the correlation index (never seen, or evicted)",
                    "request_id": request_id[:MAX_ID_CHARS],
                }
            ),
            status=404,
            content_type="application/json",
        )
    found["sentry_event_ids"] = [
        entry["record"].get("event_id")
        for entry in found["timeline"]
        if entry["kind"] == "sentry" and isinstance(entry["record"], dict) and entry["record"].get("event_id")
    ]
    return web.Response(body=orjson.dumps(found, default=str), content_type="application/json")


class CorrelationMetrics(Collector):
    """``sidecar_correlation_requests``, ``_bytes`` and ``_evictions_total`` from the index's counters."""

    def __init__(self, index: CorrelationIndex) -> None:
        self._index = index

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        requests = GaugeMetricFamily(
            "sidecar_correlation_requests", "Request IDs currently held by the correlation index."
        )
        requests.add_metric([], len(self._index))
        held = GaugeMetricFamily(
            "sidecar_correlation_bytes", "Approximate bytes held by the correlation index.", unit="bytes"
        )
        held.add_metric([], self._index.bytes)
        evictions = CounterMetricFamily(
            "sidecar_correlation_evictions",
            "Requests evicted from the correlation index to stay within its count and byte bounds.",
        )
        evictions.add_metric([], self._index.evicted)
        yield from (requests, held, evictions)
