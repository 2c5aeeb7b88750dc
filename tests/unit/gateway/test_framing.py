"""``framing.decide`` rule by rule, and the fuzzer's strict parser (its verdicts are the fuzzer's oracle).

The integration tests send the same cases through the real gateway; these pin the decision function
itself and make sure the recording upstream's parser refuses what it must, so a fuzz campaign with
no desync cannot be a parser that accepts everything.
"""

from __future__ import annotations

import functools

import pytest
from httptools import HttpParserError, HttpRequestParser
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.exchange import Exchange
from sidecar.gateway.framing import CHUNKED, FramingError, decide
from sidecar.gateway.proxy import ClientConnection
from sidecar.gateway.service import Gateway
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore
from tests.framing_fuzz.harness import origin_form, reference
from tests.framing_fuzz.strict import StrictError, StrictParser
from tests.integration.gateway_support import gateway_settings


@functools.cache
def _connection() -> ClientConnection:
    """A client connection object (never connected): compiled, an Exchange insists on a real one."""
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, RouteNormaliser((), 200))
    settings = gateway_settings("http://127.0.0.1:9")
    gateway = Gateway(settings, metrics, registry, CorrelationIndex(), HealthModel(ResultStore()))
    return ClientConnection(gateway.ctx)


def _exchange(target: bytes = b"/a", method: bytes = b"POST") -> Exchange:
    return Exchange(_connection(), method, target, 0.0)


def test_content_length_is_parsed_and_restated() -> None:
    ex = _exchange()
    assert decide(ex, "1.1", 1, b"app.test", 1, b"007\t", None) == b"app.test"
    assert (ex.body_length, ex.has_body, ex.chunked) == (7, True, False)
    ex = _exchange()
    decide(ex, "1.1", 1, b"app.test", 1, b"0", None)
    assert (ex.body_length, ex.has_body) == (0, False)


def test_chunked_is_the_only_transfer_coding_accepted() -> None:
    for value in (b"chunked", b"Chunked", b" chunked ", b",chunked", b"chunked,"):
        ex = _exchange()
        decide(ex, "1.1", 1, b"a", 0, None, value)
        assert (ex.body_length, ex.chunked, ex.has_body) == (CHUNKED, True, True)


@pytest.mark.parametrize(
    ("version", "hosts", "host", "lengths", "length", "te", "status", "reason"),
    [
        ("1.1", 1, b"a", 1, b"3", b"chunked", 400, "bad_framing"),
        ("1.1", 1, b"a", 2, b"3", None, 400, "bad_framing"),
        ("1.1", 1, b"a", 1, b"+3", None, 400, "bad_framing"),
        ("1.1", 1, b"a", 1, b"", None, 400, "bad_framing"),
        ("1.1", 1, b"a", 0, None, b"identity,chunked", 501, "transfer_coding"),
        ("1.1", 1, b"a", 0, None, b"chunked,chunked", 400, "bad_framing"),
        ("1.1", 1, b"a", 0, None, b"chunked, gzip", 400, "bad_framing"),
        ("1.1", 1, b"a", 0, None, b"gzip", 400, "bad_framing"),
        ("1.1", 1, b"a", 0, None, b"chunked;x=1", 400, "bad_framing"),
        ("1.1", 1, b"a", 0, None, b"", 400, "bad_framing"),
        ("1.0", 1, b"a", 0, None, b"chunked", 400, "bad_framing"),
        ("1.1", 2, b"a", 0, None, None, 400, "bad_host"),
        ("1.1", 0, None, 0, None, None, 400, "bad_host"),
        ("1.1", 1, b"a b", 0, None, None, 400, "bad_host"),
        ("1.1", 1, b"a,b", 0, None, None, 400, "bad_host"),
        ("1.1", 1, b"a:x", 0, None, None, 400, "bad_host"),
        ("1.1", 1, b"a:123456", 0, None, None, 400, "bad_host"),
        ("1.1", 1, b"[zz]", 0, None, None, 400, "bad_host"),
        ("2.0", 1, b"a", 0, None, None, 505, "http_version"),
        ("0.9", 0, None, 0, None, None, 505, "http_version"),
    ],
)
def test_ambiguous_requests_are_refused(
    version: str,
    hosts: int,
    host: bytes | None,
    lengths: int,
    length: bytes | None,
    te: bytes | None,
    status: int,
    reason: str,
) -> None:
    with pytest.raises(FramingError) as info:
        decide(_exchange(), version, hosts, host, lengths, length, te)
    assert (info.value.status, info.value.reason) == (status, reason)


@pytest.mark.parametrize(
    ("target", "host", "origin", "sent_host"),
    [
        (b"http://app.test/a?b", b"app.test", b"/a?b", b"app.test"),
        (b"HTTP://APP.test:80?q", b"app.test", b"/?q", b"app.test"),
        (b"https://app.test", b"app.test:443", b"/", b"app.test:443"),
        (b"http://[::1]:8080/x", b"[::1]:8080", b"/x", b"[::1]:8080"),
        (b"http://app.test:8080/x", None, b"/x", b"app.test:8080"),  # HTTP/1.0, no Host
    ],
)
def test_absolute_form_becomes_origin_form(
    target: bytes, host: bytes | None, origin: bytes, sent_host: bytes
) -> None:
    ex = _exchange(target, b"GET")
    assert (
        decide(ex, "1.0" if host is None else "1.1", 0 if host is None else 1, host, 0, None, None)
        == sent_host
    )
    assert ex.target == origin


@pytest.mark.parametrize(
    ("target", "host"),
    [
        (b"http://other.test/a", b"app.test"),
        (b"http://app.test:8080/a", b"app.test"),
        (b"http://u@app.test/a", b"app.test"),
        (b"ftp://app.test/a", b"app.test"),
        (b"http:///a", b"app.test"),
        (b"*", b"app.test"),  # asterisk-form is for OPTIONS only
        (b"/a#frag", b"app.test"),
    ],
)
def test_bad_targets_are_refused(target: bytes, host: bytes) -> None:
    with pytest.raises(FramingError) as info:
        decide(_exchange(target, b"GET"), "1.1", 1, host, 0, None, None)
    assert info.value.status == 400


def test_asterisk_form_for_options() -> None:
    ex = _exchange(b"*", b"OPTIONS")
    decide(ex, "1.1", 1, b"a", 0, None, None)
    assert ex.target == b"*"


# -- the recording upstream's strict parser ------------------------------------------------------------------


def _parse(data: bytes, cuts: int = 1) -> list[tuple[bytes, bytes, bytes]]:
    parser = StrictParser()
    step = max(1, len(data) // cuts)
    out = []
    for i in range(0, len(data), step):
        out += [(r.method, r.target, r.body) for r in parser.feed(data[i : i + step])]
    return out


@pytest.mark.parametrize("cuts", [1, 3, 1000])
def test_strict_parser_reads_pipelined_requests_fed_in_any_pieces(cuts: int) -> None:
    stream = (
        b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        b'POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n2;x="y\\"z"\r\nxy\r\n1\r\nz\r\n0\r\nT: 1\r\n\r\n'
        b"GET /c?d HTTP/1.0\r\nHost: h\r\n\r\n"
    )
    assert _parse(stream, cuts) == [
        (b"POST", b"/a", b"abc"),
        (b"POST", b"/b", b"xyz"),
        (b"GET", b"/c?d", b""),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /#f HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\nHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;a b\r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
    ],
)
def test_strict_parser_refuses(bad: bytes) -> None:
    with pytest.raises(StrictError):
        _parse(bad)


def test_reference_parse_follows_the_gateway_past_an_upgrade_it_does_not_make() -> None:
    messages, error = reference(
        b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert not error
    assert [(m.url, m.complete) for m in messages] == [(b"/a", True), (b"/b", True)]
    assert origin_form(b"http://h:1?x") == b"/?x"


class _Heads:
    """httptools callbacks that do nothing: only the parser's verdict on the request line matters."""

    def on_headers_complete(self) -> None:
        pass


@pytest.mark.parametrize("connection", [b"", b"Connection: keep-alive\r\n", b"Connection: close\r\n"])
def test_keep_alive_without_a_connection_field_means_http_1_1(connection: bytes) -> None:
    """``build_request_head`` skips get_http_version() when the parser says keep-alive and no
    Connection field came: that holds only while llhttp takes no version but 1.1 as keep-alive by
    default. Every ``HTTP/x.y`` with one digit each is tried; a parser upgrade that changes this fails.
    """
    accepted, kept_alive = set(), set()
    for major in range(10):
        for minor in range(10):
            parser = HttpRequestParser(_Heads())
            try:
                parser.feed_data(b"GET / HTTP/%d.%d\r\nHost: a\r\n%b\r\n" % (major, minor, connection))
            except HttpParserError:
                continue
            accepted.add(parser.get_http_version())
            if parser.should_keep_alive():
                kept_alive.add(parser.get_http_version())
    assert accepted == {"0.9", "1.0", "1.1", "2.0"}
    if not connection:
        assert kept_alive == {"1.1"}


def test_alternating_hosts_are_each_checked_against_the_target() -> None:
    """The last Host is remembered (a comparison instead of a lookup): alternating values still get
    their own authority, so an absolute-form target must agree with the Host of its own request."""
    for _ in range(3):
        for host, ok in ((b"a.test", True), (b"b.test", False), (b"A.test:80", True), (b"", False)):
            ex = _exchange(b"http://a.test/x", b"GET")
            if ok:
                assert decide(ex, "1.1", 1, host, 0, None, None) == host
                assert ex.target == b"/x"
            else:
                with pytest.raises(FramingError):
                    decide(ex, "1.1", 1, host, 0, None, None)
