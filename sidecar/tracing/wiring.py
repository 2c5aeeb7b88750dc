"""Wiring into the app factory: ``app[TRACING]`` when tracing is on, and one cleanup context for its stop.

When tracing is off this module returns before importing anything from ``opentelemetry``. When it is
on, the pipeline is built in ``create_app`` (so the gateway, which starts before the listeners, has
it from its first request) and the cleanup context flushes and stops it. It is installed before the
scheduler's context, so on shutdown the probes stop first and their last spans are still exported.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping

from aiohttp import web

from sidecar.app_keys import REGISTRY, SETTINGS, STORE, TRACING
from sidecar.config import ConfigError
from sidecar.tracing.settings import TracingConfigError, plan_tracing


def install_tracing(app: web.Application, env: Mapping[str, str] | None = None) -> None:
    """Start tracing if it is configured; a bad ``OTEL_*`` variable is a ``ConfigError``."""
    try:
        plan = plan_tracing(app[SETTINGS], os.environ if env is None else env)
    except TracingConfigError as exc:
        raise ConfigError([(exc.field, str(exc))]) from None
    if plan is None:
        return
    from sidecar.tracing.provider import start_tracing  # noqa: PLC0415 (opentelemetry only when on)

    runtime = start_tracing(plan, app[REGISTRY], env)
    app[TRACING] = runtime
    if runtime.probes is not None:
        app[STORE].subscribe(runtime.probes)
    app.cleanup_ctx.append(_tracing_ctx)


async def _tracing_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[TRACING].stop()
