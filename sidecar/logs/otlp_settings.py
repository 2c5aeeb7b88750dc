"""``logs.otlp``: every ingested line and every gateway access record as an OTLP LogRecord.

Off unless asked for: ``logs.otlp.endpoint`` or ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` turns it on;
``logs.otlp.enabled: true`` turns it on with the tracing section's endpoint (or
``OTEL_EXPORTER_OTLP_ENDPOINT``). Log volume can be much larger than span volume, so a tracing
endpoint alone does not start shipping logs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from sidecar.core.durations import Duration
from sidecar.core.settings_model import Meta, Model, SecretStr, ValidationInfo, field_validator
from sidecar.tracing.settings import check_endpoint, check_headers


class OtlpLogSettings(Model):
    """Where log records go, and the bounds of their queue and retries."""

    enabled: Annotated[
        bool | None,
        Meta(description="default: on when logs.otlp.endpoint or OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is set"),
    ] = None
    endpoint: Annotated[
        str | None,
        Meta(
            description="collector URL, e.g. http://otel-collector:4318 (HTTP: /v1/logs is added) or "
            ":4317 (gRPC); default: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, then the tracing endpoint"
        ),
    ] = None
    protocol: Annotated[
        Literal["http/protobuf", "grpc"] | None,
        Meta(description="default: OTEL_EXPORTER_OTLP_(LOGS_)PROTOCOL, tracing.protocol, http/protobuf"),
    ] = None
    headers: Annotated[
        dict[str, SecretStr] | None,
        Meta(
            description="sent with every export; default: OTEL_EXPORTER_OTLP_(LOGS_)HEADERS, then tracing's"
        ),
    ] = None
    timeout: Annotated[Duration, Meta(description="per export request")] = 10.0
    max_queue: Annotated[
        int, Meta(ge=100, le=1_000_000, description="records waiting; past it new ones are dropped (counted)")
    ] = 10_000
    max_batch: Annotated[int, Meta(ge=1, le=10_000, description="records per export request")] = 2048
    concurrent_exports: Annotated[
        int, Meta(ge=1, le=16, description="batches encoded and sent at once (one send each)")
    ] = 2
    flush_interval: Annotated[Duration, Meta(description="longest wait before a partial batch is sent")] = 1.0
    max_retries: Annotated[
        int, Meta(ge=0, le=20, description="retries of a batch the collector could not take for now")
    ] = 5
    retry_initial: Annotated[Duration, Meta(description="first retry delay; doubles up to retry_max")] = 0.5
    retry_max: Annotated[Duration, Meta(description="longest retry delay")] = 10.0
    lines: Annotated[bool, Meta(description="export the ingested log lines")] = True
    access_records: Annotated[bool, Meta(description="export the gateway's access records")] = True

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
        return value.lower() if isinstance(value, str) else value

    @field_validator("timeout", "flush_interval", "retry_initial", "retry_max")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("max_batch", always=True)
    @classmethod
    def _batch_fits_queue(cls, value: int, info: ValidationInfo) -> int:
        # across fields: reads max_queue when it is valid, in the same pass as every other problem
        queue = info.data.get("max_queue")
        if queue is not None and value > queue:
            raise ValueError(
                f"logs.otlp.max_batch ({value}) cannot be larger than logs.otlp.max_queue ({queue})"
            )
        return value
