"""Failures told apart: refused/reset -> 502, timeout -> 504, each counted by reason and logged with the
request ID; a client that leaves early is counted, not logged as an error; limits answer clearly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time

import aiohttp
import pytest

from tests.integration.gateway_support import (
    HOST,
    capture_logs,
    raw_exchange,
    read_request_head,
    read_response,
    run_gateway,
    run_raw_upstream,
    run_upstream,
)
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def errors(registry: object, reason: str) -> float:
    value = registry.get_sample_value("sidecar_gateway_upstream_errors_total", {"reason": reason})  # type: ignore[attr-defined]
    return float(value or 0.0)


def rejected(registry: object, reason: str) -> float:
    value = registry.get_sample_value("sidecar_gateway_rejected_total", {"reason": reason})  # type: ignore[attr-defined]
    return float(value or 0.0)


async def test_refused_upstream_is_502_counted_and_logged_with_the_request_id() -> None:
    port = free_port()  # nothing listens here
    async with run_gateway(f"http://{HOST}:{port}") as gw, aiohttp.ClientSession() as client:
        with capture_logs() as logs:
            async with client.get(gw.url + "/x", headers={"X-Request-ID": "refused-1"}) as resp:
                assert resp.status == 502
                assert resp.headers["X-Request-ID"] == "refused-1"
                assert "refused" in await resp.text()
        assert errors(gw.registry, "refused") == 1
        warnings = [r for r in logs.records if r.getMessage() == "upstream request failed"]
        assert warnings, "the failure was not logged"
        assert warnings[0].request_id == "refused-1"  # type: ignore[attr-defined]  (from the log context)
        assert warnings[0].reason == "refused"  # type: ignore[attr-defined]


async def test_upstream_closing_without_an_answer_is_502_reset() -> None:
    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        resp = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 502
        assert errors(gw.registry, "reset") == 1


async def test_upstream_rst_is_502_reset() -> None:
    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close -> RST

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        resp = await raw_exchange(gw.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        assert resp.status == 502
        assert errors(gw.registry, "reset") == 1


async def test_upstream_read_timeout_is_504() -> None:
    async with run_upstream() as app, run_gateway(app.url, read_timeout=0.5) as gw:
        started = time.monotonic()
        resp = await raw_exchange(gw.port, b"GET /slow?delay=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        elapsed = time.monotonic() - started
        assert resp.status == 504
        assert 0.4 < elapsed < 2.0, elapsed
        assert errors(gw.registry, "timeout") == 1


async def test_upstream_connect_timeout_is_504() -> None:
    # A listening socket whose accept queue is full: the kernel drops further SYNs, connects hang.
    blocker = socket.socket()
    blocker.bind((HOST, 0))
    blocker.listen(0)
    port = blocker.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((HOST, port))
            fillers.append(filler)
        await asyncio.sleep(0.2)
        async with run_gateway(f"http://{HOST}:{port}", connect_timeout=0.5) as gw:
            resp = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert resp.status == 504
            assert errors(gw.registry, "connect_timeout") == 1
    finally:
        for filler in fillers:
            filler.close()
        blocker.close()


async def test_invalid_response_is_502_protocol() -> None:
    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"SPEAKING NONSENSE\r\n\r\n")
        await writer.drain()

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        resp = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 502
        assert errors(gw.registry, "protocol") == 1


async def test_pooled_connection_closed_by_the_app_is_retried_for_idempotent_requests() -> None:
    served = 0

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request_head(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        await writer.drain()
        await read_request_head(reader)  # the next request on this connection: hang up instead

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        first = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        second = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (first.status, second.status) == (200, 200)
        assert served == 2
        assert gw.registry.get_sample_value("sidecar_gateway_upstream_retries_total") == 1


async def test_upstream_dying_mid_body_cuts_the_client_response() -> None:
    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        await writer.drain()

    async with (
        run_raw_upstream(app) as port,
        run_gateway(f"http://{HOST}:{port}") as gw,
        aiohttp.ClientSession() as client,
    ):
        async with client.get(gw.url + "/") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert errors(gw.registry, "reset") == 1


async def test_client_leaving_early_is_counted_not_logged_as_an_error() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        with capture_logs() as logs:
            _reader, writer = await asyncio.open_connection(HOST, gw.port)
            writer.write(b"GET /slow?delay=1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: leaver\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            for _ in range(50):
                if gw.registry.get_sample_value("sidecar_gateway_client_disconnects_total"):
                    break
                await asyncio.sleep(0.02)
        assert gw.registry.get_sample_value("sidecar_gateway_client_disconnects_total") == 1
        assert not [r for r in logs.records if r.levelno >= logging.WARNING], [
            r.getMessage() for r in logs.records
        ]
        timeline = gw.correlation.get("leaver")
        assert timeline is not None
        record = timeline["timeline"][0]["record"]
        assert record["status"] == 499
        assert record["error"] == "client_disconnect"
        assert sum(errors(gw.registry, r) for r in ("refused", "reset", "timeout")) == 0


# -- limits -------------------------------------------------------------------------------------------------


async def test_oversized_header_is_431() -> None:
    async with run_upstream() as app, run_gateway(app.url, max_header_bytes=2048) as gw:
        resp = await raw_exchange(
            gw.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n"
        )
        assert resp.status == 431
        assert resp.header("Connection") == "close"
        assert rejected(gw.registry, "header_too_large") == 1
        assert not app.seen


async def test_header_sent_in_pieces_past_the_limit_is_431() -> None:
    async with run_upstream() as app, run_gateway(app.url, max_header_bytes=2048) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):
                writer.write(b"X-Pad: " + b"p" * 90 + b"\r\n")
                await writer.drain()
            resp = await asyncio.wait_for(read_response(reader), 5)
        finally:
            writer.close()
        assert resp.status == 431


async def test_overlong_target_is_414() -> None:
    async with run_upstream() as app, run_gateway(app.url, max_header_bytes=2048) as gw:
        resp = await raw_exchange(gw.port, b"GET /" + b"u" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert resp.status == 414


async def test_client_too_slow_to_send_headers_gets_408() -> None:
    async with run_upstream() as app, run_gateway(app.url, header_timeout=0.5) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            started = time.monotonic()
            resp = await asyncio.wait_for(read_response(reader), 5)
            assert resp.status == 408
            assert 0.4 < time.monotonic() - started < 2.0
            assert await asyncio.wait_for(reader.read(), 2) == b""  # then closed
        finally:
            writer.close()
        assert rejected(gw.registry, "header_timeout") == 1


async def test_client_too_slow_to_send_the_body_gets_408() -> None:
    async with run_upstream() as app, run_gateway(app.url, body_timeout=0.5) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            resp = await asyncio.wait_for(read_response(reader), 5)
            assert resp.status == 408
        finally:
            writer.close()
        assert rejected(gw.registry, "body_timeout") == 1


async def trickle_body(port: int, size: int, piece: int, gap: float) -> tuple[int, float]:
    """POST ``size`` bytes, ``piece`` bytes every ``gap`` seconds (never silent for long): status, seconds."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    try:
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)

        async def send() -> None:
            for sent in range(0, size, piece):
                writer.write(b"x" * min(piece, size - sent))
                await asyncio.sleep(gap)

        sender = asyncio.ensure_future(send())
        try:
            resp = await asyncio.wait_for(read_response(reader), 15)
        finally:
            sender.cancel()
        return resp.status, time.monotonic() - started
    finally:
        writer.close()


async def test_a_body_trickling_below_the_minimum_rate_gets_408() -> None:
    # 10 bytes every 0.25 s: never 1 s of silence, but 40 bytes/s against a minimum of 100
    async with run_upstream() as app, run_gateway(app.url, body_timeout=1.0, min_body_rate=100) as gw:
        status, seconds = await trickle_body(gw.port, 1000, 10, 0.25)
        assert status == 408
        assert 1.0 < seconds < 5.0  # body_timeout plus a second per 100 bytes received, ~1.7 s
        assert rejected(gw.registry, "body_timeout") == 1


async def test_a_slow_body_within_the_minimum_rate_arrives() -> None:
    # the same trickle with no minimum rate: only silence counts, and there is none
    async with run_upstream() as app, run_gateway(app.url, body_timeout=1.0, min_body_rate=0) as gw:
        status, seconds = await trickle_body(gw.port, 100, 10, 0.25)
        assert status == 200
        assert seconds > 2.0
        assert rejected(gw.registry, "body_timeout") == 0


async def test_a_pipelined_head_cut_short_gets_the_header_deadline_not_the_idle_one() -> None:
    async with run_upstream() as app, run_gateway(app.url, header_timeout=0.5, idle_timeout=30) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n")
            first = await asyncio.wait_for(read_response(reader), 5)
            assert first.status == 200
            started = time.monotonic()
            second = await asyncio.wait_for(read_response(reader), 5)
            assert second.status == 408
            assert time.monotonic() - started < 2.0
        finally:
            writer.close()
        assert rejected(gw.registry, "header_timeout") == 1


async def test_idle_keep_alive_connection_is_closed_quietly() -> None:
    async with run_upstream() as app, run_gateway(app.url, idle_timeout=0.5) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(read_response(reader), 5)).status == 200
            started = time.monotonic()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert 0.4 < time.monotonic() - started < 2.0
        finally:
            writer.close()


async def test_too_many_requests_in_flight_get_503_with_retry_after() -> None:
    async with (
        run_upstream() as app,
        run_gateway(app.url, max_concurrent_requests=2) as gw,
        aiohttp.ClientSession() as client,
    ):

        async def fetch() -> tuple[int, str | None]:
            async with client.get(gw.url + "/slow?delay=0.5") as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")

        first = [asyncio.create_task(fetch()) for _ in range(2)]
        await asyncio.sleep(0.2)
        third = await fetch()
        results = await asyncio.gather(*first)
        assert third == (503, "1")
        assert results == [(200, None), (200, None)]
        assert rejected(gw.registry, "concurrency") == 1


async def test_connect_method_is_refused() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(
            gw.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
        assert resp.status == 405
        assert not app.seen


async def test_malformed_request_is_400() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(
            gw.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        )
        assert resp.status == 400
        assert rejected(gw.registry, "bad_request") == 1
