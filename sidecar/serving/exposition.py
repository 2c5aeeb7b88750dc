"""Prometheus exposition: the app's own registry and the ``/metrics`` body rendered from it.

One registry per app, never the global default, so tests build fresh ones. The body is OpenMetrics or
the Prometheus text format by ``Accept``, gzipped when the scraper asks, written by ``text_exposition``
in steps that leave the event loop free in between.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector
from prometheus_client.metrics_core import Metric

from sidecar.serving.process_metrics import ProcessMetrics
from sidecar.serving.text_exposition import encoder_for, negotiate

_WITH_CREATED = frozenset({"counter", "histogram", "summary"})


class AppRegistry(CollectorRegistry):
    """The app's registry; leaves out the ``_created`` series unless ``created_series`` is set.

    Why: every counter and histogram child carries a ``<name>_created`` timestamp that no dashboard or
    alert of ours reads, a third more series for Prometheus to store (most exporters leave it out).
    prometheus_client's own switch (``disable_created_metrics()``, ``PROMETHEUS_DISABLE_CREATED_SERIES``)
    is process-wide; this one is per registry, so two apps (tests) can differ.
    """

    def __init__(self, created_series: bool = False) -> None:
        super().__init__(auto_describe=True)
        self.created_series = created_series

    def collect(self) -> Iterator[Metric]:
        for metric in super().collect():
            if not self.created_series and metric.type in _WITH_CREATED:
                created = metric.name + "_created"
                metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


def new_registry(created_series: bool = False) -> CollectorRegistry:
    """A registry per app (never the global default), with the process and runtime collectors.

    The process families come from ``ProcessMetrics`` (client_python's families, read in pieces a
    render can pause between) rather than client_python's ``ProcessCollector``."""
    registry = AppRegistry(created_series)
    ProcessMetrics(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


async def render(
    registry: CollectorRegistry, accept: str, accept_encoding: str
) -> tuple[bytes, dict[str, str]]:
    """Exposition body and headers: OpenMetrics or Prometheus text by ``Accept``, gzip when asked.

    Encoded in steps of some 25 us with the loop free in between (``text_exposition``),
    so a scrape of any size never holds the requests the gateway proxies on the same loop.
    """
    fmt = negotiate(accept)
    compress = "gzip" in accept_encoding
    body = await encoder_for(registry).render(fmt, gzip=compress)
    headers = {"Content-Type": fmt.content_type, "Vary": "Accept, Accept-Encoding"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    return body, headers
