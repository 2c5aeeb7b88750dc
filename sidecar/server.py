"""App factory and process lifecycle: build everything from settings, serve, drain and stop cleanly.

Start-up and shutdown order is visible in one place: one cleanup context per resource, in the
order they start (aiohttp runs them backwards on shutdown).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from sidecar.app_keys import (
    CORRELATION,
    HEALTH,
    HTTP_METRICS,
    LOG_EXPORT,
    LOGS,
    OUTLIER,
    REGISTRY,
    SCHEDULER,
    SETTINGS,
    STORE,
)
from sidecar.config import ConfigError, Settings, load_settings
from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.core.settings_model import is_model_type
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.wiring import add_log_admin_routes, setup_logs
from sidecar.probing.app_check import OutlierSettings
from sidecar.probing.check_metrics import CheckMetrics
from sidecar.probing.endpoints import add_routes
from sidecar.probing.health import HealthModel
from sidecar.probing.outlier import OutlierDetector, OutlierMetrics
from sidecar.probing.results import ResultStore
from sidecar.probing.scheduler import Scheduler
from sidecar.sentry.lifecycle import install_sentry
from sidecar.sentry.relay import add_relay_routes
from sidecar.serving.admin_api import create_admin_app
from sidecar.serving.errors import HANDLER_ARGS, client_errors
from sidecar.serving.exposition import new_registry
from sidecar.serving.listeners import HEALTH_MAX_BODY, start_listener
from sidecar.serving.security import metrics_auth_middleware
from sidecar.serving.tls import listener_ssl_context
from sidecar.tracing.wiring import install_tracing

if TYPE_CHECKING:
    from sidecar.gateway.service import Gateway

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8190


def create_app(settings: Settings) -> web.Application:
    """The health-and-metrics app, owning the shared state and the scheduler's lifetime."""
    # No middleware unless /metrics needs credentials: every route answers client errors itself
    # (``add_routes``), since any middleware puts aiohttp's chain on every probe's path.
    middlewares: list[Middleware] = []
    if settings.metrics_auth is not None:
        middlewares = [client_errors, metrics_auth_middleware(settings.metrics_auth)]
    app = web.Application(
        middlewares=middlewares,
        client_max_size=64 * 1024,
        handler_args={
            **HANDLER_ARGS,
            "max_line_size": MAX_HEADER_BYTES,
            "max_field_size": MAX_HEADER_BYTES,
        },
    )
    store = ResultStore()
    health = HealthModel(store, service_name=settings.service_name)
    registry = new_registry(settings.metrics_created_series)
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
    if settings.gateway.enabled:  # with detection off it stays idle, so a reload can turn it on
        app[OUTLIER] = OutlierDetector(outlier_settings(settings), health, settings.app_check.name)
        registry.register(OutlierMetrics(app[OUTLIER]))
    install_sentry(app)  # app[SENTRY]; first cleanup context: starts first, stops last
    install_tracing(app)  # app[TRACING] when on: stops after the gateway, log sources and probes
    setup_logs(app)  # app[LOGS]: log sources start after Sentry (their error sink), stop before it
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


def outlier_settings(settings: Settings) -> OutlierSettings:
    """``app_check.outlier``, turned off when the app check itself is."""
    outlier = settings.app_check.outlier
    if settings.app_check.enabled or not outlier.enabled:
        return outlier
    return outlier.model_copy(update={"enabled": False})


# What a reload applies; every other setting that changed is named in a warning: it takes effect at the
# next restart (listeners, the gateway, forwarding and the log sources are built once, at start-up).
RELOADED = frozenset({"checks", "default_checks", "app_check", "logs.rules"})
# What a reload applies to some parts and not others: named in a warning of its own, saying which.
APPLIED_IN_PART = {
    "routes.templates": (
        "logs.rules labels (normalise: route) use the new templates now; the http_route label of "
        "http_server_* metrics (gateway traffic and access lines) keeps the old ones until the next restart"
    ),
}


def restart_only_changes(running: Settings, fresh: Settings) -> list[str]:
    """The settings (``gateway.read_timeout``, ``listen``) that differ but a reload does not apply."""
    changed: list[str] = []
    for name in type(running).__struct_fields__:
        old, new = getattr(running, name), getattr(fresh, name)
        if name in RELOADED or old == new:
            continue
        if is_model_type(type(old)) and type(old) is type(new):
            changed += [
                f"{name}.{key}"
                for key in type(old).__struct_fields__
                if f"{name}.{key}" not in RELOADED and getattr(old, key) != getattr(new, key)
            ]
        else:
            changed.append(name)
    return changed


async def reload_checks(app: web.Application, config_path: Path | None) -> None:
    """SIGHUP: re-read file and environment; reconcile the checks (the app check and its passive
    outlier detection included) and swap in the log rules (unchanged rules keep their counters), with
    the new route templates. Bad config keeps the old one; changed settings that only a restart
    applies are named in a warning, and those applied in part (``routes.templates``) in another.

    Any failure, whatever the file holds, is a log line and the running configuration stays: the
    reload runs as a background task, so nothing may escape it as an unretrieved exception.
    """
    try:
        fresh = await asyncio.to_thread(load_settings, config_path)  # file I/O off the loop
    except ConfigError as exc:
        log.error("reload rejected, keeping the running configuration", extra={"problems": exc.problems})
        return
    except Exception as exc:  # a bug in the loader must not take the running sidecar with it
        log.error(
            "reload failed, keeping the running configuration",
            extra={"error": f"{type(exc).__name__}: {exc}"[:500]},
        )
        return
    running = app[SETTINGS]
    changed = restart_only_changes(running, fresh)
    in_part = {name: APPLIED_IN_PART[name] for name in changed if name in APPLIED_IN_PART}
    restart_only = [name for name in changed if name not in APPLIED_IN_PART]
    app[HEALTH].configure(fresh.checks)
    await app[SCHEDULER].apply(fresh.checks)
    detector = app.get(OUTLIER)
    if detector is not None:
        await detector.reconfigure(outlier_settings(fresh), fresh.app_check.name)
    app[LOGS].reload_rules(fresh.logs.rules, fresh.routes.templates)
    running.checks = fresh.checks  # what the running sidecar now follows; the rest stays as started
    running.default_checks = fresh.default_checks
    running.app_check = fresh.app_check
    running.logs.rules = fresh.logs.rules
    if restart_only:
        log.warning(
            "reload: some changed settings take effect only at the next restart",
            extra={"restart_required": restart_only},
        )
    if in_part:
        log.warning(
            "reload: some changed settings are applied in part, the rest at the next restart",
            extra={"applied_in_part": in_part},
        )
    log.info(
        "configuration reloaded",
        extra={
            "checks": [c.name for c in fresh.checks],
            "log_rules": [r.name for r in fresh.logs.rules],
            "app_outlier": "on" if detector is not None and detector.settings.enabled else "off",
        },
    )


class Server:
    """The running process: listeners, signal handling, drain and stop."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.app = create_app(settings)
        self.admin_app = create_admin_app(settings, self.app[STORE], self.app[HEALTH])
        add_relay_routes(self.admin_app, self.app)  # Sentry relay: /api/<project>/envelope/, /store/
        add_log_admin_routes(self.admin_app, self.app)  # POST /ingest/logs, GET /debug/requests/{id}
        if settings.console.enabled:  # the console's recorders load only when it is served
            from sidecar.console.wiring import install_console  # noqa: PLC0415

            install_console(self.admin_app, self.app)
        self._runners: list[web.AppRunner] = []
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()  # a second SIGTERM/SIGINT cuts the drain short
        self._reloads: set[asyncio.Future[None]] = set()
        self.gateway: Gateway | None = None
        if settings.gateway.enabled:  # the proxy's modules are loaded only when it is configured
            from sidecar.gateway.service import Gateway  # noqa: PLC0415

            self.gateway = Gateway.for_app(settings.gateway, self.app)
            exporter = self.app.get(LOG_EXPORT)
            if exporter is not None and exporter.settings.access_records:
                self.gateway.ctx.access.sink = exporter.add_access  # every access record, as OTLP logs

    async def start(self) -> None:
        s = self.settings
        if self.gateway is not None:  # first, so the gateway accepts before /readyz can say 200
            await self.gateway.start()
            detector = self.app.get(OUTLIER)
            if detector is not None:  # live traffic judges the app from now on
                detector.attach(self.gateway.ctx.passive)
                detector.start()
        for app, listen, name, own_tls, max_body in (
            (self.app, s.listen, "health", s.listen_tls, HEALTH_MAX_BODY),
            (self.admin_app, s.admin_listen, "admin", s.admin_tls, _admin_max_body(s)),
        ):
            tls = listener_ssl_context(own_tls, s.tls)
            listener = await start_listener(
                app,
                listen,
                name=name,
                limits=s.limits,
                ssl_context=tls,
                max_body_bytes=max_body,
                registry=self.app[REGISTRY],
            )
            self._runners.append(listener.runner)
            log.info("listening", extra={"address": listen, "listener": name, "tls": tls is not None})

    def request_stop(self) -> None:
        """First step of shutdown: readiness fails at once, then the main loop stops the rest."""
        if self._stop.is_set():
            self._hurry.set()
        self.app[HEALTH].drain()
        self._stop.set()

    def _reload(self) -> None:
        """SIGHUP: start a reload; the task is kept until it ends so it is never collected mid-way."""
        task = asyncio.ensure_future(reload_checks(self.app, self.config_path))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        handlers: dict[signal.Signals, Callable[[], object]] = {
            signal.SIGTERM: self.request_stop,
            signal.SIGINT: self.request_stop,
            signal.SIGHUP: self._reload,
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        await self.start()
        # Everything built at start-up (modules, config, pools) lives for the whole process: move it
        # out of the collector's generations so full collections stop rescanning it (20-40 ms pauses).
        gc.collect()
        gc.freeze()
        await self._stop.wait()
        if self.gateway is not None:  # /readyz is 503 already; serve on, then let in-flight finish
            await self.gateway.drain(self._hurry)
        log.info("shutting down", extra={"timeout_seconds": self.settings.shutdown_timeout})
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await self.shutdown()
        except TimeoutError:
            log.error("shutdown did not finish within the timeout; exiting anyway")
        return 0

    async def shutdown(self) -> None:
        detector = self.app.get(OUTLIER)
        if detector is not None:
            await detector.stop()
        if self.gateway is not None:
            await self.gateway.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()


def _admin_max_body(settings: Settings) -> int:
    """Largest declared body the admin listener takes: its own limit, or log ingestion's if larger."""
    return max(settings.limits.max_body_bytes, settings.logs.http.max_body_bytes)


def run(settings: Settings, config_path: Path | None = None) -> int:
    """Run until SIGTERM/SIGINT, on uvloop when it is installed."""
    try:
        import uvloop  # noqa: PLC0415

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(Server(settings, config_path).serve())
