"""What every gateway connection shares: the listener's state, the pool, metrics and the access log.

Settings as plain attributes, the write batch and ``closing`` come from ``ListenerState``. Recording
a finished request (RED metrics, access record, correlation index) happens here, in one place,
whatever way the request ended, and after the loop iteration's writes (``account``): no response
waits for its own access line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import GATEWAY_SOURCE, HttpMetrics
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.access_log import AccessLog, json_string
from sidecar.gateway.correlation_ids import new_request_id
from sidecar.gateway.edge import build_edge
from sidecar.gateway.listener_state import ListenerState, native_scanners
from sidecar.gateway.metrics import GatewayMetrics, RedRecorder
from sidecar.gateway.outlier import PassiveCounters
from sidecar.gateway.query_mask import mask_query, path_of
from sidecar.gateway.settings import GatewaySettings
from sidecar.gateway.upstream import UpstreamPool
from sidecar.probing.health import HealthModel

if TYPE_CHECKING:
    from sidecar.gateway.exchange import ClientSide, Exchange
    from sidecar.tracing.spans import GatewaySpans

log = logging.getLogger(__name__)

_NOT_ERRORS: Final = ("", "client_disconnect")
_NULL: Final = b"null"
_TARGET_GENERATION: Final = 2048  # targets per generation: the cache holds the last two
_ROUTE_JSON_CACHE: Final = 4096  # routes are capped (routes.max_routes), so this only bounds a mistake
# Printable ASCII without a quote, backslash, query or fragment: its JSON string is itself in quotes,
# and no query value needs masking (mask_query would return it unchanged).
_PLAIN_TARGET: Final = re.compile(rb"[!$->@-\[\]-~]+")
_ZEROS: Final = bytes.maketrans(b"123456789", b"000000000")  # a target's shape: its digits as 0
_SHAPES: Final = 4096  # at most this many shapes of at most _SHAPE_BYTES each (about 1 MB)
_SHAPE_BYTES: Final = 256


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
        self.upstream_failed = self.metrics.upstream_errors.labels
        self.now = time.time
        # target -> (route, route JSON, masked path JSON, folded into the overflow route); two
        # generations, so a full cache forgets the targets not seen lately, never all at once
        self._targets: dict[bytes, tuple[str, bytes, bytes, bool]] = {}
        self._targets_before: dict[bytes, tuple[str, bytes, bytes, bool]] = {}
        self._route_json: dict[str, bytes] = {}
        # shape of a plain origin-form target -> (route, route JSON, overflowed), where the route
        # normaliser says the shape decides the route: /items/1 ... /items/99999 share one entry
        self._shapes: dict[bytes, tuple[str, bytes, bool]] = {}
        self.tracing: GatewaySpans | None = None  # spans per request, set when tracing is on
        self.sample_new_trace: Callable[[str], bytes] | None = None  # traceparent flags per new trace
        # rate limiting and security headers (docs/edge-protections.md); None when neither is configured
        self.edge = build_edge(settings, registry, http_metrics.routes, self.writes)
        # the rate limiter and the security headers read fields one by one: with them, llhttp reads heads
        if self.edge is None:
            self.scan_request, self.scan_response = native_scanners()
        self.passive = PassiveCounters()  # the app's passive health (probing.outlier arms it)
        # what the loop iteration saw and finished, accounted for after its writes have left
        self._sighted: list[str] = []  # IDs the clients sent
        self._made: list[str] = []  # IDs the gateway made up
        self._finished: list[Exchange] = []
        self.writes.later = self.account

    def sighted(self, request_id: str, made: bool) -> None:
        """A request's ID, to remember (``HttpMetrics.first_sighting``) before the app can log it.

        Its head leaves for the app with this iteration's writes and the ID is remembered right after,
        before the next read: an app's log line with the ID can only come later. ``made``: the gateway
        made the ID up, so nobody can have used it before (``HttpMetrics.remember``).
        """
        if made:
            self._made.append(request_id)
        else:
            self._sighted.append(request_id)
        self.writes.after_writes()

    def finished(self, ex: Exchange, ended: float) -> None:
        """``ex`` ended at ``ended``: record it once this iteration's writes (its response) have left."""
        ex.ended = ended
        self._finished.append(ex)
        self.writes.after_writes()

    def account(self) -> None:
        """Remember the iteration's request IDs and record its finished requests (``WriteBatch.later``)."""
        made = self._made
        if made:
            self._made = []
            http = self.http
            for request_id in made:  # called on its object: compiled, a native call, no bound method
                http.remember(request_id)
        sighted = self._sighted
        if sighted:
            self._sighted = []
            http = self.http
            for request_id in sighted:
                http.first_sighting(request_id, GATEWAY_SOURCE)
        finished = self._finished
        if finished:
            self._finished = []
            at = self.now()  # the access lines' time: one clock read for the iteration's requests
            for ex in finished:
                try:
                    self.record(ex, ex.ended, at)
                except Exception:  # one request's record must not lose the others'
                    log.exception(
                        "gateway: recording a finished request failed",
                        extra={"request_id": ex.request_id, "trace_id": ex.trace_id},
                    )

    def record(self, ex: Exchange, ended: float, at: float) -> None:
        """RED metrics, passive app health, access line and correlation entry for a finished request.

        ``at``: the wall-clock time of its access line (read once per loop iteration by ``account``).
        """
        duration = ended - ex.started
        target = ex.target
        known = self._targets.get(target)
        if known is None:
            known = self._recall(target)
        elif known[3]:  # folded into the overflow route: counted per request, as the normaliser does
            self.http.count_overflow()
        route, route_json, path_json, _ = known
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
        access = self.access
        request_id = ex.request_id
        entry = access.encoder.encode(
            at,
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
            ex.request_id_bytes if ex.request_id_made else None,
        )
        access.emit(request_id, entry, status, error not in _NOT_ERRORS, at)

    def _recall(self, target: bytes) -> tuple[str, bytes, bytes, bool]:
        """A target missing from the current generation: from the previous one, else described anew.

        Either way it lands in the current generation; when that is full it becomes the previous one
        and the oldest generation is dropped. The cost per request stays flat however many distinct
        targets there are: a miss costs a route lookup by path shape and a check of the target's bytes.
        """
        known = self._targets_before.get(target)
        if known is None:
            by_shape = self._shapes.get(target.translate(_ZEROS))
            if by_shape is not None:  # a new target of a known shape: its own path, the shape's route
                route, route_json, overflowed = by_shape
                if overflowed:
                    self.http.count_overflow()
                return route, route_json, b'"%b"' % target, overflowed  # plain: checked for the shape
            known = self._describe(target)  # the normaliser counts an overflow itself
        elif known[3]:
            self.http.count_overflow()
        targets = self._targets
        if len(targets) >= _TARGET_GENERATION:
            self._targets_before = targets
            targets = self._targets = {}
        targets[target] = known
        return known

    def _describe(self, target: bytes) -> tuple[str, bytes, bytes, bool]:
        """(route label, route and masked path as JSON, whether the route overflowed) of a target."""
        before = self.http.routes.overflowed
        path = path_of(target)
        route = self.red.route(path)
        route_path = path.decode("latin-1")  # as RedRecorder.route hands it to the normaliser
        overflowed = self.http.routes.overflowed != before
        route_json = self._route_json.get(route)
        if route_json is None:
            route_json = json_string(route)
            if len(self._route_json) < _ROUTE_JSON_CACHE:
                self._route_json[route] = route_json
        if _PLAIN_TARGET.fullmatch(target) is not None:
            path_json = b'"%b"' % target
            # Digits are plain, so every target of this shape is plain too; cache the route by shape
            # when the normaliser says the shape decides it (origin form: the path is the target).
            if (
                target[:1] == b"/"
                and len(target) <= _SHAPE_BYTES
                and len(self._shapes) < _SHAPES
                and self.http.routes.by_shape(route_path)
            ):
                self._shapes[target.translate(_ZEROS)] = (route, route_json, overflowed)
        else:
            path_json = json_string(mask_query(target))
        return route, route_json, path_json, overflowed

    def record_rejected(
        self, status: int, reason: str, peer: str, method: bytes, target: bytes, request_id: str | None
    ) -> str:
        """Access line for a request refused before its headers were complete (no RED: no route yet)."""
        self.metrics.rejected.labels(reason).inc()
        request_id = request_id or new_request_id()
        at = self.now()
        access = self.access
        entry = access.encoder.encode(
            at,
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
        access.emit(request_id, entry, status, True, at)
        return request_id

    def connection_closed(self, conn: ClientSide) -> None:
        self.connections.discard(conn)
        if self.stopping and not self.connections:
            self.idle_event.set()
