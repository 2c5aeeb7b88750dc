"""Hostile-input limits every listener enforces before aiohttp parses a request.

aiohttp has no header read timeout: a client that sends one header byte per second holds a
connection (and its memory) until the keep-alive timer, about an hour by default ("slowloris").
Its size limits answer 400 with the offending bytes echoed in the body and logged with a traceback,
which can put a client's ``Authorization`` or ``Cookie`` value into our logs.

``HeaderGuard`` wraps aiohttp's per-connection protocol and watches the bytes first:

* the request line and headers of every request must arrive within ``header_timeout`` of its first
  byte (of the connection's opening, for the first request), else 408 and close;
* the header block is bounded in bytes, per line and in fields, else 431 with a plain explanation;
* a request line or header line that is not well formed is 400, without quoting it back;
* a declared ``Content-Length`` over the listener's body limit is 413 before any body is read.

* a body (``Content-Length`` or chunked) must be complete within ``body_timeout`` of its headers:
  handlers that read bodies answer 408 at that deadline (``core.bodies``), and the guard closes a
  connection whose body is still incomplete ``BODY_GRACE`` (1 s) later, whoever reads it;
* framing that is ambiguous (``Content-Length`` with ``Transfer-Encoding``, several lengths, a
  ``Transfer-Encoding`` not ending in one ``chunked``) or a broken chunk size is 400.

It only finds the boundaries between requests (blank line, ``Content-Length``, the chunked framing),
so every request on a keep-alive connection gets the header deadline, after chunked bodies too;
everything else is aiohttp's job. A request it cannot frame (``Upgrade``, ``CONNECT``) ends its watch
for that connection, and aiohttp's idle timeout bounds the rest.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from typing import Annotated, Literal, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from sidecar.core.durations import Duration
from sidecar.core.settings_model import FrozenModel, Meta

RejectReason = Literal[
    "header_timeout", "header_too_large", "too_many_headers", "malformed", "body_too_large", "body_timeout"
]
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_REQUEST_LINE = re.compile(_TOKEN + rb" [^\x00-\x20\x7f]+ HTTP/[0-9]\.[0-9]")
_HEADER_LINE = re.compile(_TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*")
_WHOLE_HEAD = re.compile(
    _TOKEN + rb" [^\x00-\x20\x7f]+ HTTP/[0-9]\.[0-9](?:\r\n" + _TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*)*"
)
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions, or one trailer line
# Where the guard is inside a chunked body (0: not in one).
_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILER = 1, 2, 3, 4
BODY_GRACE = 1.0
_AIOHTTP_MAX_LINE = 8190  # aiohttp's own parser limit for one line; ours must bite first
_KNOWN_HEAD_BYTES = 1024  # heads up to this size are remembered once they passed (see KnownHeads)
_KNOWN_HEADS = 256
_AIOHTTP_MAX_HEADERS = 128


class ListenerLimits(FrozenModel, frozen=True):
    """Limits on what a client may send to any listener; the defaults suit probes, scrapes and APIs."""

    header_timeout: Annotated[
        Duration,
        Meta(le=300, gt=0, description="longest time from a request's first byte to its last header"),
    ] = 10.0
    body_timeout: Annotated[
        Duration,
        Meta(
            le=3600,
            gt=0,
            description="longest time from a request's last header to the last byte of its body",
        ),
    ] = 30.0
    idle_timeout: Annotated[
        Duration, Meta(le=3600, gt=0, description="how long an idle keep-alive connection stays open")
    ] = 75.0
    max_header_bytes: Annotated[
        int, Meta(ge=1024, le=1024 * 1024, description="request line plus all headers, in bytes")
    ] = 32 * 1024
    max_header_line: Annotated[
        int, Meta(ge=256, le=_AIOHTTP_MAX_LINE, description="longest single line, in bytes")
    ] = _AIOHTTP_MAX_LINE
    max_headers: Annotated[
        int, Meta(ge=1, le=_AIOHTTP_MAX_HEADERS - 1, description="most header fields in one request")
    ] = 100
    max_body_bytes: Annotated[
        int, Meta(ge=1, description="largest declared body on the admin listener (or logs.http's)")
    ] = 1024 * 1024


def _response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode() + body


class KnownHeads:
    """Complete body-less request heads a listener already accepted, byte for byte (bounded).

    Probes and scrapes send the same head every time (a load balancer's ``GET /readyz``, kubelet,
    Prometheus). Checking one against the limits (split, a regular expression over every line,
    a search for body fields) cost about 25,000 instructions, more than the rest of the difference
    between ``/readyz`` and an aiohttp hello world (``bench/health_instructions.py``); a head that
    arrives as one chunk equal to one accepted before gets the same verdict from a set lookup. The
    limits are the listener's, so the verdict cannot differ. Past ``_KNOWN_HEADS`` entries the set
    starts over (what is sent repeatedly is learnt again at once).
    """

    __slots__ = ("heads",)

    def __init__(self) -> None:
        self.heads: set[bytes] = set()

    def learn(self, head: bytes) -> None:
        if len(head) > _KNOWN_HEAD_BYTES:
            return
        if len(self.heads) >= _KNOWN_HEADS:
            self.heads.clear()
        self.heads.add(head)


class HeaderGuard(asyncio.Protocol):
    """Wraps one connection's aiohttp protocol; forwards every event, enforcing the limits on the way."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        limits: ListenerLimits,
        max_body_bytes: int | None,
        on_reject: Callable[[RejectReason], None] | None = None,
        known: KnownHeads | None = None,
    ) -> None:
        self._inner = inner
        self._known = known if known is not None else KnownHeads()
        self._heads = self._known.heads  # read on every chunk; ``learn`` only ever changes it in place
        self._limits = limits
        self._max_body = max_body_bytes
        self._on_reject = on_reject
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._watching = True  # False once a request cannot be framed cheaply (Upgrade, CONNECT)
        self._closed = False
        self._body_left = 0  # bytes of the current Content-Length body, or of the current chunk
        self._chunked = 0  # state in a chunked body, 0 outside one
        self._chunk_line = bytearray()
        self._body_seen = 0  # bytes of chunk data so far in the current chunked body
        self._block = bytearray()  # the current request's header block so far
        self._line_length = 0
        self._lines = 0  # complete non-empty lines in the current block

    # -- asyncio.Protocol, forwarded ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are no asyncio.Transport subclass
        self._inner.connection_made(transport)
        self._arm()  # a connection that never sends a byte is cut too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._body_done()
        self._closed = True
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        if self._watching:
            if data in self._heads and not self._block and not self._body_left:
                # A whole head accepted before, nothing else: the same verdict. The timer is stopped
                # here rather than by ``_disarm``: one call fewer for every probe.
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            elif not self._scan(data):
                return
        self._inner.data_received(data)

    # -- framing -------------------------------------------------------------------------------------

    def _scan(self, data: bytes) -> bool:
        """Follow request boundaries through ``data``; False when the connection was rejected."""
        pos, size = 0, len(data)
        while pos < size and self._watching and not self._closed:
            in_body = self._body_left or self._chunked
            if not in_body and not self._block and (whole := self._whole_head(data, pos)):
                pos = whole
                continue
            if in_body:
                pos = self._skip_body(data, pos, size)  # the end of ``data`` once rejected
                continue
            if not self._block and self._timer is None:
                self._arm()  # first byte of the next request on a kept-alive connection
            newline = data.find(b"\n", pos)
            end = size if newline < 0 else newline + 1
            self._block += data[pos:end]
            self._line_length += end - pos
            pos = end
            if len(self._block) > self._limits.max_header_bytes:
                return self._reject_headers("header_too_large")
            if self._line_length - (2 if newline >= 0 else 0) > self._limits.max_header_line:
                return self._reject_headers("header_too_large")
            if newline < 0:
                continue
            line = bytes(self._block[-self._line_length :])
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            self._line_length = 0
            if line:
                self._lines += 1
                if self._lines - 1 > self._limits.max_headers:
                    return self._reject_headers("too_many_headers")
                if not (_REQUEST_LINE if self._lines == 1 else _HEADER_LINE).fullmatch(line):
                    return self._reject_malformed(self._lines)
            elif not self._lines:
                # A stray CRLF between requests (old clients send one after a body) is not the start
                # of a request: forget it, so an idle kept-alive connection is not answered 408.
                self._block.clear()
                self._disarm()
            else:
                self._headers_complete()  # closes the connection when the framing is refused
        return not self._closed

    def _whole_head(self, data: bytes, pos: int) -> int:
        """Fast path for the common case, a complete body-less request head inside one chunk.

        Returns where the next request starts, or 0 to take the line-by-line path (a partial head, a
        body to skip, anything unusual, or anything over a limit, which that path reports).
        """
        end = data.find(b"\r\n\r\n", pos)
        if end < 0 or end - pos > self._limits.max_header_bytes:
            return 0
        head = data[pos:end]
        lines = head.split(b"\r\n")
        if len(lines) - 1 > self._limits.max_headers or max(map(len, lines)) > self._limits.max_header_line:
            return 0
        if not _WHOLE_HEAD.fullmatch(head):
            return 0
        lowered = head.lower()
        if b"\ncontent-length:" in lowered or b"\ntransfer-encoding:" in lowered or b"\nupgrade:" in lowered:
            return 0
        if lowered.startswith(b"connect "):
            return 0
        self._disarm()
        if pos == 0 and end + 4 == len(data):  # the chunk is this head alone: remember it
            self._known.learn(data)
        return end + 4

    def _headers_complete(self) -> bool:
        """The blank line ended a header block: stop the timer and learn how long the body is."""
        self._disarm()
        block = bytes(self._block)
        self._block.clear()
        self._lines = 0
        lines = block.split(b"\n")
        request_line = lines[0].strip() if lines else b""
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep:
                continue
            key = name.strip().lower()
            if key == b"upgrade":
                self._watching = False
            elif key == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif key == b"content-length":
                lengths.append(value.strip())
        if request_line.upper().startswith(b"CONNECT "):
            self._watching = False
        return self._frame(lengths, codings) if self._watching else True

    def _frame(self, lengths: list[bytes], codings: list[bytes]) -> bool:
        """Decide how the body is framed (RFC 9112 section 6.3), or reject what is ambiguous."""
        if codings or len(lengths) > 1:
            if codings and codings[-1] == b"chunked" and codings.count(b"chunked") == 1 and not lengths:
                self._chunked = _SIZE_LINE
                self._body_seen = 0
                self._arm_body()
                return True
            self._reject(
                "malformed",
                _response(
                    400,
                    "Bad Request",
                    "400 bad request: ambiguous framing (Content-Length with Transfer-Encoding, several "
                    "Content-Length fields, or a Transfer-Encoding that does not end in one chunked)\n",
                ),
            )
            return False
        if not lengths:
            return True
        if not lengths[0].isdigit() or len(lengths[0]) > 18:
            self._reject(
                "malformed",
                _response(400, "Bad Request", "400 bad request: Content-Length is not a decimal number\n"),
            )
            return False
        length = int(lengths[0])
        if self._max_body is not None and length > self._max_body:
            self._reject(
                "body_too_large",
                _response(
                    413,
                    "Content Too Large",
                    f"413 request body too large: Content-Length {length} is over this listener's "
                    f"limit of {self._max_body} bytes\n",
                ),
            )
            return False
        self._body_left = length
        if length:
            self._arm_body()
        return True

    def _skip_body(self, data: bytes, pos: int, size: int) -> int:
        """Step over body bytes (a ``Content-Length`` body or chunked framing); ``size`` once rejected."""
        if self._chunked:
            return self._chunked_step(data, pos, size)
        step = min(self._body_left, size - pos)
        self._body_left -= step
        if not self._body_left:
            self._body_done()
        return pos + step

    def _chunked_step(self, data: bytes, pos: int, size: int) -> int:
        """Follow a chunked body (RFC 9112 section 7.1) through ``data``; ``size`` once rejected."""
        if self._chunked == _CHUNK_DATA:
            step = min(self._body_left, size - pos)
            self._body_left -= step
            if not self._body_left:
                self._chunked = _CHUNK_END
            return pos + step
        newline = data.find(b"\n", pos)
        end = size if newline < 0 else newline + 1
        self._chunk_line += data[pos:end]
        if len(self._chunk_line) > _MAX_CHUNK_LINE:
            self._reject_chunked("a chunk-size or trailer line is too long")
            return size
        if newline < 0:
            return end
        line = bytes(self._chunk_line)
        self._chunk_line.clear()
        line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        return end if self._chunk_line_done(line) else size

    def _chunk_line_done(self, line: bytes) -> bool:
        """A complete chunk-size, chunk-end or trailer line; False once rejected."""
        if self._chunked == _SIZE_LINE:
            size_field = line.split(b";", 1)[0].rstrip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_field):
                return self._reject_chunked("a chunk size is not a hexadecimal number")
            length = int(size_field, 16)
            self._body_seen += length
            if self._max_body is not None and self._body_seen > self._max_body:
                self._reject(
                    "body_too_large",
                    _response(
                        413,
                        "Content Too Large",
                        f"413 request body too large: over this listener's limit of {self._max_body} bytes\n",
                    ),
                )
                return False
            if length:
                self._body_left = length
                self._chunked = _CHUNK_DATA
            else:
                self._chunked = _TRAILER
        elif self._chunked == _CHUNK_END:
            if line:
                return self._reject_chunked("chunk data is longer than its size")
            self._chunked = _SIZE_LINE
        elif not line:  # the blank line after the trailers: the body is complete
            self._chunked = 0
            self._body_done()
        return True

    def _reject_chunked(self, why: str) -> bool:
        self._reject("malformed", _response(400, "Bad Request", f"400 bad request: {why}\n"))
        return False

    # -- rejections and the timer -----------------------------------------------------------------------

    def _reject_headers(self, reason: RejectReason) -> bool:
        limits = self._limits
        text = (
            "431 request header fields too large: the request line and headers may take at most "
            f"{limits.max_header_bytes} bytes in all, {limits.max_header_line} bytes per line and "
            f"{limits.max_headers} header fields\n"
        )
        self._reject(reason, _response(431, "Request Header Fields Too Large", text))
        return False

    def _reject_malformed(self, line_number: int) -> bool:
        what = "the request line" if line_number == 1 else f"header line {line_number - 1}"
        text = (
            f"400 bad request: {what} is malformed (a request line is METHOD TARGET HTTP/1.1; a header "
            "is name: value, the name a token, the value free of control characters)\n"
        )
        self._reject("malformed", _response(400, "Bad Request", text))
        return False

    def _reject(self, reason: RejectReason, response: bytes | None) -> None:
        self._disarm()
        self._closed = True
        if self._on_reject is not None:
            self._on_reject(reason)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if response:
            transport.write(response)
        transport.close()

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._limits.header_timeout, self._timed_out)

    def _arm_body(self) -> None:
        """The body must be complete within ``body_timeout`` of its headers (a slow client is cut).

        The guard waits ``BODY_GRACE`` longer than handlers do, so a handler reading the body answers
        408 itself before the guard closes the connection.
        """
        loop = asyncio.get_running_loop()
        self._body_timer = loop.call_later(self._limits.body_timeout + BODY_GRACE, self._body_timed_out)

    def _body_done(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        """Close without an answer: the handler may have answered already (a body it did not read).

        Handlers that read a body enforce the same deadline themselves and answer 408 first.
        """
        self._body_timer = None
        if not self._closed:
            self._reject("body_timeout", None)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._closed or not self._watching or self._body_left or self._chunked:
            return
        started = bool(self._block)
        limit = self._limits.header_timeout
        text = f"408 request timeout: the request headers did not arrive within {limit:g}s\n"
        # Nothing sent at all: just close, as a fresh connection that never spoke deserves no answer.
        self._reject("header_timeout", _response(408, "Request Timeout", text) if started else None)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass through ``HeaderGuard``; optionally TLS."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: ListenerLimits,
        max_body_bytes: int | None,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
        on_reject: Callable[[RejectReason], None] | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._guard_host = host
        self._guard_port = port
        self._limits = limits
        self._max_body = max_body_bytes
        self._on_reject = on_reject

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return str(URL.build(scheme=scheme, host=self._guard_host, port=self.port))

    @property
    def port(self) -> int:
        """The bound port (useful when 0 asked the system for a free one)."""
        sockets = getattr(self._server, "sockets", None)  # uvloop's server is no asyncio.Server
        if sockets:
            return int(sockets[0].getsockname()[1])
        return self._guard_port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        limits, max_body, on_reject = self._limits, self._max_body, self._on_reject
        known = KnownHeads()  # one per listener: its limits decide every verdict

        def factory() -> asyncio.Protocol:
            return HeaderGuard(server(), limits, max_body, on_reject, known)

        self._server = await loop.create_server(
            factory,
            self._guard_host,
            self._guard_port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            ssl_handshake_timeout=limits.header_timeout if self._ssl_context is not None else None,
        )


class QuietBadRequests(logging.Filter):
    """Turns aiohttp's traceback for a malformed request into one line that echoes nothing.

    aiohttp logs every unparsable request at error level with the parser's message, which quotes the
    offending bytes (possibly an ``Authorization`` or ``Cookie`` value). A bad request is the client's
    problem: a warning with the remote address and the error class is all an operator needs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "rejected a malformed request from %s: %s (status %s)"
            record.args = (remote, type(exc).__name__, exc.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_log_filter() -> None:
    """Attach ``QuietBadRequests`` to aiohttp's server logger once."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietBadRequests) for f in logger.filters):
        logger.addFilter(QuietBadRequests())
