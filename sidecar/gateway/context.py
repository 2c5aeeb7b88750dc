"""What every gateway connection shares: the listener's state, the pool, metrics and the access log.

Settings as plain attributes, the write batch and ``closing`` come from ``ListenerState``. Recording
a finished request (RED metrics, access record, correlation index) happens here, in one place,
whatever way the request ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import OVERFLOW_ROUTE
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.access_log import AccessLog, json_string
from sidecar.gateway.correlation_ids import new_request_id
from sidecar.gateway.edge import build_edge
from sidecar.gateway.listener_state import ListenerState
from sidecar.gateway.metrics import GatewayMetrics, RedRecorder
from sidecar.gateway.outlier import PassiveCounters
from sidecar.gateway.query_mask import mask_query, path_of
from sidecar.gateway.settings import GatewaySettings
from sidecar.gateway.upstream import UpstreamPool
from sidecar.probing.health import HealthModel

if TYPE_CHECKING:
    from sidecar.gateway.exchange import ClientSide, Exchange
    from sidecar.tracing.spans import GatewaySpans

_NOT_ERRORS: Final = ("", "client_disconnect")
_NULL: Final = b"null"
_TARGET_CACHE: Final = 4096


class GatewayContext(ListenerState):
    """Shared state of one gateway listener."""

    def __init__(
        self,
        settings: GatewaySettings,
        http_metrics: HttpMetrics,
        registry: CollectorRegistry,
        correlation: CorrelationIndex,
        health: HealthModel,
    ) -> None:
        super().__init__(settings, health)
        self.http = http_metrics
        self.red = RedRecorder(http_metrics)
        self.access = AccessLog(settings.access_log, correlation, registry)
        self.connections: set[ClientSide] = set()
        self.pool = UpstreamPool(self)
        self.metrics = GatewayMetrics(
            registry,
            lambda: len(self.connections),
            lambda: len(self.pool.connections),
            lambda: len(self.pool.idle),
        )
        self.active = 0
        self.idle_event = asyncio.Event()
        self.first_sighting = http_metrics.first_sighting
        self.upstream_failed = self.metrics.upstream_errors.labels
        self.now = time.time
        self._targets: dict[bytes, tuple[str, bytes, bytes]] = {}
        self.tracing: GatewaySpans | None = None  # spans per request, set when tracing is on
        self.sample_new_trace: Callable[[str], bytes] | None = None  # traceparent flags per new trace
        # rate limiting and security headers (docs/edge-protections.md); None when neither is configured
        self.edge = build_edge(settings, registry, http_metrics.routes, self.writes)
        self.passive = PassiveCounters()  # the app's passive health (probing.outlier arms it)

    def record(self, ex: Exchange, ended: float) -> None:
        """RED metrics, passive app health, access line and correlation entry for a finished request."""
        duration = ended - ex.started
        target = ex.target
        known = self._targets.get(target)
        if known is None:
            known = self._describe(target)
        route, route_json, path_json = known
        error = ex.error
        status = ex.status
        self.passive.observe(status, error)
        self.red.observe(
            ex.method,
            route,
            status,
            "" if error in _NOT_ERRORS else error,
            duration,
            ex.bytes_in,
            ex.bytes_out,
            ex.trace_id,
        )
        if self.tracing is not None:
            self.tracing.record(ex, ended, route, error)
        at = self.now()
        access = self.access
        request_id = ex.request_id
        line = access.encoder.encode(
            access.clock.iso_bytes(at),
            request_id,
            ex.trace_id,
            ex.method,
            route_json,
            path_json,
            status,
            duration,
            ex.upstream_ended - ex.upstream_started if ex.upstream_ended else None,
            ex.bytes_in,
            ex.bytes_out,
            ex.client,
            ex.user_agent,
            error,
        )
        access.emit(request_id, line, status, error not in _NOT_ERRORS, at)

    def _describe(self, target: bytes) -> tuple[str, bytes, bytes]:
        """(route label, route and masked path as JSON) of a request target; cached unless overflowed.

        An overflowed route is looked up every time, so the route normaliser counts every request
        folded into the overflow value, as it promises.
        """
        route = self.red.route(path_of(target))
        known = (route, json_string(route), json_string(mask_query(target)))
        if route != OVERFLOW_ROUTE:
            if len(self._targets) >= _TARGET_CACHE:
                self._targets.clear()
            self._targets[target] = known
        return known

    def record_rejected(
        self, status: int, reason: str, peer: str, method: bytes, target: bytes, request_id: str | None
    ) -> str:
        """Access line for a request refused before its headers were complete (no RED: no route yet)."""
        self.metrics.rejected.labels(reason).inc()
        request_id = request_id or new_request_id()
        at = self.now()
        access = self.access
        line = access.encoder.encode(
            access.clock.iso_bytes(at),
            request_id,
            None,
            method,
            _NULL,
            json_string(mask_query(target)) if target else _NULL,
            status,
            None,
            None,
            0,
            0,
            peer,
            None,
            reason,
        )
        access.emit(request_id, line, status, True, at)
        return request_id

    def connection_closed(self, conn: ClientSide) -> None:
        self.connections.discard(conn)
        if self.stopping and not self.connections:
            self.idle_event.set()
