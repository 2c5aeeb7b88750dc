"""RED metrics for HTTP traffic, shared by the gateway and by access lines read from the app's logs.

Names and labels follow the OpenTelemetry HTTP semantic conventions as Prometheus renders them, so
one dashboard serves both sources. Seen request IDs are remembered (bounded) so a request that went
through the gateway and was also logged by the app is counted once.

The memory of seen IDs holds their 64-bit hashes, not the strings, in two generations: the current
one and the one before it. A full generation becomes the previous one and the oldest is dropped
whole, so the last 50,000 to 100,000 request IDs are remembered with no per-ID order to keep. Strings
of 100,000 UUIDs and their FIFO cost about 13.5 MB; the hashes as Python sets of ints still about
7 MB (an int object and a set slot per hash, the largest part of the growth ``bench/memory.py``
measured); in a table of machine words (open addressing) they take 1 MB per generation. A hash
collision (about one in 2^64 per pair) would count one request fewer.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.core.routes import RouteNormaliser

# OpenTelemetry's recommended boundaries for http.server.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SIZE_BUCKETS = (0, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
REQUEST_LABELS = ("http_request_method", "http_route", "http_response_status_code", "error_type")
_SEEN_GENERATION: Final = 50_000  # request IDs per generation; two generations are remembered
GATEWAY_SOURCE: Final = "gateway"  # the ``source`` the gateway passes to ``first_sighting`` (Final: inlined)
_SLOTS: Final = 1 << 17  # table slots per generation: 50,000 hashes fill it to 38 %
_MASK: Final = _SLOTS - 1


class _Hashes:
    """One generation of request-ID hashes: an open-addressing table of 64-bit words, 0 for empty."""

    __slots__ = ("count", "slots")

    def __init__(self) -> None:
        # memoryview of machine words: its item access converts with PyLong_AsLongLong, where
        # array("q") parses an argument format per store (about 250 instructions per request more).
        # Over an anonymous mapping, not a bytearray: the kernel's zero pages become resident only as
        # hashes land in them, so a sidecar that sees no request IDs does not carry 1 MB it never
        # uses, and a new generation costs no 1 MB memset on the event loop. Private: Python's
        # default for an anonymous mapping is shared, which a forked child would write into.
        self.slots = memoryview(mmap.mmap(-1, 8 * _SLOTS, flags=mmap.MAP_PRIVATE)).cast("q")
        self.count = 0

    def add(self, key: int) -> bool:
        """Insert ``key`` (never 0); False when it was there already."""
        slots = self.slots
        index = key & _MASK
        while True:
            value: int = slots[index]
            if value == key:
                return False
            if value == 0:
                slots[index] = key
                self.count += 1
                return True
            index = (index + 1) & _MASK

    def __contains__(self, key: int) -> bool:
        slots = self.slots
        index = key & _MASK
        while True:
            value: int = slots[index]
            if value == key:
                return True
            if value == 0:
                return False
            index = (index + 1) & _MASK


class _SeenTable(Protocol):
    """One generation of hashes: ``_Hashes``, or ``seen_hashes.HashTable`` (the same table in C)."""

    @property
    def count(self) -> int: ...

    def add(self, key: int) -> bool: ...

    def __contains__(self, key: int) -> bool: ...


def _table_maker() -> Callable[[], _SeenTable]:
    """The native table where it was built: an insert costs about 1,350 instructions fewer (its header)."""
    try:
        from sidecar.core.seen_hashes import HashTable  # noqa: PLC0415 (optional, C)
    except ImportError:
        return _Hashes
    return lambda: HashTable(_SLOTS)


new_seen_table: Final = _table_maker()  # a new, empty generation


def method_label(method: str) -> str:
    """Known methods as they are, anything else ``_OTHER`` (OTel semconv), so labels stay bounded."""
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else "_OTHER"


class HttpMetrics:
    """The request-metric families on one registry, plus the route cap they share."""

    def __init__(self, registry: CollectorRegistry, routes: RouteNormaliser) -> None:
        self.routes = routes
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            REQUEST_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "http_server_active_requests",
            "Number of active HTTP server requests.",
            ["http_request_method"],
            registry=registry,
        )
        self.request_size = Histogram(
            "http_server_request_body_size_bytes",
            "Size of HTTP server request bodies.",
            ("http_request_method", "http_route"),
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.response_size = Histogram(
            "http_server_response_body_size_bytes",
            "Size of HTTP server response bodies.",
            ("http_request_method", "http_route"),
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.route_overflow = Counter(
            "sidecar_http_route_overflow",
            "Requests whose route was folded into the overflow value because of the route cap.",
            registry=registry,
        )
        self.duplicates = Counter(
            "sidecar_http_duplicate_observations",
            "Access lines from the app's logs not counted in the request metrics because the gateway or "
            "an earlier line already counted a request with the same request ID.",
            ["source"],
            registry=registry,
        )
        self.reused_ids = Counter(
            "sidecar_http_reused_request_ids",
            "Requests that reached the gateway with a client X-Request-ID it had recently seen; each is "
            "still counted in the request metrics.",
            registry=registry,
        )
        self._seen = new_seen_table()  # hashes of request IDs, this generation
        # its add, bound once per generation: compiled, ``self._seen.add(key)`` looked the method up on
        # the table's type per request (about 150 instructions)
        self._seen_add: Callable[[int], bool] = self._seen.add
        self._seen_before: _SeenTable | None = None  # and the generation before it, once there is one
        self._seen_count = 0  # IDs in this generation

    def route_of(self, path: str) -> str:
        before = self.routes.overflowed
        route = self.routes.route(path)
        if self.routes.overflowed != before:
            self.route_overflow.inc()
        return route

    def count_overflow(self) -> None:
        """One more request folded into the overflow route, decided earlier (the gateway caches it)."""
        self.routes.overflowed += 1
        self.route_overflow.inc()

    def first_sighting(self, request_id: str | None, source: str) -> bool:
        """False when this request ID was already counted (by the gateway or an earlier log line).

        Log lines act on the answer (an access line already counted is skipped: a duplicate). The gateway
        counts every request whatever the answer and only remembers the ID; a client reusing one is
        counted as a reused ID, not as a skipped duplicate, because nothing is skipped.
        """
        if not request_id:
            return True
        key = hash(request_id) or 1  # 0 marks an empty slot
        before = self._seen_before
        if (before is not None and key in before) or not self._seen_add(key):
            if source == GATEWAY_SOURCE:  # the gateway counts every request; a reused ID is only noted
                self.reused_ids.inc()
            else:
                self.duplicates.labels(source).inc()
            return False
        self._added()
        return True

    def remember(self, request_id: str) -> None:
        """Remember an ID the gateway made up: ``first_sighting`` without asking whether it was seen.

        A random v4 UUID cannot have been seen before (the gateway drew it from the kernel's CSPRNG),
        and each lookup in a table of a megabyte is a cache miss: the previous generation is not asked.
        """
        if self._seen_add(hash(request_id) or 1):
            self._added()

    def _added(self) -> None:
        """One more ID in this generation; a full one becomes the previous one (the oldest is dropped).

        Counted here, not read from the table: compiled, the table's ``count`` was a generic attribute
        lookup per request.
        """
        count = self._seen_count + 1
        if count >= _SEEN_GENERATION:
            self._seen_before = self._seen
            self._seen = new_seen_table()
            self._seen_add = self._seen.add
            count = 0
        self._seen_count = count

    def observe(
        self,
        *,
        method: str,
        route: str,
        status: int,
        duration_seconds: float,
        error_type: str = "",
        trace_id: str | None = None,
        request_bytes: int | None = None,
        response_bytes: int | None = None,
    ) -> None:
        """Record one finished request; ``trace_id`` becomes the exemplar in OpenMetrics output."""
        method = method_label(method)
        if not error_type and status >= 500:
            error_type = str(status)
        exemplar = {"trace_id": trace_id} if trace_id else None
        self.duration.labels(method, route, str(status) if status else "", error_type).observe(
            duration_seconds, exemplar
        )
        if request_bytes is not None:
            self.request_size.labels(method, route).observe(request_bytes)
        if response_bytes is not None:
            self.response_size.labels(method, route).observe(response_bytes)
