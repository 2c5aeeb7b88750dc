"""One request/response pair as it crosses the gateway, and the interfaces of the parts it links.

``Exchange`` is what was asked, what happened, what it cost: a plain slotted object rather than a
dataclass, since one is created per request on the hot path and the protocols read and write its fields
directly.

The exchange links a client connection (``proxy``), an upstream connection (``upstream``) and, when a
rule applies, the request's rate-limit decisions (``ratelimit.limiter``), and each of those calls the
others. Typed against each other they would import each other in a circle, so each is typed against
the small base class here (``ClientSide``, ``UpstreamSide``, ``LimitsSide``) and the concrete class
implements it. Base classes rather than ``typing.Protocol`` where both sides are compiled with mypyc:
a call through a native base class is a vtable call, a call through a Protocol a dictionary lookup.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Final, Protocol

from sidecar.gateway.write_batch import BatchedWriter

INF: Final = float("inf")
Headers = list[tuple[bytes, bytes]]


class ClientSide(BatchedWriter):
    """What the upstream connection, the rate limiter and the listener ask of a client connection."""

    __slots__ = ("deadline",)
    deadline: float  # when the client's silence (or slowness) becomes a timeout

    @abstractmethod
    def timed_out(self) -> None:
        """``deadline`` passed: answer 408 or close, as the connection's phase calls for."""

    @abstractmethod
    def close_if_idle(self) -> None:
        """Draining: close now unless a request is in flight."""

    @abstractmethod
    def interim_response(self, ex: Exchange, status: int, headers: Headers) -> None:
        """A 1xx from the app (not 101): forward it, the final response is still to come."""

    @abstractmethod
    def response_head(self, ex: Exchange, status: int, headers: Headers) -> None:
        """The app's final response head."""

    @abstractmethod
    def response_scanned(self, ex: Exchange, status: int, kept: bytes, content_length: bytes | None) -> None:
        """The app's final response head as ``head_scan`` read it: the kept fields in one piece."""

    @abstractmethod
    def response_body(self, ex: Exchange, body: bytes) -> None:
        """A piece of the app's response body."""

    @abstractmethod
    def response_complete(self, ex: Exchange) -> None:
        """The app's response ended."""

    @abstractmethod
    def upstream_failed(self, ex: Exchange, reason: str, status: int) -> None:
        """The app could not be reached or broke off: answer ``status`` if nothing was sent yet."""

    @abstractmethod
    def upstream_write_blocked(self, blocked: bool) -> None:
        """The app's socket buffer is full (``True``) or drained: stop or resume reading the client."""

    @abstractmethod
    def pending_flushed(self) -> None:
        """Body bytes held while the upstream connection was opening have been sent."""

    @abstractmethod
    def start_tunnel(self, ex: Exchange, up: UpstreamSide, rest: bytes) -> None:
        """The app switched protocols: pass bytes through unparsed from now on."""

    @abstractmethod
    def tunnel_closed(self, ex: Exchange) -> None:
        """The app's side of a tunnel closed."""

    @abstractmethod
    def limits_decided(self, ex: Exchange) -> None:
        """Every rate-limit decision the request waited for has arrived."""

    @abstractmethod
    def refuse(self, ex: Exchange, status: int, reason: str, fields: bytes) -> None:
        """A rate limit refused the request: answer ``status`` with the limit's header ``fields``."""


class UpstreamSide(BatchedWriter):
    """What the client connection asks of the connection to the app it is paired with."""

    __slots__ = ("deadline",)
    deadline: float  # when the app's silence becomes a timeout

    @abstractmethod
    def pause_reading(self) -> None:
        """The client is not reading: stop reading the app's response."""

    @abstractmethod
    def resume_reading(self) -> None:
        """The client reads again."""

    @abstractmethod
    def close(self) -> None:
        """Close after what is queued has been written."""

    @abstractmethod
    def abort(self) -> None:
        """Close now, dropping what is queued."""


class LimitsSide(Protocol):
    """What the client connection asks of the rate-limit decisions of its current request.

    A Protocol, unlike the two base classes above: its implementation (``ratelimit.limiter``) is not
    compiled, and a native base class cannot have interpreted subclasses.
    """

    def held(self, conn: ClientSide, ex: Exchange) -> bool:
        """True when ``ex`` must not go to the app now: still waiting on Redis, or refused."""
        ...

    def response_fields(self) -> bytes:
        """Rate-limit header fields for an allowed response."""
        ...

    def finished(self, status: int) -> None:
        """The response is complete with ``status``."""


class Exchange:
    """State of one proxied request; ``finished`` is set exactly once, when it is recorded."""

    __slots__ = (
        "body_length",
        "bytes_in",
        "bytes_out",
        "chunked",
        "client",
        "close_after",
        "conn",
        "counted",
        "ended",
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
        "request_id_bytes",
        "request_id_made",
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

    def __init__(self, conn: ClientSide, method: bytes, target: bytes, started: float) -> None:
        self.conn = conn
        self.method = method
        self.target = target
        self.started = started
        self.upstream: UpstreamSide | None = None
        self.head = b""
        self.request_id = ""
        self.request_id_made = False  # made up by the gateway (the client sent none it could keep)
        self.request_id_bytes = b""  # the ID as ASCII, set with it by request_head
        self.trace_id = ""
        self.traceparent_in = b""  # the client's traceparent, kept for the server span's parent
        self.client = ""
        self.user_agent = b""
        self.http10 = False
        self.keep_alive = True
        self.is_head = method == b"HEAD"
        self.upgrade = False
        self.has_body = False
        self.body_length = 0  # from framing.decide: bytes, or framing.CHUNKED
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
        self.ended = 0.0  # when it finished: recorded after the loop iteration's writes
        self.bytes_in = 0
        self.bytes_out = 0
        self.pending: list[bytes] | None = None
        self.pending_bytes = 0
        self.limits: LimitsSide | None = None  # rate-limit decisions, when a rule applies
