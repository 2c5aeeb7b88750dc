"""OTLP ``LogRecord`` protobuf written straight to bytes, as ``tracing.otlp_encoding`` does for spans.

Building ``opentelemetry-proto`` message objects field by field costs tens of microseconds a record
and leaves garbage for the collector; a log record is a handful of length-delimited fields, so they
are written directly. Message shapes (opentelemetry-proto ``logs/v1/logs.proto``):

* ``ExportLogsServiceRequest { repeated ResourceLogs resource_logs = 1; }``
* ``ResourceLogs { Resource resource = 1; repeated ScopeLogs scope_logs = 2; }``
* ``ScopeLogs { InstrumentationScope scope = 1; repeated LogRecord log_records = 2; }``
* ``LogRecord { fixed64 time_unix_nano = 1; SeverityNumber severity_number = 2;
  string severity_text = 3; AnyValue body = 5; repeated KeyValue attributes = 6;
  bytes trace_id = 9; bytes span_id = 10; fixed64 observed_time_unix_nano = 11; }``

Attributes are the app's own fields (nested objects as ``kvlist_value``), with the values of
credential-like keys masked and credentials inside texts redacted, as the re-emitter does; the message
(the body) is redacted the same way. Encoding runs in a worker thread, a batch at a time.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from sidecar.core.protobuf import FIXED64, SMALL, field, varint
from sidecar.core.redaction import redact_text
from sidecar.logs.parse import LogRecord
from sidecar.logs.reemit import scrub

SEVERITY = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "error": 17, "fatal": 21}
MAX_DEPTH = 8
_INT64 = (-(1 << 63), (1 << 63) - 1)
_DOUBLE = struct.Struct("<d").pack
# Keys the normalised record already carries as time, severity and body.
_CONSUMED = frozenset({"msg", "message", "level", "levelname", "severity", "time", "timestamp", "@timestamp"})
_HEX = frozenset("0123456789abcdef")
SPAN_KEYS = ("span_id", "spanId", "dd.span_id", "otelSpanID")


_MAYBE_SECRET = re.compile(r"=|://|(?i:bearer|basic)")  # what redact_text's patterns all need
_SECRET_KEY = re.compile(
    r"(?i)(authorization|cookie|password|passwd|secret|token|api[_-]?key|apikey|session|credential)"
)
_CACHE_LIMIT = 8192
MASK = "***"


def _field(tag: bytes, payload: bytes) -> bytes:
    """``field`` without a call for the common short payload."""
    size = len(payload)
    return tag + (SMALL[size] if size < 128 else varint(size)) + payload


def redacted(text: str) -> str:
    """``redact_text``, run only on texts that could hold what it removes (most cannot)."""
    return redact_text(text) if len(text) >= 12 and _MAYBE_SECRET.search(text) else text


class AttributeWriter:
    """The app's fields as ``LogRecord.attributes``, masked and redacted like re-emitted lines.

    Fields repeat from line to line (``level``, ``hostname``, ``pid``, ``msg``...), so the encoded
    attribute of a scalar ``(key, value)`` pair is kept (bounded, cleared when full), and so is whether
    a key is credential-like. Used by one export task at a time.
    """

    def __init__(self) -> None:
        self._encoded: dict[tuple[str, type, Any], bytes] = {}
        self._secret: dict[str, bool] = {}

    def attribute(self, key: str, value: Any) -> bytes:
        kind = type(value)
        if kind is str or kind is int or kind is float or kind is bool:
            item = (key, kind, value)
            encoded = self._encoded.get(item)
            if encoded is None:
                shown = redacted(value) if kind is str else value
                encoded = _field(b"\x32", key_value(key, shown))
                if len(self._encoded) >= _CACHE_LIMIT:
                    self._encoded.clear()
                self._encoded[item] = encoded
            return encoded
        return _field(b"\x32", key_value(key, scrub(value)))

    def fields(self, fields: Mapping[str, Any]) -> list[bytes]:
        out = []
        secret = self._secret
        for key, value in fields.items():
            if key in _CONSUMED:
                continue
            masked = secret.get(key)
            if masked is None:
                masked = bool(_SECRET_KEY.search(key)) if type(key) is str else False
                if len(secret) < _CACHE_LIMIT:
                    secret[key] = masked
            out.append(self.attribute(key, MASK if masked and value is not None else value))
        return out


def any_value(value: Any, depth: int = 0) -> bytes:  # noqa: PLR0911 (one return per JSON type)
    """An ``AnyValue`` body for a JSON value: objects become ``kvlist_value``, arrays ``array_value``."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", value.encode("utf-8", "surrogatepass"))
    if value is None:
        return b""
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if _INT64[0] <= value <= _INT64[1]:
            return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
        return _field(b"\x0a", str(value).encode())
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    if depth >= MAX_DEPTH:  # deeper structure travels as its JSON text
        return _field(b"\x0a", orjson.dumps(value, default=str))
    if kind is list:
        return _field(b"\x2a", b"".join(_field(b"\x0a", any_value(v, depth + 1)) for v in value))
    if kind is dict:
        return field(
            b"\x32", b"".join(_field(b"\x0a", key_value(str(k), v, depth + 1)) for k, v in value.items())
        )
    return _field(b"\x0a", str(value).encode("utf-8", "surrogatepass"))


def key_value(key: str, value: Any, depth: int = 0) -> bytes:
    return _field(b"\x0a", key.encode("utf-8", "surrogatepass")) + _field(b"\x12", any_value(value, depth))


def _attribute(key: str, value: Any) -> bytes:
    return field(b"\x32", key_value(key, value))  # LogRecord.attributes


def _hex_id(value: Any, length: int) -> bytes | None:
    if type(value) is not str or len(value) != length:
        return None
    text = value.lower()
    if not _HEX.issuperset(text) or text.count("0") == length:
        return None
    return bytes.fromhex(text)


def _time_ns(record: LogRecord) -> int | None:
    """Epoch integers are scaled exactly (a float of nanoseconds since 1970 is off by ~100 ns)."""
    raw = record.raw_time
    if type(raw) is int and raw > 0:
        for limit, scale in ((10**17, 1), (10**14, 10**3), (10**11, 10**6)):
            if raw > limit:
                return raw * scale
        return raw * 10**9
    return _nanos(record.time)


def _nanos(seconds: float | None) -> int | None:
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return int(seconds * 1e9)


_SEVERITY_FIELDS = {
    level: b"\x10" + varint(number) + field(b"\x1a", level.upper().encode())
    for level, number in SEVERITY.items()
}


def _record(
    time_ns: int | None,
    observed_ns: int,
    level: str,
    body: str,
    attributes: list[bytes],
    trace_id: bytes | None,
    span_id: bytes | None,
) -> bytes:
    parts = [b"\x09" + FIXED64(time_ns)] if time_ns is not None else []
    severity = _SEVERITY_FIELDS.get(level)
    if severity is not None:
        parts.append(severity)
    parts.append(_field(b"\x2a", any_value(body)))
    parts.extend(attributes)
    if trace_id is not None:
        parts.append(field(b"\x4a", trace_id))
        if span_id is not None:
            parts.append(field(b"\x52", span_id))
    parts.append(b"\x59" + FIXED64(observed_ns))
    return b"".join(parts)


def encode_line(record: LogRecord, observed_ns: int, writer: AttributeWriter) -> bytes:
    """One ingested line: severity from the normalised level, the message as body, the app's fields
    (masked) as attributes plus ``log.source`` and ``request.id``, its trace and span IDs when known."""
    fields = record.fields
    attribute = writer.attribute
    attributes = writer.fields(fields) if fields else []
    attributes.append(attribute("log.source", record.source))
    if record.request_id is not None:
        attributes.append(attribute("request.id", record.request_id))
    error = record.error
    if error is not None:
        if error.type:
            attributes.append(attribute("exception.type", error.type))
        if error.value:
            attributes.append(attribute("exception.message", error.value))
        if error.stack:
            attributes.append(_attribute("exception.stacktrace", redact_text(error.stack)))
    trace_id = _hex_id(record.trace_id, 32)
    span_id = None
    if trace_id is not None and fields:
        for key in SPAN_KEYS:
            span_id = _hex_id(fields.get(key), 16)
            if span_id is not None:
                break
    return _record(
        _time_ns(record), observed_ns, record.level, redacted(record.message), attributes, trace_id, span_id
    )


def encode_access(line: bytes, at: float, observed_ns: int, writer: AttributeWriter) -> bytes:
    """One gateway access record (its JSON line): ``METHOD route status`` as body, every field as an
    attribute, severity from the status (5xx error, 4xx warn), the trace ID the gateway propagated."""
    record = orjson.loads(line)
    status = record.get("status")
    code = status if type(status) is int else 0
    level = "error" if code >= 500 else "warn" if code >= 400 else "info"
    body = f"{record.get('method')} {record.get('route') or record.get('path')} {status}"
    attribute = writer.attribute
    attributes = [
        attribute("request.id" if k == "request_id" else k, v)
        for k, v in record.items()
        if k != "time" and v is not None
    ]
    return _record(
        _nanos(at), observed_ns, level, body, attributes, _hex_id(record.get("trace_id"), 32), None
    )


def scope_logs(scope_name: str, records: list[bytes]) -> bytes:
    """A ``ScopeLogs`` body: the scope, then the records."""
    return field(b"\x0a", field(b"\x0a", scope_name.encode())) + b"".join(field(b"\x12", r) for r in records)


def request(resource: Mapping[str, Any], scopes: list[bytes]) -> bytes:
    """``ExportLogsServiceRequest`` of one resource and its ``ScopeLogs`` bodies."""
    resource_body = b"".join(field(b"\x0a", key_value(k, v)) for k, v in resource.items())
    body = field(b"\x0a", resource_body) + b"".join(field(b"\x12", s) for s in scopes)
    return field(b"\x0a", body)
