"""Local OTLP receivers for the tracing tests: they decode the real protobuf payloads the exporter sends.

``OtlpHttpReceiver`` is an aiohttp app on a free loopback port implementing ``POST /v1/traces``
(``application/x-protobuf``, optionally gzip); ``OtlpGrpcReceiver`` is a ``grpc.aio`` server
implementing ``TraceService/Export``. Both parse ``ExportTraceServiceRequest`` with the generated
classes from ``opentelemetry-proto`` and keep the spans, flattened, for assertions.
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


@dataclass
class _Store:
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

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

    async def __aenter__(self) -> OtlpHttpReceiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._traces)
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

        self.server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port(f"{HOST}:0")
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(grace=None)
