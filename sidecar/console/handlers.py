"""The console's HTTP side: one dispatcher for every ``/console`` URL, its guards and its headers.

Loaded on the first console request (``wiring``). Every answer carries a strict Content-Security-Policy
(scripts and styles only from this listener, no inline script or style, no framing), ``no-store`` and
``nosniff``. Pages need a logged-in session or the bearer token; POSTs also need the CSRF token and a
same-origin ``Origin``. A malformed request gets a 4xx, never a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from urllib.parse import quote

import orjson
from aiohttp import web

from sidecar.console import views
from sidecar.console.auth import COOKIE, CSRF_FIELD, CSRF_HEADER, Session
from sidecar.console.render import esc, layout
from sidecar.console.state import CONSOLE, ConsoleState
from sidecar.core.redaction import redact_text

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
MAX_FORM_BYTES = 16 * 1024

Page = Callable[[web.Request, ConsoleState, Session], Awaitable[web.StreamResponse]]


async def handle(request: web.Request) -> web.StreamResponse:
    """Route one console request; every answer leaves with the console's security headers."""
    try:
        response = await _route(request)
    except web.HTTPException as exc:
        response = _plain(exc)
    _harden(response)
    return response


def _plain(exc: web.HTTPException) -> web.Response:
    """An aiohttp HTTP exception as an ordinary response (returning the exception is deprecated)."""
    response = web.Response(status=exc.status, reason=exc.reason, text=exc.text, headers=exc.headers)
    for name, morsel in exc.cookies.items():
        response.cookies[name] = morsel
    return response


def _harden(response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"  # "no-referrer" would make Chrome send "Origin: null"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers.setdefault("Cache-Control", "no-store")


async def _route(request: web.Request) -> web.StreamResponse:
    state = request.app[CONSOLE]
    path = request.path.rstrip("/") or "/console"
    if path.startswith("/console/static/"):
        return _static(request, path.removeprefix("/console/static/"))
    sessions = state.sessions
    session = sessions.read(request.cookies.get(COOKIE))
    fresh: str | None = None
    if session is None:
        session, fresh = sessions.new(logged_in=sessions.open)
    form = await _form(request) if request.method == "POST" else {}
    if request.method == "POST" and not _post_allowed(request, state, session, form):
        response: web.StreamResponse = _message(
            state,
            session,
            403,
            "Refused",
            "This form is stale or came from another site: reload the page and try again.",
        )
    elif path == "/console/login":
        response = await _login(request, state, session, form)
    elif not sessions.allowed(request, session):
        response = _unauthorized(request)
    else:
        response = await _page(request, state, session, path)
    if isinstance(response, web.HTTPException):
        response = _plain(response)
    if fresh is not None:
        sessions.set_cookie(response, request, fresh)
    return response


def _post_allowed(request: web.Request, state: ConsoleState, session: Session, form: dict[str, str]) -> bool:
    if not state.sessions.same_origin(request):
        return False
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        presented = form.get(CSRF_FIELD, "")
    return state.sessions.csrf_ok(session, presented)


async def _form(request: web.Request) -> dict[str, str]:
    """The urlencoded form of a POST (read once, bounded); anything else is an empty form."""
    form: dict[str, str] = {}
    if (
        request.content_type == "application/x-www-form-urlencoded"
        and (request.content_length or 0) <= MAX_FORM_BYTES
    ):
        try:
            data = await request.post()
        except (ValueError, UnicodeDecodeError):
            data = None
        if data is not None:
            form = {k: v for k, v in data.items() if isinstance(v, str)}
    return form


def _unauthorized(request: web.Request) -> web.StreamResponse:
    if (
        request.method == "GET"
        and "part" not in request.query
        and not request.path.startswith("/console/api/")
    ):
        target = request.path_qs if len(request.path_qs) < 512 else "/console"
        raise web.HTTPSeeOther(f"/console/login?next={quote(target, safe='')}")
    return web.json_response(
        {"error": "log in to the console, or send 'Authorization: Bearer <admin_token>'"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="sidecar-admin"'},
    )


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _full(
    state: ConsoleState, session: Session, page: str, title: str, body: str, status: int = 200
) -> web.Response:
    return _html(
        layout(
            page=page,
            title=title,
            body=body,
            service=state.settings.service_name,
            csrf=state.sessions.csrf_token(session),
            logout=not state.sessions.open and session.logged_in,
        ),
        status,
    )


def _message(state: ConsoleState, session: Session, status: int, title: str, text: str) -> web.Response:
    return _full(
        state, session, "message", title, f'<h1>{esc(title)}</h1><p role="alert">{esc(text)}</p>', status
    )


async def _login(
    request: web.Request, state: ConsoleState, session: Session, form: dict[str, str]
) -> web.StreamResponse:
    sessions = state.sessions
    target = request.query.get("next", "/console")
    if not target.startswith("/console") or target.startswith("//"):
        target = "/console"
    if request.method == "POST":
        if sessions.throttled():
            return _login_form(state, session, target, "Too many wrong tokens: wait ten seconds.", 429)
        if not sessions.token_ok(form.get("token", "")):
            return _login_form(state, session, target, "That is not the admin token.", 401)
        _fresh, cookie = sessions.new(logged_in=True)
        response = web.HTTPSeeOther(target)
        sessions.set_cookie(response, request, cookie)
        return response
    if request.method != "GET":
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    if sessions.allowed(request, session):
        raise web.HTTPSeeOther(target)
    return _login_form(state, session, target, None, 200)


def _login_form(
    state: ConsoleState, session: Session, target: str, error: str | None, status: int
) -> web.Response:
    alert = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        "<h1>Log in</h1><p>The console is behind the admin token (<code>admin_token</code>).</p>"
        f'{alert}<form method="post" action="/console/login?next={quote(target, safe="")}" class="login">'
        f'<input type="hidden" name="{CSRF_FIELD}" value="{esc(state.sessions.csrf_token(session))}">'
        '<label for="token">Admin token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button type="submit" class="primary">Log in</button></form>'
    )
    return _full(state, session, "login", "Log in", body, status)


async def _page(request: web.Request, state: ConsoleState, session: Session, path: str) -> web.StreamResponse:
    if request.method == "POST":
        action = _ACTIONS.get(path)
        if action is None:
            raise web.HTTPNotFound()
        return await action(request, state, session)
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    page = _PAGES.get(path)
    if page is None:
        return _message(state, session, 404, "Not found", "There is no such console page.")
    return await page(request, state, session)


# --- pages -----------------------------------------------------------------------------------------


def _wants_live(request: web.Request) -> bool:
    return request.query.get("part") == "live"


async def _overview(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    if _wants_live(request):
        return _html(views.overview_live(state))
    return _full(
        state, session, "overview", "Overview", views.overview(state, state.sessions.csrf_token(session))
    )


async def _traffic(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    window = views.window_of(request.query.get("window"))
    inner = await views.traffic_live(state, window)
    if _wants_live(request):
        return _html(inner)
    return _full(state, session, "traffic", "Traffic", views.traffic(inner, window))


async def _queues(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    inner = views.queues_live(state)
    if _wants_live(request):
        return _html(inner)
    return _full(state, session, "queues", "Queues", views.queues(inner))


async def _failed_jobs(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    name = request.query.get("check", "")
    queue = request.query.get("queue", "")[:255]
    check = next((c for c in state.settings.checks if c.name == name and c.kind == "bullmq"), None)
    if check is None or not queue:
        return _message(state, session, 404, "Not found", "No BullMQ check and queue of that name.")
    error = None
    jobs = None
    try:
        jobs = await state.failed_jobs.read(check, queue)
    except Exception as exc:  # a broker error is shown, never raised
        error = f"Could not read the failed jobs: {redact_text(type(exc).__name__ + ': ' + str(exc))[:300]}"
    return _full(
        state, session, "queues", f"Failed jobs of {queue}", views.failed_jobs(name, queue, jobs, error)
    )


async def _errors(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    inner = views.errors_live(state)
    if _wants_live(request):
        return _html(inner)
    return _full(state, session, "errors", "Errors", views.errors(inner))


async def _request(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    query = request.query.get("q", "").strip()[: views.MAX_QUERY]
    return _full(state, session, "request", "Request", await views.request_page(state, query))


async def _logs(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    return _full(state, session, "logs", "Logs", views.logs_page(state))


async def _logs_api(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    try:
        after = int(request.query.get("after", "0"))
    except ValueError:
        after = 0
    body = views.tail_lines(
        state, after, request.query.get("level", ""), request.query.get("source", "")[:64]
    )
    return web.Response(body=orjson.dumps(body), content_type="application/json")


MAX_STREAMS = 16
KEEPALIVE = 15.0
_streams = [0]


async def _events(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    """Server-Sent Events for the Overview: ``checks`` whenever a check's status or the readiness verdict
    changes, so a row turns red as soon as its probe fails rather than at the next poll. Bounded:
    ``MAX_STREAMS`` at once, and a burst of changes is one event."""
    if _streams[0] >= MAX_STREAMS:
        return web.json_response({"error": "too many console streams; the page polls instead"}, status=503)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    _harden(response)
    _streams[0] += 1
    try:
        await response.prepare(request)
        history = state.history
        seen = history.version
        await response.write(b"retry: 3000\n\n")
        while True:
            version = await history.wait_change(seen, KEEPALIVE)
            if history.closing:
                break
            if version == seen:
                await response.write(b": keep-alive\n\n")
                continue
            seen = version
            await response.write(b"event: checks\ndata: %d\n\n" % version)
            await asyncio.sleep(0.2)  # a burst of results (many checks at once) becomes one event
    except ConnectionResetError:  # the tab was closed
        pass
    finally:
        _streams[0] -= 1
    return response


_PAGES: dict[str, Page] = {
    "/console": _overview,
    "/console/traffic": _traffic,
    "/console/queues": _queues,
    "/console/queues/failed": _failed_jobs,
    "/console/errors": _errors,
    "/console/request": _request,
    "/console/logs": _logs,
    "/console/api/logs": _logs_api,
    "/console/api/events": _events,
}


# --- actions (POST, CSRF-checked before they run) --------------------------------------------------


def _done(request: web.Request, body: dict[str, object]) -> web.StreamResponse:
    if request.headers.get(CSRF_HEADER) is not None:  # the page's script: it re-renders itself
        return web.json_response(body)
    raise web.HTTPSeeOther("/console")


async def _drain(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    state.health.drain()
    log.warning("drained from the console: /readyz answers 503 until undrained")
    return _done(request, {"draining": True})


async def _undrain(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    state.health.undrain()
    log.warning("undrained from the console")
    return _done(request, {"draining": False})


async def _logout(request: web.Request, state: ConsoleState, session: Session) -> web.StreamResponse:
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/console")
    return response


_ACTIONS: dict[str, Page] = {
    "/console/drain": _drain,
    "/console/undrain": _undrain,
    "/console/logout": _logout,
}


# --- static files (shipped in the package, no build step) ------------------------------------------


ASSETS = frozenset({"console.css", "console.js"})


@cache
def _asset(name: str) -> tuple[bytes, str]:
    data = (STATIC / name).read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


def _static(request: web.Request, name: str) -> web.StreamResponse:
    found = _asset(name) if name in ASSETS else None
    if found is None:
        raise web.HTTPNotFound()
    data, tag = found
    etag = f'"{tag}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=data, content_type=STATIC_TYPES[Path(name).suffix], charset="utf-8", headers=headers
    )
