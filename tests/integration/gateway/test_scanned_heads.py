"""Heads read by the native scanner (``head_scan.c``) or by llhttp: the same messages on both sides.

The scanner takes a whole usual head from one read (and counts a response body itself); a head split
over reads, or an unusual one, goes to llhttp. Both paths must deliver the same bytes, reuse the app's
connection only when its framing allows, never pass on bytes the app sent past its own framing, and
never let the scanner start reading in the middle of a message llhttp holds part of. These run with
the scanners (compiled builds) and without them (``scan_request``/``scan_response`` off, and the
interpreted pass of tests/run.sh).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.gateway_support import (
    HOST,
    RunningGateway,
    read_request_head,
    read_response,
    run_gateway,
    run_raw_upstream,
    run_upstream,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture(params=["scanner", "llhttp"])
def reader(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _choose(gw: RunningGateway, reader: str) -> None:
    if reader == "llhttp":
        gw.gateway.ctx.scan_request = None
        gw.gateway.ctx.scan_response = None


async def _two_requests(port: int) -> tuple[bytes, bytes]:
    """Two requests on one client connection; the two bodies."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        bodies = []
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            response = await read_response(reader)
            assert response.status == 200
            bodies.append(response.body)
        return bodies[0], bodies[1]
    finally:
        writer.close()


async def test_a_body_in_pieces_and_a_head_in_pieces_arrive_whole(reader: str) -> None:
    connections = 0

    async def app(stream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request_head(stream)  # first: a whole head, the body in three reads
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nfour")
        for piece in (b"five", b"six!"):
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(piece)
        await writer.drain()
        await read_request_head(stream)  # second: the head cut in the middle of a field line
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"pe: text/plain\r\nContent-Length: 5\r\n\r\nwhole")
        await writer.drain()
        await stream.read()

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        _choose(gw, reader)
        first, second = await _two_requests(gw.port)
    assert (first, second) == (b"fourfivesix!", b"whole")
    assert connections == 1  # both framed by Content-Length: the app's connection was reused


async def test_bytes_past_the_framed_body_are_not_passed_on_and_the_connection_is_not_reused(
    reader: str,
) -> None:
    connections = 0

    async def app(stream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request_head(stream)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsmuggl"
        )
        await writer.drain()
        await stream.read()

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        _choose(gw, reader)
        first, second = await _two_requests(gw.port)
    assert (first, second) == (b"ok", b"ok")  # the second answer is a fresh connection's, not "smuggl"
    assert connections == 2


async def test_connection_close_from_the_app_is_honoured(reader: str) -> None:
    connections = 0

    async def app(stream: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request_head(stream)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
        await writer.drain()

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        _choose(gw, reader)
        assert await _two_requests(gw.port) == (b"bye", b"bye")
    assert connections == 2


async def _send(port: int, pieces: list[bytes], responses: int) -> list[bytes]:
    """Write ``pieces`` (a pause between them, so each is its own read), then read ``responses`` bodies."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        return [(await read_response(reader)).body for _ in range(responses)]
    finally:
        writer.close()


async def test_pipelined_requests_in_one_read_are_answered_in_order(reader: str) -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        _choose(gw, reader)
        pipelined = b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(3))
        post = b"POST /echo/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
        await _send(gw.port, [pipelined + post + b"GET /echo/4 HTTP/1.1\r\nHost: x\r\n\r\n"], 5)
    assert [seen["path"] for seen in app.seen] == [f"/echo/{n}" for n in range(5)]


async def test_the_scanner_never_starts_inside_a_head_llhttp_holds(reader: str) -> None:
    """A head cut so that its rest looks like a whole request of its own: still one request."""
    async with run_upstream() as app, run_gateway(app.url) as gw:
        _choose(gw, reader)
        pieces = [b"GET /echo/first HTTP/1.1\r\nX-Note: ", b"GET /echo/evil HTTP/1.1\r\nHost: x\r\n\r\n"]
        await _send(gw.port, pieces, 1)
    assert [(seen["path"], dict(seen["headers"]).get("X-Note")) for seen in app.seen] == [
        ("/echo/first", "GET /echo/evil HTTP/1.1")
    ]


async def test_a_body_that_looks_like_a_request_stays_a_body(reader: str) -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        _choose(gw, reader)
        inner = b"GET /echo/evil HTTP/1.1\r\nHost: x\r\n\r\n"
        head = b"POST /echo/outer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(inner)
        await _send(gw.port, [head, inner], 1)
    assert [seen["path"] for seen in app.seen] == ["/echo/outer"]


async def test_a_request_after_one_that_closes_the_connection_is_refused_alike(reader: str) -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        _choose(gw, reader)
        closing = b"GET /echo/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reader_, writer = await asyncio.open_connection(HOST, gw.port)
        writer.write(closing + b"GET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        first = await read_response(reader_)
        rest = await reader_.read()
        writer.close()
        rejected = gw.registry.get_sample_value("sidecar_gateway_rejected_total", {"reason": "bad_request"})
    assert first.status == 200
    assert first.header("Connection") == "close"
    assert rest == b""  # nothing after the response the client asked to be the last
    assert [seen["path"] for seen in app.seen] == ["/echo/1"]
    assert rejected == 1
