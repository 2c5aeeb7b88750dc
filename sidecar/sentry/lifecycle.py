"""Wiring into the app factory: the forwarder at ``app[SENTRY]`` and one cleanup context for its life.

The context is installed first so it starts before everything that may capture (own errors of the
scheduler's start-up included) and stops last, after the gateway and the log sources have stopped
handing it events: then the spool writer flushes and the sender stops with the spool closed cleanly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.app_keys import CORRELATION, REGISTRY, SENTRY, SETTINGS
from sidecar.sentry.forwarder import SentryForwarder
from sidecar.sentry.own_errors import init_own_errors


def install_sentry(app: web.Application) -> None:
    """Create the forwarder (metrics registered now, nothing opened yet) and add its cleanup context."""
    forwarder = SentryForwarder(app[SETTINGS].sentry, app[CORRELATION])
    app[REGISTRY].register(forwarder.metrics())
    app[SENTRY] = forwarder
    app.cleanup_ctx.append(_sentry_ctx)


async def _sentry_ctx(app: web.Application) -> AsyncIterator[None]:
    close_own = init_own_errors(app[SETTINGS].sentry)
    forwarder = app[SENTRY]
    await forwarder.start()
    yield
    await forwarder.stop()
    if close_own is not None:
        await close_own()
