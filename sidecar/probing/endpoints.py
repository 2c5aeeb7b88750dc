"""/livez, /readyz, /readyz/<check>, /startupz, /health, /metrics: from memory, never from dependencies."""

from __future__ import annotations

import orjson
from aiohttp import web

from sidecar.app_keys import HEALTH, REGISTRY, SCHEDULER
from sidecar.probing.health import Readiness
from sidecar.serving.errors import answering_client_errors
from sidecar.serving.exposition import render

HEALTH_JSON = "application/health+json"
_TEXT = "text/plain"
_TEXT_HEADERS = {"Content-Type": "text/plain; charset=utf-8"}  # what ``text=`` with ``_TEXT`` sets


async def livez(request: web.Request) -> web.Response:
    """The sidecar itself works: its loop answers and no check loop has died."""
    dead = [name for name, runner in request.app[SCHEDULER].runners.items() if runner.crashed]
    if dead:
        return web.Response(status=500, text="check loops stopped: " + ", ".join(dead), content_type=_TEXT)
    return web.Response(text="ok", content_type=_TEXT)


async def readyz(request: web.Request) -> web.Response:
    """Ready or not, from the answer ``HealthModel`` encoded when readiness last changed."""
    health = request.app[HEALTH]
    # query_string first: ``request.query`` parses the query into a multidict, on every probe
    if request.query_string and "verbose" in request.query:
        readiness = health.readiness
        return web.Response(status=readiness.status, text=_verbose(request, readiness), content_type=_TEXT)
    status, body = health.answer
    return web.Response(status=status, body=body, headers=_TEXT_HEADERS)


async def startupz(request: web.Request) -> web.Response:
    """For a Kubernetes ``startupProbe``: 200 once every check with a start-up grace (the app) passed.

    Sticky: after start-up, a failing app is readiness's business, so a startupProbe never restarts it.
    """
    started, waiting = request.app[HEALTH].started
    if started:
        return web.Response(text="ok", content_type=_TEXT)
    return web.Response(status=503, text="starting: " + ", ".join(waiting), content_type=_TEXT)


async def readyz_check(request: web.Request) -> web.Response:
    name = request.match_info["check"]
    health = request.app[HEALTH]
    if name not in health.states:
        return web.Response(status=404, text=f"no check named {name!r}", content_type=_TEXT)
    ready = health.check_ready(name)
    if ready is None:
        return web.Response(status=503, text=f"{name} starting", content_type=_TEXT)
    if health.draining:
        return web.Response(status=503, text="draining", content_type=_TEXT)
    ejected = health.states[name].ejected
    text = f"{name} ok" if ready else f"{name} failing ({ejected})" if ejected else f"{name} failing"
    return web.Response(status=200 if ready else 503, text=text, content_type=_TEXT)


async def health_document(request: web.Request) -> web.Response:
    document = request.app[HEALTH].health_document()
    status = 503 if document["status"] == "fail" else 200
    return web.Response(
        status=status,
        body=orjson.dumps(document),
        headers={"Content-Type": HEALTH_JSON, "Cache-Control": "no-store"},
    )


async def metrics(request: web.Request) -> web.Response:
    body, headers = await render(
        request.app[REGISTRY], request.headers.get("Accept", ""), request.headers.get("Accept-Encoding", "")
    )
    return web.Response(body=body, headers=headers)


def _verbose(request: web.Request, readiness: Readiness) -> str:
    """Kubernetes-style listing: ``[+]name ok`` / ``[-]name failed: reason``."""
    health = request.app[HEALTH]
    store = health.store
    lines = []
    for name, state in health.states.items():
        result = store.latest(name)
        tag = "" if state.critical else " (not critical)"
        if state.ejected:
            lines.append(f"[-]{name} ejected: {state.ejected}{tag}")
        elif state.ready is None:
            why = f": {result.reason}: {result.output}" if result and result.reason else ""
            lines.append(f"[-]{name} starting{why}{tag}")
        elif state.ready:
            detail = f" ({result.status.value})" if result and result.status.value != "pass" else ""
            lines.append(f"[+]{name} ok{detail}{tag}")
        else:
            why = f": {result.reason}: {result.output}" if result else ""
            lines.append(f"[-]{name} failed{why}{tag}")
    if health.draining:
        lines.append("[-]draining")
    lines.append("readyz check passed" if readiness.ready else "readyz check failed")
    return "\n".join(lines) + "\n"


def add_routes(app: web.Application) -> None:
    """Every route answers client errors itself (``answering_client_errors``): the app has no middleware."""
    for path, handler in (
        ("/livez", livez),
        ("/readyz", readyz),
        ("/readyz/{check}", readyz_check),
        ("/startupz", startupz),
        ("/health", health_document),
        ("/metrics", metrics),
    ):
        app.router.add_get(path, answering_client_errors(handler))
