"""The gateway's own counters, and RED recording through ``HttpMetrics`` with pre-resolved label children.

``labels(...)`` costs as much as an observation, so the recorder keeps the children per label set
(bounded). Each bucket of each series takes a new exemplar (the trace ID) at most once per second,
which keeps a recent trace on every bucket, the slow ones included, without paying client_python's
exemplar validation on every request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.samples import Exemplar

from sidecar.core.http_metrics import DURATION_BUCKETS, KNOWN_METHODS, SIZE_BUCKETS, HttpMetrics

EXEMPLAR_INTERVAL: Final = 1.0
FLUSH_INTERVAL: Final = 0.1
_DURATION_BOUNDS: Final[tuple[float, ...]] = DURATION_BUCKETS  # Final: compiled code reads them directly
_SIZE_BOUNDS: Final[tuple[int, ...]] = SIZE_BUCKETS  # ints: compiled, compared without float conversions
# The first duration bound as a literal: compiled, a native comparison, and nearly every request
# proxied to a nearby app lands there (the loop over the tuple converts each bound it passes).
_FIRST_DURATION_BOUND: Final = 0.005
assert DURATION_BUCKETS[0] == _FIRST_DURATION_BOUND
_MAX_SERIES: Final = 20_000
_METHODS: Final = {m.encode(): m for m in KNOWN_METHODS}

UPSTREAM_ERROR_REASONS = ("refused", "reset", "timeout", "connect_timeout", "connect_error", "protocol")
REJECT_REASONS = (
    "header_too_large",
    "uri_too_long",
    "header_timeout",
    "body_timeout",
    "bad_request",
    "concurrency",
    "method",
    "rate_limited",  # a rate-limit rule refused (429)
    "rate_limit_unavailable",  # Redis failed and the rule fails closed (503)
)


def method_label(method: bytes) -> str:
    """Known methods (case-sensitive, as HTTP defines them) as they are, anything else ``_OTHER``."""
    return _METHODS.get(method, "_OTHER")


class GatewayMetrics:
    """``sidecar_gateway_*`` families: failures by reason, disconnects, rejections, connections."""

    def __init__(
        self,
        registry: CollectorRegistry,
        client_connections: Callable[[], float],
        upstream_connections: Callable[[], float],
        idle_upstream_connections: Callable[[], float],
    ) -> None:
        self.upstream_errors = Counter(
            "sidecar_gateway_upstream_errors",
            "Requests the app could not answer, by reason (refused, reset, timeout, ...).",
            ["reason"],
            registry=registry,
        )
        self.client_disconnects = Counter(
            "sidecar_gateway_client_disconnects",
            "Requests whose client went away before the response was complete.",
            registry=registry,
        )
        self.rejected = Counter(
            "sidecar_gateway_rejected",
            "Requests the gateway answered itself, by reason (limits, timeouts, malformed).",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "sidecar_gateway_upstream_retries",
            "Idempotent requests retried on a new connection after a pooled one turned out closed.",
            registry=registry,
        )
        connections = Gauge(
            "sidecar_gateway_connections",
            "Open connections by side (client, upstream) and state.",
            ["side", "state"],
            registry=registry,
        )
        connections.labels("client", "open").set_function(client_connections)
        connections.labels("upstream", "open").set_function(upstream_connections)
        connections.labels("upstream", "idle").set_function(idle_upstream_connections)
        for reason in UPSTREAM_ERROR_REASONS:
            self.upstream_errors.labels(reason)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)


class RedRecorder:
    """Records finished requests into ``HttpMetrics``: aggregated per series, flushed every 100 ms.

    A client_python ``observe`` takes two locks and a loop over the buckets; three histograms per
    request made that a tenth of the gateway's CPU. Here a request costs three ``bisect`` calls and a
    few list increments; a timer folds the counts into the same histogram children at most
    ``FLUSH_INTERVAL`` later (a scrape is at most that stale). The active-requests gauge reads a
    plain counter when scraped.
    """

    def __init__(self, http: HttpMetrics) -> None:
        self.http = http
        self._series: dict[tuple[bytes, str, int, str], _Series] = {}
        # The previous request's labels and series: consecutive requests usually share them, and
        # comparing four values costs a fifth of building and hashing the key tuple for a lookup.
        self._last_series: _Series | None = None
        self._last_method = b""
        self._last_route = ""
        self._last_status = 0
        self._last_error = ""
        self._dirty: list[_Series] = []
        self._timer: asyncio.TimerHandle | None = None
        self._active: dict[bytes, list[int]] = {}
        self._last_active_method: bytes | None = None  # None: the first request looks its counter up
        self._last_active: list[int] = []
        self._fast: bool | None = None  # decided on the first series: can counts be folded in?

    def started(self, method: bytes) -> None:
        counter = self._counter(method)
        counter[0] += 1

    def ended(self, method: bytes) -> None:
        self._counter(method)[0] -= 1

    def _counter(self, method: bytes) -> list[int]:
        """The active-requests counter of ``method``; the previous request's when the method repeats
        (a comparison, where a lookup hashes the fresh method bytes first)."""
        last = self._last_active_method
        if last is not None and method == last:
            return self._last_active
        counter = self._active.get(method)
        if counter is None:
            counter = self._active_counter(method)
        self._last_active_method = method
        self._last_active = counter
        return counter

    def _active_counter(self, method: bytes) -> list[int]:
        label = method_label(method)
        for other, counter in self._active.items():
            if method_label(other) == label:  # one gauge child per label: share its counter
                self._active[method] = counter
                return counter
        counter = self._active[method] = [0]
        self.http.active.labels(label).set_function(lambda: float(counter[0]))
        return counter

    def route(self, path: bytes) -> str:
        return self.http.route_of(path.decode("latin-1"))

    def observe(
        self,
        method: bytes,
        route: str,
        status: int,
        error_type: str,
        seconds: float,
        request_bytes: int,
        response_bytes: int,
        trace_id: str,
    ) -> None:
        series = self._last_series
        if (
            series is None
            or status != self._last_status
            or method != self._last_method
            or route != self._last_route
            or error_type != self._last_error
        ):
            series = self._series_of(method, route, status, error_type)
        if not self._fast:
            series.observe_now(seconds, request_bytes, response_bytes, trace_id)
            return
        index = 0 if seconds <= _FIRST_DURATION_BOUND else _bucket(_DURATION_BOUNDS, seconds)
        series.duration_counts[index] += 1
        series.duration_sum += seconds
        if series.exemplars[index] is None:
            series.exemplars[index] = (trace_id, seconds, time.time())
        series.request_counts[_size_bucket(request_bytes)] += 1
        series.request_sum += request_bytes
        series.response_counts[_size_bucket(response_bytes)] += 1
        series.response_sum += response_bytes
        if not series.dirty:
            series.dirty = True
            self._dirty.append(series)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def _series_of(self, method: bytes, route: str, status: int, error_type: str) -> _Series:
        """The series of a label set other than the previous request's; it becomes the previous one."""
        key = (method, route, status, error_type)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= _MAX_SERIES:
                self.flush()
                self._series.clear()
            series = self._series[key] = _Series(self.http, method_label(method), route, status, error_type)
            if self._fast is None:
                self._fast = _has_private_api(series.duration)
        self._last_series = series
        self._last_method = method
        self._last_route = route
        self._last_status = status
        self._last_error = error_type
        return series

    def flush(self) -> None:
        """Fold pending counts into the histogram children (also called on close)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        dirty, self._dirty = self._dirty, []
        now = time.monotonic()
        for series in dirty:
            series.flush(now)


def _bucket(bounds: tuple[float, ...], value: float) -> int:
    """``bisect_left(bounds, value)``: the index of the first bound >= ``value``, ``len`` past the last.

    A forward scan: nearly every request lands in the first bucket or two, so this compiles to a
    comparison or two instead of a call out to ``bisect``.
    """
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


def _size_bucket(size: int) -> int:
    """``_bucket`` for a size in bytes: the bounds and the size are ints, compared as machine words."""
    for index, bound in enumerate(_SIZE_BOUNDS):
        if size <= bound:
            return index
    return len(_SIZE_BOUNDS)


def _has_private_api(probe: Any) -> bool:
    """client_python's histogram children keep ``_buckets``/``_sum`` values; fall back if that changes."""
    buckets = getattr(probe, "_buckets", None)
    return (
        isinstance(buckets, list)
        and len(buckets) == len(DURATION_BUCKETS) + 1
        and all(hasattr(b, "inc") and hasattr(b, "set_exemplar") for b in buckets)
        and hasattr(getattr(probe, "_sum", None), "inc")
    )


class _Series:
    """One label set: its histogram children and what was observed since the last flush."""

    __slots__ = (
        "dirty",
        "duration",
        "duration_counts",
        "duration_sum",
        "exemplar_at",
        "exemplars",
        "request_counts",
        "request_size",
        "request_sum",
        "response_counts",
        "response_size",
        "response_sum",
    )

    def __init__(self, http: HttpMetrics, method: str, route: str, status: int, error_type: str) -> None:
        if not error_type and status >= 500:
            error_type = str(status)
        self.duration: Any = http.duration.labels(method, route, str(status) if status else "", error_type)
        self.request_size: Any = http.request_size.labels(method, route)
        self.response_size: Any = http.response_size.labels(method, route)
        self.duration_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.request_counts = [0] * (len(SIZE_BUCKETS) + 1)
        self.response_counts = [0] * (len(SIZE_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.request_sum = self.response_sum = 0  # ints: a size added to a float is a generic addition
        self.exemplars: list[tuple[str, float, float] | None] = [None] * (len(DURATION_BUCKETS) + 1)
        self.exemplar_at = [-EXEMPLAR_INTERVAL] * (len(DURATION_BUCKETS) + 1)
        self.dirty = False

    def observe_now(self, seconds: float, request_bytes: int, response_bytes: int, trace_id: str) -> None:
        self.duration.observe(seconds, {"trace_id": trace_id})
        self.request_size.observe(request_bytes)
        self.response_size.observe(response_bytes)

    def flush(self, now: float) -> None:
        self.dirty = False
        _fold(self.duration, self.duration_counts, self.duration_sum)
        _fold(self.request_size, self.request_counts, self.request_sum)
        _fold(self.response_size, self.response_counts, self.response_sum)
        self.duration_sum = 0.0
        self.request_sum = self.response_sum = 0
        buckets = self.duration._buckets
        for index, exemplar in enumerate(self.exemplars):
            if exemplar is not None:
                self.exemplars[index] = None
                if now - self.exemplar_at[index] >= EXEMPLAR_INTERVAL:
                    self.exemplar_at[index] = now
                    trace_id, value, at = exemplar
                    buckets[index].set_exemplar(Exemplar({"trace_id": trace_id}, value, at))


def _fold(child: Any, counts: list[int], total: float) -> None:
    buckets = child._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
            counts[index] = 0
    child._sum.inc(total)
