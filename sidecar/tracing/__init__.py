"""OpenTelemetry traces over OTLP: a server and a client span per proxied request, optional probe spans.

Off unless an OTLP endpoint is configured, and then nothing here imports ``opentelemetry``: the SDK
and the exporter are loaded by ``sidecar.tracing.provider`` only when tracing is on. The gateway's
own W3C trace context stays the single source of IDs: the span ID in the ``traceparent`` the app
receives is the client span's ID, so the app's spans become its children.
"""
