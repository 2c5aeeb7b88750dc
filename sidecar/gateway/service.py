"""The gateway listener's lifecycle: start, the deadline sweeper, and the three steps of a drain.

Drain, in order (``Server`` drives it on SIGTERM): keep serving while load balancers notice that
``/readyz`` fails (every response meanwhile says ``Connection: close``, so keep-alive clients
reconnect, which a load balancer sends elsewhere), unless the app is gone (``app_watch``); then
``stop_accepting`` closes the listener and the idle connections; ``wait_idle`` lets requests in flight
finish; ``close`` cuts what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from time import perf_counter
from typing import Any, cast

from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.app_keys import CORRELATION, HEALTH, HTTP_METRICS, REGISTRY, TRACING
from sidecar.core.http_metrics import HttpMetrics
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway import compiled
from sidecar.gateway.app_watch import until_app_gone
from sidecar.gateway.context import GatewayContext
from sidecar.gateway.proxy import ClientConnection
from sidecar.gateway.settings import GatewaySettings, parse_host_port
from sidecar.probing.health import HealthModel

log = logging.getLogger(__name__)

BACKLOG = 2048


class Gateway:
    """The reverse proxy listener and everything it owns."""

    def __init__(
        self,
        settings: GatewaySettings,
        http_metrics: HttpMetrics,
        registry: CollectorRegistry,
        correlation: CorrelationIndex,
        health: HealthModel,
    ) -> None:
        self.settings = settings
        self.ctx = GatewayContext(settings, http_metrics, registry, correlation, health)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._port = 0
        self._tick = max(0.05, min(0.5, _shortest_timeout(settings) / 4))

    @classmethod
    def for_app(cls, settings: GatewaySettings, app: web.Application) -> Gateway:
        """A gateway sharing the core app's registry, HTTP metrics, correlation index, health and tracing."""
        gateway = cls(settings, app[HTTP_METRICS], app[REGISTRY], app[CORRELATION], app[HEALTH])
        tracing = app.get(TRACING)
        if tracing is not None:
            tracing.attach(gateway.ctx)
        return gateway

    @property
    def port(self) -> int:
        """The bound port (useful when listening on port 0)."""
        return self._port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = parse_host_port(self.settings.listen, any_port=True)
        ctx = self.ctx
        ctx.access.open()
        if ctx.edge is not None:
            ctx.edge.start()  # connects to the rate-limit Redis ahead of the first decision
        self._server = await loop.create_server(
            lambda: cast("asyncio.Protocol", ClientConnection(ctx)),  # duck-typed: see the class
            host,
            port,
            reuse_address=True,
            backlog=BACKLOG,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = loop.call_later(self._tick, self._sweep)
        log.info(
            "gateway listening",
            extra={"address": self.settings.listen, "upstream": str(ctx.address), "compiled": compiled()},
        )

    def _sweep(self) -> None:
        """Enforce every deadline (keep-alive, header, body, upstream read and pool idle)."""
        now = perf_counter()
        try:
            for conn in [c for c in self.ctx.connections if c.deadline <= now]:
                conn.timed_out()
            self.ctx.pool.timed_out(now)
        except Exception:
            log.exception("gateway deadline sweep failed")
        self._sweeper = asyncio.get_running_loop().call_later(self._tick, self._sweep)

    @property
    def in_flight(self) -> int:
        return self.ctx.active

    def stop_accepting(self) -> None:
        """Close the listener and every connection between requests; busy ones close after responding."""
        ctx = self.ctx
        ctx.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(ctx.connections):
            conn.close_if_idle()
        if not ctx.connections:
            ctx.idle_event.set()
        log.info("gateway stopped accepting", extra={"in_flight": ctx.active})

    async def drain(self, hurry: asyncio.Event | None = None) -> bool:
        """The whole drain after SIGTERM; True when nothing was cut. ``hurry`` (2nd signal) skips waits."""
        drain_period, grace_period = self.settings.drain_period, self.settings.grace_period
        log.info(
            "gateway draining",
            extra={"drain_period_seconds": drain_period, "grace_period_seconds": grace_period},
        )
        hurry = hurry or asyncio.Event()
        if self.settings.exit_on_zero_active:  # the app gone first: no 502s for the rest of the period
            ctx = self.ctx
            gone = await _wait_unless(until_app_gone(ctx.address, ctx.app_refused, drain_period), hurry)
            if gone:
                log.info("gateway upstream gone, stopping at once", extra={"in_flight": ctx.active})
        else:
            await _wait_unless(asyncio.sleep(drain_period), hurry)
        self.stop_accepting()
        clean = await _wait_unless(self.wait_idle(grace_period), hurry)
        if not clean:
            log.warning("gateway grace period over", extra={"in_flight": self.ctx.active})
        return clean

    async def wait_idle(self, grace_period: float) -> bool:
        """True when every client connection closed within ``grace_period`` seconds."""
        if not self.ctx.connections:
            return True
        try:
            async with asyncio.timeout(grace_period):
                await self.ctx.idle_event.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Cut whatever is still open (after the grace period) and release every resource."""
        if self._closed:
            return
        self._closed = True
        ctx = self.ctx
        ctx.stopping = True
        if self._server is not None:
            self._server.close()
        left = list(ctx.connections)
        if left:
            log.warning("gateway closing connections still busy", extra={"connections": len(left)})
        for conn in left:
            conn.transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await ctx.pool.close()
        if ctx.edge is not None:
            await ctx.edge.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
        await asyncio.sleep(0)  # the cut connections' connection_lost: their requests finish
        ctx.account()  # recorded now, not after a write batch that may not come before the log closes
        ctx.red.flush()
        await ctx.access.close()


async def _wait_unless(work: Coroutine[Any, Any, Any], hurry: asyncio.Event) -> bool:
    """Run ``work`` unless ``hurry`` is set first; the result of ``work`` as a bool, False if hurried."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    return task.result() is not False


def _shortest_timeout(settings: GatewaySettings) -> float:
    return min(
        settings.read_timeout,
        settings.idle_timeout,
        settings.header_timeout,
        settings.body_timeout,
        settings.upstream_idle_timeout or settings.idle_timeout,
    )
