"""Slow clients on real sockets: a body trickled in is cut at the body deadline, its slot freed.

The admin app (log ingestion and the Sentry relay) runs behind the real listener and guard on
loopback, with a one-second body deadline and two ingest slots. Clients send one byte every 100 ms.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.app_keys import HEALTH, STORE
from sidecar.config import Settings
from sidecar.logs.wiring import add_log_admin_routes
from sidecar.sentry.relay import add_relay_routes
from sidecar.server import create_app
from sidecar.serving.admin_api import create_admin_app
from sidecar.serving.listeners import Listener, start_listener
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

BODY_TIMEOUT = 1.0
HEADER_TIMEOUT = 1.0
KEY = "publickey123"


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Listener]:
    settings = Settings(
        default_checks=False,
        limits={"header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT},
        logs={"http": {"max_concurrent": 2}},
        sentry={"app_dsn": f"http://{KEY}@127.0.0.1:9/42", "spool": {"dir": str(tmp_path / "spool")}},
    )
    core = create_app(settings)
    app = create_admin_app(settings, core[STORE], core[HEALTH])
    add_relay_routes(app, core)
    add_log_admin_routes(app, core)
    listener = await start_listener(
        app, f"127.0.0.1:{free_port()}", name="admin", limits=settings.limits, max_body_bytes=1 << 20
    )
    yield listener
    await listener.runner.cleanup()


async def read_answer(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, bytes]:
    """The status of the next answer on the connection and its head, or 0 if it closed without one."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    return (int(head.split(b" ", 2)[1]) if head else 0), head


async def trickle(port: int, head: bytes, body: bytes, pause: float = 0.1) -> tuple[int, float, bool]:
    """Send the head, then the body a byte at a time; (status, seconds until answered, closed after)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)

    async def drip() -> None:
        for byte in body:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await asyncio.sleep(pause)

    dripping = asyncio.create_task(drip())
    try:
        try:
            status, _ = await read_answer(reader)
        except asyncio.IncompleteReadError:
            status = 0
        elapsed = time.monotonic() - started
        async with asyncio.timeout(5):
            await reader.read()  # the rest of the answer, then the server's close
            closed = reader.at_eof()
    finally:
        dripping.cancel()
        writer.close()
    return status, elapsed, closed


async def ok_request(port: int, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    try:
        return (await read_answer(reader))[0]
    finally:
        writer.close()


def post_head(path: str, length: int, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


async def test_trickling_ingest_clients_get_408_and_their_slots_back(admin: Listener) -> None:
    body = b'{"msg":"slow"}\n' * 100
    slow = [
        asyncio.create_task(trickle(admin.port, post_head("/ingest/logs", len(body)), body)) for _ in range(2)
    ]
    await asyncio.sleep(0.3)
    assert await ok_request(admin.port, "/ingest/logs", b'{"msg":"x"}\n') == 503  # both slots held
    results = await asyncio.gather(*slow)
    for status, elapsed, closed in results:
        assert status == 408
        assert BODY_TIMEOUT * 0.9 < elapsed < BODY_TIMEOUT + 2.0
        assert closed
    assert await ok_request(admin.port, "/ingest/logs", b'{"msg":"x"}\n') == 200  # slots are free again


async def test_trickled_chunked_body_and_relay_envelope_get_408(admin: Listener) -> None:
    chunked = b"POST /ingest/logs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, elapsed, closed = await trickle(admin.port, chunked, b"5\r\nhello\r\n" * 10)
    assert (status, closed) == (408, True) and elapsed < BODY_TIMEOUT + 2.0
    envelope = b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n{"type":"event"}\n{}\n'
    head = post_head(f"/api/42/envelope/?sentry_key={KEY}", len(envelope))
    status, elapsed, closed = await trickle(admin.port, head, envelope)
    assert (status, closed) == (408, True) and elapsed < BODY_TIMEOUT + 2.0


async def test_a_body_nobody_reads_is_cut_at_the_deadline(admin: Listener) -> None:
    """``/drain`` answers at once; the rest of a trickled body no longer holds the connection."""
    status, _, closed = await trickle(admin.port, post_head("/drain", 1000), b"x" * 1000)
    assert status == 200 and closed
    reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
    started = time.monotonic()
    writer.write(post_head("/drain", 1000) + b"x")
    await read_answer(reader)
    async with asyncio.timeout(5):
        await reader.read()
    assert reader.at_eof()
    assert time.monotonic() - started < BODY_TIMEOUT + 3.0  # aiohttp alone lingers 10 s
    writer.close()


async def test_header_deadline_applies_after_a_chunked_request_on_the_same_connection(
    admin: Listener,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
    dripping: asyncio.Task[None] | None = None
    try:
        writer.write(
            b"POST /ingest/logs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'c\r\n{"msg":"a"}\n\r\n0\r\n\r\n'
        )
        status, head = await read_answer(reader)
        assert status == 200
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length is not None
        await reader.readexactly(int(length[1]))

        async def drip() -> None:
            for byte in b"GET /debug/checks HTTP/1.1\r\nHost: x\r\n":
                if writer.is_closing():
                    return
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)

        started = time.monotonic()
        dripping = asyncio.create_task(drip())
        status, _ = await read_answer(reader)
        assert status == 408
        assert time.monotonic() - started < HEADER_TIMEOUT + 2.0
    finally:
        if dripping is not None:
            dripping.cancel()
        writer.close()
