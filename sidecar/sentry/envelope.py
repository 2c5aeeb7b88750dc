"""Sentry's envelope format, parsed strictly and written canonically.

``{header JSON}\\n`` then, per item, ``{item header JSON}\\n`` and a payload: exactly ``length`` bytes
when the header says so (then an optional ``\\n``), else everything up to the next ``\\n`` or the end.
Parsing is strict because a relay that guesses forwards garbage: every failure says which item and why,
and becomes a 400 the SDK author can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_ITEMS = 10_000
_NON_SPACE = re.compile(rb"[^ \t\r\n]")

# Item type -> rate-limit data category, as Sentry and its SDKs name them.
_CATEGORIES = {
    "event": "error",
    "transaction": "transaction",
    "session": "session",
    "sessions": "session",
    "attachment": "attachment",
    "client_report": "internal",
    "profile": "profile",
    "profile_chunk": "profile_chunk",
    "replay_event": "replay",
    "replay_recording": "replay",
    "replay_video": "replay",
    "check_in": "monitor",
    "statsd": "metric_bucket",
    "metric_buckets": "metric_bucket",
    "span": "span",
    "log": "log_item",
    "otel_log": "log_item",
    "trace_metric": "trace_metric",
    "feedback": "feedback",
    "user_report": "user_report",
}

# Item types whose payload is a JSON document the scrubber understands.
JSON_TYPES = frozenset(
    {
        "event",
        "transaction",
        "session",
        "sessions",
        "client_report",
        "check_in",
        "feedback",
        "user_report",
        "profile",
        "profile_chunk",
        "replay_event",
        "span",
        "log",
        "otel_log",
        "trace_metric",
    }
)


class EnvelopeError(ValueError):
    """The body is not a valid envelope; the message says where and why (no payload content)."""


def category_of(item_type: str) -> str:
    return _CATEGORIES.get(item_type, "default")


@dataclass(slots=True)
class Item:
    headers: dict[str, Any]
    payload: bytes

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))

    @property
    def category(self) -> str:
        return category_of(self.type)

    def json(self) -> Any:
        """The payload as JSON; ``EnvelopeError`` when it is not."""
        try:
            return orjson.loads(self.payload)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"{self.type} item payload is not valid JSON ({exc.msg})") from None


@dataclass(slots=True)
class Envelope:
    headers: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)

    @property
    def event_id(self) -> str | None:
        value = self.headers.get("event_id")
        return value if isinstance(value, str) else None

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(item.category for item in self.items)

    def to_bytes(self) -> bytes:
        """Canonical form: every item with an explicit ``length``, newline-terminated."""
        parts = [orjson.dumps(self.headers), b"\n"]
        for item in self.items:
            headers = {**item.headers, "length": len(item.payload)}
            parts += [orjson.dumps(headers), b"\n", item.payload, b"\n"]
        return b"".join(parts)

    @classmethod
    def for_event(cls, event: dict[str, Any], headers: dict[str, Any] | None = None) -> Envelope:
        """An envelope holding one ``event`` item (the legacy ``/store/`` body, or a sidecar-made event)."""
        head = {"event_id": event.get("event_id"), **(headers or {})}
        return cls(head, [Item({"type": "event", "content_type": "application/json"}, orjson.dumps(event))])


def _json_object(line: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"{what} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise EnvelopeError(f"{what} must be a JSON object")
    return value


def parse(body: bytes) -> Envelope:
    """Parse an envelope; raise ``EnvelopeError`` on anything malformed.

    Linear in the body's size: the parser walks offsets and copies each header line and payload once
    (never "the rest of the body" per item), so a 10,000-item envelope costs ten times a 1,000-item one.
    """
    end = body.find(b"\n")
    header_line = body if end < 0 else body[:end]
    if not header_line.strip():
        raise EnvelopeError("empty envelope: the first line must be the envelope header (a JSON object)")
    envelope = Envelope(_json_object(header_line, "envelope header"))
    pos = len(body) if end < 0 else end + 1
    while pos < len(body):
        if _NON_SPACE.search(body, pos) is None:
            break  # trailing newlines/whitespace
        number = len(envelope.items) + 1
        if number > MAX_ITEMS:
            raise EnvelopeError(f"more than {MAX_ITEMS} items in one envelope")
        end = body.find(b"\n", pos)
        line = body[pos:] if end < 0 else body[pos:end]
        headers = _json_object(line, f"item {number} header")
        item_type = headers.get("type")
        if not isinstance(item_type, str) or not item_type:
            raise EnvelopeError(f"item {number} header has no 'type'")
        pos = len(body) if end < 0 else end + 1
        length = headers.get("length")
        if length is not None:
            if not isinstance(length, int) or isinstance(length, bool) or length < 0:
                raise EnvelopeError(f"item {number} ({item_type}): 'length' must be a non-negative integer")
            if pos + length > len(body):
                raise EnvelopeError(
                    f"item {number} ({item_type}): length {length} runs past the end of the envelope "
                    f"({len(body) - pos} bytes left): truncated item"
                )
            payload = body[pos : pos + length]
            pos += length
            if pos < len(body):
                if body[pos : pos + 1] != b"\n":
                    raise EnvelopeError(
                        f"item {number} ({item_type}): payload is longer than its length {length} "
                        "(length mismatch)"
                    )
                pos += 1
        else:
            end = body.find(b"\n", pos)
            payload = body[pos:] if end < 0 else body[pos:end]
            pos = len(body) if end < 0 else end + 1
        envelope.items.append(Item(headers, payload))
    return envelope
