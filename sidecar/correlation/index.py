"""A bounded in-memory index of everything seen per request ID: access records, log lines, Sentry events.

Bounded twice: by the number of request IDs and by the bytes held. The least recently touched
requests are evicted first, a batch at a time (``EVICT_FRACTION``), and evictions are counted, so a
burst of traffic cannot grow memory without limit.

The gateway adds one access record per proxied request and the log flow one entry per log line with a
request ID, tens of thousands a second each. Every entry is kept as its JSON, already encoded, with
the time (and, but for access records, a kind letter) packed in front: a bytes object is one
allocation the garbage collector never scans, where an entry object holding a record dict was two or
three tracked objects per line, retained for thousands of requests and re-scanned by every full
collection. A request seen once (by the gateway, or in one log line) is just that packed entry; a
request seen more than once gets a ``RequestTimeline`` holding a list of packed entries. Records are
decoded only when someone asks for the request.
"""

from __future__ import annotations

import itertools
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

MAX_ENTRIES_PER_REQUEST = 200
# Past a bound, the least recently touched requests are evicted until the index is under it by this
# fraction of it (bounds below EVICT_BATCH_FLOOR_* are kept exactly): one batch per many new requests.
# Why: the index is a plain dict, which finds its oldest key by skipping the slots freed by the
# deletions before it (until it is next resized), thousands of them at the default 10,000 requests;
# once per batch that is a few hundred instructions per request, once per request it would be
# thousands. An OrderedDict evicts exactly, but its insertion alone (a linked-list node on top of the
# dict's own entry) was about 770 instructions of a proxied request's 28,000, and its eviction some
# hundreds more.
EVICT_FRACTION: Final = 64
EVICT_BATCH_FLOOR_BYTES: Final = 1 << 20
ENTRY_OVERHEAD: Final = 64  # bytes counted per entry on top of its packed JSON, for the byte bound
_AT: Final = struct.Struct("d")  # the wall-clock time in front of every packed entry
_AT_SIZE: Final = 8
AT_SIZE: Final = _AT_SIZE  # for the gateway's access entries, made elsewhere (``add_access_entry``)
_PACK_AT: Final = _AT.pack  # bound once: compiled, ``_AT.pack(at)`` looked the method up per request
pack_at: Final = _PACK_AT
MAX_TRACE_ID = 255  # longer trace IDs are not kept with the entry (the W3C ones have 32 characters)
# After the time: nothing for the gateway's access line (its JSON starts right there, with "{", and
# holds its trace ID), else a kind letter, the length of the trace ID seen with the entry (0: none)
# and the trace ID itself.
_KIND_LETTERS: Final = {"log": b"l", "sentry": b"s", "span": b"p", "access": b"a"}
# A log line from the log flow (``add_logs``) is kept as a JSON array rather than an object: the
# values of its record in a fixed order, ``LOG_FIELDS`` and then ``LOG_ERROR_FIELDS`` and/or
# ``LOG_HTTP_FIELDS`` (told apart by the array's length), decoded into the same record as ``add``
# would hold. One ``orjson.dumps`` of a tuple per line, and no key names stored per entry.
_COMPACT_LOG: Final = b"L"
LOG_FIELDS: Final = ("level", "message", "time", "source")
LOG_ERROR_FIELDS: Final = ("error_type", "error_value")
LOG_HTTP_FIELDS: Final = ("method", "url", "status_code", "duration_seconds")
_KIND_OF_BYTE: Final = {letter[0]: kind for kind, letter in (*_KIND_LETTERS.items(), ("log", _COMPACT_LOG))}
_NO_TRACE_COMPACT_LOG: Final = _COMPACT_LOG + b"\x00"  # the kind letter and an empty trace ID
_NO_TRACE_LOG_HEAD: Final = struct.Struct("d2s")  # the time and ``_NO_TRACE_COMPACT_LOG``, in one call
# What the log flow hands to ``add_logs`` per line: request ID, trace ID, and the entry as the index
# holds it (``pack_log``).
LogEntry = tuple[str, str | None, bytes]


def pack(at: float, kind: str, encoded: bytes, trace_id: str | None = None) -> bytes:
    """One entry as the index keeps it: time, kind letter, trace ID, JSON."""
    letter = _KIND_LETTERS.get(kind)
    if letter is None:
        raise ValueError(f"unknown timeline entry kind {kind!r}: one of {', '.join(_KIND_LETTERS)}")
    trace = trace_id.encode("utf-8", "replace") if trace_id else b""
    if len(trace) > MAX_TRACE_ID:
        trace = b""
    return b"%b%b%c%b%b" % (_AT.pack(at), letter, len(trace), trace, encoded)


def pack_log(at: float, trace_id: str | None, encoded: bytes) -> bytes:
    """A log line's entry as the index holds it: time, the compact kind letter, trace ID, and the JSON
    array of its record's values (see ``LOG_FIELDS``).

    The log flow packs each line as it reads it, rather than handing the index the JSON as
    ``orjson.dumps`` returned it: that bytes object keeps the encoder's whole buffer (about 4 KiB,
    whatever the JSON's length), so a batch of a thousand of them spread over 4 MiB of memory, each
    line touching fresh cache lines and pages, which cost more CPU than all the index's instructions.
    Packing copies the JSON into an object of its own size at once, and the buffer is freed and
    reused by the next line's encoding while it is still in the cache.
    """
    trace = trace_id.encode("utf-8", "replace") if trace_id else b""
    if not trace or len(trace) > MAX_TRACE_ID:
        return _NO_TRACE_LOG_HEAD.pack(at, _NO_TRACE_COMPACT_LOG) + encoded
    return b"".join((_AT.pack(at), _COMPACT_LOG, bytes((len(trace),)), trace, encoded))


def unpack(packed: bytes) -> tuple[float, str, str | None, Any]:
    """(time, kind, trace ID, record) of a packed entry."""
    (at,) = _AT.unpack_from(packed)
    kind = _KIND_OF_BYTE.get(packed[_AT_SIZE])
    if kind is None:  # the gateway's access line
        record = orjson.loads(packed[_AT_SIZE:])
        trace_id = record.get("trace_id") if isinstance(record, dict) else None
        return at, "access", trace_id if isinstance(trace_id, str) else None, record
    length = packed[_AT_SIZE + 1]
    start = _AT_SIZE + 2
    trace = packed[start : start + length].decode("utf-8", "replace") if length else None
    record = orjson.loads(packed[start + length :])
    if packed[_AT_SIZE] == _COMPACT_LOG[0]:
        record = _log_record(record)
    return at, kind, trace, record


def _log_record(values: list[Any]) -> dict[str, Any]:
    """The record of a compact log entry (see ``LOG_FIELDS``), keys in the order ``add`` keeps them."""
    record = dict(zip(LOG_FIELDS, values, strict=False))
    rest = len(LOG_FIELDS)
    if len(values) in (rest + len(LOG_ERROR_FIELDS), rest + len(LOG_ERROR_FIELDS) + len(LOG_HTTP_FIELDS)):
        record.update(zip(LOG_ERROR_FIELDS, values[rest:], strict=False))
        rest += len(LOG_ERROR_FIELDS)
    if len(values) > rest:
        record["http"] = dict(zip(LOG_HTTP_FIELDS, values[rest:], strict=False))
    return record


@dataclass(slots=True)
class RequestTimeline:
    """A request seen more than once: its packed entries, in arrival order."""

    trace_id: str | None = None
    entries: list[bytes] = field(default_factory=list)
    size: int = 0
    dropped: int = 0


class CorrelationIndex:
    """Request ID -> timeline, evicting the least recently touched request past either bound."""

    def __init__(self, max_requests: int = 10_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        # a timeline, or (the common case) just one packed entry: a gateway access line; in the order
        # the requests were last touched (a touched request is moved to the end: ``_append``)
        self._timelines: dict[str, RequestTimeline | bytes] = {}
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
    ) -> None:
        """Append to a request's timeline; the record is stored as given (callers pass redacted data)."""
        if not request_id:
            return
        packed = pack(time.time() if at is None else at, kind, orjson.dumps(record, default=str), trace_id)
        self._add_packed(request_id, packed, trace_id)

    def add_logs(self, entries: list[LogEntry]) -> None:
        """A batch of log lines' entries, each (request ID, trace ID, entry packed by ``pack_log``).

        The log flow hands over one list per batch of lines instead of calling ``add`` per line, each
        record already encoded as the JSON array of its values (see ``LOG_FIELDS``) and packed; the
        loop runs here, compiled, once per batch.
        """
        for request_id, trace_id, packed in entries:
            if request_id:
                self._add_packed(request_id, packed, trace_id)

    def _add_packed(self, request_id: str, packed: bytes, trace_id: str | None) -> None:
        timelines = self._timelines
        # one lookup that adds the entry when the request is new (the common case: kept alone)
        if timelines.setdefault(request_id, packed) is packed:
            self.bytes += len(packed) + ENTRY_OVERHEAD
            if len(timelines) > self.max_requests or self.bytes > self.max_bytes:
                self._evict()
            return
        self._append(request_id, packed, trace_id)

    def _append(self, request_id: str, packed: bytes, trace_id: str | None) -> None:
        """A further entry for a request already in the index."""
        timelines = self._timelines
        found = timelines.pop(request_id)  # and put back last: the most recently touched
        if isinstance(found, RequestTimeline):
            timeline = found
            if trace_id and not timeline.trace_id:
                timeline.trace_id = trace_id
        else:
            timeline = self._expand(found, trace_id)
        timelines[request_id] = timeline
        if len(timeline.entries) >= MAX_ENTRIES_PER_REQUEST:
            timeline.dropped += 1
            return
        size = len(packed) + ENTRY_OVERHEAD
        timeline.entries.append(packed)
        timeline.size += size
        self.bytes += size
        if len(timelines) > self.max_requests or self.bytes > self.max_bytes:
            self._evict()

    def add_access_line(self, request_id: str, line: bytes, at: float) -> None:
        """The gateway's access record for ``request_id``, as its encoded JSON line (see module doc)."""
        self.add_access_entry(request_id, _PACK_AT(at) + line)

    def add_access_entry(self, request_id: str, packed: bytes) -> None:
        """The gateway's access record for ``request_id``, packed already: its time (``pack_at``, 8
        bytes) and its JSON line. The gateway makes it so in one call with the line (``access_line.c``)
        and hands this same object to its access log's writer."""
        if request_id:  # its trace ID is in the line (a source seeing the request first keeps its own)
            self._add_packed(request_id, packed, None)

    def _expand(self, packed: bytes, trace_id: str | None) -> RequestTimeline:
        """A request's one packed entry becomes a timeline (it was seen again).

        The first entry's trace ID was seen first, so it stays the timeline's.
        """
        known = unpack(packed)[2]
        # its bytes stay counted in self.bytes: the same entry, now in a list
        return RequestTimeline(known or trace_id, [packed], len(packed) + ENTRY_OVERHEAD)

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The request's timeline in time order, or ``None`` when unknown or evicted."""
        found = self._timelines.get(request_id)
        if found is None:
            return None
        if isinstance(found, RequestTimeline):
            entries, trace_id, dropped = found.entries, found.trace_id, found.dropped
        else:
            entries, trace_id, dropped = [found], None, 0
        unpacked = sorted((unpack(e) for e in entries), key=lambda e: e[0])
        if trace_id is None:
            trace_id = next((trace for _, _, trace, _ in unpacked if trace), None)
        return {
            "request_id": request_id,
            "trace_id": trace_id,
            "dropped_entries": dropped,
            "timeline": [{"at": at, "kind": kind, "record": record} for at, kind, _, record in unpacked],
        }

    def newest(self, limit: int) -> list[str]:
        """The ``limit`` request IDs most recently added or touched, newest first (the console's lists)."""
        return list(itertools.islice(reversed(self._timelines), limit))

    def newest_entries(self, limit: int) -> list[tuple[str, RequestTimeline | bytes]]:
        """The ``limit`` newest (request ID, held entry) pairs, for a scan that yields between slices."""
        return list(itertools.islice(reversed(self._timelines.items()), limit))

    @staticmethod
    def carries_trace(held: RequestTimeline | bytes, trace_id: str) -> bool:
        """Whether a held entry belongs to ``trace_id``, read from the packed bytes (nothing decoded)."""
        if isinstance(held, RequestTimeline):
            return held.trace_id == trace_id
        if held[_AT_SIZE] in _KIND_OF_BYTE:  # kind letter, trace ID length, trace ID
            length = held[_AT_SIZE + 1]
            return held[_AT_SIZE + 2 : _AT_SIZE + 2 + length] == trace_id.encode("utf-8", "replace")
        return b'"trace_id":"%b"' % trace_id.encode("utf-8", "replace") in held

    @staticmethod
    def access_of(held: RequestTimeline | bytes) -> tuple[float, bytes | dict[str, Any]] | None:
        """A held request's access record and its time: the gateway's JSON line as stored (bytes), or
        the decoded record of an access entry added another way; ``None`` when it has none."""
        entries = held.entries if isinstance(held, RequestTimeline) else [held]
        for packed in entries:
            (at,) = _AT.unpack_from(packed)
            letter = packed[_AT_SIZE]
            if letter not in _KIND_OF_BYTE:
                return at, packed[_AT_SIZE:]
            if _KIND_OF_BYTE[letter] == "access":
                return at, unpack(packed)[3]
        return None

    def _evict(self) -> None:
        """Evict the least recently touched requests until under both bounds by a batch's margin."""
        timelines = self._timelines
        max_bytes = self.max_bytes
        keep_requests = self.max_requests - self.max_requests // EVICT_FRACTION
        keep_bytes = max_bytes - (max_bytes // EVICT_FRACTION if max_bytes >= EVICT_BATCH_FLOOR_BYTES else 0)
        count = len(timelines)
        size = self.bytes
        oldest: list[str] = []
        for request_id, held in timelines.items():  # oldest first; one scan for the batch
            if count <= keep_requests and size <= keep_bytes:
                break
            oldest.append(request_id)
            count -= 1
            size -= held.size if isinstance(held, RequestTimeline) else len(held) + ENTRY_OVERHEAD
        for request_id in oldest:
            del timelines[request_id]
        self.bytes = size
        self.evicted += len(oldest)
