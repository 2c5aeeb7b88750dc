"""How the log flow plugs into the apps: one call in ``create_app``, one for the admin app.

``setup_logs`` builds the runtime on the core app (metrics on its registry, access lines into its
``HttpMetrics``, lines into its correlation index, error lines to its Sentry forwarder when there is
one) and adds the cleanup context that starts and stops the sources. ``add_log_admin_routes`` shares
that state with the admin app and registers ``POST /ingest/logs`` and ``GET /debug/requests/{id}``
there, behind the admin token like every admin route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.app_keys import CORRELATION, HTTP_METRICS, LOGS, REGISTRY, SENTRY, SETTINGS
from sidecar.correlation.endpoint import CorrelationMetrics, debug_request
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.sources.http_ingest import ingest_logs


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
    app.cleanup_ctx.append(_logs_ctx)


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
