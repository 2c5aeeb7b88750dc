"""OTLP protobuf for spans, written straight to bytes: what the export queue holds and sends.

Why bytes and not span objects. The exporter's own encoder builds a protobuf object per span, per
attribute and per value, and hashes the resource (through ``json.dumps``) once per span: about
35 µs a span, on the export thread but holding the GIL the event loop needs. Worse, span objects
wait in the export queue long enough to be promoted to the garbage collector's oldest generation,
and the full collections that then follow every second or so paused the event loop for 50-90 ms
(measured at 6 000 requests/s). So each span is encoded once, when it ends, into an ``EncodedSpan``:
one bytes object, the OTLP ``Span`` message, that the batch processor queues like a span; the
exporter concatenates a batch into an ``ExportTraceServiceRequest``. ``key=value`` attribute fields
repeat from request to request, so their bytes are kept and reused.

``SpanEncoder`` writes any SDK ``ReadableSpan`` this way (probe spans; tests compare it byte for byte
with the SDK's encoder); a span with events or links, which the sidecar does not make, is left to
the SDK's encoder, and ``to_readable`` turns encoded spans back into SDK spans for an exporter that
cannot take bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from sidecar.core.protobuf import FIXED64, SMALL, field, varint

_CACHE_LIMIT = 8192  # encoded attribute fields kept; cleared when full (unique values churn it)
_FIXED32 = struct.Struct("<I").pack
_HAS_IS_REMOTE = 0x100  # SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
LOCAL_PARENT_FLAGS = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE)  # field 16 (fixed32), as the SDK writes it
REMOTE_PARENT_FLAGS = b"\x85\x01" + _FIXED32(_HAS_IS_REMOTE | _IS_REMOTE)
STATUS_UNSET = b"\x7a\x00"  # field 15: an empty Status message (the SDK always writes one)
STATUS_ERROR = b"\x7a\x02\x18\x02"  # Status{code: ERROR}
_UINT64 = (1 << 64) - 1
_SAMPLED = SpanContext(1, 1, False, TraceFlags(TraceFlags.SAMPLED))


class Unsupported(Exception):
    """Something this encoder does not write (the SDK's encoder will)."""


def any_value(value: Any) -> bytes:  # noqa: PLR0911 (one return per value type)
    """An ``AnyValue`` message body."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        return b"\x18" + varint(value & _UINT64)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    if isinstance(value, bytes):
        return field(b"\x3a", value)
    if isinstance(value, Sequence):
        return field(b"\x2a", b"".join(field(b"\x0a", any_value(v)) for v in value))
    raise Unsupported(type(value).__name__)


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message body."""
    return field(b"\x0a", key.encode("utf-8")) + field(b"\x12", any_value(value))


def attribute(key: str, value: Any) -> bytes:
    """A span's ``attributes`` field (9) holding ``key=value``."""
    return field(b"\x4a", key_value(key, value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join(field(tag, key_value(k, v)) for k, v in attributes.items())


class AttributeCache:
    """``(key, value)`` -> the encoded attribute field, for values that repeat (methods, routes...)."""

    def __init__(self) -> None:
        self._fields: dict[tuple[str, Any], bytes] = {}

    def get(self, key: str, value: Any) -> bytes:
        item = (key, value)
        encoded = self._fields.get(item)
        if encoded is None:
            encoded = attribute(key, value)
            if len(self._fields) >= _CACHE_LIMIT:
                self._fields.clear()
            self._fields[item] = encoded
        return encoded


class EncodedSpan(bytes):
    """One OTLP ``Span`` message. The batch processor queues it like a span (it only reads
    ``context.trace_flags.sampled``); a subclass per resource and scope says where it belongs."""

    __slots__ = ()
    context: ClassVar[SpanContext] = _SAMPLED
    resource: ClassVar[Resource | None] = None
    scope: ClassVar[InstrumentationScope | None] = None


_KINDS: dict[tuple[int, InstrumentationScope | None], type[EncodedSpan]] = {}


def encoded_span_type(resource: Resource, scope: InstrumentationScope | None) -> type[EncodedSpan]:
    """The ``EncodedSpan`` subclass of spans from ``resource`` and ``scope`` (made once, then reused)."""
    key = (id(resource), scope)
    kind = _KINDS.get(key)
    if kind is None or kind.resource is not resource:
        if len(_KINDS) >= 64:  # the sidecar has one resource and two scopes; this only bounds odd uses
            _KINDS.clear()
        kind = _KINDS[key] = type(
            "EncodedSpan", (EncodedSpan,), {"__slots__": (), "resource": resource, "scope": scope}
        )
    return kind


class RequestEncoder:
    """Concatenates a batch into ``ExportTraceServiceRequest`` bytes: grouped by resource, then scope."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[InstrumentationScope | None, bytes] = {}

    def request(self, items: Sequence[EncodedSpan | ReadableSpan]) -> bytes:
        groups: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = {}
        others: list[ReadableSpan] = []
        for item in items:
            if not isinstance(item, EncodedSpan):
                others.append(item)
                continue
            resource = item.resource
            assert resource is not None
            group = groups.get(id(resource))
            if group is None:
                group = groups[id(resource)] = (resource, {})
            spans = group[1].get(item.scope)
            if spans is None:
                spans = group[1][item.scope] = []
            spans.append(item)
        out = []
        for resource, scopes in groups.values():
            scope_spans = b"".join(
                field(
                    b"\x12",  # ResourceSpans.scope_spans
                    field(b"\x0a", self._scope(scope))  # ScopeSpans.scope
                    + b"".join(field(b"\x12", span) for span in spans)  # ScopeSpans.spans
                    + (field(b"\x1a", scope.schema_url.encode()) if scope and scope.schema_url else b""),
                )
                for scope, spans in scopes.items()
            )
            body = (
                field(b"\x0a", self._resource(resource))  # ResourceSpans.resource
                + scope_spans
                + (field(b"\x1a", resource.schema_url.encode()) if resource.schema_url else b"")
            )
            out.append(field(b"\x0a", body))  # ExportTraceServiceRequest.resource_spans
        if others:  # a repeated field: the SDK's encoding of the rest simply follows
            from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: PLC0415

            out.append(encode_spans(others).SerializeToString())
        return b"".join(out)

    def _resource(self, resource: Resource) -> bytes:
        known = self._resources.get(id(resource))
        if known is None or known[0] is not resource:
            known = self._resources[id(resource)] = (resource, _attributes(b"\x0a", resource.attributes))
        return known[1]

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        body = self._scopes.get(scope)
        if body is None:
            body = b""
            if scope is not None:
                body = (
                    (field(b"\x0a", scope.name.encode()) if scope.name else b"")
                    + (field(b"\x12", scope.version.encode()) if scope.version else b"")
                    + _attributes(b"\x1a", scope.attributes)
                )
            self._scopes[scope] = body
        return body


class SpanEncoder:
    """SDK ``ReadableSpan`` -> ``EncodedSpan`` (``None`` when it has events or links)."""

    def __init__(self) -> None:
        self._attributes = AttributeCache()
        self._names: dict[str, bytes] = {}

    def encode(self, span: ReadableSpan) -> EncodedSpan | None:
        try:
            return encoded_span_type(span.resource, span.instrumentation_scope or None)(self._span(span))
        except Unsupported:
            return None

    def _span(self, span: ReadableSpan) -> bytes:
        if span.events or span.links:
            raise Unsupported("events or links")
        context = span.context
        if context is None:
            raise Unsupported("no span context")
        parts = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        state = context.trace_state
        if state:
            parts.append(field(b"\x1a", ",".join(f"{k}={v}" for k, v in state.items()).encode()))
        parent = span.parent
        if parent:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        name = self._names.get(span.name)
        if name is None:
            if len(self._names) >= _CACHE_LIMIT:
                self._names.clear()
            name = self._names[span.name] = field(b"\x2a", span.name.encode("utf-8")) if span.name else b""
        parts.append(name)
        parts.append(b"\x30" + SMALL[span.kind.value + 1])  # the proto enum counts from UNSPECIFIED
        if span.start_time:
            parts.append(b"\x39" + FIXED64(span.start_time))
        if span.end_time:
            parts.append(b"\x41" + FIXED64(span.end_time))
        attributes = span.attributes
        if attributes:
            cache = self._attributes
            for key, value in attributes.items():
                try:
                    parts.append(cache.get(key, value))
                except TypeError:  # an unhashable value (a list)
                    parts.append(attribute(key, value))
        if span.dropped_attributes:
            parts.append(b"\x50" + varint(span.dropped_attributes))
        status = span.status
        code = status.status_code.value
        message = status.description
        parts.append(
            field(
                b"\x7a",
                (field(b"\x12", message.encode("utf-8")) if message else b"")
                + (b"\x18" + SMALL[code] if code else b""),
            )
        )
        parts.append(REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else LOCAL_PARENT_FLAGS)
        return b"".join(parts)


def _value_of(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value_of(v) for v in value.array_value.values)
    return None if which is None else getattr(value, which)


def to_readable(items: Sequence[EncodedSpan | ReadableSpan]) -> list[ReadableSpan]:
    """SDK spans again, for an exporter that only takes those (slow; for SDKs the fast path misses)."""
    spans = []
    for item in items:
        if not isinstance(item, EncodedSpan):
            spans.append(item)
            continue
        pb = PbSpan.FromString(bytes(item))
        state = TraceState.from_header([pb.trace_state]) if pb.trace_state else TraceState()
        trace_id = int.from_bytes(pb.trace_id, "big")
        remote = bool(pb.flags & _IS_REMOTE)
        spans.append(
            ReadableSpan(
                pb.name,
                SpanContext(trace_id, int.from_bytes(pb.span_id, "big"), False, TraceFlags(1), state),
                SpanContext(trace_id, int.from_bytes(pb.parent_span_id, "big"), remote, TraceFlags(1), state)
                if pb.parent_span_id
                else None,
                item.resource,
                {kv.key: _value_of(kv.value) for kv in pb.attributes},
                kind=SpanKind(pb.kind - 1),
                status=Status(StatusCode(pb.status.code), pb.status.message or None),
                start_time=pb.start_time_unix_nano,
                end_time=pb.end_time_unix_nano,
                instrumentation_scope=item.scope,
            )
        )
    return spans
