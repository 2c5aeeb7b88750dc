"""Real servers and clients for the gateway tests: an aiohttp app behind the gateway, a scriptable raw
upstream, and a raw-socket HTTP client for the cases a well-behaved client library cannot send."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.service import Gateway
from sidecar.gateway.settings import GatewaySettings
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore

HOST = "127.0.0.1"


@dataclass
class Upstream:
    """The app behind the gateway: an aiohttp server on a free loopback port that records requests."""

    runner: web.AppRunner
    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _record(upstream: Upstream, request: web.Request) -> None:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if peer:
        upstream.peers.add(peer[1])
    upstream.seen.append(
        {"method": request.method, "path": request.path_qs, "headers": list(request.headers.items())}
    )


def upstream_app(upstream_ref: list[Upstream]) -> web.Application:
    """Routes every gateway test needs; each handler records what it received."""

    async def echo(request: web.Request) -> web.Response:
        _record(upstream_ref[0], request)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": list(request.headers.items()),
                "body_bytes": len(body),
                "version": f"{request.version.major}.{request.version.minor}",
            }
        )

    async def upload(request: web.Request) -> web.Response:
        _record(upstream_ref[0], request)
        total = 0
        async for chunk in request.content.iter_chunked(256 * 1024):
            total += len(chunk)
        return web.json_response({"received": total})

    async def download(request: web.Request) -> web.StreamResponse:
        _record(upstream_ref[0], request)
        size = int(request.query.get("size", "1000"))
        chunked = request.query.get("chunked") == "1"
        response = web.StreamResponse()
        if not chunked:
            response.content_length = size
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        block = b"x" * (256 * 1024)
        left = size
        while left > 0:
            piece = block[: min(left, len(block))]
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
        return response

    async def sse(request: web.Request) -> web.StreamResponse:
        _record(upstream_ref[0], request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for i in range(int(request.query.get("n", "3"))):
            await response.write(f"id: {i}\ndata: event {i}\n\n".encode())
            await asyncio.sleep(float(request.query.get("gap", "0.2")))
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        _record(upstream_ref[0], request)
        await asyncio.sleep(float(request.query.get("delay", "0.5")))
        return web.Response(text="late")

    async def status(request: web.Request) -> web.Response:
        _record(upstream_ref[0], request)
        code = int(request.match_info["code"])
        if code in (204, 304):
            return web.Response(status=code)
        return web.Response(status=code, text=f"status {code}")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        _record(upstream_ref[0], request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello from app")
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application(client_max_size=2 * 1024**3)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    app.router.add_route("*", "/users/{id}", echo)
    app.router.add_post("/upload", upload)
    app.router.add_put("/upload", upload)
    app.router.add_get("/download", download)
    app.router.add_get("/sse", sse)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/ws", websocket)
    return app


@contextlib.asynccontextmanager
async def run_upstream(
    app: web.Application | None = None, unix_path: str | None = None
) -> AsyncIterator[Upstream]:
    ref: list[Upstream] = []
    runner = web.AppRunner(app or upstream_app(ref), access_log=None)
    await runner.setup()
    if unix_path is not None:
        site: web.BaseSite = web.UnixSite(runner, unix_path)
        await site.start()
        port = 0
    else:
        tcp = web.TCPSite(runner, HOST, 0)
        await tcp.start()
        server = tcp._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    upstream = Upstream(runner, port)
    ref.append(upstream)
    try:
        yield upstream
    finally:
        await runner.cleanup()


@dataclass
class RunningGateway:
    gateway: Gateway
    registry: CollectorRegistry
    correlation: CorrelationIndex
    health: HealthModel
    http_metrics: HttpMetrics

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def gateway_settings(upstream: str, **overrides: Any) -> GatewaySettings:
    data: dict[str, Any] = {"upstream": upstream, "listen": f"{HOST}:0", "access_log": {"enabled": False}}
    data.update(overrides)
    return GatewaySettings(**data)


@contextlib.asynccontextmanager
async def run_gateway(
    upstream: str, templates: tuple[str, ...] = (), **overrides: Any
) -> AsyncIterator[RunningGateway]:
    """A started gateway on a free loopback port, on its own registry; closed (and flushed) after."""
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry, RouteNormaliser(templates, 200))
    correlation = CorrelationIndex()
    health = HealthModel(ResultStore())
    gateway = Gateway(gateway_settings(upstream, **overrides), http_metrics, registry, correlation, health)
    await gateway.start()
    try:
        yield RunningGateway(gateway, registry, correlation, health, http_metrics)
    finally:
        await gateway.close()


# -- raw sockets --------------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, head_request: bool = False) -> RawResponse:
    """One HTTP/1.1 response: Content-Length, chunked or until-close bodies."""
    raw_head = await reader.readuntil(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
    names = {k.lower(): v for k, v in headers}
    body = b""
    if head_request or status in (204, 304) or 100 <= status < 200:
        return RawResponse(status, headers, body, raw_head)
    if "content-length" in names:
        body = await reader.readexactly(int(names["content-length"]))
    elif names.get("transfer-encoding", "").lower().endswith("chunked"):
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = await reader.read()
    return RawResponse(status, headers, body, raw_head)


async def raw_exchange(
    port: int, payload: bytes, *, head_request: bool = False, timeout: float = 5.0
) -> RawResponse:
    """Send ``payload`` on a new connection and read one response."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(payload)
            await writer.drain()
            return await read_response(reader, head_request)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# -- a scriptable upstream ----------------------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def run_raw_upstream(script: Script) -> AsyncIterator[int]:
    """A TCP server on a free loopback port that runs ``script`` per connection (exact bytes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


class CapturingHandler(logging.Handler):
    """Keeps log records so a test can assert on what the gateway logged and with which IDs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def capture_logs(name: str = "sidecar") -> Any:
    from sidecar.core.own_logs import ContextFilter

    handler = CapturingHandler()
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class Sidecar:
    """The health/metrics app on a real loopback port, with a gateway sharing its registry."""

    def __init__(self, server: TestServer, gateway: Gateway) -> None:
        self.server = server
        self.gateway = gateway

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway.port}"

    async def scrape(self, accept: str = OPENMETRICS) -> str:
        self.gateway.ctx.red.flush()
        async with (
            aiohttp.ClientSession() as client,
            client.get(str(self.server.make_url("/metrics")), headers={"Accept": accept}) as resp,
        ):
            assert resp.status == 200
            return await resp.text()
