"""The sidecar's own errors, through sentry-sdk, to ``SENTRY_DSN`` (``sentry.dsn``).

``sentry_sdk`` is imported here and only when a DSN is configured: it costs several megabytes of RSS
that a sidecar without Sentry should not pay. Only the aiohttp integration is added (the auto-enabled
ones would patch the Redis and database clients the collectors use), default PII is never sent, trace
headers are never added to outgoing requests (the gateway must not alter the app's traffic), and every
event goes through the same scrubber as the app's events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sidecar import __version__
from sidecar.sentry.dsn import Dsn
from sidecar.sentry.scrub import Scrubber
from sidecar.sentry.settings import SentrySettings

log = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0


def init_own_errors(settings: SentrySettings) -> Callable[[], Awaitable[None]] | None:
    """Initialise sentry-sdk when ``settings.dsn`` is set; returns the coroutine function that closes it."""
    if settings.dsn is None:
        return None
    import sentry_sdk  # noqa: PLC0415  (lazy: only when configured)
    from sentry_sdk.integrations.aiohttp import AioHttpIntegration  # noqa: PLC0415

    scrubber = Scrubber(settings.scrub.extra_keys, settings.scrub.allow_keys)
    sentry_sdk.init(
        dsn=settings.dsn.get_secret_value(),
        environment=settings.environment,
        release=settings.release or f"observability-sidecar@{__version__}",
        send_default_pii=False,
        integrations=[AioHttpIntegration()],
        auto_enabling_integrations=False,
        trace_propagation_targets=[],
        before_send=scrubber.before_send,
        before_send_transaction=scrubber.before_send,
        max_breadcrumbs=50,
        shutdown_timeout=FLUSH_SECONDS,
    )
    log.info("own errors go to Sentry", extra={"dsn": str(Dsn.parse(settings.dsn.get_secret_value()))})

    async def close() -> None:
        client = sentry_sdk.get_client()
        await asyncio.to_thread(client.close, timeout=FLUSH_SECONDS)

    return close
