"""How the log flow plugs into the apps: one call in ``create_app``, one for the admin app.

``setup_logs`` builds the runtime on the core app (metrics on its registry, access lines into its
``HttpMetrics``, lines into its correlation index, error lines to its Sentry forwarder when there is
one) and adds the cleanup context that starts and stops the sources. ``add_log_admin_routes`` shares
that state with the admin app and registers ``POST /ingest/logs`` and ``GET /debug/requests/{id}``
there, behind the admin token like every admin route.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.app_keys import CORRELATION, HTTP_METRICS, LOG_EXPORT, LOGS, REGISTRY, SENTRY, SETTINGS
from sidecar.config import ConfigError
from sidecar.correlation.endpoint import CorrelationMetrics, debug_request
from sidecar.logs.otlp_export import LogExporter, plan_log_export
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.sources.http_ingest import ingest_logs
from sidecar.tracing.settings import TracingConfigError


def setup_logs(app: web.Application, stdin_fd: int | None = None) -> None:
    """Create ``app[LOGS]`` and register the correlation index's metrics; sources start with the app."""
    settings = app[SETTINGS]
    runtime = LogRuntime(
        settings.logs,
        app[REGISTRY],
        app[HTTP_METRICS],
        app[CORRELATION],
        stdin_fd=stdin_fd,
        route_templates=settings.routes.templates,
    )
    sentry = app.get(SENTRY)
    if sentry is not None:
        runtime.pipeline.error_sinks.append(sentry.capture_log_record)
    app[LOGS] = runtime
    app[REGISTRY].register(CorrelationMetrics(app[CORRELATION]))
    try:
        plan = plan_log_export(settings, os.environ)
    except TracingConfigError as exc:
        raise ConfigError([(exc.field, str(exc))]) from None
    if plan is not None:
        exporter = app[LOG_EXPORT] = LogExporter(plan, app[REGISTRY])
        if plan.settings.lines:
            runtime.pipeline.record_sinks.append(exporter.add_record)
        app.cleanup_ctx.append(_export_ctx)  # before the sources: starts first, stops after them
    app.cleanup_ctx.append(_logs_ctx)


async def _export_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start OTLP log export; on shutdown flush what is queued (bounded) and stop."""
    exporter = app[LOG_EXPORT]
    await exporter.start()
    yield
    await exporter.stop()


async def _logs_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the log sources; on shutdown stop them and save file offsets."""
    runtime = app[LOGS]
    await runtime.start()
    yield
    await runtime.stop()


def add_log_admin_routes(admin: web.Application, core: web.Application) -> None:
    """Register log ingestion and the request timeline on the admin app, sharing the core app's state."""
    admin[LOGS] = core[LOGS]
    admin[CORRELATION] = core[CORRELATION]
    admin.router.add_post("/ingest/logs", ingest_logs)
    admin.router.add_get("/debug/requests/{request_id}", debug_request)
