"""The tracing pipeline without a network: span building, resource, sampling, encoding, drop counting."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, StaticSampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from prometheus_client import CollectorRegistry

from collectors.base import Reason
from collectors.base import Status as CheckStatus
from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.context import GatewayContext
from sidecar.gateway.exchange import Exchange
from sidecar.gateway.proxy import ClientConnection
from sidecar.gateway.settings import GatewaySettings, parse_upstream
from sidecar.probing.health import HealthModel
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.tracing.exporter_metrics import CountingBatchSpanProcessor, ExportMetrics
from sidecar.tracing.otlp_encoding import EncodedSpan, RequestEncoder, SpanEncoder, to_readable
from sidecar.tracing.provider import build_resource, new_trace_sampling
from sidecar.tracing.settings import TracingPlan
from sidecar.tracing.spans import GatewaySpans, ProbeSpans

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOP = "00f067aa0ba902b7"
CALLER = "b7ad6b7169203331"
RESOURCE = Resource.create(
    {"service.name": "shop"}
)  # one object, as in the sidecar (spans are grouped by it)


@functools.cache
def client_connection() -> ClientConnection:
    """A real (unconnected) client connection: compiled gateway classes check their fields' types."""
    registry = CollectorRegistry()
    settings = GatewaySettings(upstream="http://127.0.0.1:3000", access_log={"enabled": False})  # type: ignore[arg-type]
    metrics = HttpMetrics(registry, RouteNormaliser())
    ctx = GatewayContext(settings, metrics, registry, CorrelationIndex(), HealthModel(ResultStore()))
    return ClientConnection(ctx)


def exchange(
    *,
    method: bytes = b"GET",
    target: bytes = b"/users/7?token=x",
    flags: str = "01",
    incoming: bytes = b"",
    host: bytes = b"Host: shop.example:8443\r\nX-Forwarded-Host: shop.example:8443\r\n",
    tracestate: bytes = b"",
    status: int = 200,
    upstream: bool = True,
) -> Exchange:
    ex = Exchange(client_connection(), method, target, 100.0)
    ex.head = (
        method + b" " + target + b" HTTP/1.1\r\nUser-Agent: curl/8\r\n" + host + b"X-Request-ID: rid-1\r\n"
        b"traceparent: 00-" + TRACE.encode() + b"-" + HOP.encode() + b"-" + flags.encode()
        + (b"\r\ntracestate: " + tracestate if tracestate else b"") + b"\r\n\r\n"
    )  # fmt: skip
    ex.request_id = "rid-1"
    ex.trace_id = TRACE
    ex.traceparent_in = incoming
    ex.client = "203.0.113.7"
    ex.user_agent = b"curl/8"
    ex.status = status
    if upstream:
        ex.upstream_started = 100.001
        ex.upstream_ended = 100.004
    return ex


def encoded_of(ex: Exchange, error: str = "", route: str = "/users/{id}", **kwargs: Any) -> list[EncodedSpan]:
    out: list[EncodedSpan] = []
    recorder = GatewaySpans(out.append, RESOURCE, parse_upstream("http://10.0.0.5:3000"), **kwargs)
    recorder.record(ex, 100.005, route, error)  # no running loop: built at once
    return out


def spans_of(ex: Exchange, error: str = "", route: str = "/users/{id}", **kwargs: Any) -> list[ReadableSpan]:
    """The spans the gateway encoded, decoded back (through protobuf) for assertions."""
    return to_readable(encoded_of(ex, error, route, **kwargs))


def test_a_continued_request_gives_a_server_and_a_client_span_with_the_hop_id() -> None:
    ex = exchange(incoming=f"00-{TRACE}-{CALLER}-01".encode(), tracestate=b"v=1")
    client, server = spans_of(ex)
    assert server.kind is SpanKind.SERVER and client.kind is SpanKind.CLIENT
    assert server.context is not None and client.context is not None and server.parent is not None
    assert server.context.trace_id == client.context.trace_id == int(TRACE, 16)
    assert server.parent.span_id == int(CALLER, 16) and server.parent.is_remote
    assert client.parent == server.context
    assert client.context.span_id == int(HOP, 16)  # the span ID the app received
    assert dict(server.context.trace_state) == {"v": "1"}
    assert server.start_time is not None and server.end_time is not None
    assert server.end_time - server.start_time == pytest.approx(5_000_000, abs=2)
    assert client.start_time is not None and client.end_time is not None
    assert client.end_time - client.start_time == pytest.approx(3_000_000, abs=2)
    assert server.name == "GET /users/{id}" and client.name == "GET"
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/users/7",
        "url.scheme": "http",
        "http.route": "/users/{id}",
        "network.protocol.version": "1.1",
        "client.address": "203.0.113.7",
        "http.request.header.x-request-id": ("rid-1",),
        "http.response.status_code": 200,
        "server.address": "shop.example",
        "server.port": 8443,
        "user_agent.original": "curl/8",
    }
    assert dict(client.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "10.0.0.5",
        "server.port": 3000,
        "url.full": "http://10.0.0.5:3000/users/7",
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }
    assert server.status.status_code is StatusCode.UNSET


def test_unsampled_requests_cost_no_spans() -> None:
    assert spans_of(exchange(flags="00")) == []


def test_a_new_trace_has_no_parent_and_a_foreign_incoming_header_is_not_one() -> None:
    _, server = spans_of(exchange())
    assert server.parent is None
    other = "0af7651916cd43dd8448eb211c80319c"  # e.g. two traceparent headers: a new trace was started
    _, server = spans_of(exchange(incoming=f"00-{other}-{CALLER}-01".encode()))
    assert server.parent is None


def test_failures_statuses_and_unusual_requests() -> None:
    # the app reset the connection mid-response: the server span is an error, the client span says why
    client, server = spans_of(exchange(status=200), error="upstream_reset")
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "upstream_reset"
    assert (client.attributes or {})["error.type"] == "reset"
    assert "http.response.status_code" not in (client.attributes or {})
    # a client that left is not the server's error
    _, server = spans_of(exchange(status=499), error="client_disconnect")
    assert server.status.status_code is StatusCode.UNSET
    assert "error.type" not in (server.attributes or {})
    # refused by the gateway with a 4xx (e.g. a rate limit): error.type says why, but not the server's error
    (server,) = spans_of(exchange(status=429, upstream=False), error="rate_limited")
    assert server.status.status_code is StatusCode.UNSET
    assert (server.attributes or {})["error.type"] == "rate_limited"
    # the gateway answered itself (no upstream call): one span
    (server,) = spans_of(exchange(status=503, upstream=False), error="concurrency")
    assert server.kind is SpanKind.SERVER and (server.attributes or {})["error.type"] == "concurrency"
    # methods outside the known set, HTTP/1.0, IPv6 Host
    ex = exchange(method=b"PROPFIND", host=b"Host: [::1]:8080\r\n")
    ex.http10 = True
    _, server = spans_of(ex, route="/dav")
    attributes = server.attributes or {}
    assert server.name == "_OTHER /dav"
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "PROPFIND"
    assert attributes["network.protocol.version"] == "1.0"
    assert (attributes["server.address"], attributes["server.port"]) == ("::1", 8080)


def test_paths_that_are_not_utf8_still_make_valid_protobuf() -> None:
    client, server = spans_of(exchange(target=b"/caf\xe9/\xff?q=1"))  # decoding checks UTF-8
    assert (server.attributes or {})["url.path"] == "/caf\ufffd/\ufffd"
    assert (client.attributes or {})["url.full"] == "http://10.0.0.5:3000/caf\ufffd/\ufffd"


def test_attribute_values_respect_the_length_limit_and_unix_upstreams_are_named() -> None:
    ex = exchange(target=b"/" + b"a" * 100)
    ex.user_agent = b"x" * 100
    out: list[EncodedSpan] = []
    recorder = GatewaySpans(out.append, Resource.create({}), parse_upstream("unix:/run/app.sock"), 16)
    recorder.record(ex, 100.005, "/x", "")
    client, server = to_readable(out)
    assert len((server.attributes or {})["url.path"]) == 16
    assert len((server.attributes or {})["user_agent.original"]) == 16
    assert (client.attributes or {})["network.transport"] == "unix"
    assert (client.attributes or {})["network.peer.address"] == "/run/app.sock"


def test_resource_attributes_from_config_downward_api_and_otel_resource_attributes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=declared,deployment.environment.name=prod")
    env = {"POD_NAME": "guessed", "POD_NAMESPACE": "shop", "K8S_NODE_NAME": "node-1"}
    resource = build_resource(plan(service_name="checkout", fallback_service_version="v9"), env)
    attributes = resource.attributes
    assert attributes["service.name"] == "checkout"
    assert attributes["service.version"] == "v9"
    assert attributes["k8s.pod.name"] == "declared"  # OTEL_RESOURCE_ATTRIBUTES wins over guesses
    assert attributes["k8s.namespace.name"] == "shop"
    assert attributes["k8s.node.name"] == "node-1"
    assert attributes["deployment.environment.name"] == "prod"
    assert attributes["host.name"]
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-resource-attributes")
    assert build_resource(plan(), {}).attributes["service.name"] == "from-resource-attributes"
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert build_resource(plan(), {}).attributes["service.name"] == "app"


def plan(**fields: Any) -> TracingPlan:
    defaults: dict[str, Any] = {
        "protocol": "http/protobuf",
        "endpoint": "http://c:4318/v1/traces",
        "endpoint_source": "tracing.endpoint",
        "headers": None,
        "timeout": None,
        "sample_ratio": None,
        "max_queue_size": None,
        "max_export_batch_size": None,
        "schedule_delay_millis": None,
        "probes": False,
        "service_name": None,
        "default_service_name": "app",
        "service_version": None,
        "fallback_service_version": None,
    }
    return TracingPlan(**{**defaults, **fields})


def test_new_traces_follow_the_samplers_root_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    assert new_trace_sampling(ALWAYS_ON)[0] is True
    assert new_trace_sampling(ParentBased(StaticSampler(decision=_drop())))[0] is False
    ratio = ParentBased(TraceIdRatioBased(0.5))
    constant, sample = new_trace_sampling(ratio)
    assert constant is None
    root = TraceIdRatioBased(0.5)
    ids = [f"{n:032x}" for n in (1, 2**63, 2**64 - 1, 2**64 + 5, 12345678901234567890)]
    for trace_id in ids:
        expected = root.should_sample(None, int(trace_id, 16), "x").decision.is_sampled()  # type: ignore[no-untyped-call]
        assert sample(trace_id) == (b"-01" if expected else b"-00")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    from_env = TracerProvider(shutdown_on_exit=False).sampler
    assert "TraceIdRatioBased{0.25}" in from_env.get_description()
    assert new_trace_sampling(from_env)[0] is None


def _drop() -> Any:
    from opentelemetry.sdk.trace.sampling import Decision

    return Decision.DROP


def test_probe_results_become_spans() -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    probes = ProbeSpans(provider.get_tracer("sidecar.probes"))
    probes(CheckResult("db", "postgres", CheckStatus.PASS, 0.012, 1_700_000_000.0))
    probes(CheckResult("cache", "redis", CheckStatus.FAIL, 3.0, 1_700_000_010.0, Reason.TIMEOUT, "no answer"))
    ok, failed = memory.get_finished_spans()
    assert ok.name == "check db" and ok.status.status_code is StatusCode.UNSET
    assert ok.end_time == 1_700_000_000 * 10**9 and ok.start_time == ok.end_time - 12_000_000
    assert failed.status.status_code is StatusCode.ERROR and failed.status.description == "no answer"
    assert dict(failed.attributes or {}) == {
        "sidecar.check.name": "cache",
        "sidecar.check.kind": "redis",
        "sidecar.check.status": "fail",
        "error.type": "timeout",
    }
    assert ok.parent is None and ok.context is not None and failed.context is not None
    assert ok.context.trace_id != failed.context.trace_id


def test_the_gateways_encoding_is_what_the_sdk_writes_for_the_same_spans() -> None:
    encoded = encoded_of(exchange(incoming=f"00-{TRACE}-{CALLER}-01".encode(), tracestate=b"a=1,b=2"))
    encoded += encoded_of(exchange(method=b"PROPFIND", status=503), error="upstream_timeout")
    request = RequestEncoder().request(encoded)
    assert request == encode_spans(to_readable(encoded)).SerializeToString()


def test_the_fast_encoding_is_the_sdks_message() -> None:
    spans = spans_of(exchange(incoming=f"00-{TRACE}-{CALLER}-01".encode(), tracestate=b"a=1,b=2"))
    spans += spans_of(exchange(status=503), error="upstream_timeout")
    provider = TracerProvider(resource=Resource.create({"service.name": "x", "n": 3}), shutdown_on_exit=False)
    span = provider.get_tracer("t", "1.0", schema_url="https://opentelemetry.io/schemas/1.21.0").start_span(
        "odd values",
        attributes={
            "neg": -5,
            "big": 2**62,
            "ratio": 0.25,
            "yes": True,
            "no": False,
            "raw": b"\x00\x01",
            "list": ["a", "b"],
            "ints": (1, -2),
            "empty": "",
            "unicode": "héllo ✓",
        },
    )
    span.set_status(Status(StatusCode.ERROR, "broken"))
    span.end()
    spans.append(span)  # type: ignore[arg-type]
    spans.append(
        ReadableSpan(
            "",
            SpanContext(1, 2, False, TraceFlags(1)),
            SpanContext(1, 3, False, TraceFlags(1)),
            Resource.create({"other": "resource"}),
            {"none": None},
            instrumentation_scope=InstrumentationScope("scope-2"),
        )
    )
    encoder = SpanEncoder()
    encoded = [encoder.encode(span) for span in spans]
    assert None not in encoded
    request = RequestEncoder().request(encoded)  # type: ignore[arg-type]
    assert ExportTraceServiceRequest.FromString(request) == encode_spans(spans)
    assert request == encode_spans(spans).SerializeToString()


def test_spans_with_events_go_to_the_sdks_encoder() -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("t").start_span("with event")
    span.add_event("something")
    span.end()
    assert SpanEncoder().encode(span) is None  # type: ignore[arg-type]
    gateway = encoded_of(exchange())
    mixed = RequestEncoder().request([*gateway, span])  # type: ignore[list-item]
    assert ExportTraceServiceRequest.FromString(mixed) == encode_spans([*to_readable(gateway), span])  # type: ignore[list-item]


class BlockingExporter(SpanExporter):
    def __init__(self, result: SpanExportResult = SpanExportResult.SUCCESS) -> None:
        self.release = threading.Event()
        self.batches: list[int] = []
        self.result = result

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        self.batches.append(len(spans))
        return self.result

    def shutdown(self) -> None:
        self.release.set()


def sampled_span(n: int, sampled: bool = True) -> ReadableSpan:
    return ReadableSpan("s", SpanContext(n + 1, n + 1, False, TraceFlags(1 if sampled else 0)))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_full_queue_drops_and_counts_and_every_span_is_accounted_for() -> None:
    registry = CollectorRegistry()
    inner = BlockingExporter()
    processor = CountingBatchSpanProcessor(
        inner, ExportMetrics(registry), max_queue_size=8, max_export_batch_size=4, schedule_delay_millis=5
    )
    for n in range(50):
        processor.on_end(sampled_span(n))
        processor.on_end(sampled_span(n, sampled=False))  # not sampled: never queued, never counted
        time.sleep(0.001)
    dropped = value(registry, "sidecar_otel_spans_dropped_total", reason="queue_full")
    assert dropped >= 50 - 8 - 4
    assert value(registry, "sidecar_otel_queue_spans") <= 8
    inner.release.set()
    processor.shutdown(timeout_millis=5000)
    exported = value(registry, "sidecar_otel_spans_exported_total")
    lost = value(registry, "sidecar_otel_spans_dropped_total", reason="shutdown")
    assert exported + dropped + lost == 50
    assert sum(inner.batches) == exported
    processor.on_end(sampled_span(99))
    assert value(registry, "sidecar_otel_spans_dropped_total", reason="shutdown") == lost + 1


def test_failed_exports_are_counted_and_back_off() -> None:
    registry = CollectorRegistry()
    inner = BlockingExporter(SpanExportResult.FAILURE)
    inner.release.set()
    processor = CountingBatchSpanProcessor(
        inner, ExportMetrics(registry), max_queue_size=64, max_export_batch_size=2, schedule_delay_millis=5
    )
    for n in range(10):
        processor.on_end(sampled_span(n))
    deadline = time.monotonic() + 5
    while not inner.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert len(inner.batches) == 1  # the next batch waits out the backoff (1 s) instead of spinning
    assert value(registry, "sidecar_otel_export_failures_total") == 1
    assert value(registry, "sidecar_otel_spans_dropped_total", reason="export_failed") == inner.batches[0]
    started = time.monotonic()
    processor.shutdown(timeout_millis=2000)  # a stop does not wait out the backoff
    assert time.monotonic() - started < 1.5
    assert value(registry, "sidecar_otel_spans_exported_total") == 0
