"""W3C Trace Context level 1: continue the client's trace with a new span for the hop, or start one.

Parsing follows the recommendation exactly: version ``00`` is exactly 55 characters of lowercase hex;
all-zero trace or parent IDs are invalid; version ``ff`` is invalid; a higher version is parsed by its
first four fields when the value is at least 55 characters and, if longer, has a ``-`` after the flags.
What the gateway sends on is always version ``00``. ``tracestate`` is passed on only with a valid
``traceparent`` and only when it is well formed (at most 32 list members, no duplicate keys).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidecar.gateway.correlation_ids import new_span_id, new_trace_id

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_KEY = re.compile(r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
MAX_TRACESTATE_MEMBERS = 32
MAX_TRACESTATE_LENGTH = 8192


@dataclass(frozen=True, slots=True)
class TraceParent:
    """The parsed fields of a ``traceparent`` header."""

    trace_id: str
    parent_id: str
    flags: str

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)


def parse_traceparent(value: str) -> TraceParent | None:  # noqa: PLR0911 (one return per spec rule)
    """The header's fields, or ``None`` when it must be ignored (and a new trace started)."""
    if len(value) < 55:
        return None
    version = value[:2]
    if not _HEX2.fullmatch(version) or version == "ff" or value[2] != "-":
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if value[35] != "-" or value[52] != "-":
        return None
    if not (_HEX32.fullmatch(trace_id) and _HEX16.fullmatch(parent_id) and _HEX2.fullmatch(flags)):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, flags)


def valid_tracestate(value: str) -> bool:
    """True when every list member is ``key=value`` per the spec, keys unique, at most 32 members."""
    if len(value) > MAX_TRACESTATE_LENGTH:
        return False
    keys: set[str] = set()
    for raw in value.split(","):
        member = raw.strip(" \t")
        if not member:
            continue
        key, sep, val = member.partition("=")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(val) or key in keys:
            return False
        keys.add(key)
    return len(keys) <= MAX_TRACESTATE_MEMBERS


def next_hop(
    traceparents: list[bytes], tracestates: list[bytes], sampled: bool = True
) -> tuple[str, bytes, bytes | None]:
    """(trace ID, ``traceparent`` for the app, ``tracestate`` for the app or ``None``).

    A valid incoming trace keeps its trace ID and flags and gets a new parent (span) ID for this hop;
    a missing, repeated or invalid one starts a new trace and drops ``tracestate``.
    """
    parent = None
    if len(traceparents) == 1:
        try:
            parent = parse_traceparent(traceparents[0].decode("ascii"))
        except UnicodeDecodeError:
            parent = None
    if parent is None:
        trace_id = new_trace_id()
        header = f"00-{trace_id}-{new_span_id()}-{'01' if sampled else '00'}"
        return trace_id, header.encode("ascii"), None
    header = f"00-{parent.trace_id}-{new_span_id()}-{parent.flags}"
    state: bytes | None = None
    if tracestates:
        joined = b",".join(tracestates)
        try:
            text = joined.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if text and valid_tracestate(text):
            state = joined
    return parent.trace_id, header.encode("ascii"), state
