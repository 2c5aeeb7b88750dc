"""The per-listener state both connection kinds read: settings as plain attributes, batch, metrics.

Why a base class of its own: the upstream connections need the timeouts, the write batch and the
metrics, and ``GatewayContext`` (which subclasses this) owns the upstream pool. Typed against the
context, the upstream module and the context module would import each other; typed against this, the
upstream side depends only on what it reads.

The protocols read settings from here on every request, so they are copied out of the settings model
into attributes once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.gateway.forwarded import ForwardedPolicy
from sidecar.gateway.write_batch import WriteBatch

if TYPE_CHECKING:
    from sidecar.gateway.metrics import GatewayMetrics
    from sidecar.gateway.settings import GatewaySettings
    from sidecar.probing.health import HealthModel

# The native response-head reader's answer (upstream.response_scanner): (status, kept fields,
# Content-Length value, body length, keep-alive, head size), or None to let llhttp read the head.
ScannedHead = tuple[int, bytes, bytes | None, int, bool, int]
ResponseScan = Callable[[bytes, bool], ScannedHead | None]


class ListenerState:
    """Settings-derived values, the write batch and the metrics of one gateway listener."""

    metrics: GatewayMetrics  # set by the subclass, which has what its gauges count

    def __init__(self, settings: GatewaySettings, health: HealthModel) -> None:
        self.settings = settings
        self.address = settings.upstream_address
        self.upstream_host_line = b"Host: " + self.address.host_header + b"\r\n"
        self.preserve_host = settings.preserve_host
        self.websockets = settings.websockets
        self.new_trace_sampled = settings.new_trace_sampled
        self.new_trace_flags = b"-01" if settings.new_trace_sampled else b"-00"
        self.connect_timeout = settings.connect_timeout
        self.read_timeout = settings.read_timeout
        self.idle_timeout = settings.idle_timeout
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        rate = settings.min_body_rate
        self.body_seconds_per_byte = 1.0 / rate if rate else 0.0  # 0: only silence bounds a body
        self.upstream_idle_timeout = settings.upstream_idle_timeout
        self.max_header_bytes = settings.max_header_bytes
        self.max_concurrent = settings.max_concurrent_requests
        self.policy = ForwardedPolicy(settings.trusted_proxies)
        self.health = health
        self.writes = WriteBatch()
        self.stopping = False
        self.app_refused = asyncio.Event()  # the pool saw the app refuse a connection (see app_watch)
        # the native reader of usual response heads, set by the context when nothing else reads the
        # app's fields (upstream.response_scanner); None: llhttp reads every response
        self.scan_response: ResponseScan | None = None

    @property
    def closing(self) -> bool:
        """Responses carry ``Connection: close`` while draining (SIGTERM or admin /drain)."""
        return self.stopping or self.health.draining
