"""The proxy protocols with in-memory transports (no network): what exactly is written each way."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.own_logs import ContextFilter
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.context import GatewayContext
from sidecar.gateway.proxy import BODY, HEAD, IDLE, ClientConnection
from sidecar.gateway.settings import GatewaySettings
from sidecar.gateway.upstream import UpstreamConnection
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore


class FakeTransport:
    def __init__(self, peer: tuple[str, int] = ("192.0.2.10", 50000)) -> None:
        self.peer = peer
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.data += part

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


class Rig:
    """A context, one client connection and one pooled upstream connection, all in memory."""

    def __init__(self, **settings: object) -> None:
        registry = CollectorRegistry()
        self.health = HealthModel(ResultStore())
        data: dict[str, object] = {"upstream": "http://127.0.0.1:3000", "access_log": {"enabled": False}}
        data.update(settings)
        self.correlation = CorrelationIndex()
        self.ctx = GatewayContext(
            GatewaySettings(**data),  # type: ignore[arg-type]
            HttpMetrics(registry, RouteNormaliser()),
            registry,
            self.correlation,
            self.health,
        )
        self.registry = registry
        self.client_transport = FakeTransport()
        self.client = ClientConnection(self.ctx)
        self.client.connection_made(self.client_transport)  # type: ignore[arg-type]
        self.up_transport = FakeTransport(("127.0.0.1", 3000))
        self.up = UpstreamConnection(self.ctx.pool)
        self.up.connection_made(self.up_transport)  # type: ignore[arg-type]
        self.ctx.pool.idle.append(self.up)

    def request(self, raw: bytes) -> bytes:
        self.client.data_received(raw)
        self.ctx.writes.flush()  # what the loop does once per iteration
        return self.up_transport.take()

    def respond(self, raw: bytes) -> bytes:
        self.up.data_received(raw)
        self.ctx.writes.flush()
        return self.client_transport.take()


@pytest.fixture
def rig() -> Rig:
    return Rig()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_request_head_keeps_end_to_end_fields_and_adds_ids(rig: Rig) -> None:
    sent = rig.request(
        b"GET /p?q=1 HTTP/1.1\r\nHost: shop.test\r\nAccept: */*\r\nCookie: a=b\r\n"
        b"Authorization: Bearer t\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\r\n"
    )
    head = sent.decode()
    lines = head.split("\r\n")
    assert lines[0] == "GET /p?q=1 HTTP/1.1"
    assert "Accept: */*" in lines
    assert "Cookie: a=b" in lines  # end-to-end: the app needs them; they are only kept out of logs
    assert "Authorization: Bearer t" in lines
    assert "Host: shop.test" in lines
    assert "X-Forwarded-For: 192.0.2.10" in lines
    assert "X-Forwarded-Host: shop.test" in lines
    assert not [line for line in lines if line.lower().startswith(("connection", "x-hop", "keep-alive"))]
    assert any(line.startswith("X-Request-ID: ") for line in lines)
    assert any(line.startswith("traceparent: 00-") for line in lines)
    assert head.endswith("\r\n\r\n")


async def test_host_can_be_rewritten_to_the_upstream() -> None:
    rig = Rig(preserve_host=False)
    head = rig.request(b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n").decode()
    assert "Host: 127.0.0.1:3000\r\n" in head
    assert "X-Forwarded-Host: shop.test\r\n" in head


async def test_chunked_request_is_rechunked_and_terminated(rig: Rig) -> None:
    sent = rig.request(
        b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    head, _, body = sent.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


async def test_response_with_content_length_is_passed_in_one_write(rig: Rig) -> None:
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\r\n\r\n")
    writes: list[bytes] = []
    rig.client_transport.write = writes.append  # type: ignore[method-assign]
    rig.client_transport.writelines = lambda parts: writes.append(b"".join(parts))  # type: ignore[method-assign]
    rig.up.data_received(OK)
    assert writes == [], "writes wait for the end of the loop iteration"
    rig.ctx.writes.flush()
    assert len(writes) == 1, "head and body of a small response should leave in one syscall"
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"X-Request-ID: abc\r\n" in writes[0]
    assert writes[0].endswith(b"\r\n\r\nok")
    assert rig.ctx.pool.idle == [rig.up]  # back in the pool
    assert rig.client.phase == IDLE


async def test_the_response_leaves_before_its_request_is_recorded(rig: Rig) -> None:
    """Write first, account after: the access record is made right after the iteration's writes."""
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: first-out\r\n\r\n")
    recorded_at_write: list[bool] = []

    def write(data: bytes) -> None:
        recorded_at_write.append(rig.correlation.get("first-out") is not None)
        rig.client_transport.data += data

    rig.client_transport.write = write  # type: ignore[method-assign]
    rig.client_transport.writelines = lambda parts: write(b"".join(parts))  # type: ignore[method-assign]
    rig.up.data_received(OK)
    assert rig.correlation.get("first-out") is None  # finished, not yet recorded
    rig.ctx.writes.flush()
    assert recorded_at_write == [False]
    assert rig.correlation.get("first-out") is not None  # recorded before the next read
    assert rig.client_transport.take().endswith(b"\r\n\r\nok")


async def test_own_log_lines_about_a_request_name_it_and_none_leak_into_later_lines(rig: Rig) -> None:
    """The gateway binds a request to the logging context where it logs about it, not for every request."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    def ids_on_a_log_line() -> tuple[object, object]:
        record = logging.LogRecord("sidecar.gateway", logging.WARNING, __file__, 1, "x", None, None)
        ContextFilter().filter(record)
        return getattr(record, "request_id", None), getattr(record, "trace_id", None)

    handler = Keep()
    handler.addFilter(ContextFilter())
    gateway_log = logging.getLogger("sidecar.gateway")
    gateway_log.addHandler(handler)
    try:
        rig.request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: ctx-1\r\n\r\n")
        rig.respond(OK)
        assert ids_on_a_log_line() == (None, None)
        rig.request(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: ctx-2\r\n\r\n")
        out = rig.respond(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")  # the app speaks nonsense
        assert out.startswith(b"HTTP/1.1 502 ")
        failed = [r for r in records if r.getMessage() == "upstream request failed"]
        assert len(failed) == 1
        assert failed[0].request_id == "ctx-2"  # type: ignore[attr-defined]
        assert isinstance(failed[0].trace_id, str) and len(failed[0].trace_id) == 32  # type: ignore[attr-defined]
        assert ids_on_a_log_line() == (None, None)  # finished: nothing of it on later lines
    finally:
        gateway_log.removeHandler(handler)


async def test_body_until_close_is_rechunked_for_http11_clients(rig: Rig) -> None:
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = rig.respond(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc")
    assert b"Transfer-Encoding: chunked\r\n" in out
    assert out.endswith(b"\r\n\r\n3\r\nabc\r\n")
    rig.up.connection_lost(None)  # the app ends the body by closing
    rig.ctx.writes.flush()
    assert rig.client_transport.take() == b"0\r\n\r\n"
    assert not rig.client_transport.closed  # the client connection lives on


async def test_http10_client_gets_an_unframed_body_and_a_close() -> None:
    rig = Rig()
    rig.request(b"GET / HTTP/1.0\r\n\r\n")
    out = rig.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert b"Transfer-Encoding" not in out
    assert b"Connection: close\r\n" in out
    assert out.endswith(b"\r\n\r\nabc")
    assert rig.client_transport.closed


async def test_head_response_ends_with_its_head_and_the_parser_is_fresh_for_the_next(rig: Rig) -> None:
    rig.request(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = rig.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    assert b"Content-Length: 1234\r\n" in out
    assert rig.ctx.pool.idle == [rig.up]
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert rig.respond(OK).endswith(b"ok")


async def test_interim_100_continue_is_relayed_to_http11_only(rig: Rig) -> None:
    rig.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert rig.respond(b"HTTP/1.1 100 Continue\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rig.request(b"hi") == b"hi"
    assert rig.respond(OK).startswith(b"HTTP/1.1 200 OK")


async def test_draining_adds_connection_close(rig: Rig) -> None:
    rig.health.drain()
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = rig.respond(OK)
    assert b"Connection: close\r\n" in out
    assert rig.client_transport.closed


async def test_pipelined_request_waits_for_the_first_response(rig: Rig) -> None:
    sent = rig.request(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sent.startswith(b"GET /1 ") and b"GET /2" not in sent
    assert not rig.client_transport.reading  # pipelining beyond one request waits
    out = rig.respond(OK)
    assert out.count(b"HTTP/1.1 200") == 1
    assert rig.up_transport.take().startswith(b"GET /2 ")
    assert rig.client_transport.reading


async def test_hop_by_hop_response_fields_are_removed(rig: Rig) -> None:
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = rig.respond(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=4\r\n"
        b"Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-Sum\r\nX-Keep: yes\r\nContent-Length: 0\r\n\r\n"
    )
    head = out.decode().lower()
    for name in ("x-internal", "keep-alive", "proxy-authenticate", "upgrade", "trailer", "connection:"):
        assert name not in head
    assert "x-keep: yes" in head


async def test_client_going_away_aborts_the_upstream_connection(rig: Rig) -> None:
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    rig.client.connection_lost(None)
    assert rig.up_transport.aborted
    assert rig.registry.get_sample_value("sidecar_gateway_client_disconnects_total") == 1
    assert rig.ctx.active == 0


async def test_slow_reading_client_pauses_the_app_and_resumes_it(rig: Rig) -> None:
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    rig.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
    rig.client.pause_writing()
    assert not rig.up_transport.reading
    rig.client.resume_writing()
    assert rig.up_transport.reading


async def test_slow_app_pauses_reading_the_client_body(rig: Rig) -> None:
    rig.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    rig.up.pause_writing()
    assert not rig.client_transport.reading
    rig.up.resume_writing()
    assert rig.client_transport.reading


async def test_deadlines_follow_the_phase(rig: Rig) -> None:
    client = rig.client
    client.data_received(b"GET / HTTP/1.1\r\n")
    assert client.phase == HEAD
    client.timed_out()
    assert rig.client_transport.take().startswith(b"HTTP/1.1 408 ")
    assert rig.client_transport.closed
    other = Rig()
    other.request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n123")
    assert other.client.phase == BODY
    other.client.timed_out()
    assert other.client_transport.take().startswith(b"HTTP/1.1 408 ")
    assert other.up_transport.aborted


async def test_concurrency_limit_answers_503() -> None:
    rig = Rig(max_concurrent_requests=1)
    rig.ctx.active = 1
    rig.client.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    out = rig.client_transport.take()
    assert out.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in out


async def test_http10_keep_alive_client_keeps_its_connection() -> None:
    rig = Rig()
    rig.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    out = rig.respond(OK)
    assert b"Connection: keep-alive\r\n" in out
    assert not rig.client_transport.closed
    rig.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    out = rig.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert b"Transfer-Encoding" not in out  # HTTP/1.0 has no chunked coding: the body ends with the close
    assert rig.client_transport.closed


async def test_http11_client_naming_keep_alive_still_gets_chunked(rig: Rig) -> None:
    rig.request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    out = rig.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in out
    assert out.endswith(b"3\r\nabc\r\n0\r\n\r\n")
    assert not rig.client_transport.closed
