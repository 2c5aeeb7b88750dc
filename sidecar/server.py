"""App factory and process lifecycle: build everything from settings, serve, drain and stop cleanly.

Start-up and shutdown order is visible in one place: one cleanup context per resource, in the
order they start (aiohttp runs them backwards on shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from sidecar.admin_api import create_admin_app
from sidecar.app_keys import CORRELATION, HEALTH, HTTP_METRICS, REGISTRY, SCHEDULER, SETTINGS, STORE
from sidecar.config import ConfigError, Settings, load_settings, parse_listen
from sidecar.correlation import CorrelationIndex
from sidecar.health import HealthModel
from sidecar.health_api import add_routes
from sidecar.http_metrics import HttpMetrics
from sidecar.metrics import CheckMetrics, new_registry
from sidecar.results import ResultStore
from sidecar.routes import RouteNormaliser
from sidecar.scheduler import Scheduler

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8190


def create_app(settings: Settings) -> web.Application:
    """The health-and-metrics app, owning the shared state and the scheduler's lifetime."""
    app = web.Application(
        client_max_size=64 * 1024,
        handler_args={"max_line_size": MAX_HEADER_BYTES, "max_field_size": MAX_HEADER_BYTES},
    )
    store = ResultStore()
    health = HealthModel(store, service_name=settings.service_name)
    registry = new_registry()
    registry.register(CheckMetrics(store, health))
    app[SETTINGS] = settings
    app[STORE] = store
    app[HEALTH] = health
    app[REGISTRY] = registry
    app[SCHEDULER] = Scheduler(store)
    app[CORRELATION] = CorrelationIndex()
    app[HTTP_METRICS] = HttpMetrics(
        registry, RouteNormaliser(settings.routes.templates, settings.routes.max_routes)
    )
    app.cleanup_ctx.append(_scheduler_ctx)
    add_routes(app)
    return app


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start every check; on shutdown stop the probes and close every pool."""
    checks = app[SETTINGS].checks
    app[HEALTH].configure(checks)
    await app[SCHEDULER].apply(checks)
    log.info("checks started", extra={"checks": [c.name for c in checks]})
    yield
    await app[SCHEDULER].stop()
    log.info("checks stopped")


async def reload_checks(app: web.Application, config_path: Path | None) -> None:
    """SIGHUP: re-read file and environment and reconcile the checks; bad config keeps the old one."""
    try:
        fresh = load_settings(config_path)
    except ConfigError as exc:
        log.error("reload rejected, keeping the running configuration", extra={"problems": exc.problems})
        return
    app[HEALTH].configure(fresh.checks)
    await app[SCHEDULER].apply(fresh.checks)
    app[SETTINGS].checks = fresh.checks
    log.info("configuration reloaded", extra={"checks": [c.name for c in fresh.checks]})


class Server:
    """The running process: listeners, signal handling, drain and stop."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.app = create_app(settings)
        self.admin_app = create_admin_app(settings, self.app[STORE], self.app[HEALTH])
        self._runners: list[web.AppRunner] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        for app, listen in ((self.app, self.settings.listen), (self.admin_app, self.settings.admin_listen)):
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
            await runner.setup()
            host, port = parse_listen(listen)
            await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024).start()
            self._runners.append(runner)
            log.info("listening", extra={"address": listen})

    def request_stop(self) -> None:
        """First step of shutdown: readiness fails at once, then the main loop stops the rest."""
        self.app[HEALTH].drain()
        self._stop.set()

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        handlers: dict[signal.Signals, Callable[[], object]] = {
            signal.SIGTERM: self.request_stop,
            signal.SIGINT: self.request_stop,
            signal.SIGHUP: lambda: asyncio.ensure_future(reload_checks(self.app, self.config_path)),
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        await self.start()
        await self._stop.wait()
        log.info("shutting down", extra={"timeout_seconds": self.settings.shutdown_timeout})
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await self.shutdown()
        except TimeoutError:
            log.error("shutdown did not finish within the timeout; exiting anyway")
        return 0

    async def shutdown(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


def run(settings: Settings, config_path: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT, on uvloop when it is installed."""
    try:
        import uvloop  # noqa: PLC0415

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(Server(settings, config_path).serve())
