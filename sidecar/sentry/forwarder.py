"""``SentryForwarder``: the one object the log pipeline, the gateway and the relay hand events to.

The capture methods are synchronous and never block or raise: they build the event, de-duplicate,
scrub, and append it to the spool's bounded queue; the spool writer and the sender do all I/O in the
background. The relay's ``accept_envelope`` is the one awaitable entry: it returns once the envelope is
on disk, so what the relay acknowledges survives ``kill -9``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.correlation.index import CorrelationIndex
from sidecar.sentry.envelope import JSON_TYPES, Envelope, EnvelopeError, Item
from sidecar.sentry.events import (
    BuiltEvent,
    Deduper,
    error_level,
    event_from_gateway_5xx,
    event_from_log_record,
    field,
)
from sidecar.sentry.metrics import SentryMetrics, SentryStats
from sidecar.sentry.ratelimits import RateLimiter
from sidecar.sentry.scrub import Scrubber
from sidecar.sentry.seen import normalise
from sidecar.sentry.settings import SentrySettings
from sidecar.sentry.spool import Spool
from sidecar.sentry.transport import Sender

log = logging.getLogger(__name__)

_REQUEST_ID_TAGS = ("request_id", "requestId", "request.id", "x-request-id", "X-Request-ID")
# Envelope headers a relay must not pass on: ``dsn`` is replaced by the upstream one; ``sent_at`` would
# make Sentry "correct" the clock of events that merely waited in the spool.
_DROPPED_HEADERS = frozenset({"dsn", "sent_at", "length"})


class SentryForwarder:
    """Sink for app errors and the relay's way in; without ``app_dsn`` it is inert (captures return None)."""

    def __init__(self, settings: SentrySettings, correlation: CorrelationIndex | None = None) -> None:
        self.settings = settings
        self.dsn = settings.app
        self.correlation = correlation
        # told of every scrubbed event sent on ("forwarded": made here, "relayed": from the app's SDK)
        self.observers: list[Callable[[str, Mapping[str, Any]], object]] = []
        self.stats = SentryStats()
        self.limiter = RateLimiter()
        self.scrubber = Scrubber(settings.scrub.extra_keys, settings.scrub.allow_keys)
        self.deduper = Deduper(settings.dedupe_window)
        self.spool = Spool(
            settings.spool.dir,
            max_bytes=settings.spool.max_bytes,
            max_events=settings.spool.max_events,
            queue_events=settings.spool.queue_events,
            stats=self.stats,
            limiter=self.limiter,
        )
        self.sender = (
            Sender(
                self.spool,
                self.dsn,
                self.limiter,
                self.stats,
                max_in_flight=settings.max_in_flight,
                timeout=settings.send_timeout,
                backoff_initial=settings.backoff_initial,
                backoff_max=settings.backoff_max,
            )
            if self.dsn is not None
            else None
        )

    @property
    def enabled(self) -> bool:
        return self.dsn is not None

    def metrics(self) -> SentryMetrics:
        return SentryMetrics(self.stats, self.spool.size)

    async def start(self) -> None:
        if self.sender is None:
            return
        await self.spool.open()
        await self.sender.start()
        log.info(
            "sentry forwarding to the app project",
            extra={
                "dsn": str(self.dsn),
                "spool": str(self.spool.directory) if self.spool.durable else "memory",
            },
        )

    async def stop(self) -> None:
        if self.sender is None:
            return
        await self.sender.stop()
        await self.spool.close()

    # --- the sink interface -----------------------------------------------------------------------

    def capture_log_record(self, record: Any) -> str | None:
        """Turn an error/fatal log record into an event; returns its (or its duplicate's) event ID.

        Safe to call for every record: anything below error, or a disabled forwarder, returns ``None``.
        """
        if self.dsn is None or not self.settings.forward_log_errors:
            return None
        try:
            if error_level(record) is None:
                return None
            request_id = field(record, "request_id")
            timeline = self.correlation.get(str(request_id)) if self.correlation and request_id else None
            built = event_from_log_record(
                record,
                environment=self.settings.environment,
                release=self.settings.release,
                timeline=timeline,
            )
            return self._capture(built) if built is not None else None
        except Exception:  # a sink must never break the log pipeline
            log.exception("sentry: could not turn a log record into an event")
            return None

    def capture_gateway_5xx(
        self,
        *,
        method: str,
        route: str,
        status: int,
        request_id: str | None = None,
        trace_id: str | None = None,
        duration_seconds: float | None = None,
        error: str | None = None,
    ) -> str | None:
        """An event for a 5xx the gateway answered (when ``forward_gateway_5xx``); returns its event ID."""
        if self.dsn is None or not self.settings.forward_gateway_5xx or not 500 <= status <= 599:
            return None
        try:
            timeline = self.correlation.get(request_id) if self.correlation and request_id else None
            built = event_from_gateway_5xx(
                method=method,
                route=route,
                status=status,
                request_id=request_id,
                trace_id=trace_id,
                duration_seconds=duration_seconds,
                error=error,
                environment=self.settings.environment,
                release=self.settings.release,
                timeline=timeline,
            )
            return self._capture(built)
        except Exception:  # never break a request
            log.exception("sentry: could not turn a gateway 5xx into an event")
            return None

    def _capture(self, built: BuiltEvent) -> str:
        assert self.dsn is not None
        send, event_id, suppressed = self.deduper.check(built.fingerprint, built.event["event_id"])
        self._correlate(built.request_id, built.trace_id, event_id, built.title, deduplicated=not send)
        if not send:
            self.stats.count("deduplicated")
            return event_id
        if suppressed:
            built.event.setdefault("extra", {})["sidecar_duplicates_suppressed"] = suppressed
        event = self.scrubber.scrub(built.event)
        for observer in self.observers:
            observer("forwarded", event)
        envelope = Envelope.for_event(event, {"dsn": self.dsn.public})
        self.spool.put_nowait(envelope.to_bytes(), envelope.categories)
        return event_id

    def _correlate(
        self, request_id: str | None, trace_id: str | None, event_id: str, title: str, *, deduplicated: bool
    ) -> None:
        if self.correlation is None or not request_id:
            return
        record = {
            "event_id": event_id,
            "title": self.scrubber.scrub_text(title),
            "deduplicated": deduplicated,
        }
        self.correlation.add(request_id, "sentry", record, trace_id=trace_id)

    # --- the relay --------------------------------------------------------------------------------

    def prepare_relay_envelope(self, envelope: Envelope) -> Envelope:
        """Scrub every JSON item, apply the opaque-item policy, point the header at the upstream DSN.

        Raises ``EnvelopeError`` when an item that must be JSON is not.
        """
        prepared = self._scrub_envelope(envelope)
        self._after_scrub(prepared)
        return prepared.envelope

    async def relay(self, envelope: Envelope, *, offload: bool = False, within: float = 5.0) -> None:
        """Scrub and spool an envelope from the app's SDK; returns once it is durable.

        An envelope whose ``event_id`` was acknowledged before (an SDK re-sending because it never got
        the 200) is answered the same without being spooled again: exactly once across ``kill -9``.
        ``offload`` scrubs and serialises in a worker thread, so a multi-megabyte envelope never holds
        the event loop (and with it probes and proxied requests). Raises ``EnvelopeError`` or
        ``SpoolFull``/``TimeoutError``.
        """
        event_id = normalise(envelope.event_id)
        if event_id is not None and not self.spool.claim(event_id):
            self.stats.count("deduplicated")
            log.info(
                "sentry relay: event already acknowledged, not spooled again", extra={"event_id": event_id}
            )
            return
        try:
            if offload:
                prepared = await asyncio.to_thread(self._scrub_envelope, envelope)
            else:
                prepared = self._scrub_envelope(envelope)
            self._after_scrub(prepared)
            if prepared.envelope.items:
                await self.spool.put(prepared.data, prepared.envelope.categories, within, event_id)
        finally:
            if event_id is not None:
                self.spool.unclaim(event_id)

    def _scrub_envelope(self, envelope: Envelope) -> _Prepared:
        """Pure (safe in a worker thread): the scrubbed envelope, its bytes and what to record after."""
        assert self.dsn is not None
        items: list[Item] = []
        events: list[dict[str, Any]] = []
        opaque_dropped = 0
        for item in envelope.items:
            payload: Any
            if item.type in JSON_TYPES or (item.category == "default" and _looks_like_json(item.payload)):
                payload = self.scrubber.scrub(item.json())
                if item.type in ("event", "transaction") and isinstance(payload, dict):
                    events.append(payload)
                headers = {k: v for k, v in item.headers.items() if k != "length"}
                items.append(Item(headers, orjson.dumps(payload)))
            elif self.settings.relay.opaque_items == "forward":
                items.append(item)
            else:
                opaque_dropped += 1
        headers = self.scrubber.scrub(
            {k: v for k, v in envelope.headers.items() if k not in _DROPPED_HEADERS}
        )
        headers["dsn"] = self.dsn.public
        scrubbed = Envelope(headers, items)
        return _Prepared(scrubbed, scrubbed.to_bytes() if items else b"", events, opaque_dropped)

    def _after_scrub(self, prepared: _Prepared) -> None:
        if prepared.opaque_dropped:
            self.stats.drop("opaque_item", prepared.opaque_dropped, items=True)
        for event in prepared.events:
            self._correlate_sdk_event(event, prepared.envelope.event_id)
            for observer in self.observers:
                observer("relayed", event)

    def _correlate_sdk_event(self, event: Mapping[str, Any], envelope_event_id: str | None) -> None:
        tags = event.get("tags")
        tag_map = (
            dict(tags)
            if isinstance(tags, list) and all(isinstance(t, list) and len(t) == 2 for t in tags)
            else tags
        )
        request_id = field(tag_map, *_REQUEST_ID_TAGS) if isinstance(tag_map, Mapping) else None
        if request_id is None:
            headers = field(event, "request.headers")
            if isinstance(headers, Mapping):
                request_id = next((v for k, v in headers.items() if str(k).lower() == "x-request-id"), None)
            elif isinstance(headers, list):
                request_id = next(
                    (
                        p[1]
                        for p in headers
                        if isinstance(p, list) and len(p) == 2 and str(p[0]).lower() == "x-request-id"
                    ),
                    None,
                )
        event_id = event.get("event_id") or envelope_event_id
        if not request_id or not isinstance(event_id, str):
            return
        values = field(event, "exception.values")
        if isinstance(values, list) and values and isinstance(values[-1], Mapping):
            title = f"{values[-1].get('type')}: {values[-1].get('value')}"
        else:
            title = str(
                field(event, "message.formatted", "message", "logentry.formatted", "transaction") or "event"
            )
        trace_id = field(event, "contexts.trace.trace_id")
        self._correlate(
            str(request_id), str(trace_id) if trace_id else None, event_id, title, deduplicated=False
        )


@dataclass(slots=True)
class _Prepared:
    envelope: Envelope
    data: bytes
    events: list[dict[str, Any]]
    opaque_dropped: int


def _looks_like_json(payload: bytes) -> bool:
    head = payload.lstrip()[:1]
    if head not in (b"{", b"["):
        return False
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return True


__all__ = ["EnvelopeError", "SentryForwarder"]
