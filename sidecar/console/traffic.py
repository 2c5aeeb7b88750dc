"""Per-route rate, error ratio and latency percentiles over the last 1, 5 and 15 minutes.

Not a second metrics system: the gateway (and access lines read from the app's logs) already count
every request into the ``http_server_request_duration_seconds`` histogram. Every ``SAMPLE_EVERY``
seconds this reads that histogram's cumulative counts, summed per route, into a bounded ring of
snapshots; a window is the difference between the newest snapshot and the one a window's length
before it. Percentiles are interpolated within buckets, as Prometheus' ``histogram_quantile`` does.
The proxy's hot path pays nothing for it: no hook, no per-request work.

The slowest and failed recent requests come from the correlation index, which holds every proxied
request's access record: the newest few thousand are read on demand, in slices that yield to the
event loop, and the answer is reused for a couple of seconds.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, TypeAlias

import orjson

from sidecar.core.http_metrics import DURATION_BUCKETS, HttpMetrics
from sidecar.correlation.index import CorrelationIndex

SAMPLE_EVERY = 10.0
WINDOWS = (60, 300, 900)
_RING = WINDOWS[-1] // int(SAMPLE_EVERY) + 2
MAX_ROUTES = 200  # the route cap's default; routes past it are folded into one row
OTHER = "(other routes)"
_BOUNDS = (*DURATION_BUCKETS, math.inf)
# per route: count, errors, sum, then one cumulative count per bucket bound (the last is +Inf)
_COUNT, _ERRORS, _SUM, _FIRST_BUCKET = 0, 1, 2, 3
_WIDTH = _FIRST_BUCKET + len(_BOUNDS)
HISTOGRAM_SLICE = 50  # series folded between two yields to the event loop
RECENT_SCAN = 1000
RECENT_SLICE = 250
RECENT_REUSE = 2.0
RECENT_SHOWN = 20


@dataclass(frozen=True, slots=True)
class RouteWindow:
    """One route over one window."""

    route: str
    requests: int
    rate: float  # requests per second
    error_ratio: float  # 0-1, 5xx and proxy failures
    p50: float | None  # seconds
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class RecentRequest:
    """A recent proxied request, as its access record has it."""

    request_id: str
    at: float
    method: str
    route: str
    path: str
    status: int
    duration_ms: float | None
    error: str


Snapshot: TypeAlias = "tuple[float, dict[str, array[float]]]"


def read_histogram(http: HttpMetrics) -> dict[str, array[float]]:
    """The duration histogram's cumulative counts now, summed per route (bounded to ``MAX_ROUTES``).

    Reads client_python's children directly (their ``_buckets`` and ``_sum`` values, as the gateway's
    recorder does to fold counts in): ``collect()`` builds eighteen sample tuples per series, several
    times the work. Falls back to ``collect()`` if that private layout ever changes.
    """
    children = _children(http)
    if children is None:
        return _read_collected(http)
    routes: dict[str, array[float]] = {}
    if not _fold(routes, children):
        return _read_collected(http)
    return routes


async def read_histogram_sliced(http: HttpMetrics) -> dict[str, array[float]]:
    """``read_histogram`` in slices of ``HISTOGRAM_SLICE`` series, yielding to the loop between them."""
    children = _children(http)
    if children is None:
        return _read_collected(http)
    routes: dict[str, array[float]] = {}
    for start in range(0, len(children), HISTOGRAM_SLICE):
        if not _fold(routes, children[start : start + HISTOGRAM_SLICE]):
            return _read_collected(http)
        await asyncio.sleep(0)
    return routes


def _children(http: HttpMetrics) -> list[tuple[Any, Any]] | None:
    children = getattr(http.duration, "_metrics", None)
    return list(children.items()) if isinstance(children, dict) else None


def _fold(routes: dict[str, array[float]], children: list[tuple[Any, Any]]) -> bool:
    for labels, child in children:
        buckets = getattr(child, "_buckets", None)
        total = getattr(child, "_sum", None)
        if not isinstance(buckets, list) or len(buckets) != len(_BOUNDS) or total is None or len(labels) != 4:
            return False
        _method, route, status, error_type = labels
        row = _row(routes, route)
        running = 0.0
        for slot, value in enumerate(buckets):
            running += value.get()
            row[_FIRST_BUCKET + slot] += running
        row[_COUNT] += running
        row[_SUM] += total.get()
        if _is_error(status, error_type):
            row[_ERRORS] += running
    return True


def _row(routes: dict[str, array[float]], route: str) -> array[float]:
    row = routes.get(route)
    if row is None:
        if len(routes) >= MAX_ROUTES:
            route = OTHER
            row = routes.get(route)
        if row is None:
            row = routes[route] = array("d", bytes(8 * _WIDTH))
    return row


def _is_error(status: str, error_type: str) -> bool:
    """5xx answers and requests that got no answer at all (proxy failures), as the dashboards count."""
    return bool(error_type) or status.startswith("5") or not status


def _read_collected(http: HttpMetrics) -> dict[str, array[float]]:
    routes: dict[str, array[float]] = {}
    index = {bound: i for i, bound in enumerate(_BOUNDS)}
    for metric in http.duration.collect():
        for sample in metric.samples:
            labels = sample.labels
            row = _row(routes, labels.get("http_route", ""))
            name = sample.name
            if name.endswith("_bucket"):
                slot = index.get(float(labels["le"]))
                if slot is not None:
                    row[_FIRST_BUCKET + slot] += sample.value
            elif name.endswith("_count"):
                row[_COUNT] += sample.value
                if _is_error(labels.get("http_response_status_code", ""), labels.get("error_type", "")):
                    row[_ERRORS] += sample.value
            elif name.endswith("_sum"):
                row[_SUM] += sample.value
    return routes


def quantile(q: float, buckets: list[float], total: float) -> float | None:
    """``histogram_quantile`` over cumulative ``buckets`` (one per bound in ``_BOUNDS``)."""
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(_BOUNDS, buckets, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # past the largest bound: the largest finite bound, as Prometheus
            span = count - lower_count
            fraction = (rank - lower_count) / span if span > 0 else 1.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound


class TrafficWindows:
    """The ring of histogram snapshots and the recent-request reader."""

    def __init__(self, http: HttpMetrics, index: CorrelationIndex) -> None:
        self.http = http
        self.index = index
        self.snapshots: deque[Snapshot] = deque(maxlen=_RING)
        self._recent: tuple[float, tuple[list[RecentRequest], list[RecentRequest]]] | None = None
        self._recent_lock = asyncio.Lock()

    def sample(self, now: float | None = None) -> None:
        self.snapshots.append((time.time() if now is None else now, read_histogram(self.http)))

    async def run(self) -> None:
        """Sample forever, every ``SAMPLE_EVERY`` seconds (a cleanup context starts and cancels it)."""
        while True:
            at = time.time()
            self.snapshots.append((at, await read_histogram_sliced(self.http)))
            await asyncio.sleep(SAMPLE_EVERY)

    async def window(self, seconds: int, now: float | None = None) -> tuple[float, list[RouteWindow]]:
        """Every route over the last ``seconds`` (or since the first snapshot, when younger): the span
        actually covered, and the routes, busiest first."""
        current_at = time.time() if now is None else now
        current = await read_histogram_sliced(self.http)
        base_at, base = current_at, {}
        for at, snapshot in self.snapshots:
            if at >= current_at - seconds - SAMPLE_EVERY / 2:
                base_at, base = at, snapshot
                break
        span = max(current_at - base_at, 1e-9)
        rows = []
        for route, row in current.items():
            before = base.get(route)
            delta = [v - (before[i] if before is not None else 0.0) for i, v in enumerate(row)]
            count = delta[_COUNT]
            if count <= 0:
                continue
            buckets = delta[_FIRST_BUCKET:]
            rows.append(
                RouteWindow(
                    route=route,
                    requests=round(count),
                    rate=count / span if span >= 1 else 0.0,
                    error_ratio=delta[_ERRORS] / count,
                    p50=quantile(0.5, buckets, count),
                    p95=quantile(0.95, buckets, count),
                    p99=quantile(0.99, buckets, count),
                )
            )
        rows.sort(key=lambda r: (-r.requests, r.route))
        return span, rows

    async def slowest_and_failed(self) -> tuple[list[RecentRequest], list[RecentRequest]]:
        """The slowest and the failed among the newest ``RECENT_SCAN`` requests (reused for a moment).

        Most of the index is the gateway's JSON lines as stored; only the duration is read from each
        (a byte search), and only the lines shown are decoded.
        """
        async with self._recent_lock:
            cached = self._recent
            if cached is not None and time.monotonic() - cached[0] < RECENT_REUSE:
                return cached[1]
            durations: list[tuple[float, int, str, float, bytes | dict[str, Any]]] = []
            failed: list[RecentRequest] = []
            entries = self.index.newest_entries(RECENT_SCAN)
            for start in range(0, len(entries), RECENT_SLICE):
                for order, (request_id, held) in enumerate(entries[start : start + RECENT_SLICE], start):
                    found = self.index.access_of(held)
                    if found is None:
                        continue
                    at, record = found
                    duration, bad = _scan(record)
                    durations.append((duration, -order, request_id, at, record))
                    if bad and len(failed) < RECENT_SHOWN:
                        failed.append(_recent_of(request_id, at, record))
                await asyncio.sleep(0)
            slowest = [
                _recent_of(request_id, at, record)
                for _d, _o, request_id, at, record in heapq.nlargest(RECENT_SHOWN, durations)
                if _d >= 0
            ]
            self._recent = (time.monotonic(), (slowest, failed))
            return slowest, failed


_STATUS_KEY = b'"status":'
_DURATION_KEY = b'"duration_ms":'
_ERROR_KEY = b',"error":'


def _scan(record: bytes | dict[str, Any]) -> tuple[float, bool]:
    """(``duration_ms`` or -1, whether it failed) of an access record, without decoding the line.

    The gateway writes ``"status":<n>,"duration_ms":<ms>`` side by side, and ``,"error":`` only for a
    proxy failure (inside a JSON string a quote is escaped, so that sequence cannot occur there).
    """
    if isinstance(record, dict):
        value, status = record.get("duration_ms"), record.get("status")
        failed = bool(record.get("error")) or not isinstance(status, int) or status >= 500 or status == 0
        return (float(value) if isinstance(value, int | float) else -1.0), failed
    at = record.find(_STATUS_KEY)
    if at < 0:
        return -1.0, False
    at += len(_STATUS_KEY)
    first = record[at : at + 1]
    failed = first in (b"5", b"0") or _ERROR_KEY in record
    start = record.find(_DURATION_KEY, at)
    if start < 0:
        return -1.0, failed
    start += len(_DURATION_KEY)
    try:
        return float(record[start : record.find(b",", start)]), failed
    except ValueError:
        return -1.0, failed


def _recent_of(request_id: str, at: float, raw: bytes | dict[str, Any]) -> RecentRequest:
    record = raw if isinstance(raw, dict) else _decoded(raw)
    status = record.get("status")
    duration = record.get("duration_ms")
    return RecentRequest(
        request_id=request_id,
        at=at,
        method=str(record.get("method") or ""),
        route=str(record.get("route") or ""),
        path=str(record.get("path") or ""),
        status=status if isinstance(status, int) else 0,
        duration_ms=float(duration) if isinstance(duration, int | float) else None,
        error=str(record.get("error") or ""),
    )


def _decoded(line: bytes) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}
