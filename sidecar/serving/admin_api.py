"""Admin endpoints (drain, debug): bound to loopback by default, bearer-token protected when configured."""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from sidecar.app_keys import HEALTH, SETTINGS, STORE
from sidecar.config import Settings
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore
from sidecar.sentry.relay import is_relay_request
from sidecar.serving.errors import HANDLER_ARGS, client_errors
from sidecar.serving.security import bearer_matches


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Constant-time bearer check when ``admin_token`` is set; every admin route is behind it."""
    token = request.app[SETTINGS].admin_token
    # The Sentry relay routes are the one exception: SDKs cannot send a bearer token; they present
    # the app DSN's sentry_key instead, which the relay checks.
    if (
        token is not None
        and not is_relay_request(request)
        and not _console_guards_itself(request)
        and not bearer_matches(request.headers.get("Authorization", ""), token.get_secret_value())
    ):
        return web.json_response(
            {"error": "admin endpoints need 'Authorization: Bearer <admin_token>'"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="sidecar-admin"'},
        )
    return await handler(request)


def _console_guards_itself(request: web.Request) -> bool:
    """The console's pages check a login cookie or the bearer token themselves (``sidecar.console``)."""
    path = request.path
    return request.app[SETTINGS].console.enabled and (
        path in ("/", "/console") or path.startswith("/console/")
    )


async def drain(request: web.Request) -> web.Response:
    """Take the app out of rotation now (Envoy's /healthcheck/fail)."""
    request.app[HEALTH].drain()
    return web.json_response({"draining": True})


async def undrain(request: web.Request) -> web.Response:
    """Put it back (Envoy's /healthcheck/ok)."""
    request.app[HEALTH].undrain()
    return web.json_response({"draining": False})


async def debug_checks(request: web.Request) -> web.Response:
    """Every check's latest result and hysteresis state, for humans on call."""
    store = request.app[STORE]
    health = request.app[HEALTH]
    body = []
    for name, kind in store.checks():
        result = store.latest(name)
        state = health.states.get(name)
        entry: dict[str, object] = {
            "check": name,
            "kind": kind,
            "critical": state.critical if state else None,
            "ready": state.ready if state else None,
            "started": state.started if state else None,
            "ejected": (state.ejected or None) if state else None,
            "failures": dict(store.failures(name)),
        }
        if result is not None:
            entry |= {
                "status": result.status.value,
                "reason": result.reason.value if result.reason else None,
                "output": result.output,
                "duration_seconds": result.duration_seconds,
                "finished_at": result.finished_at,
                "measurements": {
                    k: {"value": m.value, "unit": m.unit} for k, m in result.measurements.items()
                },
                "info": result.info,
            }
        body.append(entry)
    return web.Response(body=orjson.dumps({"checks": body}), content_type="application/json")


def create_admin_app(settings: Settings, store: ResultStore, health: HealthModel) -> web.Application:
    """The admin listener's app; shares the core app's state objects."""
    app = web.Application(
        middlewares=[client_errors, require_token], client_max_size=1024**2, handler_args=HANDLER_ARGS
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[HEALTH] = health
    app.router.add_post("/drain", drain)
    app.router.add_post("/undrain", undrain)
    app.router.add_get("/debug/checks", debug_checks)
    return app
