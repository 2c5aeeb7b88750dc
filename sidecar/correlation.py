"""A bounded in-memory index of everything seen per request ID: access records, log lines, Sentry events.

Bounded twice: by the number of request IDs and by the bytes held. The oldest request is evicted
first, and evictions are counted, so a burst of traffic cannot grow memory without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_ENTRIES_PER_REQUEST = 200


@dataclass(slots=True)
class TimelineEntry:
    """One thing that happened to a request, from one source."""

    at: float  # wall-clock seconds
    kind: str  # "access", "log", "sentry", "span"
    record: dict[str, Any]
    size: int


@dataclass(slots=True)
class RequestTimeline:
    trace_id: str | None = None
    entries: list[TimelineEntry] = field(default_factory=list)
    size: int = 0
    dropped: int = 0


class CorrelationIndex:
    """Request ID -> timeline, evicting the least recently touched request past either bound."""

    def __init__(self, max_requests: int = 10_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self._timelines: OrderedDict[str, RequestTimeline] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._timelines)

    def add(
        self,
        request_id: str,
        kind: str,
        record: dict[str, Any],
        *,
        trace_id: str | None = None,
        at: float | None = None,
        encoded_size: int | None = None,
    ) -> None:
        """Append to a request's timeline; the record is stored as given (callers pass redacted data).

        ``encoded_size`` is the record's JSON length when the caller already encoded it (the gateway
        does, for its access line), which saves encoding it again here.
        """
        if not request_id:
            return
        timeline = self._timelines.get(request_id)
        if timeline is None:
            timeline = self._timelines[request_id] = RequestTimeline()
        else:
            self._timelines.move_to_end(request_id)
        if trace_id and not timeline.trace_id:
            timeline.trace_id = trace_id
        if len(timeline.entries) >= MAX_ENTRIES_PER_REQUEST:
            timeline.dropped += 1
            return
        size = (len(orjson.dumps(record, default=str)) if encoded_size is None else encoded_size) + 64
        timeline.entries.append(TimelineEntry(at if at is not None else time.time(), kind, record, size))
        timeline.size += size
        self.bytes += size
        self._evict()

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The request's timeline in time order, or ``None`` when unknown or evicted."""
        timeline = self._timelines.get(request_id)
        if timeline is None:
            return None
        entries = sorted(timeline.entries, key=lambda e: e.at)
        return {
            "request_id": request_id,
            "trace_id": timeline.trace_id,
            "dropped_entries": timeline.dropped,
            "timeline": [{"at": e.at, "kind": e.kind, "record": e.record} for e in entries],
        }

    def _evict(self) -> None:
        while self._timelines and (len(self._timelines) > self.max_requests or self.bytes > self.max_bytes):
            _, oldest = self._timelines.popitem(last=False)
            self.bytes -= oldest.size
            self.evicted += 1
