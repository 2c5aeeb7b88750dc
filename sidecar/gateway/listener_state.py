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

# The native head readers' answers (head_scan.c), or None to let llhttp read the head. A response:
# (status, kept fields, Content-Length value, body length, keep-alive, head size). A request: (method,
# target, HTTP version, keep-alive, kept fields, other fields request_head decides on (None: none), user
# agent, the one Host value (None: no Host, or several, which stay among the decided fields), head size).
ScannedHead = tuple[int, bytes, bytes | None, int, bool, int]
ResponseScan = Callable[[bytes, bool], ScannedHead | None]
ScannedRequest = tuple[
    bytes, bytes, str, bool, bytes, list[tuple[bytes, bytes]] | None, bytes | None, bytes | None, int
]
RequestScan = Callable[[bytes, int], ScannedRequest | None]


def native_scanners() -> tuple[RequestScan | None, ResponseScan | None]:
    """The native readers of usual request and response heads (``head_scan.c``); None where not built."""
    try:
        from sidecar.gateway.head_scan import scan_request, scan_response  # noqa: PLC0415 (optional)
    except ImportError:
        return None, None
    return scan_request, scan_response


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
        # the native readers of usual heads, set by the context when nothing else reads the fields one
        # by one (native_scanners); None: llhttp reads every head
        self.scan_request: RequestScan | None = None
        self.scan_response: ResponseScan | None = None

    @property
    def closing(self) -> bool:
        """Responses carry ``Connection: close`` while draining (SIGTERM or admin /drain)."""
        return self.stopping or self.health.draining
