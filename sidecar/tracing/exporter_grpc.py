"""The SDK's OTLP/gRPC exporter, sending batches of already encoded spans (``otlp_encoding``).

The channel, credentials, metadata, retries and ``OTEL_EXPORTER_OTLP_*`` handling are the SDK's;
the request message is parsed (in C) from the batch's bytes instead of being built field by field.
Imported only for ``protocol: grpc`` (grpcio is large).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from sidecar.tracing.otlp_encoding import EncodedSpan, RequestEncoder


class GrpcExporter(OTLPSpanExporter):
    """OTLP over gRPC (``TraceService/Export``); the request message is parsed from the encoded batch."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests = RequestEncoder()
        self.fast_batches = 0

    def _translate_data(self, data: Sequence[ReadableSpan | EncodedSpan]) -> ExportTraceServiceRequest:
        self.fast_batches += 1
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(self.requests.request(data))
        return request
