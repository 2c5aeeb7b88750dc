"""Request framing through the real gateway (issue 16, item 1): one regression test per rule.

The app behind the gateway is the fuzzer's strict recording upstream (tests/framing_fuzz): it parses
with its own RFC 9112 parser, so a request that reaches it as two, or with a different body, shows up
in its records. Each smuggling case was first reproduced against the gateway before the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.framing_fuzz.harness import Findings, Record, Recorder
from tests.integration.gateway_support import HOST, run_gateway

pytestmark = pytest.mark.integration

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n"


@dataclass
class Setup:
    port: int
    recorder: Recorder
    findings: Findings

    def records(self) -> list[Record]:
        return [self.recorder.records[k] for k in sorted(self.recorder.records)]


@contextlib.asynccontextmanager
async def gateway(**overrides: object) -> AsyncIterator[Setup]:
    findings = Findings()
    recorder = Recorder(findings)
    await recorder.start()
    try:
        async with run_gateway(f"http://{HOST}:{recorder.port}", **overrides) as gw:
            yield Setup(gw.port, recorder, findings)
    finally:
        await recorder.close()
    assert findings.desyncs == []


async def exchange(port: int, payload: bytes, responses: int = 1) -> tuple[list[int], bytes, bool]:
    """Send ``payload``; read ``responses`` responses; their statuses, all bytes, and whether it closed."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(payload)
            await writer.drain()
            data = b""
            statuses: list[int] = []
            while len(statuses) < responses:
                head = await reader.readuntil(b"\r\n\r\n")
                data += head
                statuses.append(int(head.split(b" ", 2)[1]))
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                data += await reader.readexactly(length)
            try:
                async with asyncio.timeout(0.5):
                    closed = await reader.read(1) == b""
            except TimeoutError:
                closed = False
            return statuses, data, closed
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def settle(setup: Setup, count: int) -> list[Record]:
    async with asyncio.timeout(3):
        while len(setup.recorder.records) < count:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    return setup.records()


# -- Connection cannot nominate framing or the gateway's fields ------------------------------------------


@pytest.mark.parametrize(
    "connection",
    [b"Content-Length", b"close, Content-Length", b"keep-alive,content-length", b"CONTENT-LENGTH"],
)
async def test_connection_cannot_remove_content_length(connection: bytes) -> None:
    """The reported smuggling: Content-Length dropped as hop-by-hop while the body still streamed."""
    async with gateway() as g:
        request = b"POST /a HTTP/1.1\r\nHost: app.test\r\nConnection: %b\r\nContent-Length: %d\r\n\r\n%b" % (
            connection,
            len(SMUGGLED),
            SMUGGLED,
        )
        statuses, _, _ = await exchange(g.port, request)
        assert statuses == [200]
        records = await settle(g, 1)
        assert [(r.method, r.target, r.body) for r in records] == [(b"POST", b"/a", SMUGGLED)]


async def test_connection_cannot_remove_host_ids_or_forwarding_fields() -> None:
    async with gateway() as g:
        raw_heads: list[bytes] = []
        original = g.recorder.completed

        def keep(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
            raw_heads.append(b"".join(b"%b: %b\n" % (n.lower(), v) for n, v in headers))
            return original(method, target, headers, body)

        g.recorder.completed = keep  # type: ignore[method-assign]
        request = (
            b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-Request-ID: client-id-1\r\nX-Real-IP: 203.0.113.9\r\n"
            b"Connection: Host, X-Request-ID, traceparent, X-Forwarded-For, X-Real-IP, Transfer-Encoding, X-Drop\r\n"
            b"X-Drop: 1\r\nX-Keep: 2\r\n\r\n"
        )
        statuses, _, _ = await exchange(g.port, request)
        assert statuses == [200]
        await settle(g, 1)
        head = raw_heads[0]
        assert b"host: app.test\n" in head
        assert b"x-request-id: client-id-1\n" in head
        assert b"traceparent: 00-" in head
        assert b"x-forwarded-for: 127.0.0.1\n" in head
        assert b"x-real-ip: 127.0.0.1\n" in head  # the client's own value is replaced
        assert b"203.0.113.9" not in head
        assert b"x-drop" not in head  # an end-to-end field may still be nominated
        assert b"x-keep: 2\n" in head


# -- ambiguous framing: 400 (or 501/505) and the connection closed -------------------------------------------

REFUSED = [
    (
        "CL and TE",
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "two equal CL",
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    ("CL list", b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    (
        "TE identity, chunked",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "TE gzip, chunked",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "TE chunked twice",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE not chunked", b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    ("TE on HTTP/1.0", b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
    (
        "chunk size not hex",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size with space",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk size overflow",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk data too long",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        400,
    ),
    ("two Host", b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two equal Host", b"GET /a HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("no Host on 1.1", b"GET /a HTTP/1.1\r\nX: y\r\n\r\n", 400),
    ("Host with a space", b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("Host list", b"GET /a HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("absolute-form not Host", b"GET http://other.test/a HTTP/1.1\r\nHost: app.test\r\n\r\n", 400),
    ("absolute-form userinfo", b"GET http://u@app.test/a HTTP/1.1\r\nHost: app.test\r\n\r\n", 400),
    ("absolute-form other scheme", b"GET ftp://app.test/a HTTP/1.1\r\nHost: app.test\r\n\r\n", 400),
    ("asterisk-form not OPTIONS", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("fragment", b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("obs-fold", b"GET /a HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("space before colon", b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc", 400),
    ("bare LF", b"GET /a HTTP/1.1\nHost: a\n\n", 400),
    ("HTTP/2.0 request line", b"GET /a HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("HTTP/0.9 request line", b"GET /a\r\n\r\n", 505),
    (
        "upgrade with a body",
        b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
]


@pytest.mark.parametrize(("name", "request_bytes", "status"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_ambiguous_framing_is_refused_and_closed(name: str, request_bytes: bytes, status: int) -> None:
    async with gateway() as g:
        statuses, data, closed = await exchange(g.port, request_bytes + SMUGGLED)
        assert statuses == [status], data
        assert b"Connection: close" in data
        assert closed
        await asyncio.sleep(0.1)
        # Nothing complete reached the app (a request cut by the refusal never completes).
        assert g.records() == []


# -- the head sent upstream restates framing ---------------------------------------------------------------


async def test_framing_is_restated_from_the_parsed_message() -> None:
    async with gateway() as g:
        heads: list[list[tuple[bytes, bytes]]] = []
        original = g.recorder.completed

        def keep(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
            heads.append(headers)
            return original(method, target, headers, body)

        g.recorder.completed = keep  # type: ignore[method-assign]
        pipelined = (
            b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 003\t\r\n\r\nabc"
            b"POST /te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n2;ext=1\r\nxy\r\n001\r\nz\r\n0\r\n\r\n"
            b"POST /te2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n"
        )
        statuses, _, closed = await exchange(g.port, pipelined, 3)
        assert statuses == [200, 200, 200]
        assert not closed
        records = await settle(g, 3)
        assert [(r.target, r.body) for r in records] == [(b"/cl", b"abc"), (b"/te", b"xyz"), (b"/te2", b"q")]
        framing = [
            [(n.lower(), v) for n, v in h if n.lower() in (b"content-length", b"transfer-encoding")]
            for h in heads
        ]
        assert framing == [
            [(b"content-length", b"3")],
            [(b"transfer-encoding", b"chunked")],
            [(b"transfer-encoding", b"chunked")],
        ]


async def test_absolute_form_becomes_origin_form() -> None:
    async with gateway() as g:
        payload = (
            b"GET http://APP.test:80/a?b=1 HTTP/1.1\r\nHost: app.test\r\n\r\n"
            b"GET https://app.test HTTP/1.1\r\nHost: app.test:443\r\n\r\n"
            b"OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n"
        )
        statuses, _, _ = await exchange(g.port, payload, 3)
        assert statuses == [200, 200, 200]
        records = await settle(g, 3)
        assert [r.target for r in records] == [b"/a?b=1", b"/", b"*"]


async def test_http10_absolute_form_without_host_takes_the_targets_authority() -> None:
    async with gateway() as g:
        hosts: list[bytes | None] = []
        original = g.recorder.completed

        def keep(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
            hosts.append(next((v for n, v in headers if n.lower() == b"host"), None))
            return original(method, target, headers, body)

        g.recorder.completed = keep  # type: ignore[method-assign]
        statuses, _, _ = await exchange(g.port, b"GET http://app.test:8080/x HTTP/1.0\r\n\r\n")
        assert statuses == [200]
        records = await settle(g, 1)
        assert records[0].target == b"/x"
        assert hosts == [b"app.test:8080"]


# -- what llhttp hands back unparsed, and trailers -------------------------------------------------------


async def test_an_upgrade_the_gateway_does_not_make_is_parsed_on_as_http() -> None:
    """``Connection: upgrade`` + a non-WebSocket ``Upgrade``: llhttp stops parsing; the bytes after the
    head used to go to the app raw, as a request the gateway never logged."""
    async with gateway() as g:
        payload = (
            b"GET /a HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n" + SMUGGLED
        )
        statuses, data, _ = await exchange(g.port, payload, 2)
        assert statuses == [200, 200]
        records = await settle(g, 2)
        assert [r.target for r in records] == [b"/a", b"/smuggled"]
        # Both were the gateway's: each carries the request ID the client got back.
        ids = [
            line.split(b": ")[1] for line in data.split(b"\r\n") if line.lower().startswith(b"x-request-id")
        ]
        assert [r.request_id for r in records] == ids


async def test_bytes_after_a_refused_websocket_upgrade_never_reach_the_app() -> None:
    async with gateway() as g:
        payload = (
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + SMUGGLED
        )
        statuses, _, closed = await exchange(g.port, payload)
        assert statuses == [200]  # the recorder does not switch protocols
        assert closed
        await asyncio.sleep(0.1)
        assert [r.target for r in g.records()] == [b"/ws"]


async def test_trailer_fields_do_not_join_the_next_request() -> None:
    async with gateway() as g:
        heads: list[list[tuple[bytes, bytes]]] = []
        original = g.recorder.completed

        def keep(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
            heads.append(headers)
            return original(method, target, headers, body)

        g.recorder.completed = keep  # type: ignore[method-assign]
        payload = (
            b"POST /a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Request-ID: injected\r\nX-Trailer: t\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: app.test\r\n\r\n"
        )
        statuses, _, _ = await exchange(g.port, payload, 2)
        assert statuses == [200, 200]
        records = await settle(g, 2)
        assert [r.target for r in records] == [b"/a", b"/b"]
        assert b"injected" not in [r.request_id for r in records]
        assert not [n for h in heads for n, _ in h if n.lower() == b"x-trailer"]


async def test_a_refusal_waits_for_the_pipelined_requests_before_it() -> None:
    async with gateway() as g:
        payload = (
            b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n"
            b"GET /third HTTP/1.1\r\nHost: app.test\r\n\r\n"
        )
        statuses, data, closed = await exchange(g.port, payload, 2)
        assert statuses == [200, 400]
        assert closed
        assert b"X-Seq: " in data.split(b"HTTP/1.1 400")[0]
        assert [r.target for r in await settle(g, 1)] == [b"/first"]
