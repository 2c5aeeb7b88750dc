"""Access lines from the app's logs into the same request histograms the gateway records into.

Everything that makes the two sources agree lives in ``HttpMetrics``: the route normaliser and its
cap, the method vocabulary, and the request-ID memory (``first_sighting``) that keeps a request seen
by both the gateway and the app's access log from being counted twice. This recorder only adds what
the hot path needs, because a log source delivers hundreds of thousands of lines a second:

* label children cached by label tuple (``.labels()`` costs more than an observation);
* observations tallied into bucket counts and added to the histogram at most ``FLUSH_INTERVAL``
  after the batch that made them (``flush_soon``), as the gateway's RED recorder does, instead of
  one locked update of the sum and one of a bucket per line. Once per batch was not enough: a batch
  of a file source is about 2,000 lines, spread over a hundred series, so most buckets still got
  their own update (a client_python ``inc`` is an interpreted call under a lock), about 3 % of a
  line's cost;
* exemplars (a trace ID on a bucket) at most once per bucket per interval, observed directly.

Adding tallies uses the client library's per-bucket values (``_buckets``, ``_sum``), which every
``prometheus_client`` release since the first has had; if they are ever missing, each value is
observed one by one instead, so the result is the same either way.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

from sidecar.core.http_metrics import DURATION_BUCKETS, SIZE_BUCKETS, HttpMetrics, method_label
from sidecar.logs.parse import AccessInfo

SOURCE = "logs"
EXEMPLAR_INTERVAL = 10.0
FLUSH_INTERVAL = 0.1  # how stale a scrape's log-derived request histograms may be (the gateway's: as long)
_MAX_SERIES = 10_000


def path_of(url: str) -> str:
    """The path of a URL that may be absolute (``https://host/x?y``) or already a path."""
    if url[:1] == "/":
        return url
    if url.startswith(("http://", "https://")):
        slash = url.find("/", url.find("://") + 3)
        return url[slash:] if slash >= 0 else "/"
    return url


class Tally:
    """One histogram child's observations for the current batch, added to it by ``flush``."""

    __slots__ = ("_bounds", "_buckets", "_observe", "_sum", "counts", "dirty", "total", "values")

    def __init__(self, child: Any, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        buckets = getattr(child, "_buckets", None)
        total = getattr(child, "_sum", None)
        usable = isinstance(buckets, list) and len(buckets) == len(bounds) + 1 and hasattr(total, "inc")
        self._buckets = buckets if usable else None
        self._sum = total if usable else None
        self._observe: Callable[[float], None] = child.observe
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.values: list[float] = []  # only when the library's internals are not usable
        self.dirty = False

    def add(self, value: float) -> None:
        if self._buckets is None:
            self.values.append(value)
        else:
            self.counts[bisect_left(self._bounds, value)] += 1  # the first bucket with value <= bound
            self.total += value
        self.dirty = True

    def flush(self) -> None:
        if self._buckets is not None and self._sum is not None:
            counts = self.counts
            for index, n in enumerate(counts):
                if n:
                    self._buckets[index].inc(n)
                    counts[index] = 0
            self._sum.inc(self.total)
            self.total = 0.0
        else:
            for value in self.values:
                self._observe(value)
            self.values.clear()
        self.dirty = False


class _Series:
    """The tallies of one label set, its direct ``observe`` (for exemplars) and exemplar times."""

    __slots__ = ("duration", "exemplar_at", "observe_with_exemplar", "response_size")

    def __init__(self, http: HttpMetrics, method: str, route: str, status: int) -> None:
        error_type = str(status) if status >= 500 else ""
        child = http.duration.labels(method, route, str(status), error_type)
        self.duration = Tally(child, DURATION_BUCKETS)
        self.observe_with_exemplar: Callable[..., None] = child.observe
        self.response_size = Tally(http.response_size.labels(method, route), SIZE_BUCKETS)
        self.exemplar_at = [-EXEMPLAR_INTERVAL] * (len(DURATION_BUCKETS) + 1)


class AccessRecorder:
    """Records access lines through ``HttpMetrics``; lines without a duration are not observed."""

    def __init__(self, http: HttpMetrics) -> None:
        self.http = http
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._dirty: list[Tally] = []
        self._timer: asyncio.TimerHandle | None = None

    def record(self, access: AccessInfo, request_id: str | None, trace_id: str | None) -> None:
        seconds = access.duration_seconds
        if seconds is None:
            return
        http = self.http
        if request_id is not None and not http.first_sighting(request_id, SOURCE):
            return
        where = access.route or access.url
        if not where:
            return
        route = http.route_of(where if where[0] == "/" else path_of(where))
        key = (access.method, route, access.status)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= _MAX_SERIES:
                self.flush()
                self._series.clear()
            series = self._series[key] = _Series(http, method_label(access.method), route, access.status)
        if trace_id is not None and self._exemplar_due(series, seconds):
            series.observe_with_exemplar(seconds, {"trace_id": trace_id[:64]})
        else:
            tally = series.duration
            if not tally.dirty:
                self._dirty.append(tally)
            tally.add(seconds)  # sets dirty
        if access.bytes is not None:
            tally = series.response_size
            if not tally.dirty:
                self._dirty.append(tally)
            tally.add(access.bytes)

    @staticmethod
    def _exemplar_due(series: _Series, seconds: float) -> bool:
        index = bisect_left(DURATION_BUCKETS, seconds)
        now = time.monotonic()
        if now - series.exemplar_at[index] >= EXEMPLAR_INTERVAL:
            series.exemplar_at[index] = now
            return True
        return False

    def flush_soon(self) -> None:
        """After a batch: add the tallies to the histograms within ``FLUSH_INTERVAL`` (one timer for
        many batches), or at once when no event loop runs (a caller feeding lines synchronously)."""
        if not self._dirty or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._timer = loop.call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        """Add the tallies to the histograms now (the timer, the series cap, the runtime's stop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for tally in self._dirty:
            tally.flush()
        self._dirty.clear()
