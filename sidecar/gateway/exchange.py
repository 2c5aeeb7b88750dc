"""One request/response pair as it crosses the gateway: what was asked, what happened, what it cost.

A plain slotted object rather than a dataclass: one is created per request on the hot path, and the
protocols read and write its fields directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sidecar.gateway.proxy import ClientConnection
    from sidecar.gateway.ratelimit.limiter import LimitState
    from sidecar.gateway.upstream import UpstreamConnection

INF: Final = float("inf")


class Exchange:
    """State of one proxied request; ``finished`` is set exactly once, when it is recorded."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "chunked",
        "client",
        "close_after",
        "conn",
        "counted",
        "error",
        "finished",
        "has_body",
        "head",
        "http10",
        "is_head",
        "keep_alive",
        "limits",
        "method",
        "pending",
        "pending_bytes",
        "rechunk",
        "request_complete",
        "request_id",
        "response_started",
        "retriable",
        "retried",
        "started",
        "status",
        "target",
        "trace_id",
        "traceparent_in",
        "tunnel",
        "until_close",
        "upgrade",
        "upstream",
        "upstream_ended",
        "upstream_started",
        "user_agent",
    )

    def __init__(self, conn: ClientConnection, method: bytes, target: bytes, started: float) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        self.started = started
        self.upstream: UpstreamConnection | None = None
        self.head = b""
        self.request_id = ""
        self.trace_id = ""
        self.traceparent_in = b""  # the client's traceparent, kept for the server span's parent
        self.client = ""
        self.user_agent = b""
        self.http10 = False
        self.keep_alive = True
        self.is_head = method == b"HEAD"
        self.upgrade = False
        self.has_body = False
        self.chunked = False
        self.retriable = False
        self.retried = False
        self.request_complete = False
        self.response_started = False
        self.rechunk = False
        self.until_close = False
        self.close_after = False
        self.tunnel = False
        self.counted = False
        self.finished = False
        self.status = 0
        self.error = ""
        self.upstream_started = 0.0
        self.upstream_ended = 0.0
        self.bytes_in = 0
        self.bytes_out = 0
        self.pending: list[bytes] | None = None
        self.pending_bytes = 0
        self.limits: LimitState | None = None  # rate-limit decisions, when a rule applies
