"""The ``tracing:`` section, and how it combines with the standard ``OTEL_*`` environment variables.

Tracing is off until an OTLP endpoint is known: ``tracing.endpoint`` (also
``SIDECAR_TRACING__ENDPOINT``), else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``. ``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none`` and
``tracing.enabled: false`` turn it off whatever else is set. What the section leaves unset, the
OpenTelemetry SDK reads from its own variables (headers, timeout, TLS files, compression, sampler,
batch sizes), so those work as their specification says.

Nothing here imports ``opentelemetry``: deciding that tracing is off costs no import at all.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from sidecar.core.durations import Duration
from sidecar.core.settings_model import Meta, Model, SecretStr, ValidationInfo, check_each, field_validator

Protocol = Literal["http/protobuf", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("http/protobuf", "grpc")
TRACES_PATH = "/v1/traces"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_header(name: str, value: str) -> None:
    """``ValueError`` unless ``name: value`` can be sent as one HTTP header line as it stands."""
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an HTTP header name")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"the value of header {name!r} contains a line break or NUL")


def _one_header(entry: tuple[str, SecretStr]) -> SecretStr:
    """One ``headers`` entry; each bad one is reported at its name."""
    name, secret = entry
    check_header(name, secret.get_secret_value())
    return secret


def check_headers(value: dict[str, SecretStr] | None) -> dict[str, SecretStr] | None:
    """A ``headers`` setting (tracing's, ``logs.otlp``'s): every bad entry reported at its name."""
    check_each(((name, (name, secret)) for name, secret in (value or {}).items()), _one_header)
    return value


class TracingConfigError(ValueError):
    """A tracing setting or ``OTEL_*`` variable that cannot work; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_endpoint(value: str) -> str:
    """An ``http://`` or ``https://`` URL with a host and no credentials; ``ValueError`` saying why not."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a URL ({exc}): use e.g. http://otel-collector:4318") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value!r} is not an OTLP endpoint: use http://host:port (plain text) or https://host:port, "
            "e.g. http://otel-collector:4318 (http/protobuf) or http://otel-collector:4317 (grpc)"
        )
    if parts.username or parts.password:
        raise ValueError("the endpoint cannot carry credentials: put them in tracing.headers")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: an OTLP endpoint has no query or fragment")
    return text


class TracingSettings(Model):
    """``tracing:``: where spans go and what is traced. Unset keys fall back to the ``OTEL_*`` variables."""

    enabled: Annotated[
        bool | None,
        Meta(
            description="default: on when an OTLP endpoint is set or in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT"
        ),
    ] = None
    endpoint: Annotated[
        str | None,
        Meta(
            description="collector base URL, e.g. http://otel-collector:4318; http/protobuf posts to "
            "<endpoint>/v1/traces (a URL already ending in /v1/traces is used as it is)"
        ),
    ] = None
    protocol: Annotated[
        Protocol | None,
        Meta(
            description="http/protobuf or grpc; "
            "default: OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL or http/protobuf"
        ),
    ] = None
    headers: Annotated[
        dict[str, SecretStr] | None,
        Meta(description="sent with every export (API keys); default: OTEL_EXPORTER_OTLP_HEADERS"),
    ] = None
    timeout: Annotated[
        Duration | None, Meta(description="per export request; default: OTEL_EXPORTER_OTLP_TIMEOUT, else 10s")
    ] = None
    sample_ratio: (
        Annotated[
            float,
            Meta(
                ge=0.0,
                le=1.0,
                description="share of new traces sampled (parent-based); default: OTEL_TRACES_SAMPLER(_ARG)",
            ),
        ]
        | None
    ) = None
    max_queue_size: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=1_000_000,
                description="spans waiting for export; past it new spans are dropped (counted); default 2048",
            ),
        ]
        | None
    ) = None
    max_export_batch_size: (
        Annotated[int, Meta(ge=1, le=100_000, description="spans per export request; default 512")] | None
    ) = None
    schedule_delay: Annotated[
        Duration | None, Meta(description="longest wait before a partial batch is sent; default 5s")
    ] = None
    service_version: Annotated[
        str | None,
        Meta(description="resource service.version; default: OTEL_RESOURCE_ATTRIBUTES or SENTRY_RELEASE"),
    ] = None
    probes: Annotated[bool, Meta(description="also export a span per dependency probe")] = False

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return check_endpoint(value)

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr] | None) -> dict[str, SecretStr] | None:
        return check_headers(value)

    @field_validator("protocol", mode="before")
    @classmethod
    def _lower_protocol(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("max_export_batch_size")
    @classmethod
    def _batch_fits_queue(cls, value: int | None, info: ValidationInfo) -> int | None:
        # across fields: reads max_queue_size when it is valid, in the same pass as every other problem
        queue = info.data.get("max_queue_size")
        if value is not None and queue is not None and value > queue:
            raise ValueError(
                f"max_export_batch_size ({value}) is larger than max_queue_size "
                f"({queue}): a batch is taken from the queue, make it smaller"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("timeout must be greater than zero")
        return value


@dataclass(frozen=True, slots=True)
class TracingPlan:
    """What ``sidecar.tracing.provider`` builds; ``None`` fields are left to the SDK's own variables."""

    protocol: Protocol
    endpoint: str | None  # None: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself
    endpoint_source: str  # where the endpoint came from, for the start-up log line
    headers: dict[str, str] | None
    timeout: float | None
    sample_ratio: float | None
    max_queue_size: int | None
    max_export_batch_size: int | None
    schedule_delay_millis: float | None
    probes: bool
    service_name: str | None  # OTEL_SERVICE_NAME or an explicit service_name: over OTEL_RESOURCE_ATTRIBUTES
    default_service_name: str  # when neither they nor OTEL_RESOURCE_ATTRIBUTES name the service
    service_version: str | None  # from the config: wins over OTEL_RESOURCE_ATTRIBUTES
    fallback_service_version: str | None  # SENTRY_RELEASE: when nothing else names the version


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


class _SentryRelease(typing.Protocol):
    @property
    def release(self) -> str | None: ...


class ServiceSettings(typing.Protocol):
    """What tracing reads from the root configuration (``sidecar.config.Settings`` is one).

    An interface rather than an import: the root configuration composes this section, so importing it
    back would make a cycle.
    """

    @property
    def tracing(self) -> TracingSettings: ...
    @property
    def service_name(self) -> str: ...
    @property
    def sentry(self) -> _SentryRelease: ...
    @property
    def model_fields_set(self) -> frozenset[str]: ...


def plan_tracing(settings: ServiceSettings, env: Mapping[str, str]) -> TracingPlan | None:
    """The tracing to start, or ``None`` when it is off; ``TracingConfigError`` when it cannot work."""
    section = settings.tracing
    if section.enabled is False:
        return None
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return None
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if exporters and all(e == "none" for e in exporters):
        return None
    if section.endpoint is None and not any(_env(env, name) for name in ENDPOINT_VARIABLES):
        if section.enabled:
            raise TracingConfigError(
                "tracing.enabled",
                "tracing is enabled but no OTLP endpoint is set: set tracing.endpoint "
                "(SIDECAR_TRACING__ENDPOINT) or OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://otel-collector:4318",
            )
        return None
    protocol = _protocol(section.protocol, env)
    endpoint, source = _endpoint(section.endpoint, protocol, env)
    explicit_name = _env(env, "OTEL_SERVICE_NAME")
    if explicit_name is None and "service_name" in settings.model_fields_set:
        explicit_name = settings.service_name
    return TracingPlan(
        protocol=protocol,
        endpoint=endpoint,
        endpoint_source=source,
        headers={k: v.get_secret_value() for k, v in section.headers.items()} if section.headers else None,
        timeout=section.timeout,
        sample_ratio=section.sample_ratio,
        max_queue_size=section.max_queue_size,
        max_export_batch_size=section.max_export_batch_size,
        schedule_delay_millis=section.schedule_delay * 1000.0 if section.schedule_delay is not None else None,
        probes=section.probes,
        service_name=explicit_name,
        default_service_name=settings.service_name,
        service_version=section.service_version,
        fallback_service_version=settings.sentry.release,
    )


def _protocol(configured: Protocol | None, env: Mapping[str, str]) -> Protocol:
    if configured is not None:
        return configured
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = _env(env, name)
        if value is None:
            continue
        for protocol in PROTOCOLS:
            if value.lower() == protocol:
                return protocol
        raise TracingConfigError(
            name,
            f"{value!r} is not a protocol the sidecar exports with: use http/protobuf or grpc "
            "(http/json is not supported)",
        )
    return "http/protobuf"


def _endpoint(configured: str | None, protocol: Protocol, env: Mapping[str, str]) -> tuple[str | None, str]:
    """(endpoint to pass to the exporter, or ``None`` to let it read the variables; where it came from)."""
    if configured is not None:
        return (traces_url(configured) if protocol == "http/protobuf" else configured), "tracing.endpoint"
    for name in ENDPOINT_VARIABLES:
        value = _env(env, name)
        if value is None:
            continue
        try:
            check_endpoint(value)
        except ValueError as exc:
            raise TracingConfigError(name, str(exc)) from None
        return None, name
    raise AssertionError("plan_tracing checked that an endpoint variable is set")  # pragma: no cover


def traces_url(endpoint: str) -> str:
    """``http://collector:4318`` -> ``http://collector:4318/v1/traces``; a URL ending in it is kept."""
    if urlsplit(endpoint).path.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH
