"""Building the OpenTelemetry pipeline: resource, sampler, OTLP exporter, counting batch processor.

Imported only when tracing is on (``sidecar.tracing.wiring``): this is where ``opentelemetry`` and
the chosen exporter (HTTP/protobuf, or gRPC, which loads grpcio) are loaded.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, TraceIdRatioBased
from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.tracing.exporter_metrics import CountingBatchSpanProcessor, ExportMetrics
from sidecar.tracing.runtime import TracingRuntime
from sidecar.tracing.settings import TracingPlan
from sidecar.tracing.spans import GatewaySpans, ProbeSpans

log = logging.getLogger(__name__)

# Kubernetes resource attributes from the downward-API variables a pod spec usually sets.
K8S_VARIABLES: dict[str, tuple[str, ...]] = {
    "k8s.pod.name": ("K8S_POD_NAME", "POD_NAME"),
    "k8s.namespace.name": ("K8S_NAMESPACE_NAME", "K8S_NAMESPACE", "K8S_POD_NAMESPACE", "POD_NAMESPACE"),
    "k8s.node.name": ("K8S_NODE_NAME", "NODE_NAME"),
    "k8s.pod.uid": ("K8S_POD_UID", "POD_UID"),
}
_ROOT_CONTEXT = Context()
_SAMPLED = (Decision.RECORD_AND_SAMPLE,)


def build_resource(plan: TracingPlan, env: Mapping[str, str]) -> Resource:
    """``service.*``, ``host.name`` and ``k8s.*`` over the SDK's defaults and ``OTEL_RESOURCE_ATTRIBUTES``.

    ``OTEL_RESOURCE_ATTRIBUTES`` wins over what is guessed here (host name, downward-API variables,
    defaults); ``OTEL_SERVICE_NAME`` and an explicitly configured ``service_name`` or
    ``tracing.service_version`` win over it.
    """
    return resource_of(
        plan.service_name, plan.default_service_name, plan.service_version, plan.fallback_service_version, env
    )


def resource_of(
    service_name: str | None,
    default_service_name: str,
    service_version: str | None,
    fallback_service_version: str | None,
    env: Mapping[str, str],
) -> Resource:
    """``build_resource`` from its parts, so OTLP log export names the same resource as the spans."""
    declared = OTELResourceDetector().detect().attributes  # OTEL_RESOURCE_ATTRIBUTES + OTEL_SERVICE_NAME
    attributes: dict[str, str] = {}
    if service_name:
        attributes["service.name"] = service_name
    elif "service.name" not in declared:
        attributes["service.name"] = default_service_name
    if service_version:
        attributes["service.version"] = service_version
    elif "service.version" not in declared and fallback_service_version:
        attributes["service.version"] = fallback_service_version
    if "host.name" not in declared:
        attributes["host.name"] = socket.gethostname()
    for key, names in K8S_VARIABLES.items():
        if key in declared:
            continue
        for name in names:
            value = env.get(name, "").strip()
            if value:
                attributes[key] = value
                break
    return Resource.create(attributes)


def build_sampler(plan: TracingPlan) -> Sampler | None:
    """``tracing.sample_ratio``, parent-based; ``None`` lets the SDK read ``OTEL_TRACES_SAMPLER(_ARG)``."""
    if plan.sample_ratio is None:
        return None
    return ParentBased(TraceIdRatioBased(plan.sample_ratio))


def new_trace_sampling(sampler: Sampler) -> tuple[bool | None, Callable[[str], bytes]]:
    """(the sampler's constant decision for a new trace, or ``None`` if it depends on the trace ID;
    a function from trace ID to the ``traceparent`` flags suffix the gateway sends, ``-01`` or ``-00``).
    """
    description = sampler.get_description()
    root = description.removeprefix("ParentBased{root:")
    constant: bool | None = None
    if root.startswith("AlwaysOnSampler"):
        constant = True
    elif root.startswith("AlwaysOffSampler"):
        constant = False

    def sample(trace_id: str) -> bytes:
        result = sampler.should_sample(_ROOT_CONTEXT, int(trace_id, 16), "new trace")
        return b"-01" if result.decision in _SAMPLED else b"-00"

    return constant, sample


def build_exporter(plan: TracingPlan) -> SpanExporter:
    """The SDK's OTLP exporter for the protocol; unset options are read from ``OTEL_EXPORTER_OTLP_*``."""
    if plan.protocol == "grpc":
        from sidecar.tracing.exporter_grpc import GrpcExporter  # noqa: PLC0415 (grpcio: only for grpc)

        headers = {k.lower(): v for k, v in plan.headers.items()} if plan.headers else None  # gRPC metadata
        return GrpcExporter(endpoint=plan.endpoint, headers=headers, timeout=plan.timeout)
    from sidecar.tracing.exporter_http import HttpExporter  # noqa: PLC0415

    return HttpExporter(endpoint=plan.endpoint, headers=plan.headers, timeout=plan.timeout)


def start_tracing(
    plan: TracingPlan,
    registry: CollectorRegistry,
    env: Mapping[str, str] | None = None,
) -> TracingRuntime:
    """Provider, exporter and the batch processor's export thread, running from now on."""
    env = os.environ if env is None else env
    resource = build_resource(plan, env)
    provider = TracerProvider(resource=resource, sampler=build_sampler(plan), shutdown_on_exit=False)
    metrics = ExportMetrics(registry)
    processor = CountingBatchSpanProcessor(
        build_exporter(plan),
        metrics,
        max_queue_size=plan.max_queue_size,
        schedule_delay_millis=plan.schedule_delay_millis,
        max_export_batch_size=plan.max_export_batch_size,
    )
    provider.add_span_processor(processor)
    gateway = GatewaySpans(processor.on_end, resource, None, SpanLimits().max_span_attribute_length)
    constant, sample = new_trace_sampling(provider.sampler)
    probes = ProbeSpans(provider.get_tracer("sidecar.probes", __version__)) if plan.probes else None
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporters and "otlp" not in exporters.lower():
        log.warning("OTEL_TRACES_EXPORTER is ignored: the sidecar exports OTLP", extra={"value": exporters})
    log.info(
        "tracing on",
        extra={
            "protocol": plan.protocol,
            "endpoint": _shown(plan.endpoint or env.get(plan.endpoint_source, "")),
            "endpoint_from": plan.endpoint_source,
            "sampler": provider.sampler.get_description(),
            "service_name": resource.attributes.get("service.name"),
            "max_queue_size": processor.capacity or None,
        },
    )
    return TracingRuntime(
        provider=provider,
        processor=processor,
        gateway=gateway,
        new_traces_sampled=constant,
        sample_new_trace=sample,
        probes=probes,
    )


def _shown(url: str) -> str:
    """Scheme, host and port only: paths and queries of collector URLs can carry tokens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "?"
    return f"{parts.scheme}://{host}{port}"
