"""The gateway proxying a real aiohttp app: bodies, streaming, hop-by-hop fields, forwarding headers,
request IDs and trace context, keep-alive to the app."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sidecar.gateway.traceparent import parse_traceparent
from tests.integration.gateway_support import (
    HOST,
    raw_exchange,
    read_request_head,
    read_response,
    run_gateway,
    run_raw_upstream,
    run_upstream,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def headers_of(data: dict[str, object]) -> dict[str, str]:
    pairs = data["headers"]
    assert isinstance(pairs, list)
    return {k.lower(): v for k, v in pairs}


async def test_get_and_post_pass_through_with_query_and_end_to_end_headers() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/echo?a=1&b=two", headers={"X-Custom": "kept"}) as resp:
            assert resp.status == 200
            data = await resp.json()
        assert data["path"] == "/echo?a=1&b=two"
        assert headers_of(data)["x-custom"] == "kept"
        async with client.post(gw.url + "/echo", data=b"z" * 100_000) as resp:
            assert (await resp.json())["body_bytes"] == 100_000


async def test_keep_alive_pool_reuses_upstream_connections() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        for _ in range(30):
            async with client.get(gw.url + "/echo") as resp:
                assert resp.status == 200
                await resp.read()
        assert len(app.peers) == 1, f"30 sequential requests used {len(app.peers)} upstream connections"


async def test_chunked_request_body_streams_to_the_app() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"c" * 10_000
            await asyncio.sleep(0)

    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.post(gw.url + "/upload", data=body()) as resp:
            assert resp.status == 200
            assert (await resp.json())["received"] == 500_000
        sent = app.seen[-1]["headers"]
        assert ("Transfer-Encoding", "chunked") in sent


async def test_server_sent_events_arrive_one_by_one() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/sse?n=3&gap=0.3") as resp:
            assert resp.headers["Content-Type"] == "text/event-stream"
            started = time.monotonic()
            first = await resp.content.readuntil(b"\n\n")
            assert first == b"id: 0\ndata: event 0\n\n"
            assert time.monotonic() - started < 0.25, "first event was held back until more arrived"
            rest = await resp.read()
        assert rest.count(b"data: event") == 2


async def test_long_poll_waits_for_the_app() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        started = time.monotonic()
        async with client.get(gw.url + "/slow?delay=1.2") as resp:
            assert await resp.text() == "late"
        assert time.monotonic() - started >= 1.2


async def test_chunked_download_and_content_length_download() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/download?size=3000000&chunked=1") as resp:
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            assert len(await resp.read()) == 3_000_000
        async with client.get(gw.url + "/download?size=3000000") as resp:
            assert resp.headers["Content-Length"] == "3000000"
            assert len(await resp.read()) == 3_000_000


async def test_head_204_and_304_have_no_body_and_the_connection_survives() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            for path, method, status in (
                ("/echo", "HEAD", 200),
                ("/status/204", "GET", 204),
                ("/status/304", "GET", 304),
                ("/echo", "GET", 200),
            ):
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                resp = await asyncio.wait_for(read_response(reader, head_request=method == "HEAD"), 5)
                assert resp.status == status
                if method == "HEAD":
                    assert resp.header("Content-Length") is not None
        finally:
            writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(
                b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /echo?second HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo?third HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            )
            first = await asyncio.wait_for(read_response(reader), 5)
            second = await asyncio.wait_for(read_response(reader), 5)
            third = await asyncio.wait_for(read_response(reader), 5)
        finally:
            writer.close()
        assert first.body == b"late"
        assert second.json()["path"] == "/echo?second"
        assert third.json()["body_bytes"] == 5


async def test_http10_client_gets_a_body_ended_by_close() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(gw.port, b"GET /download?size=5000&chunked=1 HTTP/1.0\r\n\r\n")
        assert resp.status == 200
        assert resp.header("Transfer-Encoding") is None
        assert len(resp.body) == 5000


async def test_expect_100_continue_is_relayed() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        reader, writer = await asyncio.open_connection(HOST, gw.port)
        try:
            writer.write(
                b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(read_response(reader), 5)
            assert interim.status == 100
            writer.write(b"abcd")
            final = await asyncio.wait_for(read_response(reader), 5)
            assert final.json() == {"received": 4}
        finally:
            writer.close()


async def test_unix_socket_upstream() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "app.sock")
        async with (
            run_upstream(unix_path=path) as _app,
            run_gateway(f"unix:{path}") as gw,
            aiohttp.ClientSession() as client,
        ):
            async with client.get(gw.url + "/echo?via=unix") as resp:
                assert (await resp.json())["path"] == "/echo?via=unix"


# -- hop-by-hop fields (RFC 9110 7.6.1) --------------------------------------------------------------------


async def test_hop_by_hop_request_fields_never_reach_the_app() -> None:
    seen: list[bytes] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        resp = await raw_exchange(
            gw.port,
            b"GET /x HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Private-Hop\r\n"
            b"X-Private-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
            b"Proxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\n"
            b"Upgrade: h2c\r\nX-End-To-End: yes\r\n\r\n",
        )
    assert resp.status == 200
    head = seen[0].decode().lower()
    for name in ("x-private-hop", "keep-alive", "te:", "trailer", "proxy-authorization", "proxy-connection"):
        assert name not in head, f"{name} was forwarded:\n{head}"
    assert "upgrade" not in head
    assert "connection:" not in head
    assert "x-end-to-end: yes" in head
    assert "host: example.test" in head


async def test_hop_by_hop_response_fields_never_reach_the_client() -> None:
    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-App-Hop\r\nX-App-Hop: internal\r\n"
            b"Keep-Alive: timeout=30\r\nProxy-Authenticate: Basic\r\nTrailer: X-Checksum\r\n"
            b"Upgrade: h2c\r\nX-Request-ID: app-made-this\r\nX-Kept: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"
        )
        await writer.drain()

    async with run_raw_upstream(app) as port, run_gateway(f"http://{HOST}:{port}") as gw:
        resp = await raw_exchange(gw.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-ID: from-client\r\n\r\n")
    names = resp.header_names()
    for name in ("x-app-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert name not in names, f"{name} reached the client: {resp.headers}"
    assert resp.header("X-Kept") == "1"
    assert resp.header("X-Request-ID") == "from-client"
    assert resp.body == b"hello"
    assert resp.header("Connection") is None  # HTTP/1.1 keep-alive is the default


# -- X-Forwarded-* -----------------------------------------------------------------------------------------


async def test_forwarded_headers_from_an_untrusted_client_are_replaced() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        spoof = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil"}
        async with client.get(gw.url + "/echo", headers=spoof) as resp:
            sent = headers_of(await resp.json())
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"] == f"{HOST}:{gw.port}"


async def test_forwarded_headers_from_a_trusted_proxy_are_extended() -> None:
    async with (
        run_upstream() as app,
        run_gateway(app.url, trusted_proxies=["127.0.0.0/8"]) as gw,
        aiohttp.ClientSession() as client,
    ):
        chain = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop"}
        async with client.get(gw.url + "/echo", headers=chain) as resp:
            sent = headers_of(await resp.json())
    assert sent["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-forwarded-host"] == "shop"


# -- correlation --------------------------------------------------------------------------------------------


async def test_valid_request_id_is_kept_both_ways() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/echo", headers={"X-Request-ID": "req-42_abc"}) as resp:
            assert resp.headers["X-Request-ID"] == "req-42_abc"
            assert headers_of(await resp.json())["x-request-id"] == "req-42_abc"


@pytest.mark.parametrize(
    "bad",
    [
        b"x" * 129,
        b"has space",
        b"tab\there",
        b"caf\xc3\xa9",
        b"",
    ],
)
async def test_invalid_request_id_is_replaced_both_ways(bad: bytes) -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(
            gw.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: " + bad + b"\r\n\r\n"
        )
    generated = resp.header("X-Request-ID")
    assert generated and generated != bad.decode("latin-1").strip()
    assert len(generated) == 36
    assert headers_of(resp.json())["x-request-id"] == generated


@pytest.mark.parametrize("control", [b"\x01", b"\x7f", b"\x00"])
async def test_request_id_with_other_control_characters_is_refused_by_the_parser(control: bytes) -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(
            gw.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: a" + control + b"\r\n\r\n"
        )
    assert resp.status == 400
    assert not app.seen


async def test_request_id_with_cr_lf_cannot_split_headers() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(
            gw.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rInjected: yes\r\n\r\n"
        )
    # llhttp refuses a bare CR inside a field value outright
    assert resp.status == 400


async def test_missing_request_id_is_generated_and_returned() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/echo") as resp:
            rid = resp.headers["X-Request-ID"]
            assert headers_of(await resp.json())["x-request-id"] == rid


async def test_traceparent_is_continued_with_a_new_parent_id() -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        headers = {"traceparent": incoming, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
        async with client.get(gw.url + "/echo", headers=headers) as resp:
            sent = headers_of(await resp.json())
    parent = parse_traceparent(sent["traceparent"])
    assert parent is not None
    assert parent.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert parent.parent_id != "b7ad6b7169203331"
    assert parent.flags == "01"
    assert sent["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.mark.parametrize(
    "bad",
    [
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 with extra fields
        "garbage",
    ],
)
async def test_invalid_traceparent_starts_a_new_trace_and_drops_tracestate(bad: str) -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        headers = {"traceparent": bad, "tracestate": "congo=t61rcWkgMzE"}
        async with client.get(gw.url + "/echo", headers=headers) as resp:
            sent = headers_of(await resp.json())
    parent = parse_traceparent(sent["traceparent"])
    assert parent is not None
    assert parent.trace_id not in bad.lower()
    assert "tracestate" not in sent


async def test_future_traceparent_version_is_continued_as_version_00() -> None:
    future = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds"
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/echo", headers={"traceparent": future}) as resp:
            sent = headers_of(await resp.json())
    assert sent["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert sent["traceparent"].endswith("-01")
