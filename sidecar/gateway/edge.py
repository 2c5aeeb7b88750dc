"""Edge protections of the gateway: rate limiting and security headers, as the proxy sees them.

The proxy knows this one object (``GatewayContext.edge``, ``None`` when neither is configured, so an
unconfigured gateway pays one attribute check per step): ``inspect`` when a request head is complete,
``response_fields`` when the app's response head is written. Per-request rate-limit state lives on
the exchange (``Exchange.limits``, see ``ratelimit.limiter``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from sidecar.core.routes import RouteNormaliser
from sidecar.gateway.ratelimit.limiter import RateLimiter
from sidecar.gateway.ratelimit.metrics import RateLimitMetrics
from sidecar.gateway.security_headers import SecurityHeaders
from sidecar.gateway.write_batch import WriteBatch

if TYPE_CHECKING:
    from sidecar.gateway.exchange import Exchange
    from sidecar.gateway.settings import GatewaySettings


class EdgeProtections:
    """Rate limiter and security headers of one gateway (either may be absent)."""

    def __init__(self, limiter: RateLimiter | None, security: SecurityHeaders | None) -> None:
        self.limiter = limiter
        self.security = security

    def inspect(self, ex: Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        """A request head is complete: start its rate-limit decisions (``ex.limits``)."""
        if self.limiter is not None:
            self.limiter.inspect(ex, headers)

    def response_fields(self, ex: Exchange, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Lines to add to the app's response head (may remove fields such as ``X-Powered-By``)."""
        if status == 101:
            return b""
        security = self.security
        extra = security.fields(ex.target, headers) if security is not None else b""
        limits = ex.limits
        if limits is not None:
            extra += limits.response_fields()
        return extra

    def start(self) -> None:
        if self.limiter is not None:
            self.limiter.start()

    async def close(self) -> None:
        if self.limiter is not None:
            await self.limiter.close()


def build_edge(
    settings: GatewaySettings, registry: CollectorRegistry, routes: RouteNormaliser, writes: WriteBatch
) -> EdgeProtections | None:
    """Register the rate-limit metrics (always: names are public API) and compile what is configured."""
    metrics = RateLimitMetrics(registry)
    limiter = None
    if settings.rate_limits:
        limiter = RateLimiter(settings.rate_limits, settings.rate_limit_redis, metrics, routes, writes)
    security = SecurityHeaders(settings.security_headers) if settings.security_headers.enabled else None
    if limiter is None and security is None:
        return None
    return EdgeProtections(limiter, security)
