"""Ship every ingested line and every gateway access record to an OpenTelemetry Collector as OTLP logs.

The pipeline and the gateway only append to a bounded queue (``add_record``, ``add_access``): no I/O,
no encoding, no waiting. A few tasks (``concurrent_exports``) take batches from it (``max_batch``
records, or whatever is there after ``flush_interval``), encode each in a worker thread
(``otlp_encoding``) and send it over OTLP/HTTP (protobuf, ``POST <endpoint>/v1/logs``) or OTLP/gRPC
(``LogsService/Export``, the request bytes passed through as they are). A collector that is down, slow
or answering "try later" (HTTP 429, 502-504; gRPC UNAVAILABLE and friends) gets the batch again with
doubling, jittered delays, up to ``max_retries``; one that refuses it (other 4xx, other gRPC codes)
does not. Meanwhile new records wait in the queue, and past its bound they are dropped. Every record
that does not arrive is counted by reason: ``queue_full``, ``export_failed`` (retries used up),
``rejected``, ``encode_error``, ``shutdown`` (still queued when the stop's flush time ran out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import typing
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.logs.otlp_encoding import AttributeWriter, encode_access, encode_line, request, scope_logs
from sidecar.logs.otlp_settings import OtlpLogSettings
from sidecar.logs.parse import LogRecord
from sidecar.tracing.settings import TracingConfigError, TracingSettings, check_endpoint, check_header

log = logging.getLogger(__name__)

LOGS_PATH = "/v1/logs"
GRPC_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
FLUSH_ON_STOP_SECONDS = 3.0
LINES_SCOPE = "sidecar.logs"
ACCESS_SCOPE = "sidecar.gateway"
RETRY_HTTP = frozenset({429, 502, 503, 504})
RETRY_GRPC = frozenset(
    {
        "CANCELLED",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNAVAILABLE",
        "DATA_LOSS",
        "RESOURCE_EXHAUSTED",
    }
)
DROP_REASONS = ("queue_full", "export_failed", "rejected", "encode_error", "shutdown")
Outcome = Literal["ok", "retry", "reject"]
_LINE = 0
_ACCESS = 1


class _Release(typing.Protocol):
    @property
    def release(self) -> str | None: ...


class _Logs(typing.Protocol):
    @property
    def otlp(self) -> OtlpLogSettings: ...


class ExportSettings(typing.Protocol):
    """What log export reads from the root configuration (``sidecar.config.Settings`` is one)."""

    @property
    def logs(self) -> _Logs: ...
    @property
    def tracing(self) -> TracingSettings: ...
    @property
    def service_name(self) -> str: ...
    @property
    def sentry(self) -> _Release: ...
    @property
    def model_fields_set(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class LogExportPlan:
    """Where records go (a full URL for HTTP, ``host:port`` for gRPC) and the resource naming them."""

    protocol: Literal["http/protobuf", "grpc"]
    target: str
    secure: bool
    headers: dict[str, str]
    settings: OtlpLogSettings
    service_name: str | None
    default_service_name: str
    service_version: str | None
    fallback_service_version: str | None


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _headers(text: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``key=value,key2=value2``, URL-encoded."""
    out: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            out[unquote(key.strip()).lower()] = unquote(value.strip())
    return out


def plan_log_export(settings: ExportSettings, env: Mapping[str, str]) -> LogExportPlan | None:  # noqa: PLR0912
    """The log export to start, or ``None`` when it is off; ``TracingConfigError`` when it cannot work."""
    section = settings.logs.otlp
    if section.enabled is False or (env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"):
        return None
    exporters = [e.strip().lower() for e in env.get("OTEL_LOGS_EXPORTER", "").split(",") if e.strip()]
    if exporters and all(e == "none" for e in exporters):
        return None
    logs_variable = _env(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    if section.enabled is None and section.endpoint is None and logs_variable is None:
        return None
    protocol = section.protocol
    for name in ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = _env(env, name)
        if protocol is None and value is not None:
            if value.lower() not in ("http/protobuf", "grpc"):
                raise TracingConfigError(
                    name, f"{value!r}: use http/protobuf or grpc (http/json is not supported)"
                )
            protocol = typing.cast(Literal["http/protobuf", "grpc"], value.lower())
    protocol = protocol or settings.tracing.protocol or "http/protobuf"
    exact = False  # OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is the full URL; the others get /v1/logs
    if section.endpoint is not None:
        endpoint, where = section.endpoint, "logs.otlp.endpoint"
    elif logs_variable is not None:
        endpoint, where, exact = logs_variable, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", True
    elif settings.tracing.endpoint is not None:
        endpoint, where = settings.tracing.endpoint, "tracing.endpoint"
    elif (general := _env(env, "OTEL_EXPORTER_OTLP_ENDPOINT")) is not None:
        endpoint, where = general, "OTEL_EXPORTER_OTLP_ENDPOINT"
    else:
        raise TracingConfigError(
            "logs.otlp.enabled",
            "OTLP log export is enabled but no endpoint is set: set logs.otlp.endpoint, "
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or the tracing endpoint, e.g. http://otel-collector:4318",
        )
    try:
        check_endpoint(endpoint)
    except ValueError as exc:
        raise TracingConfigError(where, str(exc)) from None
    parts = urlsplit(endpoint)
    if protocol == "grpc":
        target = parts.netloc
    elif exact or parts.path.rstrip("/").endswith(LOGS_PATH):
        target = endpoint
    else:
        target = endpoint.rstrip("/") + LOGS_PATH
    headers: dict[str, str] = {}
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"):
        found = _headers(env.get(name, ""))
        for key, value in found.items():  # a bad one would fail every export, not the start
            try:
                check_header(key, value)
            except ValueError as exc:
                raise TracingConfigError(name, str(exc)) from None
        headers.update(found)
    for configured in (settings.tracing.headers, section.headers):
        if configured:
            headers.update({k.lower(): v.get_secret_value() for k, v in configured.items()})
    explicit = _env(env, "OTEL_SERVICE_NAME")
    if explicit is None and "service_name" in settings.model_fields_set:
        explicit = settings.service_name
    return LogExportPlan(
        protocol=protocol,
        target=target,
        secure=parts.scheme == "https",
        headers=headers,
        settings=section,
        service_name=explicit,
        default_service_name=settings.service_name,
        service_version=settings.tracing.service_version,
        fallback_service_version=settings.sentry.release,
    )


class ExportMetrics:
    """``sidecar_otlp_log_*``: records exported, dropped by reason, failed attempts, queue depth."""

    def __init__(self, registry: CollectorRegistry, depth: typing.Callable[[], int]) -> None:
        self.exported = Counter(
            "sidecar_otlp_log_records_exported",
            "Log records (ingested lines, gateway access records) the OTLP collector accepted.",
            registry=registry,
        )
        self.dropped = Counter(
            "sidecar_otlp_log_records_dropped",
            "Log records that were not exported, by reason (queue_full, export_failed, rejected, "
            "encode_error, shutdown).",
            ["reason"],
            registry=registry,
        )
        self.failures = Counter(
            "sidecar_otlp_log_export_failures",
            "Export attempts that failed, by reason (timeout, connection, retryable, rejected); "
            "retried batches count once per attempt.",
            ["reason"],
            registry=registry,
        )
        self.queue = Gauge(
            "sidecar_otlp_log_queue_records", "Log records waiting for OTLP export.", registry=registry
        )
        self.queue.set_function(depth)
        self.drops = {reason: self.dropped.labels(reason) for reason in DROP_REASONS}
        for reason in ("timeout", "connection", "retryable", "rejected"):
            self.failures.labels(reason)


class HttpTransport:
    """OTLP/HTTP with protobuf bodies on one aiohttp session."""

    def __init__(self, plan: LogExportPlan) -> None:
        self.url = plan.target
        self.headers = {**plan.headers, "Content-Type": "application/x-protobuf"}
        self.timeout = aiohttp.ClientTimeout(total=plan.settings.timeout)
        self.session: aiohttp.ClientSession | None = None

    async def send(self, data: bytes) -> tuple[Outcome, str]:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self.session.post(self.url, data=data, headers=self.headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return "ok", ""
                return ("retry", "retryable") if response.status in RETRY_HTTP else ("reject", "rejected")
        except TimeoutError:
            return "retry", "timeout"
        except (aiohttp.ClientError, OSError):
            return "retry", "connection"

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class GrpcTransport:
    """OTLP/gRPC: ``LogsService/Export`` with the encoded request passed through (grpc.aio)."""

    def __init__(self, plan: LogExportPlan) -> None:
        import grpc  # type: ignore[import-untyped]  # noqa: PLC0415 (grpcio is large: only for grpc)

        self.grpc = grpc
        self.channel = (
            grpc.aio.secure_channel(plan.target, grpc.ssl_channel_credentials())
            if plan.secure
            else grpc.aio.insecure_channel(plan.target)
        )
        self.export = self.channel.unary_unary(GRPC_METHOD)  # bytes in, bytes out
        self.metadata = tuple(plan.headers.items())
        self.timeout = plan.settings.timeout

    async def send(self, data: bytes) -> tuple[Outcome, str]:
        try:
            await self.export(data, timeout=self.timeout, metadata=self.metadata)
        except self.grpc.aio.AioRpcError as exc:
            code = exc.code().name
            if code == "DEADLINE_EXCEEDED":
                return "retry", "timeout"
            if code == "UNAVAILABLE":
                return "retry", "connection"
            return ("retry", "retryable") if code in RETRY_GRPC else ("reject", "rejected")
        return "ok", ""

    async def close(self) -> None:
        await self.channel.close()


class LogExporter:
    """The bounded queue, the export task and its transport."""

    def __init__(
        self, plan: LogExportPlan, registry: CollectorRegistry, env: Mapping[str, str] | None = None
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.queue: deque[tuple[int, Any, float]] = deque()
        self.metrics = ExportMetrics(registry, lambda: len(self.queue))
        self._drops = self.metrics.drops
        self._max_queue = self.settings.max_queue
        self._max_batch = self.settings.max_batch
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._env = os.environ if env is None else env
        self.resource: dict[str, Any] = {}
        self._writer = AttributeWriter()
        self.transport: HttpTransport | GrpcTransport | None = None

    def add_record(self, record: LogRecord) -> None:
        """The pipeline's sink: queue the record, or count it dropped when the queue is full."""
        queue = self.queue
        if len(queue) >= self._max_queue:
            self._drops["queue_full"].inc()
            return
        queue.append((_LINE, record, 0.0))
        if len(queue) >= self._max_batch:
            self._wake.set()

    def add_access(self, line: bytes, at: float) -> None:
        """The gateway's access-log sink (the encoded access line and its time)."""
        queue = self.queue
        if len(queue) >= self._max_queue:
            self._drops["queue_full"].inc()
            return
        queue.append((_ACCESS, line, at))
        if len(queue) >= self._max_batch:
            self._wake.set()

    async def start(self) -> None:
        from sidecar.tracing.provider import resource_of  # noqa: PLC0415 (the SDK only when exporting)

        plan = self.plan
        resource = resource_of(
            plan.service_name,
            plan.default_service_name,
            plan.service_version,
            plan.fallback_service_version,
            self._env,
        )
        self.resource = dict(resource.attributes)
        self.transport = GrpcTransport(plan) if plan.protocol == "grpc" else HttpTransport(plan)
        self._tasks = [
            asyncio.create_task(self._run(), name=f"otlp log export {n}")
            for n in range(self.settings.concurrent_exports)
        ]
        log.info("OTLP log export started", extra={"protocol": plan.protocol, "target": _shown(plan.target)})

    async def _run(self) -> None:
        while True:
            if len(self.queue) < self._max_batch and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.flush_interval):
                        await self._wake.wait()
            if not self.queue:
                if self._stopping:
                    return
                continue
            batch = [self.queue.popleft() for _ in range(min(self._max_batch, len(self.queue)))]
            try:
                data = await asyncio.to_thread(self._encode, batch)
            except Exception:  # a record the encoder cannot write must not stop the export
                log.exception("OTLP log batch could not be encoded")
                self._drops["encode_error"].inc(len(batch))
                continue
            await self._send(data, len(batch))

    def _encode(self, batch: list[tuple[int, Any, float]]) -> bytes:
        now = time.time_ns()
        lines: list[bytes] = []
        access: list[bytes] = []
        failed = 0
        for kind, item, at in batch:
            try:
                if kind == _LINE:
                    lines.append(encode_line(item, now, self._writer))
                else:
                    access.append(encode_access(item, at, now, self._writer))
            except (ValueError, TypeError, UnicodeError):
                failed += 1
        if failed:
            self._drops["encode_error"].inc(failed)
        scopes = []
        if lines:
            scopes.append(scope_logs(LINES_SCOPE, lines))
        if access:
            scopes.append(scope_logs(ACCESS_SCOPE, access))
        return request(self.resource, scopes)

    async def _send(self, data: bytes, count: int) -> None:
        assert self.transport is not None
        delay = self.settings.retry_initial
        for attempt in range(self.settings.max_retries + 1):
            outcome, reason = await self.transport.send(data)
            if outcome == "ok":
                self.metrics.exported.inc(count)
                return
            self.metrics.failures.labels(reason).inc()
            if outcome == "reject":
                self._drops["rejected"].inc(count)
                log.warning("the OTLP collector refused a log batch; dropped", extra={"records": count})
                return
            if attempt == self.settings.max_retries or self._stopping:
                break
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, self.settings.retry_max)
        self._drops["export_failed"].inc(count)
        log.warning(
            "OTLP log batch not exported after retries; dropped", extra={"records": count, "reason": reason}
        )

    async def stop(self, flush_seconds: float = FLUSH_ON_STOP_SECONDS) -> None:
        """Send what is queued for up to ``flush_seconds``; what is left then is counted as dropped."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            together = asyncio.gather(*self._tasks)
            try:
                async with asyncio.timeout(flush_seconds):
                    await asyncio.shield(together)
            except TimeoutError:
                together.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await together
            self._tasks = []
        if self.queue:
            self._drops["shutdown"].inc(len(self.queue))
            self.queue.clear()
        if self.transport is not None:
            await self.transport.close()


def _shown(target: str) -> str:
    parts = urlsplit(target if "://" in target else f"//{target}")
    return f"{parts.scheme + '://' if parts.scheme else ''}{parts.hostname}:{parts.port or ''}{parts.path}"
