"""Starting one listener: runner, optional TLS, hostile-input limits and the rejection counter.

Every listener (health and metrics, admin, and the gateway when enabled) starts the same way, so
the limits in ``guard`` and TLS from ``tls`` apply to all of them alike.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from sidecar.serving.addresses import parse_listen
from sidecar.serving.guard import GuardedSite, ListenerLimits, RejectReason, install_log_filter

HEALTH_MAX_BODY = 64 * 1024
"""No health or metrics endpoint reads a body; anything larger than this is refused outright."""

_REJECTIONS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def rejection_recorder(registry: CollectorRegistry, listener: str) -> Callable[[RejectReason], None]:
    """Counts refused requests as ``sidecar_http_rejected_requests_total{listener,reason}``.

    One counter per registry (registries are per app, so tests get fresh ones); the label values
    are a closed set, so cardinality is bounded by construction.
    """
    counter = _REJECTIONS.get(registry)
    if counter is None:
        counter = Counter(
            "sidecar_http_rejected_requests",
            "Requests refused before reaching a handler (slow or oversized headers, oversized bodies).",
            ["listener", "reason"],
            registry=registry,
        )
        _REJECTIONS[registry] = counter
    bound = counter
    for reason in get_args(RejectReason):
        bound.labels(listener, reason)  # every series exists from the start, at 0

    def record(reason: RejectReason) -> None:
        bound.labels(listener, reason).inc()

    return record


@dataclass(slots=True)
class Listener:
    """A started listener: stop it with ``runner.cleanup()``."""

    name: str
    runner: web.AppRunner
    site: GuardedSite

    @property
    def port(self) -> int:
        return self.site.port


async def start_listener(
    app: web.Application,
    listen: str,
    *,
    name: str,
    limits: ListenerLimits,
    ssl_context: ssl.SSLContext | None = None,
    max_body_bytes: int | None = None,
    registry: CollectorRegistry | None = None,
    shutdown_timeout: float = 5.0,
) -> Listener:
    """Set up ``app`` on ``listen`` (``host:port``) behind the header guard."""
    install_log_filter()
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=limits.idle_timeout,
    )
    await runner.setup()
    host, port = parse_listen(listen)
    site = GuardedSite(
        runner,
        host,
        port,
        limits=limits,
        max_body_bytes=max_body_bytes,
        ssl_context=ssl_context,
        on_reject=rejection_recorder(registry, name) if registry is not None else None,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return Listener(name, runner, site)
