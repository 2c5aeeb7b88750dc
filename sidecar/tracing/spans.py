"""Spans of proxied requests and of dependency probes, built after the fact from what was recorded.

A request's spans come from the ``Exchange`` the gateway records when the request ends:

- the **server span** (kind SERVER, ``"{method} {route}"``) covers the whole request; its parent is
  the caller's span from the incoming ``traceparent``, if one was valid, else it is the trace's root;
- the **client span** (kind CLIENT, ``"{method}"``) covers the call to the app, from sending the
  request to its last response byte; its span ID is the one in the ``traceparent`` the app received.

The IDs are read back from the request head the gateway sent to the app (``ex.head``), so the
gateway's trace-context code stays the single source of trace ID, hop span ID and sampled flag: the
spans are recorded exactly when that ``traceparent`` says sampled.

Cost. ``record`` only appends to a list; the spans are built in a callback at the end of the event
loop iteration, after the gateway has written the iteration's responses, so no response waits for
its spans. They are written directly as OTLP protobuf (``otlp_encoding.EncodedSpan``, one bytes
object per span, attribute fields reused from a cache) and handed to the batch processor: no span
object, context or lock per request, nothing for the garbage collector to promote.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from binascii import unhexlify
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from sidecar import __version__
from sidecar.core.protobuf import FIXED64, field, varint
from sidecar.gateway.metrics import method_label
from sidecar.gateway.query_mask import path_of
from sidecar.probing.results import CheckResult
from sidecar.tracing.otlp_encoding import (
    LOCAL_PARENT_FLAGS,
    REMOTE_PARENT_FLAGS,
    STATUS_ERROR,
    STATUS_UNSET,
    EncodedSpan,
    attribute,
    encoded_span_type,
)

if TYPE_CHECKING:
    from sidecar.gateway.exchange import Exchange
    from sidecar.gateway.settings import UpstreamAddress

log = logging.getLogger(__name__)

_TRACEPARENT = b"\r\ntraceparent: 00-"
_TRACESTATE = b"\r\ntracestate: "
_FORWARDED_HOST = b"\r\nX-Forwarded-Host: "
_HOST = b"\r\nHost: "
_CRLF = b"\r\n"
_NOT_ERRORS = ("", "client_disconnect")
_SERVER_KIND = b"\x30\x02"  # Span.kind = SPAN_KIND_SERVER
_CLIENT_KIND = b"\x30\x03"  # Span.kind = SPAN_KIND_CLIENT
_CACHE_LIMIT = 4096  # label-like combinations kept encoded; cleared when full
_URL_PATH = field(b"\x0a", b"url.path")
_URL_FULL = field(b"\x0a", b"url.full")
_REQUEST_ID = field(b"\x0a", b"http.request.header.x-request-id")

Emit = Callable[[EncodedSpan], None]
Pending = tuple["Exchange", float, str, str]


class GatewaySpans:
    """Turns finished exchanges into a server and a client span; installed only when tracing is on."""

    def __init__(
        self,
        emit: Emit,
        resource: Resource,
        upstream: UpstreamAddress | None = None,
        max_attribute_length: int | None = None,
    ) -> None:
        self._emit = emit
        self._span_type = encoded_span_type(resource, InstrumentationScope("sidecar.gateway", __version__))
        self._max_length = max_attribute_length
        self._server_parts: dict[tuple[Any, ...], tuple[bytes, bytes, bytes]] = {}
        self._client_parts: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        self._pending: list[Pending] = []
        self._failed = False
        self.upstream(upstream)

    def upstream(self, address: UpstreamAddress | None) -> None:
        """The app's address, for the client spans (``server.address``, ``url.full``)."""
        fixed = [attribute("network.protocol.version", "1.1")]
        if address is None or address.unix_path:
            self._upstream_base = b"http://localhost"
            fixed.insert(0, attribute("server.address", "localhost"))
            if address is not None:
                fixed.append(attribute("network.transport", "unix"))
                fixed.append(attribute("network.peer.address", address.unix_path))
        else:
            self._upstream_base = b"http://" + address.host_header
            fixed.insert(0, attribute("server.address", address.host))
            fixed.append(attribute("server.port", address.port))
        self._upstream_fields = b"".join(fixed)
        self._client_parts.clear()

    def record(self, ex: Exchange, ended: float, route: str, error: str) -> None:
        """Called by the gateway for every finished request: the spans are built at the end of the loop
        iteration (at once when there is no running loop)."""
        pending = self._pending
        pending.append((ex, ended, route, error))
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        """Build and hand over the spans of every request recorded since the last flush."""
        pending, self._pending = self._pending, []
        offset = time.time_ns() - int(time.perf_counter() * 1e9)  # perf_counter seconds -> epoch ns
        for item in pending:
            try:
                self._spans(*item, offset)
            except Exception:
                if not self._failed:  # a bug, not a condition: say it once, keep serving
                    self._failed = True
                    log.exception("building a request's spans failed")

    def _spans(self, ex: Exchange, ended: float, route: str, error: str, offset: int) -> None:
        head = ex.head
        at = head.rfind(_TRACEPARENT)
        if at < 0:
            return
        at += len(_TRACEPARENT)  # head[at:at+52] is "<trace 32>-<span 16>-<flags 2>"
        if not int(head[at + 50 : at + 52], 16) & 1:
            return  # not sampled: no spans
        trace_hex = head[at : at + 32]
        trace_id = unhexlify(trace_hex)
        client_id = unhexlify(head[at + 33 : at + 49])
        server_id = random.getrandbits(64).to_bytes(8, "big")
        while server_id == client_id or not any(server_id):
            server_id = random.getrandbits(64).to_bytes(8, "big")
        state = b""
        found = head.find(_TRACESTATE, at)
        if found >= 0:
            start = found + len(_TRACESTATE)
            state = field(b"\x1a", head[start : head.find(_CRLF, start)])
        incoming = ex.traceparent_in  # the caller's span is the parent when its trace was continued
        parent = b"\x22\x08" + unhexlify(incoming[36:52]) if incoming[3:35] == trace_hex else b""

        status = ex.status
        found = head.find(_FORWARDED_HOST)
        if found >= 0:
            found += len(_FORWARDED_HOST)
        else:
            found = head.find(_HOST)
            found = found + len(_HOST) if found >= 0 else -1
        host = head[found : head.find(_CRLF, found)] if found >= 0 else b""
        # Everything but the IDs, times, path and request ID repeats between requests: built once.
        key = (ex.method, route, status, error, ex.client, ex.user_agent, ex.http10, host)
        common = self._server_parts.get(key)
        if common is None:
            if len(self._server_parts) >= _CACHE_LIMIT:
                self._server_parts.clear()
            common = self._server_parts[key] = self._server_common(ex, route, error, host)
        name, fields, status_field = common
        path = path_of(ex.target)
        limit = self._max_length
        if not path.isascii() or (limit is not None and len(path) > limit):  # protobuf strings are UTF-8
            path = path.decode("utf-8", "replace")[:limit].encode()
        emit = self._emit
        span_type = self._span_type

        if ex.upstream_started:
            client = self._client_parts.get(key)
            if client is None:
                if len(self._client_parts) >= _CACHE_LIMIT:
                    self._client_parts.clear()
                client = self._client_parts[key] = self._client_common(ex, error)
            emit(
                span_type(
                    b"".join(
                        (
                            b"\x0a\x10",
                            trace_id,
                            b"\x12\x08",
                            client_id,
                            state,
                            b"\x22\x08",
                            server_id,
                            client[0],  # name, kind
                            b"\x39",
                            FIXED64(int(ex.upstream_started * 1e9) + offset),
                            b"\x41",
                            FIXED64(int((ex.upstream_ended or ended) * 1e9) + offset),
                            _string_attribute(_URL_FULL, self._upstream_base + path),
                            client[1],  # the other attributes, status, flags
                        )
                    )
                )
            )
        emit(
            span_type(
                b"".join(
                    (
                        b"\x0a\x10",
                        trace_id,
                        b"\x12\x08",
                        server_id,
                        state,
                        parent,
                        name,
                        b"\x39",
                        FIXED64(int(ex.started * 1e9) + offset),
                        b"\x41",
                        FIXED64(int(ended * 1e9) + offset),
                        _string_attribute(_URL_PATH, path),
                        _request_id_attribute(ex.request_id.encode()),
                        fields,
                        status_field,
                        REMOTE_PARENT_FLAGS if parent else LOCAL_PARENT_FLAGS,
                    )
                )
            )
        )

    def _server_common(self, ex: Exchange, route: str, error: str, host: bytes) -> tuple[bytes, bytes, bytes]:
        """(name and kind fields, the attributes that repeat, the status field) of a server span."""
        method = method_label(ex.method)
        status = ex.status
        failed = error not in _NOT_ERRORS
        error_type = error if failed else (str(status) if status >= 500 else "")
        attributes = [
            attribute("http.request.method", method),
            attribute("url.scheme", "http"),
            attribute("http.route", route),
            attribute("network.protocol.version", "1.0" if ex.http10 else "1.1"),
            attribute("client.address", ex.client),
        ]
        if method == "_OTHER":
            attributes.append(attribute("http.request.method_original", ex.method.decode("latin-1")))
        if status:
            attributes.append(attribute("http.response.status_code", status))
        address, port = _host_and_port(host)
        if address:
            attributes.append(attribute("server.address", address))
            if port is not None:
                attributes.append(attribute("server.port", port))
        if ex.user_agent:
            agent = ex.user_agent.decode("latin-1")
            limit = self._max_length
            attributes.append(attribute("user_agent.original", agent[:limit] if limit is not None else agent))
        if error_type:
            attributes.append(attribute("error.type", error_type))
        return (
            field(b"\x2a", f"{method} {route}".encode()) + _SERVER_KIND,
            b"".join(attributes),
            # 4xx is the client's error (semantic conventions), also when the gateway refused the
            # request itself (408, 429: error.type says why); a response the app cut off is an error
            STATUS_ERROR if status >= 500 or error.startswith("upstream_") else STATUS_UNSET,
        )

    def _client_common(self, ex: Exchange, error: str) -> tuple[bytes, bytes]:
        """(name and kind fields; the attributes but ``url.full``, the status and flags) of a client span."""
        method = method_label(ex.method)
        status = ex.status
        attributes = [attribute("http.request.method", method), self._upstream_fields]
        upstream_failed = error.startswith("upstream_")
        if upstream_failed:
            attributes.append(attribute("error.type", error[len("upstream_") :]))
        elif status:
            attributes.append(attribute("http.response.status_code", status))
            if status >= 400:
                attributes.append(attribute("error.type", str(status)))
        if ex.retried:
            attributes.append(attribute("http.request.resend_count", 1))
        attributes.append(STATUS_ERROR if upstream_failed or status >= 400 else STATUS_UNSET)
        attributes.append(LOCAL_PARENT_FLAGS)
        return field(b"\x2a", method.encode()) + _CLIENT_KIND, b"".join(attributes)


def _request_id_attribute(request_id: bytes) -> bytes:
    """``http.request.header.x-request-id``: a string array (semantic conventions), of one element."""
    value = b"\x0a" + varint(len(request_id)) + request_id  # AnyValue{string_value}
    value = b"\x0a" + varint(len(value)) + value  # ArrayValue.values[0]
    value = b"\x2a" + varint(len(value)) + value  # AnyValue{array_value}
    body = _REQUEST_ID + b"\x12" + varint(len(value)) + value  # KeyValue{key, value}
    return b"\x4a" + varint(len(body)) + body


def _string_attribute(key: bytes, value: bytes) -> bytes:
    """A span attribute field with a string value; ``key`` is the key's encoded field."""
    value = b"\x0a" + varint(len(value)) + value  # AnyValue{string_value}
    body = key + b"\x12" + varint(len(value)) + value  # KeyValue{key, value}
    return b"\x4a" + varint(len(body)) + body


def _host_and_port(value: bytes) -> tuple[str, int | None]:
    """(host, port) from a ``Host``/``X-Forwarded-Host`` value (the first, for a list)."""
    text = value.decode("latin-1").split(",", 1)[0].strip()
    if text.startswith("["):  # [::1]:8080
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    port = int(port_text) if port_text.isascii() and port_text.isdigit() else None
    return host, port


class ProbeSpans:
    """A span per dependency probe (``tracing.probes``), from each result the scheduler records."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def __call__(self, result: CheckResult) -> None:
        end_ns = int(result.finished_at * 1e9)
        start_ns = end_ns - int(result.duration_seconds * 1e9)
        attributes: dict[str, Any] = {
            "sidecar.check.name": result.check,
            "sidecar.check.kind": result.kind,
            "sidecar.check.status": result.status.value,
        }
        if result.reason is not None:
            attributes["error.type"] = result.reason.value
        span = self._tracer.start_span(
            f"check {result.check}",
            context=Context(),  # every probe is a trace of its own
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=start_ns,
        )
        if result.reason is not None:
            span.set_status(Status(StatusCode.ERROR, result.output or result.reason.value))
        span.end(end_time=end_ns)
