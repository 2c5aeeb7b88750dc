"""The trace flow: OpenTelemetry spans over OTLP, a server and a client span per proxied request, probe spans.

In: finished exchanges from the gateway (``context.record``) and probe results from the scheduler.
Out: OTLP batches (HTTP/protobuf or gRPC) to a collector, and counts of what was exported or dropped.

- ``settings``: the ``tracing:`` section and how it combines with ``OTEL_*``.
- ``spans``: spans built after the fact from what was recorded; ``otlp_encoding``: protobuf straight to bytes.
- ``provider``: the SDK pipeline (resource, sampler, exporter, batch processor); ``exporter_http``,
  ``exporter_grpc``: the two transports; ``exporter_metrics``: exported, dropped, failed.
- ``runtime``: what the gateway and scheduler hand spans to; ``wiring``: the app factory's part.

Off unless an OTLP endpoint is configured, and then nothing here imports ``opentelemetry``: the SDK
and the exporter are loaded by ``provider`` only when tracing is on. The gateway's own W3C trace
context stays the single source of IDs: the span ID in the ``traceparent`` the app receives is the
client span's ID, so the app's spans become its children.
"""
