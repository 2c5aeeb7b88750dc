"""``exit_on_zero_active``'s question, "is the app gone?", against real loopback and unix sockets: refused
or no socket file is gone; listening is not; a refusal seen by traffic answers at once; the wait never
outlasts its period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from sidecar.gateway.app_watch import app_refuses, until_app_gone
from sidecar.gateway.settings import parse_upstream
from tests.servers import HOST, free_port

pytestmark = pytest.mark.timeout(30)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@asynccontextmanager
async def listening_tcp() -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer, HOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def test_a_closed_port_is_gone_and_a_listening_one_is_not() -> None:
    assert await app_refuses(parse_upstream(f"http://{HOST}:{free_port()}"))
    async with listening_tcp() as port:
        assert not await app_refuses(parse_upstream(f"http://{HOST}:{port}"))


async def test_a_missing_unix_socket_is_gone_and_a_listening_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    assert await app_refuses(parse_upstream(f"unix:{path}"))
    server = await asyncio.start_unix_server(_answer, str(path))
    try:
        assert not await app_refuses(parse_upstream(f"unix:{path}"))
    finally:
        server.close()
        await server.wait_closed()


async def test_the_wait_ends_when_the_app_stops_listening() -> None:
    async with listening_tcp() as port:
        address = parse_upstream(f"http://{HOST}:{port}")
        waiting = asyncio.create_task(until_app_gone(address, asyncio.Event(), period=10.0, poll=0.05))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the app still listens: keep draining"
    started = time.monotonic()
    assert await waiting is True
    assert time.monotonic() - started < 1.0


async def test_a_refusal_seen_by_traffic_answers_at_once_and_an_old_one_does_not_count() -> None:
    async with listening_tcp() as port:
        address = parse_upstream(f"http://{HOST}:{port}")
        refused = asyncio.Event()
        refused.set()  # before the drain began: says nothing about now
        waiting = asyncio.create_task(until_app_gone(address, refused, period=10.0, poll=5.0))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        started = time.monotonic()
        refused.set()
        assert await waiting is True
        assert time.monotonic() - started < 0.5


async def test_an_app_that_stays_up_lets_the_period_run_out() -> None:
    async with listening_tcp() as port:
        started = time.monotonic()
        gone = await until_app_gone(parse_upstream(f"http://{HOST}:{port}"), asyncio.Event(), 0.5, poll=0.1)
        assert gone is False
        assert 0.45 < time.monotonic() - started < 1.0
