"""Local OTLP receivers for the tracing and log export tests: they decode the real protobuf payloads.

``OtlpHttpReceiver`` is an aiohttp app on a free loopback port implementing ``POST /v1/traces`` and
``POST /v1/logs`` (``application/x-protobuf``, optionally gzip); ``OtlpGrpcReceiver`` is a ``grpc.aio``
server implementing ``TraceService/Export`` and ``LogsService/Export``. Both parse the requests with the
generated classes from ``opentelemetry-proto`` and keep the spans and log records, flattened, for
assertions. ``status`` (HTTP) or ``grpc_code`` makes them refuse, ``delay`` makes them slow.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

HOST = "127.0.0.1"
KIND = {
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
STATUS = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}


def value_of(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    if which is None:
        return None
    if which == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: str
    attributes: dict[str, Any]
    status: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any]
    scope: str
    trace_state: str


def flatten(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=KIND[span.kind],
                        attributes=attributes_of(span.attributes),
                        status=STATUS[span.status.code],
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        trace_state=span.trace_state,
                    )
                )
    return spans


@dataclass(frozen=True)
class ReceivedLog:
    body: Any
    severity_number: int
    severity_text: str
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    time_ns: int
    observed_ns: int
    resource: dict[str, Any]
    scope: str


def flatten_logs(request: ExportLogsServiceRequest) -> list[ReceivedLog]:
    records = []
    for resource_logs in request.resource_logs:
        resource = attributes_of(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                records.append(
                    ReceivedLog(
                        body=value_of(record.body),
                        severity_number=record.severity_number,
                        severity_text=record.severity_text,
                        attributes=attributes_of(record.attributes),
                        trace_id=record.trace_id.hex(),
                        span_id=record.span_id.hex(),
                        time_ns=record.time_unix_nano,
                        observed_ns=record.observed_time_unix_nano,
                        resource=resource,
                        scope=scope_logs.scope.name,
                    )
                )
    return records


@dataclass
class _Store:
    spans: list[ReceivedSpan] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    requests: int = 0
    attempts: int = 0  # log export requests received, refused ones included
    delay: float = 0.0  # seconds each log export waits before it is answered
    headers: list[dict[str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add_logs(self, request: ExportLogsServiceRequest, headers: dict[str, str]) -> None:
        self.requests += 1
        self.headers.append(headers)
        self.logs.extend(flatten_logs(request))
        self.changed.set()

    async def wait_for_logs(self, count: int, timeout: float = 10.0) -> list[ReceivedLog]:
        """The log records once at least ``count`` have arrived; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.logs) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the receiver has {len(self.logs)} log records, waited for {count}")
            self.changed.clear()
            try:
                async with asyncio.timeout(min(left, 0.2)):
                    await self.changed.wait()
            except TimeoutError:
                pass
        return list(self.logs)

    def add(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        self.requests += 1
        self.headers.append(headers)
        self.spans.extend(flatten(request))
        self.changed.set()

    async def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """The spans so far once ``predicate`` holds; ``TimeoutError`` naming what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate(self.spans):
            left = deadline - time.monotonic()
            if left <= 0:
                names = [(s.name, s.kind) for s in self.spans]
                raise TimeoutError(f"the receiver has {len(self.spans)} spans: {names}")
            self.changed.clear()
            try:
                async with asyncio.timeout(min(left, 0.2)):
                    await self.changed.wait()
            except TimeoutError:
                pass
        return list(self.spans)


class OtlpHttpReceiver(_Store):
    """``POST /v1/traces`` on a free loopback port; ``status`` can be set to refuse exports."""

    def __init__(self) -> None:
        super().__init__()
        self.status = 200
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        assert request.content_type == "application/x-protobuf", request.content_type
        if self.status != 200:
            return web.Response(status=self.status)
        self.add(
            ExportTraceServiceRequest.FromString(body), {k.lower(): v for k, v in request.headers.items()}
        )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def _logs(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        assert request.content_type == "application/x-protobuf", request.content_type
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status)
        self.add_logs(
            ExportLogsServiceRequest.FromString(body), {k.lower(): v for k, v in request.headers.items()}
        )
        return web.Response(
            body=ExportLogsServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    async def __aenter__(self) -> OtlpHttpReceiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/logs", self._logs)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class OtlpGrpcReceiver(_Store):
    """``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on a free loopback port (grpc.aio)."""

    def __init__(self) -> None:
        super().__init__()
        self.server: Any = None
        self.port = 0
        self.grpc_code: Any = None  # a grpc.StatusCode to refuse log exports with

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def __aenter__(self) -> OtlpGrpcReceiver:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        store = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            async def Export(
                self, request: ExportTraceServiceRequest, context: Any
            ) -> ExportTraceServiceResponse:
                store.add(request, dict(context.invocation_metadata()))
                return ExportTraceServiceResponse()

        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

        class LogsService(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
            async def Export(
                self, request: ExportLogsServiceRequest, context: Any
            ) -> ExportLogsServiceResponse:
                store.attempts += 1
                if store.delay:
                    await asyncio.sleep(store.delay)
                if store.grpc_code is not None:
                    await context.abort(store.grpc_code, "refused by the test")
                store.add_logs(request, dict(context.invocation_metadata()))
                return ExportLogsServiceResponse()

        self.server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(), self.server)
        self.port = self.server.add_insecure_port(f"{HOST}:0")
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(grace=None)
