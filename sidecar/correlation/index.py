"""A bounded in-memory index of everything seen per request ID: access records, log lines, Sentry events.

Bounded twice: by the number of request IDs and by the bytes held. The oldest request is evicted
first, and evictions are counted, so a burst of traffic cannot grow memory without limit.

The gateway adds one access record per proxied request, tens of thousands a second. Those are kept
as the JSON line the access log already encoded (``add_access_line``), with the time packed in
front: a bytes object is one allocation the garbage collector never scans, where a timeline with a
list, an entry and a record dict was four tracked objects per request, retained for thousands of
requests and re-scanned by every full collection. A request seen by another source too (a log line,
a Sentry event) gets a full timeline; the line is decoded only when someone asks for the request.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_ENTRIES_PER_REQUEST = 200
ENTRY_OVERHEAD = 64  # bytes counted per entry on top of its JSON, for the byte bound
_AT = struct.Struct("d")  # the wall-clock time in front of a compact access line


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
        # a timeline, or (the common case) just the gateway's access line: packed time + JSON
        self._timelines: OrderedDict[str, RequestTimeline | bytes] = OrderedDict()
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
        found = self._timelines.get(request_id)
        if found is None:
            timeline = self._timelines[request_id] = RequestTimeline()
        else:
            self._timelines.move_to_end(request_id)
            timeline = found if isinstance(found, RequestTimeline) else self._expand(request_id, found)
        if trace_id and not timeline.trace_id:
            timeline.trace_id = trace_id
        if len(timeline.entries) >= MAX_ENTRIES_PER_REQUEST:
            timeline.dropped += 1
            return
        size = len(orjson.dumps(record, default=str)) if encoded_size is None else encoded_size
        size += ENTRY_OVERHEAD
        timeline.entries.append(TimelineEntry(at if at is not None else time.time(), kind, record, size))
        timeline.size += size
        self.bytes += size
        self._evict()

    def add_access_line(self, request_id: str, line: bytes, at: float) -> None:
        """The gateway's access record for ``request_id``, as its encoded JSON line (see module doc)."""
        if not request_id:
            return
        timelines = self._timelines
        if request_id in timelines:  # another source saw it first (or a client reused an ID)
            self.add(request_id, "access", orjson.loads(line), at=at, encoded_size=len(line))
            return
        packed = _AT.pack(at) + line
        timelines[request_id] = packed
        self.bytes += len(packed) + ENTRY_OVERHEAD
        if len(timelines) > self.max_requests or self.bytes > self.max_bytes:
            self._evict()

    def _expand(self, request_id: str, packed: bytes) -> RequestTimeline:
        """Turn a compact access line into a full timeline (the request was seen by another source)."""
        timeline = self._timelines[request_id] = self._timeline_of(packed)
        self.bytes += timeline.size - len(packed) - ENTRY_OVERHEAD
        return timeline

    @staticmethod
    def _timeline_of(packed: bytes) -> RequestTimeline:
        (at,) = _AT.unpack_from(packed)
        record = orjson.loads(packed[_AT.size :])
        size = len(packed) - _AT.size + ENTRY_OVERHEAD
        trace_id = record.get("trace_id") if isinstance(record, dict) else None
        return RequestTimeline(trace_id, [TimelineEntry(at, "access", record, size)], size)

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The request's timeline in time order, or ``None`` when unknown or evicted."""
        found = self._timelines.get(request_id)
        if found is None:
            return None
        timeline = found if isinstance(found, RequestTimeline) else self._timeline_of(found)
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
            self.bytes -= oldest.size if isinstance(oldest, RequestTimeline) else len(oldest) + ENTRY_OVERHEAD
            self.evicted += 1
