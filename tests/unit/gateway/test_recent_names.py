"""Header names classified through the last-name-per-length shortcut agree with ``hop_by_hop``.

Request and response heads compare each field name with the last one of the same length before
looking it up (``request_head._RECENT``, ``response_head._RECENT``); names of one length with
different kinds, alternating and in several spellings, must still be kept or dropped one by one.
"""

from __future__ import annotations

import itertools

from httptools import HttpRequestParser

from sidecar.gateway import hop_by_hop as hbh
from sidecar.gateway.request_head import build_request_head
from sidecar.gateway.response_head import build_response_head
from tests.unit.gateway.test_framing import _connection, _exchange

# Same lengths, different kinds: 12 (X-Request-ID special, Content-Type kept), 10 (Keep-Alive
# dropped, User-Agent and X-Custom-1 kept, Tracestate and Connection special), 7 (Upgrade special,
# Trailer dropped, X-Thing kept).
NAMES = [
    b"X-Request-ID",
    b"Content-Type",
    b"content-type",
    b"Keep-Alive",
    b"User-Agent",
    b"X-Custom-1",
    b"Tracestate",
    b"Trailer",
    b"X-Thing",
    b"keep-alive",
]


class _Heads:
    def on_headers_complete(self) -> None:
        pass


def _request_head(fields: list[tuple[bytes, bytes]]) -> bytes:
    parser = HttpRequestParser(_Heads())
    parser.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    conn = _connection()
    ex = _exchange(method=b"GET")
    ex.keep_alive = True
    return build_request_head(conn.ctx, conn.peer, ex, [(b"Host", b"a"), *fields], parser)


def test_request_fields_alternating_within_a_length_keep_their_own_kind() -> None:
    for order in itertools.islice(itertools.permutations(NAMES, 4), 0, None, 97):
        for _ in range(2):  # the second time, the shortcut holds names from the first
            fields = [(name, b"v-%d" % i) for i, name in enumerate(order)]
            head = _request_head(fields)
            for name, value in fields:
                kept = b"\r\n%b: %b\r\n" % (name, value) in head
                # a valid client X-Request-ID is passed on (restated by the gateway in its spelling)
                expected = hbh.request_kind(name) in (hbh.KEEP, hbh.USER_AGENT, hbh.REQUEST_ID)
                assert kept == expected, (order, name)


def test_response_fields_alternating_within_a_length_keep_their_own_kind() -> None:
    for order in itertools.islice(itertools.permutations(NAMES, 4), 0, None, 97):
        for _ in range(2):
            fields = [(name, b"v-%d" % i) for i, name in enumerate(order)]
            ex = _exchange(method=b"GET")
            ex.keep_alive = ex.request_complete = True
            head = build_response_head(ex, 200, [*fields, (b"Content-Length", b"0")], False)
            for name, value in fields:
                kept = b"\r\n%b: %b\r\n" % (name, value) in head
                assert kept == (hbh.response_kind(name) == hbh.KEEP), (order, name)


def test_x_forwarded_host_follows_each_request_host() -> None:
    """The line for the previous Host is reused only for the same Host."""
    conn = _connection()
    for host in (b"a.test", b"a.test", b"b.test", b"a.test", b""):
        parser = HttpRequestParser(_Heads())
        parser.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        ex = _exchange(method=b"GET")
        ex.keep_alive = True
        head = build_request_head(conn.ctx, conn.peer, ex, [(b"Host", host)], parser)
        assert head.count(b"X-Forwarded-Host:") == 1
        assert b"\r\nX-Forwarded-Host: %b\r\n" % host in head
