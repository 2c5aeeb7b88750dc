"""Connections to the app: an HTTP/1.1 client protocol per connection and a keep-alive pool.

A pooled connection carries one request at a time. The pool is a LIFO stack, so the connections in
use stay warm and surplus ones age out after ``upstream_idle_timeout`` (shorter than typical app
keep-alive timeouts, so the gateway, not the app, closes idle connections). When a reused connection
turns out to have been closed by the app before a byte of response arrived, an idempotent request
without a body is retried once on a fresh connection: that race is the app's keep-alive timeout, not
a failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from sidecar.gateway.exchange import INF, Exchange, UpstreamSide

if TYPE_CHECKING:
    from sidecar.gateway.listener_state import ListenerState, ScannedHead

log = logging.getLogger(__name__)
_clock: Final = time.perf_counter  # Final: compiled code calls it without a globals lookup
NOT_SCANNED: Final = -1  # ``body_left`` while llhttp reads the response (or none is being read)


class UpstreamConnection(UpstreamSide):
    """One connection to the app; feeds responses back to the exchange's client connection.

    An ``asyncio.Protocol`` by its methods, not by inheritance: a class deriving from a Python class
    cannot be compiled to a native one (see ``setup.py``), and the event loop only calls the methods.
    """

    ctx: ListenerState

    __slots__ = (
        "at_start",
        "bodiless",
        "body_left",
        "closed",
        "ctx",
        "exchange",
        "feed",
        "got_bytes",
        "headers",
        "interim",
        "keep_alive",
        "keep_alive_said",
        "parser",
        "pool",
        "read_at",
        "read_paused",
        "reused",
        "status_code",
        "switching",
        "transport",
        "tunnel",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.ctx = pool.ctx
        self.writes = pool.ctx.writes
        self.transport: Any = None
        self.parser = HttpResponseParser(self)
        # the parser's methods bound once (see _new_parser)
        self.feed: Callable[[bytes], None] = self.parser.feed_data
        self.status_code: Callable[[], int] = self.parser.get_status_code
        self.keep_alive_said: Callable[[], bool] = self.parser.should_keep_alive
        self.headers: list[tuple[bytes, bytes]] = []
        self.exchange: Exchange | None = None
        self.closed = False
        self.reused = False
        self.got_bytes = False
        self.interim = False
        self.bodiless = False
        self.switching = False
        self.keep_alive = True
        self.tunnel = False
        self.read_paused = False
        self.deadline = INF
        self.read_at = 0.0  # the clock when data_received was last called: when the bytes came
        self.out: list[bytes] | None = None
        self.at_start = False  # the next byte starts a response and llhttp holds nothing of it
        self.body_left = NOT_SCANNED  # the bytes still to come of a scanned response's body

    # -- lifecycle ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pool.connections.add(self)

    def attach(self, ex: Exchange) -> None:
        """Send ``ex``'s request head and any body already received."""
        self.exchange = ex
        self.got_bytes = False
        self.at_start = True
        ex.upstream = self
        now = _clock()
        ex.upstream_started = now
        self.deadline = now + self.ctx.read_timeout
        self.send(ex.head)
        pending = ex.pending
        if pending:
            ex.pending = None
            ex.pending_bytes = 0
            for data in pending:
                self.send(data)
            ex.conn.pending_flushed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.connections.discard(self)
        ex = self.exchange
        if ex is None:
            return
        self.exchange = None
        ex.upstream = None
        if self.tunnel:
            ex.conn.tunnel_closed(ex)
            return
        if ex.finished:
            return
        if ex.response_started and ex.until_close and not self.bodiless:
            ex.upstream_ended = _clock()
            ex.conn.response_complete(ex)
            return
        if not self.got_bytes and self.reused and ex.retriable and not ex.retried:
            ex.retried = True
            self.ctx.metrics.retries.inc()
            self.pool.connect(ex)
            return
        ex.conn.upstream_failed(ex, "reset", 502)

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost decides whether the response was complete

    def timed_out(self) -> None:
        """Called by the sweeper past ``deadline``: idle too long in the pool, or the app is silent."""
        ex = self.exchange
        self.deadline = INF
        if ex is None:
            self.close()
            return
        self.exchange = None
        ex.upstream = None
        self.closed = True
        self.transport.abort()
        ex.conn.upstream_failed(ex, "timeout", 504)

    def close(self) -> None:
        self.flush()
        self.closed = True
        self.deadline = INF
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection mid-response (the client went away or failed)."""
        self.exchange = None
        self.out = None
        self.closed = True
        self.deadline = INF
        if self.transport is not None:
            self.transport.abort()

    # -- flow control -----------------------------------------------------------------------------

    def pause_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.conn.upstream_write_blocked(True)

    def resume_writing(self) -> None:
        ex = self.exchange
        if ex is not None:
            ex.conn.upstream_write_blocked(False)

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.deadline = INF
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            if self.exchange is not None and not self.tunnel:
                self.deadline = _clock() + self.ctx.read_timeout
            self.transport.resume_reading()

    # -- response parsing -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:  # the app spoke while idle: not a state we can trust
            self.close()
            return
        if self.tunnel:
            ex.bytes_out += len(data)
            ex.conn.send(data)
            return
        self.got_bytes = True
        self.read_at = now = _clock()
        self.deadline = now + self.ctx.read_timeout
        left = self.body_left
        if left != NOT_SCANNED:
            self._scanned_body(ex, data, left)
            return
        if self.at_start:
            self.at_start = False
            scan = self.ctx.scan_response
            if scan is not None and not ex.finished:
                head = scan(data, ex.is_head)
                if head is not None:
                    self._scanned(ex, data, head)
                    return
        try:
            self.feed(data)
        except HttpParserUpgrade as exc:
            self._switch(ex, data[exc.args[0] :])
        except HttpParserError as exc:
            cause = exc.__context__
            if cause is not None and not isinstance(cause, _BadResponse):
                log.error(
                    "gateway response handling failed",
                    exc_info=cause,
                    extra={"request_id": ex.request_id, "trace_id": ex.trace_id},
                )
            self._protocol_error(ex)
        else:
            if self.bodiless:  # HEAD: llhttp cannot be told, so the message ends with the head
                self.bodiless = False
                self._new_parser()
                if self.exchange is ex and not ex.finished:
                    self._complete(ex)

    def _scanned(self, ex: Exchange, data: bytes, head: ScannedHead) -> None:
        """A response head ``head_scan`` read whole; its body (if any) is counted here, not by llhttp."""
        status, kept, content_length, length, keep_alive, size = head
        self.keep_alive = keep_alive
        ex.conn.response_scanned(ex, status, kept, content_length)
        if size < len(data) or not length:
            self._scanned_body(ex, data[size:], length)
        else:
            self.body_left = length

    def _scanned_body(self, ex: Exchange, body: bytes, left: int) -> None:
        size = len(body)
        if size > left:  # bytes past the framed end: pass on what was framed, then not reuse the connection
            body = body[:left]
            size = left
            self.keep_alive = False
        if size and not ex.finished:
            ex.conn.response_body(ex, body)
        if size == left:
            self.body_left = NOT_SCANNED
            if not ex.finished:
                self._complete(ex)
        else:
            self.body_left = left - size

    def _new_parser(self) -> None:
        """A fresh parser, its methods bound once: compiled, a call through ``self.parser`` looked the
        method up (three per response)."""
        parser = self.parser = HttpResponseParser(self)
        self.feed = parser.feed_data
        self.status_code = parser.get_status_code
        self.keep_alive_said = parser.should_keep_alive

    def on_message_begin(self) -> None:
        # A response starting after the last one ended, in the same read: bytes past the app's own
        # framing. Passing them to the next request would answer it with them; the connection goes.
        if self.exchange is None:
            raise _BadResponse("a response that no request asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ex = self.exchange
        headers = self.headers
        self.headers = []
        if ex is None or ex.finished:
            return
        status = self.status_code()
        if status < 200 and status != 101:
            self.interim = True
            ex.conn.interim_response(ex, status, headers)
            return
        if status == 101:
            if not ex.upgrade:
                raise _BadResponse("101 to a request that did not ask to switch protocols")
            self.switching = True
        self.keep_alive = self.keep_alive_said()
        if ex.is_head:
            self.bodiless = True
        ex.conn.response_head(ex, status, headers)

    def on_body(self, body: bytes) -> None:
        ex = self.exchange
        if ex is not None and not self.bodiless and not ex.finished:
            ex.conn.response_body(ex, body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        ex = self.exchange
        if self.bodiless or self.switching or ex is None or ex.finished:
            return
        self._complete(ex)

    def _complete(self, ex: Exchange) -> None:
        """The response ended with the bytes ``data_received`` was given (which read the clock for them)."""
        ex.upstream_ended = now = self.read_at
        ex.upstream = None
        self.pool.release(self, self.keep_alive and ex.request_complete and not ex.upgrade, now)
        ex.conn.response_complete(ex)

    def _switch(self, ex: Exchange, rest: bytes) -> None:
        """The app answered 101: from now on bytes flow unparsed both ways."""
        if not self.switching or ex.finished:
            self._protocol_error(ex)
            return
        self.tunnel = True
        self.deadline = INF
        ex.upstream_ended = _clock()
        ex.conn.start_tunnel(ex, self, rest)

    def _protocol_error(self, ex: Exchange) -> None:
        self.abort()
        ex.upstream = None
        if not ex.finished:
            ex.conn.upstream_failed(ex, "protocol", 502)


class _BadResponse(Exception):
    """Raised inside a parser callback to stop parsing an unacceptable response."""


class UpstreamPool:
    """Idle keep-alive connections to the app (LIFO) and every open one, for drain and metrics."""

    def __init__(self, ctx: ListenerState) -> None:
        self.ctx = ctx
        self.idle: list[UpstreamConnection] = []
        self.connections: set[UpstreamConnection] = set()
        self.max_idle = ctx.settings.max_idle_upstream
        self._connecting: set[asyncio.Task[None]] = set()

    def acquire(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            up = idle.pop()
            if not up.closed:
                return up
        return None

    def release(self, up: UpstreamConnection, reusable: bool, now: float) -> None:
        """Back to the idle stack (its idle deadline counted from ``now``), or closed."""
        up.exchange = None
        if reusable and not up.closed and not self.ctx.stopping and len(self.idle) < self.max_idle:
            up.reused = True
            up.deadline = now + self.ctx.upstream_idle_timeout
            if up.read_paused:
                up.resume_reading()
            self.idle.append(up)
        else:
            up.close()

    def connect(self, ex: Exchange) -> None:
        """Open a new connection for ``ex`` in the background; failures answer the client."""
        task = asyncio.get_running_loop().create_task(self._connect(ex))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, ex: Exchange) -> None:
        loop = asyncio.get_running_loop()
        address = self.ctx.address

        def protocol() -> asyncio.Protocol:
            return cast("asyncio.Protocol", UpstreamConnection(self))  # duck-typed: see the class

        try:
            async with asyncio.timeout(self.ctx.connect_timeout):
                if address.unix_path is not None:
                    _, made = await loop.create_unix_connection(protocol, address.unix_path)
                else:
                    _, made = await loop.create_connection(protocol, address.host, address.port)
            up = cast("UpstreamConnection", made)
        except TimeoutError:
            self._failed(ex, "connect_timeout", 504)
            return
        except (ConnectionRefusedError, FileNotFoundError):
            self.ctx.app_refused.set()
            self._failed(ex, "refused", 502)
            return
        except OSError:
            self._failed(ex, "connect_error", 502)
            return
        if ex.finished or ex.conn.closed:
            self.release(up, True, _clock())
        else:
            up.attach(ex)

    def _failed(self, ex: Exchange, reason: str, status: int) -> None:
        if not ex.finished:
            ex.conn.upstream_failed(ex, reason, status)

    def timed_out(self, now: float) -> None:
        """Sweep: close idle connections past their time and fail requests the app left unanswered."""
        for up in [u for u in self.connections if u.deadline <= now]:
            up.timed_out()
        if len(self.idle) > 16 and any(u.closed for u in self.idle):
            self.idle = [u for u in self.idle if not u.closed]

    async def close(self) -> None:
        for task in list(self._connecting):
            task.cancel()
        for up in list(self.connections):
            up.close()
        self.idle.clear()
