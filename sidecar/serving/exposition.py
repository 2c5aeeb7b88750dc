"""Prometheus exposition: the app's own registry and the ``/metrics`` body rendered from it.

One registry per app, never the global default, so tests build fresh ones. The body is OpenMetrics or
the Prometheus text format by ``Accept``, gzipped when the scraper asks.
"""

from __future__ import annotations

import gzip

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder


def new_registry() -> CollectorRegistry:
    """A registry per app (never the global default), with the process and runtime collectors."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str, accept_encoding: str) -> tuple[bytes, dict[str, str]]:
    """Exposition body and headers: OpenMetrics or Prometheus text by ``Accept``, gzip when asked."""
    encoder, content_type = choose_encoder(accept)
    body: bytes = encoder(registry)
    headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
    if "gzip" in accept_encoding:
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return body, headers
