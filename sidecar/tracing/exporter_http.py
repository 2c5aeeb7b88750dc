"""The SDK's OTLP/HTTP exporter, sending batches of already encoded spans (``otlp_encoding``).

Everything but the encoding stays the SDK's: endpoint, headers, timeout, TLS files and compression
from ``OTEL_EXPORTER_OTLP_*``, the HTTP client and its retries. The batch's bytes go to the
exporter's own HTTP client (``_client.export``, present in current SDKs). Should an SDK not have it,
the spans are turned back into SDK spans for the exporter's own ``export``: slower, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from sidecar.tracing.otlp_encoding import EncodedSpan, RequestEncoder, to_readable

log = logging.getLogger(__name__)


class HttpExporter(OTLPSpanExporter):
    """OTLP over HTTP/protobuf (``POST <endpoint>/v1/traces``) of encoded spans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.requests = RequestEncoder()
        self.fast_batches = 0  # batches sent as encoded bytes (tests check this is the usual way)

    def export(self, spans: Sequence[ReadableSpan | EncodedSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        send = getattr(client, "export", None)
        if getattr(self, "_shutdown", True) is not False or not callable(send):
            return super().export(to_readable(spans))  # an SDK without the HTTP client this relies on
        data = self.requests.request(spans)
        limit = getattr(self, "_max_request_size", 0)
        if isinstance(limit, int) and 0 < limit < len(data):
            log.warning("span batch of %d bytes is over max_request_size %d: dropped", len(data), limit)
            return SpanExportResult.FAILURE
        self.fast_batches += 1
        result = send(data)
        return SpanExportResult.SUCCESS if getattr(result, "success", False) else SpanExportResult.FAILURE
