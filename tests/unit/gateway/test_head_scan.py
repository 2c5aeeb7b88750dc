"""The native response-head reader (``head_scan.c``) against llhttp and ``build_response_head``.

The scanner may only take a head that llhttp would take and must restate it byte for byte as the
llhttp path does; whatever it is not sure of it leaves to llhttp (None). Generated heads mix the usual
fields with everything that must be left to llhttp: hop-by-hop fields, framing conflicts, folding,
bare LF, control bytes, obs-text, trailing whitespace, 1xx and odd status lines.
"""

from __future__ import annotations

import re

import pytest
from httptools import HttpParserError, HttpRequestParser, HttpResponseParser
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.gateway.exchange import Exchange
from sidecar.gateway.framing import FramingError
from sidecar.gateway.listener_state import native_scanners
from sidecar.gateway.proxy import _head_size
from sidecar.gateway.request_head import build_request_head
from sidecar.gateway.response_head import build_response_head, build_scanned_head
from tests.unit.gateway.test_framing import _connection

scan_request, scan = native_scanners()


def test_the_scanner_was_built() -> None:
    """A C compiler error leaves the optional extension out without failing the install: it fails here.

    (The interpreted pass of tests/run.sh, a copy without any compiled module, leaves this file out.)
    """
    assert scan is not None, "sidecar/gateway/head_scan.c did not compile: see the output of pip install -e ."


class _Reading:
    """What llhttp makes of a response: status, fields, keep-alive, body, whether it ended."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.head_done = False
        self.keep_alive = False
        self.complete = False
        self.parser = HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()  # as upstream reads it (reset once complete)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _llhttp(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bool, bytes] | None:
    reading = _Reading()
    parser = reading.parser
    try:
        parser.feed_data(data)
    except HttpParserError:
        return None
    if not reading.head_done:
        return None
    return parser.get_status_code(), reading.headers, reading.keep_alive, reading.body


def _exchange(method: bytes, http10: bool, keep_alive: bool) -> Exchange:
    ex = Exchange(_connection(), method, b"/", 0.0)
    ex.request_id = "0af7651916cd43dd8448eb211c80319c"
    ex.http10 = http10
    ex.keep_alive = keep_alive
    ex.request_complete = True
    return ex


def _agrees(data: bytes, method: bytes = b"GET", http10: bool = False, keep_alive: bool = True) -> bool:
    """Asserts the scanner and the llhttp path agree on ``data``; True when the scanner took it."""
    assert scan is not None
    scanned = scan(data, method == b"HEAD")
    if scanned is None:
        return False
    status, kept, content_length, length, scanned_keep_alive, size = scanned
    assert data[:size].endswith(b"\r\n\r\n")
    assert b"\r\n\r\n" not in data[: size - 2]
    reference = _llhttp(data[: size + length])  # what follows the framed body is the next message's
    assert reference is not None, f"the scanner took a head llhttp refuses: {data!r}"
    ref_status, headers, ref_keep_alive, body = reference
    assert status == ref_status
    assert scanned_keep_alive == ref_keep_alive
    if method != b"HEAD":
        assert body == data[size : size + length]
    ours = _exchange(method, http10, keep_alive)
    theirs = _exchange(method, http10, keep_alive)
    assert build_scanned_head(ours, status, kept, content_length, False) == build_response_head(
        theirs, status, headers, False
    )
    assert (ours.close_after, ours.rechunk, ours.until_close) == (theirs.close_after, False, False)
    assert (theirs.rechunk, theirs.until_close) == (False, False)
    return True


NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)


def test_the_usual_head_is_read_and_restated() -> None:
    assert _agrees(NGINX)
    assert scan is not None
    assert scan(NGINX, False) == (
        200,
        b"Server: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\nContent-Type: text/plain\r\n",
        b"2",
        2,
        True,
        len(NGINX) - 2,
    )


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
        b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a \r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: caf\xc3\xa9\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A : a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close, x-secret\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",  # not all here yet
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(65))
        + b"Content-Length: 0\r\n\r\n",
    ],
)
def test_what_it_leaves_to_llhttp(data: bytes) -> None:
    assert scan is not None
    assert scan(data, False) is None


_TEXT = {0x09, *range(0x20, 0x7F)}  # what a value or reason phrase may hold: visible ASCII, SP, HTAB


def test_every_byte_at_every_offset_of_a_value_and_a_reason() -> None:
    """Values and reason phrases are classified 16 bytes at a time (SSE2) with a per-byte tail: each
    byte value, at each offset across two such blocks and the tail, is taken or left to llhttp exactly
    as the per-byte table says (which the generated heads below hold to llhttp)."""
    assert scan is not None
    for size in (1, 15, 16, 17, 33):
        for at in range(size):
            for byte in range(256):
                text = bytearray(b"v" * size)
                text[at] = byte
                value_head = b"HTTP/1.1 200 OK\r\nX-A: v%bv\r\nContent-Length: 0\r\n\r\n" % text
                reason_head = b"HTTP/1.1 200 O%bK\r\nContent-Length: 0\r\n\r\n" % text
                expected = byte in _TEXT
                for head in (value_head, reason_head):
                    taken = scan(head, False) is not None
                    assert taken == expected, (size, at, byte, head)
                    if taken:
                        assert _agrees(head), head


def test_hop_by_hop_fields_and_the_apps_request_id_are_left_out() -> None:
    data = (
        b"HTTP/1.1 404 Not Found\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-A\r\n"
        b"Proxy-Authenticate: Basic\r\nProxy-Connection: keep-alive\r\nx-request-id: theirs\r\n"
        b'ETag: "1"\r\nCONTENT-LENGTH: 0\r\nConnection: Keep-Alive\r\n\r\n'
    )
    assert _agrees(data)
    assert scan is not None
    scanned = scan(data, False)
    assert scanned is not None
    assert scanned[1] == b'ETag: "1"\r\n'


@pytest.mark.parametrize(
    ("data", "method", "length"),
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", b"GET", 0),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: x\r\n\r\n", b"GET", 0),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"HEAD", 0),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"GET", 5),
    ],
)
def test_bodies_it_frames(data: bytes, method: bytes, length: int) -> None:
    assert scan is not None
    scanned = scan(data, method == b"HEAD")
    assert scanned is not None
    assert scanned[3] == length
    assert _agrees(data, method)


def test_keep_alive_follows_the_version_and_connection() -> None:
    assert scan is not None
    heads = {
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n": True,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n": False,
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n": False,
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n": False,
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n": True,
    }
    for data, keep_alive in heads.items():
        scanned = scan(data, False)
        assert scanned is not None
        assert scanned[4] is keep_alive
        assert _agrees(data)


def test_no_prefix_of_a_head_is_taken() -> None:
    """A head cut anywhere (a read that ended early) is never taken as a whole one."""
    assert scan is not None
    size = NGINX.index(b"\r\n\r\n") + 4
    for end in range(size):
        assert scan(NGINX[:end], False) is None, NGINX[:end]


_NAMES = [
    b"Content-Type",
    b"content-type",
    b"Date",
    b"Server",
    b"ETag",
    b"Vary",
    b"Set-Cookie",
    b"X-A",
    b"Cache-Control",
    b"x~!#$%&'*+.^_`|",
    b"Keep-Alive",
    b"TE",
    b"Trailer",
    b"Proxy-Authenticate",
    b"Proxy-",
    b"X-Request-ID",
]
_CONNECTIONS = [b"close", b"keep-alive", b"Keep-Alive, Close", b" , close,", b"CLOSE", b"x-a", b""]
_VALUES = [
    b"",
    b"0",
    b"2",
    b"17",
    b"007",
    b"text/plain; charset=utf-8",
    b"close",
    b"keep-alive",
    b"Keep-Alive, Close",
    b" , close,",
    b"a\tb",
    b'W/"x"',
    b"max-age=0, no-store",
]
_ODD_NAMES = [b"Transfer-Encoding", b"Upgrade", b"X A", b"X-A ", b"", b"X\x00", b"\xc3\xa9", b"X\x7f"]
_ODD_VALUES = [
    b"-1",
    b"1 2",
    b"+1",
    b"close, x-a",
    b"chunked",
    b"gzip, chunked",
    b"a ",
    b"\ta",
    b"a\x01b",
    b"caf\xc3\xa9",
    b"a\rb",
    b"a\nb",
    b"99999999999999999",
    b"0x10",
    b"a\x7fb",
]
_ODD_LINE_ENDS = [b"\n", b"\r", b"\r\n ", b"\r\n\t", b"\n\r"]


@st.composite
def _responses(draw: st.DrawFn) -> bytes:
    """Mostly heads the scanner should take, each with a fair chance of one oddity somewhere."""
    version = draw(st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1.1 "]))
    status = draw(
        st.sampled_from(
            [b"200"] * 4 + [b"201", b"204", b"304", b"404", b"503", b"100", b"101", b"600", b"20"]
        )
    )
    reason = draw(st.sampled_from([b" OK"] * 4 + [b" ", b"", b" Not\tFound", b" caf\xc3\xa9", b" a\x7f"]))
    odd = draw(st.integers(0, 3)) == 0  # one line in four heads gets an odd piece
    lines = [(version + b" " + status + reason, b"\r\n")]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(_NAMES))
        separator = draw(st.sampled_from([b": ", b": ", b":", b":\t", b":  "]))
        lines.append((name + separator + draw(st.sampled_from(_VALUES)), b"\r\n"))
    if draw(st.integers(0, 4)):
        name = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-length"]))
        lines.insert(draw(st.integers(1, len(lines))), (name + b": %d" % draw(st.integers(0, 40)), b"\r\n"))
    if draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from([b"Connection", b"connection"]))
        lines.insert(
            draw(st.integers(1, len(lines))), (name + b": " + draw(st.sampled_from(_CONNECTIONS)), b"\r\n")
        )
    if odd:
        where = draw(st.integers(0, len(lines)))
        kind = draw(st.integers(0, 2))
        if kind == 0:
            piece = (draw(st.sampled_from(_ODD_NAMES)) + b": " + draw(st.sampled_from(_VALUES)), b"\r\n")
        elif kind == 1:
            piece = (draw(st.sampled_from(_NAMES)) + b": " + draw(st.sampled_from(_ODD_VALUES)), b"\r\n")
        else:
            piece = (b"X-B: b", draw(st.sampled_from(_ODD_LINE_ENDS)))
        lines.insert(max(where, 1), piece)
    head = b"".join(line + end for line, end in lines) + draw(st.sampled_from([b"\r\n"] * 8 + [b"\n", b""]))
    return head + draw(st.sampled_from([b"", b"ok", b"0123456789" * 3]))


@settings(max_examples=3000, deadline=None)
@given(_responses(), st.sampled_from([b"GET", b"HEAD"]), st.booleans())
@example(NGINX, b"GET", False)
def test_generated_heads_agree_with_llhttp(data: bytes, method: bytes, http10: bool) -> None:
    _agrees(data, method, http10)


# -- request heads ------------------------------------------------------------------------------------


class _RequestReading:
    """The llhttp path: build_request_head called where proxy calls it, inside on_headers_complete."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.parser = HttpRequestParser(self)
        self.built: tuple[Exchange, bytes] | FramingError | None = None
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        ctx = _connection().ctx
        ex = Exchange(_connection(), self.parser.get_method(), self.url, 0.0)
        ex.keep_alive = self.parser.should_keep_alive()
        try:
            self.built = ex, build_request_head(ctx, _PEER, ex, self.headers, self.parser)
        except FramingError as exc:
            self.built = exc

    def on_message_complete(self) -> None:
        self.complete = True


_PEER = _connection().ctx.policy.peer("127.0.0.1")
_TRACEPARENT = re.compile(rb"traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")


def _normalised(ex: Exchange, head: bytes) -> bytes:
    """The head with the IDs drawn at random for this request replaced by placeholders."""
    return _TRACEPARENT.sub(b"traceparent: T", head).replace(ex.request_id.encode(), b"RID")


def _request_agrees(data: bytes) -> bool:
    """Asserts both readers make the same head of ``data`` for the app; True when the scanner took it."""
    assert scan_request is not None
    scanned = scan_request(data, 8192)
    if scanned is None:
        return False
    method, target, version, keep_alive, kept, decided, user_agent, host, size = scanned
    hosts = len(re.findall(rb"\r\nhost:", data[:size].lower()))
    assert (host is not None) == (hosts == 1)  # one Host on its own; several among the decided fields
    assert decided is None or decided  # no empty list: None
    assert data[:size].endswith(b"\r\n\r\n")
    assert b"\r\n\r\n" not in data[: size - 2]
    reading = _RequestReading()
    try:
        reading.parser.feed_data(data[:size])
    except HttpParserError:
        pytest.fail(f"the scanner took a request llhttp refuses: {data!r}")
    assert reading.complete, f"llhttp expects a body the scanner did not: {data!r}"
    assert (method, target) == (reading.parser.get_method(), reading.url)
    assert version == reading.parser.get_http_version()
    ours = Exchange(_connection(), method, target, 0.0)
    ours.keep_alive = keep_alive
    if user_agent is not None:
        ours.user_agent = user_agent
    try:
        head: bytes | FramingError = build_request_head(
            _connection().ctx, _PEER, ours, decided or [], reading.parser, False, kept, version, host
        )
    except FramingError as exc:
        head = exc
    theirs = reading.built
    if isinstance(theirs, FramingError) or isinstance(head, FramingError):
        assert isinstance(head, FramingError) and isinstance(theirs, FramingError), (head, theirs)
        assert (head.status, head.reason) == (theirs.status, theirs.reason)
        return True
    assert theirs is not None
    ex, their_head = theirs
    assert _normalised(ours, head) == _normalised(ex, their_head)
    fields = (
        "keep_alive",
        "user_agent",
        "client",
        "http10",
        "has_body",
        "body_length",
        "retriable",
        "target",
    )
    assert [getattr(ours, f) for f in fields] == [getattr(ex, f) for f in fields]
    if ours.request_id != ex.request_id:  # then both were drawn here, none taken from the client
        assert ours.request_id.encode() not in data
        assert ex.request_id.encode() not in data
    return True


USUAL_REQUEST = (
    b"GET /items/17?page=2 HTTP/1.1\r\nHost: app.example:8080\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\nCookie: a=b\r\nConnection: keep-alive\r\n\r\n"
)


def test_the_usual_request_is_read_and_restated() -> None:
    assert _request_agrees(USUAL_REQUEST)
    assert _request_agrees(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, x-internal\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n",
        b'GET /a"b HTTP/1.1\r\nHost: x\r\n\r\n',
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x \r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_requests_it_leaves_to_llhttp(data: bytes) -> None:
    assert scan_request is not None
    assert scan_request(data, 8192) is None


def test_the_size_limit_holds() -> None:
    assert scan_request is not None
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert scan_request(data, len(data)) is not None
    assert scan_request(data, len(data) - 1) is None  # llhttp's path answers 431


def test_the_size_limit_is_measured_as_the_llhttp_path_measures_it() -> None:
    """proxy._head_size counts ": " for every field: "TE:n" lines weigh more there than on the wire."""
    assert scan_request is not None
    data = b"GET / HTTP/1.1\r\nHost:x\r\n" + b"TE:n\r\n" * 100 + b"\r\n"
    measured = _head_size(b"/", [(b"Host", b"x")] + [(b"TE", b"n")] * 100)
    assert len(data) < measured
    assert scan_request(data, measured) is not None
    assert scan_request(data, measured - 1) is None  # under the limit on the wire, over it as measured


def test_no_prefix_of_a_request_is_taken() -> None:
    assert scan_request is not None
    for end in range(len(USUAL_REQUEST)):
        assert scan_request(USUAL_REQUEST[:end], 8192) is None


def test_refused_requests_are_refused_alike() -> None:
    assert _request_agrees(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")  # two Hosts: 400
    assert _request_agrees(b"GET / HTTP/1.1\r\n\r\n")  # no Host in HTTP/1.1: 400


_REQUEST_FIELDS = [
    (b"Host", [b"x", b"app.example:8080", b"[::1]:80", b"a,b", b"", b"x y", b"X"]),
    (b"host", [b"x"]),
    (b"User-Agent", [b"wrk", b"Mozilla/5.0 (X11; Linux x86_64)", b""]),
    (b"X-Request-ID", [b"abc-123", b"0af7651916cd43dd8448eb211c80319c", b"bad id", b"x" * 300]),
    (b"traceparent", [b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", b"00-zz-1-01", b""]),
    (b"tracestate", [b"a=1,b=2", b"="]),
    (b"X-Forwarded-For", [b"203.0.113.9", b"1.2.3.4, 5.6.7.8"]),
    (b"X-Forwarded-Proto", [b"https"]),
    (b"X-Forwarded-Host", [b"public.example"]),
    (b"Forwarded", [b"for=203.0.113.9;proto=https"]),
    (b"X-Real-IP", [b"1.2.3.4"]),
    (b"Connection", [b"keep-alive", b"close", b"Keep-Alive, close", b"x-internal", b"Upgrade"]),
    (b"Keep-Alive", [b"timeout=5"]),
    (b"TE", [b"trailers"]),
    (b"Proxy-Authorization", [b"Basic eDp5"]),
    (b"Accept", [b"*/*", b"text/html,application/xhtml+xml;q=0.9"]),
    (b"Cookie", [b"a=b; c=d"]),
    (b"Expect", [b"100-continue"]),
    (b"Content-Length", [b"0", b"5"]),
    (b"Transfer-Encoding", [b"chunked"]),
    (b"X-A", [b"a\tb", b"a ", b"caf\xc3\xa9", b"a\x01"]),
]


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    method = draw(
        st.sampled_from([b"GET"] * 4 + [b"HEAD", b"OPTIONS", b"DELETE", b"POST", b"CONNECT", b"Get"])
    )
    target = draw(
        st.sampled_from(
            [b"/"] * 3
            + [
                b"/items/17?page=2&q=%20x",
                b"/a;b=c/@:!$'()*+,",
                b"/a#f",
                b"*",
                b"http://x/a",
                b"/a|b",
                b"/%zz",
            ]
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/0.9", b"HTTP/1.1 "]))
    lines = [b"%b %b %b\r\n" % (method, target, version)]
    if draw(st.integers(0, 5)):
        lines.append(b"Host: x\r\n")
    for _ in range(draw(st.integers(0, 6))):
        name, values = draw(st.sampled_from(_REQUEST_FIELDS))
        separator = draw(st.sampled_from([b": ", b": ", b":", b":\t"]))
        end = draw(st.sampled_from([b"\r\n"] * 20 + [b"\n", b"\r\n "]))
        lines.insert(draw(st.integers(1, len(lines))), name + separator + draw(st.sampled_from(values)) + end)
    return b"".join(lines) + b"\r\n"


@settings(max_examples=3000, deadline=None)
@given(_requests())
@example(USUAL_REQUEST)
def test_generated_requests_agree_with_llhttp(data: bytes) -> None:
    _request_agrees(data)
