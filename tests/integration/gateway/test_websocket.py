"""WebSocket upgrades proxied both ways, and Socket.io (long-polling, then the upgrade) through the gateway."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import socketio
from aiohttp import WSMsgType, web

from tests.integration.gateway_support import HOST, RunningGateway, raw_exchange, run_gateway, run_upstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_websocket_messages_flow_both_ways() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw, aiohttp.ClientSession() as client:
        async with client.ws_connect(gw.url + "/ws", headers={"X-Request-ID": "ws-1"}) as ws:
            hello = await asyncio.wait_for(ws.receive(), 5)
            assert hello.data == "hello from app"
            for i in range(20):
                await ws.send_str(f"ping {i}")
                reply = await asyncio.wait_for(ws.receive(), 5)
                assert reply.data == f"echo:ping {i}"
            big = bytes(range(256)) * 4096  # 1 MiB in one frame
            await ws.send_bytes(big)
            reply = await asyncio.wait_for(ws.receive(), 10)
            assert reply.type == WSMsgType.BINARY
            assert reply.data == big[::-1]
        assert ("X-Request-ID", "ws-1") in app.seen[-1]["headers"]
        # the session is recorded once it ends, with status 101
        for _ in range(50):
            if gw.correlation.get("ws-1"):
                break
            await asyncio.sleep(0.02)
        timeline = gw.correlation.get("ws-1")
        assert timeline is not None
        record = timeline["timeline"][0]["record"]
        assert record["status"] == 101
        assert record["bytes_in"] > len(big)
        assert record["bytes_out"] > len(big)


async def test_app_closing_the_websocket_closes_the_client_side() -> None:
    async def closer(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("bye")
        await ws.close(code=4000, message=b"done")
        return ws

    app = web.Application()
    app.router.add_get("/ws", closer)
    async with run_upstream(app) as up, run_gateway(up.url) as gw, aiohttp.ClientSession() as client:
        async with client.ws_connect(gw.url + "/ws") as ws:
            assert (await asyncio.wait_for(ws.receive(), 5)).data == "bye"
            closing = await asyncio.wait_for(ws.receive(), 5)
            assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
            assert ws.close_code == 4000 or closing.data == 4000


async def test_upgrade_refused_by_the_app_is_an_ordinary_response() -> None:
    async with run_upstream() as app, run_gateway(app.url) as gw:
        resp = await raw_exchange(
            gw.port,
            b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        assert resp.status == 200
        assert resp.header("Connection") == "close"


async def test_websockets_can_be_turned_off() -> None:
    async with run_upstream() as app, run_gateway(app.url, websockets=False) as gw:
        resp = await raw_exchange(
            gw.port,
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        assert resp.status != 101
        assert not any(k.lower() == "upgrade" for k, _ in app.seen[-1]["headers"])


async def test_socketio_connects_upgrades_and_exchanges_events() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=5)
    app = web.Application()
    sio.attach(app)

    @sio.event  # type: ignore[misc]
    async def shout(sid: str, data: str) -> str:
        await sio.emit("heard", data.upper(), to=sid)
        return "ack:" + data

    async with run_upstream(app) as up, run_gateway(up.url) as gw:
        client = socketio.AsyncClient(reconnection=False)
        heard: asyncio.Queue[str] = asyncio.Queue()

        @client.on("heard")  # type: ignore[misc]
        async def on_heard(data: str) -> None:
            await heard.put(data)

        await asyncio.wait_for(
            client.connect(f"http://{HOST}:{gw.port}", transports=["polling", "websocket"]), 10
        )
        try:
            for _ in range(100):  # polling first, then the upgrade to a WebSocket through the gateway
                if client.transport() == "websocket":
                    break
                await asyncio.sleep(0.05)
            assert client.transport() == "websocket"
            for word in ("hello", "world"):
                ack = await asyncio.wait_for(client.call("shout", word), 5)
                assert ack == "ack:" + word
                assert await asyncio.wait_for(heard.get(), 5) == word.upper()
        finally:
            await client.disconnect()
        for _ in range(50):  # the WebSocket session is recorded when it closes
            gw.gateway.ctx.red.flush()
            if count(gw, "101") and count(gw, "200"):
                break
            await asyncio.sleep(0.05)
        assert count(gw, "200") >= 1, "no long-polling request went through the gateway"
        assert count(gw, "101") == 1, "the WebSocket session did not go through the gateway"


def count(gw: RunningGateway, status: str) -> float:
    total = 0.0
    for metric in gw.registry.collect():
        for sample in metric.samples:
            if (
                sample.name == "http_server_request_duration_seconds_count"
                and sample.labels["http_response_status_code"] == status
            ):
                total += sample.value
    return total
