"""How the console plugs into the admin app: one call from the process shell, when it is enabled.

``install_console`` builds the recorders (``state``), starts the traffic sampler with the admin
listener, and routes ``/`` and ``/console...`` to one dispatcher that imports the pages (``handlers``)
on the first request, so a sidecar whose console nobody opens never loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.app_keys import CORRELATION, HEALTH, HTTP_METRICS, LOGS, SENTRY, SETTINGS, STORE
from sidecar.console.auth import Sessions
from sidecar.console.errors import RecentEvents
from sidecar.console.history import CheckHistory
from sidecar.console.queues import FailedJobsReader
from sidecar.console.state import CONSOLE, ConsoleState
from sidecar.console.tail import LogTail
from sidecar.console.traffic import TrafficWindows

PREFIX = "/console"


def install_console(admin: web.Application, core: web.Application) -> None:
    """Share the core app's state with the console and route its URLs on the admin app."""
    settings = core[SETTINGS]
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    sentry = core.get(SENTRY)
    logs = core.get(LOGS)
    events = RecentEvents()
    if sentry is not None:
        sentry.observers.append(events.observe)
    admin[CONSOLE] = ConsoleState(
        settings=settings,
        store=core[STORE],
        health=core[HEALTH],
        index=core[CORRELATION],
        sentry=sentry,
        history=CheckHistory(core[STORE], core[HEALTH], settings.console.history_points),
        traffic=TrafficWindows(core[HTTP_METRICS], core[CORRELATION]),
        events=events,
        tail=LogTail(logs.pipeline) if logs is not None else None,
        failed_jobs=FailedJobsReader(),
        sessions=Sessions(token, settings.console.session_lifetime),
    )
    admin.cleanup_ctx.append(_console_ctx)
    admin.on_shutdown.append(_end_streams)
    admin.router.add_get("/", _to_console)
    admin.router.add_route("*", PREFIX, _dispatch)
    admin.router.add_route("*", PREFIX + "/{tail:.*}", _dispatch)


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(PREFIX)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    from sidecar.console.handlers import handle  # noqa: PLC0415 (the pages load on first use)

    return await handle(request)


async def _end_streams(app: web.Application) -> None:
    """Event streams end at shutdown instead of holding the listener open until their keep-alive."""
    app[CONSOLE].history.close()


async def _console_ctx(app: web.Application) -> AsyncIterator[None]:
    """The traffic sampler runs with the admin listener; Redis clients for failed jobs close with it."""
    state = app[CONSOLE]
    sampler = asyncio.create_task(state.traffic.run(), name="console-traffic-sampler")
    yield
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    if state.tail is not None:
        state.tail.detach()
    await state.failed_jobs.close()
