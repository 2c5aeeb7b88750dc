"""The client side of the gateway: an HTTP/1.1 server protocol that proxies each request to the app.

Why a hand-written ``asyncio.Protocol`` over ``httptools`` (llhttp) instead of aiohttp's server and
client: a request here costs a few callbacks, one pass over the headers and two ``write`` calls, with
no task, future, stream reader or header multidict per request. That is what lets one Python
process proxy at a useful fraction of nginx's rate.

Life of a request: the parser's callbacks collect the request line and headers; at the end of the
head an ``Exchange`` is built with its upstream head; a pooled connection to the app is taken (or
opened in the background) and the head is written; body bytes stream through as they arrive.
Responses flow back through ``response_head``/``response_body``/``response_complete``, called by the
``UpstreamConnection``. Flow control is symmetric: a full write buffer on one side pauses reading on
the other, so a 1 GB body crosses with bounded memory. Deadlines are plain floats checked by the
gateway's sweeper, not timers, so keeping them current costs one clock read. Bytes for either side
are queued and written once per event-loop iteration (``write_batch``), which cut the kernel time
spent waking peers by more than half.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpRequestParser

from sidecar.core import own_logs
from sidecar.gateway.exchange import INF, ClientSide, Exchange, UpstreamSide
from sidecar.gateway.forwarded import Peer
from sidecar.gateway.framing import FramingError
from sidecar.gateway.request_head import build_request_head
from sidecar.gateway.response_head import build_interim_head, build_response_head, build_scanned_head
from sidecar.gateway.responses import error_response

if TYPE_CHECKING:
    from sidecar.gateway.context import GatewayContext
    from sidecar.gateway.listener_state import RequestScan

log = logging.getLogger("sidecar.gateway")
_clock: Final = time.perf_counter  # Final: compiled code calls it without a globals lookup
_request_context: Final = own_logs.request_context
# bound once: compiled, ``_request_context.set(ex)`` looked the method up on every call
_set_request_context: Final = _request_context.set

# Connection phases, for the sweeper: what the deadline means.
IDLE: Final = 0  # waiting for the first byte of a request: close quietly
HEAD: Final = 1  # part of a request head received: 408
BODY: Final = 2  # request body arriving: 408, or abort once the response has started
BUSY: Final = 3  # request complete, waiting for the app: the upstream deadline applies

# Reasons to stop reading from the client (bit mask).
_UPSTREAM_FULL: Final = 1
_PENDING_FULL: Final = 2
_PIPELINED: Final = 4
PENDING_LIMIT: Final = 64 * 1024


_NO_PEER: Final = Peer("", False, b"")
# head_scan's usual request: no other fields to decide on (never changed)
_NO_FIELDS: Final[list[tuple[bytes, bytes]]] = []


class _Stop(Exception):
    """Raised inside a parser callback after the connection was answered and closed."""


class ClientConnection(ClientSide):
    """One client connection; proxies its requests one at a time (pipelined ones wait their turn).

    An ``asyncio.Protocol`` by its methods, not by inheritance: a class deriving from a Python class
    cannot be compiled to a native one (see ``setup.py``), and the event loop only calls the methods.
    """

    ctx: GatewayContext

    __slots__ = (
        "body_end",
        "closed",
        "ctx",
        "current",
        "early",
        "feed",
        "get_method",
        "head_bytes",
        "headers",
        "in_head",
        "keep_alive_asked",
        "llhttp_holds",
        "log_bound",
        "parser",
        "parsing",
        "paused",
        "paused_at",
        "peer",
        "phase",
        "queue",
        "raw",
        "rejection",
        "transport",
        "upgrading",
        "url",
        "write_paused",
    )

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.writes = ctx.writes
        self.transport: Any = None
        self.parser = HttpRequestParser(self)
        # the parser's methods bound once: compiled, a call through self.parser looked the method up
        # (three per request)
        self.feed: Callable[[bytes], None] = self.parser.feed_data
        self.get_method: Callable[[], bytes] = self.parser.get_method
        self.keep_alive_asked: Callable[[], bool] = self.parser.should_keep_alive
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.current: Exchange | None = None  # being proxied
        self.parsing: Exchange | None = None  # whose body the parser is reading
        self.queue: deque[Exchange] | None = None  # pipelined, waiting for ``current``
        self.raw: Exchange | None = None  # after an upgrade request: bytes pass unparsed
        self.upgrading: Exchange | None = None  # a WebSocket upgrade request whose head was parsed
        self.early: list[bytes] | None = None  # raw bytes after an upgrade request, before the app's 101
        self.rejection: bytes | None = None  # a refusal waiting for the responses before it
        self.out: list[bytes] | None = None  # bytes waiting for this loop iteration's write batch
        self.in_head = True
        self.head_bytes = 0
        self.llhttp_holds = False  # llhttp has read part of a message (on_message_begin)
        self.log_bound = False  # a request was bound to the logging context (_bind): unbind it when done
        self.phase = IDLE
        self.deadline = INF
        self.paused = 0
        self.write_paused = False
        self.closed = False
        self.peer = _NO_PEER
        # The body being read must arrive by body_end: body_timeout after its head, plus a second per
        # min_body_rate bytes received (mod_reqtimeout's MinRate), plus the time reading was paused
        # for the app's sake. Silence alone (body_timeout) would let a trickle hold a slot forever.
        self.body_end = INF
        self.paused_at = 0.0

    # -- connection lifecycle ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        ctx = self.ctx
        peer = transport.get_extra_info("peername")
        self.peer = ctx.policy.peer(str(peer[0]) if isinstance(peer, tuple) else "")
        ctx.connections.add(self)
        self.deadline = _clock() + min(ctx.header_timeout, ctx.idle_timeout)
        if ctx.stopping:
            self.closed = True
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = INF
        ctx = self.ctx
        ex = self.current
        if ex is not None and not ex.finished:
            up = ex.upstream
            if ex.tunnel:
                if up is not None:
                    up.close()
                self._finish(ex)
            else:
                ex.upstream = None
                if up is not None:
                    up.abort()
                ctx.metrics.client_disconnects.inc()
                if not ex.response_started:
                    ex.status = 499
                ex.error = "client_disconnect"
                self._finish(ex)
        self.queue = None
        ctx.connection_closed(self)

    def _close(self) -> None:
        if not self.closed:
            self.flush()
            self.closed = True
            self.deadline = INF
            self.transport.close()

    def timed_out(self) -> None:
        """Called by the sweeper past ``deadline``; what it means depends on the phase."""
        phase = self.phase
        self.deadline = INF
        if phase == IDLE:
            self._close()
        elif phase == HEAD:
            self._reject(408, "header_timeout")
        elif phase == BODY:
            ex = self.parsing
            if ex is not None and ex is self.current and not ex.response_started and not ex.finished:
                self.ctx.metrics.rejected.labels("body_timeout").inc()
                self._fail(ex, 408, "body_timeout")
            else:
                self._abort()

    def close_if_idle(self) -> None:
        """Drain: close keep-alive connections that are between requests."""
        if self.phase == IDLE and self.current is None:
            self._close()

    def _abort(self) -> None:
        ex = self.current
        if ex is not None and ex.upstream is not None:
            ex.upstream.abort()
            ex.upstream = None
        self.closed = True
        self.out = None
        self.transport.abort()

    # -- request parsing --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.raw is not None:
            self._raw_from_client(self.raw, data)
            return
        now = 0.0  # the clock when read here: the time these bytes arrived (0: not read)
        if self.phase == IDLE:
            self.phase = HEAD
            now = _clock()
            self.deadline = now + self.ctx.header_timeout
        if self.in_head:
            if not self.llhttp_holds:  # between messages: the native reader may take the head
                scan = self.ctx.scan_request
                if scan is not None:
                    self._scanned(data, scan, now)
                    return
            self.head_bytes += len(data)
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """``data`` to llhttp, whose callbacks below do the rest; its refusals answered here."""
        try:
            self.feed(data)
        except HttpParserUpgrade as exc:
            ex = self.upgrading
            if ex is not None:
                self.upgrading = None
                self._upgrade_requested(ex, data[exc.args[0] :])
            elif not self.closed and self.rejection is None:  # an upgrade not made: still HTTP
                rest = data[exc.args[0] :]
                if rest:
                    self.data_received(rest)
            return
        except HttpParserCallbackError as exc:
            if not self.closed and self.rejection is None:
                cause = exc.__context__
                self._bind(self.parsing or self.current)
                log.error("gateway request handling failed", exc_info=cause or exc)
                self._reject(500, "internal")
            return
        except HttpParserError:
            self._reject(400, "bad_request")
            return
        if self.in_head and self.head_bytes > self.ctx.max_header_bytes and not self.closed:
            self._reject(431, "header_too_large")

    def on_message_begin(self) -> None:
        # llhttp now holds part of a message (until on_message_complete): the native reader must not
        # start on the bytes that follow, which llhttp reads as that message's rest
        self.llhttp_holds = True

    def on_url(self, url: bytes) -> None:
        # usually the whole target in one piece: kept as it is, not copied onto b""
        self.url = url if not self.url else self.url + url
        if len(self.url) > self.ctx.max_header_bytes:
            self._reject(414, "uri_too_long")
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ctx = self.ctx
        url = self.url
        headers = self.headers
        self.url = b""
        self.headers = []
        self.in_head = False
        if self.head_bytes > ctx.max_header_bytes and _head_size(url, headers) > ctx.max_header_bytes:
            self._reject(431, "header_too_large")
            raise _Stop
        self._head_complete(self.get_method(), url, headers, self.keep_alive_asked(), b"", "")

    def _scanned(self, data: bytes, scan: RequestScan, now: float) -> None:
        """Read the usual bodiless request heads at the start of ``data`` natively; llhttp the rest.

        Only called with llhttp between messages (it holds none of ``data``), so either reader may take
        the next head. A head the scanner leaves, and every byte after it, go to llhttp as before.
        ``now``: when ``data`` arrived, if the clock was read for it (else 0); each head read whole
        from ``data`` arrived then (a clock read is about 190 instructions, half a percent of a request).
        """
        max_header_bytes = self.ctx.max_header_bytes
        while True:
            head = scan(data, max_header_bytes)
            if head is None:
                self.head_bytes = len(data)
                self._feed(data)
                return
            method, target, version, keep_alive, kept, decided, user_agent, host, size = head
            self.in_head = False
            try:
                self._head_complete(
                    method,
                    target,
                    _NO_FIELDS if decided is None else decided,
                    keep_alive,
                    kept,
                    version,
                    user_agent,
                    now,
                    host,
                )
                self.on_message_complete()
            except _Stop:
                return
            except Exception:
                if not self.closed and self.rejection is None:
                    self._bind(self.parsing or self.current)
                    log.exception("gateway request handling failed")
                    self._reject(500, "internal")
                return
            if size == len(data) or self.closed or self.rejection is not None:
                return
            if not keep_alive:  # bytes after a request that closes the connection: llhttp refuses them
                self._reject(400, "bad_request")
                return
            data = data[size:]

    def _head_complete(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        kept: bytes,
        version: str,
        user_agent: bytes | None = None,
        now: float = 0.0,
        host: bytes | None = None,
    ) -> None:
        """A request head is complete (read by llhttp, or by head_scan with ``kept`` and ``version``).

        ``now``: when its last bytes arrived, if the caller read the clock for them (else 0). ``host``:
        the one Host value head_scan read (not among ``headers`` then).
        """
        ctx = self.ctx
        if method == b"CONNECT":
            self._reject(405, "method", method, url)
            raise _Stop
        if not now:
            now = _clock()
        ex = Exchange(self, method, url, now)
        ex.keep_alive = keep_alive
        if user_agent is not None:
            ex.user_agent = user_agent
        try:
            ex.head = build_request_head(ctx, self.peer, ex, headers, self.parser, False, kept, version, host)
        except FramingError as exc:  # ambiguous framing: refuse and close (docs/gateway.md)
            self._reject(exc.status, exc.reason, method, url)
            raise _Stop from None
        if ex.upgrade:
            self.upgrading = ex
        ctx.sighted(ex.request_id, ex.request_id_made)
        if ctx.edge is not None:  # rate limits decide now (or ask Redis); _begin waits for the answer
            self._bind(ex)  # what the edge logs (its Redis failing) names the request
            ctx.edge.inspect(ex, headers)
        if ex.has_body:
            self.phase = BODY
            self.deadline = now + ctx.body_timeout
            self.body_end = self.deadline if ctx.body_seconds_per_byte else INF
        else:
            self.phase = BUSY
            self.deadline = INF
        self.parsing = ex
        if self.current is None:
            self.current = ex
            self._begin(ex)
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(ex)
            self._pause(_PIPELINED)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None:
            return
        size = len(body)
        ex.bytes_in += size
        if ex.finished:
            return
        if ex.chunked:
            body = b"%x\r\n%b\r\n" % (size, body)
        up = ex.upstream
        now = _clock()
        if up is not None:
            up.send(body)
            up.deadline = now + self.ctx.read_timeout
        else:
            self._hold(ex, body)
        end = self.body_end + size * self.ctx.body_seconds_per_byte
        self.body_end = end
        if not self.paused:
            silence = now + self.ctx.body_timeout
            self.deadline = silence if silence < end else end

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        self.llhttp_holds = False
        self.in_head = True
        self.head_bytes = 0
        if self.headers:  # trailer fields (dropped): they must not join the next request's head
            self.headers = []
        if ex is None:
            return
        ex.request_complete = True
        if self.phase == BODY:
            self.phase = BUSY
            self.deadline = INF
        if ex.chunked and not ex.finished:
            up = ex.upstream
            if up is not None:
                up.send(b"0\r\n\r\n")
            else:
                self._hold(ex, b"0\r\n\r\n")

    def _hold(self, ex: Exchange, data: bytes) -> None:
        """Keep body bytes until the upstream connection exists; stop reading past a limit."""
        if ex.pending is None:
            ex.pending = [data]
        else:
            ex.pending.append(data)
        ex.pending_bytes += len(data)
        if ex.pending_bytes > PENDING_LIMIT:
            self._pause(_PENDING_FULL)

    def pending_flushed(self) -> None:
        self._resume(_PENDING_FULL)

    # -- starting an exchange ---------------------------------------------------------------------

    def _begin(self, ex: Exchange) -> None:
        ctx = self.ctx
        if ex.limits is not None and ex.limits.held(self, ex):  # waiting for Redis, or refused
            return
        if ctx.active >= ctx.max_concurrent:
            ctx.metrics.rejected.labels("concurrency").inc()
            ex.close_after = True
            self._fail(ex, 503, "concurrency")
            return
        ctx.active += 1
        ex.counted = True
        ctx.red.started(ex.method)
        up = ctx.pool.acquire()
        if up is not None:
            up.attach(ex)
        else:
            ctx.pool.connect(ex)

    # -- responses (called by UpstreamConnection) -------------------------------------------------

    def interim_response(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if not ex.http10:
            self.send(build_interim_head(status, headers))

    def response_head(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        ex.status = status
        ex.response_started = True
        edge = self.ctx.edge
        extra = edge.response_fields(ex, status, headers) if edge is not None else b""
        self.send(build_response_head(ex, status, headers, self.ctx.closing, extra))

    def response_scanned(self, ex: Exchange, status: int, kept: bytes, content_length: bytes | None) -> None:
        ex.status = status
        ex.response_started = True
        self.send(build_scanned_head(ex, status, kept, content_length, self.ctx.closing))

    def response_body(self, ex: Exchange, body: bytes) -> None:
        size = len(body)
        ex.bytes_out += size
        if ex.rechunk:
            self.send(b"%x\r\n" % size)
            self.send(body)
            self.send(b"\r\n")
        else:
            self.send(body)

    def response_complete(self, ex: Exchange) -> None:
        """The app's response ended (``ex.upstream_ended`` was just read from the clock)."""
        if ex.rechunk:
            self.send(b"0\r\n\r\n")
        self._finish(ex, ex.upstream_ended)

    def upstream_failed(self, ex: Exchange, reason: str, status: int) -> None:
        """The app refused, reset, timed out or spoke nonsense: 502/504, or cut a started response."""
        if ex.finished:
            return
        self._bind(ex)
        self.ctx.upstream_failed(reason).inc()
        log.warning(
            "upstream request failed",
            extra={"reason": reason, "status": status, "method": ex.method.decode("latin-1")},
        )
        if ex.response_started:  # too late for a 502: cut the response so the client sees it broken
            ex.error = f"upstream_{reason}"
            self._abort()
            self._finish(ex)
            return
        self._fail(ex, status, f"upstream_{reason}", reason)

    def _fail(self, ex: Exchange, status: int, error: str, message: str = "", extra: bytes = b"") -> None:
        """Answer ``ex`` with the gateway's own error response and finish it."""
        up = ex.upstream
        if up is not None:
            ex.upstream = None
            up.abort()
        ex.status = status
        ex.error = error
        ex.response_started = True
        closing = ex.close_after or not ex.request_complete or not ex.keep_alive or self.ctx.closing
        ex.close_after = closing
        self.send(error_response(status, message or error, ex.request_id, close=closing, extra=extra))
        self._finish(ex)

    def refuse(self, ex: Exchange, status: int, reason: str, fields: bytes) -> None:
        """A rate limit refused ``ex`` (429, or 503 when its Redis failed closed); ``fields`` explain it."""
        self.ctx.metrics.rejected.labels(reason).inc()
        self._fail(ex, status, reason, extra=fields)

    def limits_decided(self, ex: Exchange) -> None:
        """Redis answered the rate-limit decisions ``_begin`` was waiting for: go on with ``ex``."""
        if self.current is ex and not ex.finished and not self.closed:
            self._bind(ex)
            self._begin(ex)

    def _reject(self, status: int, reason: str, method: bytes = b"", target: bytes = b"") -> None:
        """Refuse a request whose head was not accepted; the connection is closed after the answer.

        Pipelined requests read before it are answered first (responses keep the requests' order);
        nothing after it is read.
        """
        if self.closed or self.rejection is not None:
            return
        parsing = self.parsing
        if parsing is not None and parsing is not self.current and self.queue and parsing in self.queue:
            # A pipelined request whose body broke before its turn came: it never reached the app.
            self.queue.remove(parsing)
            self.parsing = None
            parsing.finished = True
            parsing.status = status
            parsing.error = reason
            if parsing.limits is not None:
                parsing.limits.finished(status)
            self.ctx.finished(parsing, _clock())
            request_id = parsing.request_id
        else:
            request_id = self.ctx.record_rejected(status, reason, self.peer.address, method, target, None)
        response = error_response(status, reason, request_id)
        if self.current is not None and self.parsing is None:
            self.rejection = response
            self.deadline = INF
            self._pause(_PIPELINED)
            return
        self.send(response)
        self._close()

    def _finish(self, ex: Exchange, now: float | None = None) -> None:
        """Record ``ex`` and move the connection on: next pipelined request, keep-alive or close.

        ``now``: the clock, when the caller has just read it.
        """
        if ex.finished:
            return
        ex.finished = True
        ctx = self.ctx
        if now is None:
            now = _clock()
        if ex.counted:
            ctx.active -= 1
            ctx.red.ended(ex.method)
        if ex.limits is not None:
            ex.limits.finished(ex.status)  # count: failed rules spend their budget now
        ctx.finished(ex, now)  # recorded after this iteration's writes: the response leaves first
        if self.current is ex:
            self.current = None
        if self.paused & _UPSTREAM_FULL:
            self._resume(_UPSTREAM_FULL)
        if self.closed:
            return
        if ex.close_after:
            self._close()
            return
        if self.log_bound:  # usually not: only requests something was logged for (_bind)
            self.log_bound = False
            _set_request_context(None)
        queue = self.queue
        if queue:
            self._next(queue)
        elif self.rejection is not None:
            self.send(self.rejection)
            self._close()
        elif self.parsing is None:
            self._between_requests(now)

    def _between_requests(self, now: float) -> None:
        """The response is done and nothing is pipelined: wait for the next request, or close."""
        ctx = self.ctx
        if ctx.stopping:
            self._close()
        elif self.head_bytes or self.url:  # the next (pipelined) request has begun: header deadline
            self.phase = HEAD
            self.deadline = now + ctx.header_timeout
        else:
            self.phase = IDLE
            self.deadline = now + ctx.idle_timeout

    def _next(self, queue: deque[Exchange]) -> None:
        """Start the next pipelined request."""
        nxt = queue.popleft()
        if not queue and self.rejection is None:
            self._resume(_PIPELINED)
        self.current = nxt
        if self.ctx.edge is not None:
            self._bind(nxt)
        self._begin(nxt)

    def _bind(self, ex: Exchange | None) -> None:
        """Put ``ex``'s IDs in the sidecar's own logging context (``own_logs``) for this callback chain.

        Bound only where the gateway is about to log, or to call code that may log (the edge
        protections): a ``ContextVar`` set, and the reset after it, cost about 1,700 instructions, a
        twentieth of a proxied request, and the usual request logs nothing. ``_finish`` unbinds it.
        """
        self.log_bound = True
        _set_request_context(ex)

    # -- flow control -----------------------------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
            if self.phase == BODY:
                self.deadline = INF
                self.paused_at = _clock()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and not self.closed:
            self.transport.resume_reading()
            if self.phase == BODY:
                now = _clock()
                end = self.body_end + (now - self.paused_at)  # the client was not to blame meanwhile
                self.body_end = end
                silence = now + self.ctx.body_timeout
                self.deadline = silence if silence < end else end

    def upstream_write_blocked(self, blocked: bool) -> None:
        if blocked:
            self._pause(_UPSTREAM_FULL)
        else:
            self._resume(_UPSTREAM_FULL)

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.current
        if ex is not None and ex.upstream is not None:
            ex.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.current
        if ex is not None and ex.upstream is not None:
            ex.upstream.resume_reading()

    # -- upgrades (WebSocket) -----------------------------------------------------------------------

    def _upgrade_requested(self, ex: Exchange, rest: bytes) -> None:
        """llhttp stopped after a WebSocket upgrade request: what follows is not HTTP.

        Until the app answers 101 the bytes are held here, not sent: an app that refuses the upgrade
        would read them as HTTP requests the gateway never saw. If it refuses, the connection closes
        after its response and the held bytes are dropped.
        """
        if self.closed:
            return
        ex.request_complete = True
        ex.close_after = True
        self.parsing = None
        self.raw = ex
        if rest:
            self._raw_from_client(ex, rest)

    def _raw_from_client(self, ex: Exchange, data: bytes) -> None:
        ex.bytes_in += len(data)
        if ex.finished:
            return
        up = ex.upstream
        if up is not None and ex.tunnel:
            up.send(data)
            return
        early = self.early
        if early is None:
            self.early = early = []
        early.append(data)
        if sum(len(d) for d in early) > PENDING_LIMIT:
            self._pause(_PENDING_FULL)

    def start_tunnel(self, ex: Exchange, up: UpstreamSide, rest: bytes) -> None:
        """The app switched protocols: pass the rest through unparsed until either side closes."""
        ex.tunnel = True
        self.phase = BUSY
        self.deadline = INF
        if rest:
            ex.bytes_out += len(rest)
            self.send(rest)
        early = self.early
        if early is not None:
            self.early = None
            for data in early:
                up.send(data)
            self._resume(_PENDING_FULL)

    def tunnel_closed(self, ex: Exchange) -> None:
        self._finish(ex)
        self._close()

    def eof_received(self) -> bool | None:
        """The client closed: TCP cannot tell a half-close from leaving, so (like nginx) it has left.

        The transport closes; ``connection_lost`` counts a request in flight as a disconnect (499).
        """
        ex = self.current
        if ex is not None and ex.tunnel and ex.upstream is not None:
            ex.upstream.close()
        return None


def _head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    return len(url) + 16 + sum(len(n) + len(v) + 4 for n, v in headers)
