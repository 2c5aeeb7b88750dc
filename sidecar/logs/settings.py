"""The ``logs:`` section of the configuration: sources, limits, field overrides and sinks.

Defaults are chosen so that turning a source on is one line: formats are detected per line, and
only the unusual field names need ``fields:`` overrides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from sidecar.core.durations import Duration
from sidecar.core.settings_model import (
    Meta,
    Model,
    ValidationError,
    ValidationInfo,
    check_each,
    field,
    field_validator,
    model_validator,
)
from sidecar.logs.otlp_settings import OtlpLogSettings
from sidecar.logs.rule_settings import LogRule, rules_problems

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
NORMAL_LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
KIB = 1024
MIB = 1024 * KIB


def _valid_source(value: str) -> str:
    if not SOURCE_NAME.match(value):
        raise ValueError(
            "a source name is 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return value


class FileSourceSettings(Model):
    """One glob of files to follow; every file it matches is read as the same ``source``."""

    path: Annotated[str, Meta(description="file path or glob, e.g. /var/log/app/*.log")]
    start: Annotated[
        Literal["beginning", "end"],
        Meta(description="where to start in files found at the first start (later files: beginning)"),
    ] = "end"
    source: Annotated[str, Meta(description="the `source` label of the lines read")] = "file"

    @field_validator("path")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a file source needs a path or glob")
        return value

    @field_validator("source")
    @classmethod
    def _source_name(cls, value: str) -> str:
        return _valid_source(value)


class HttpIngestSettings(Model):
    """``POST /ingest/logs`` on the admin listener (NDJSON, optionally gzip-compressed)."""

    enabled: bool = True
    max_body_bytes: Annotated[int, Meta(ge=KIB, le=256 * MIB, description="413 above this")] = 1 * MIB
    max_decompressed_bytes: Annotated[
        int, Meta(ge=KIB, le=1024 * MIB, description="413 when a compressed body inflates past this")
    ] = 16 * MIB
    max_concurrent: Annotated[int, Meta(ge=1, le=256, description="ingest requests at once; 503 beyond")] = 4


def _known_level(entry: tuple[str, str]) -> str:
    name, level = entry
    if level not in NORMAL_LEVELS:
        raise ValueError(f"level {name!r} maps to {level!r}; use one of: {', '.join(NORMAL_LEVELS)}")
    return level


class FieldOverrides(Model):
    """Where to find each normalised field when the app's names are not the usual ones.

    Each entry is a list of paths tried in order before the built-in names; a path is a top-level key
    or dotted (``ctx.requestId``).
    """

    level: list[str] = []
    message: list[str] = []
    time: list[str] = []
    request_id: list[str] = []
    trace_id: list[str] = []
    error_type: list[str] = []
    error_message: list[str] = []
    error_stack: list[str] = []
    method: list[str] = []
    url: list[str] = []
    route: list[str] = []
    status: list[str] = []
    duration: list[str] = []
    duration_unit: Annotated[
        Literal["s", "ms", "us", "ns"],
        Meta(description="unit of the values found through `duration` overrides"),
    ] = "ms"
    bytes: list[str] = []
    levels: Annotated[
        dict[str, str], Meta(description="the app's level names mapped to trace/debug/info/warn/error/fatal")
    ] = {}

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, value: dict[str, str]) -> dict[str, str]:
        check_each(((name, (name, level)) for name, level in value.items()), _known_level)  # each at its name
        return value

    def is_empty(self) -> bool:
        return not any(
            getattr(self, name) for name in type(self).__struct_fields__ if name not in {"duration_unit"}
        )


class LogSettings(Model):
    """Everything about reading the app's logs; all sources are off until configured."""

    files: list[FileSourceSettings] = []
    stdin: Annotated[bool, Meta(description="read log lines piped into the sidecar")] = False
    http: HttpIngestSettings = field(default_factory=HttpIngestSettings)
    state_dir: Annotated[Path, Meta(description="where file offsets are checkpointed")] = Path(
        "/var/lib/sidecar"
    )
    fields: FieldOverrides = field(default_factory=FieldOverrides)
    reemit: Annotated[bool, Meta(description="write normalised JSON lines to stdout")] = False
    access_metrics: Annotated[
        bool, Meta(description="feed access lines into http_server_request_duration_seconds")
    ] = True
    correlate: Annotated[bool, Meta(description="index lines with a request ID for /debug/requests")] = True
    max_line_bytes: Annotated[int, Meta(ge=KIB, le=64 * MIB, description="longer lines are skipped")] = (
        1 * MIB
    )
    poll_interval: Annotated[Duration, Meta(description="how often a file at its end is checked")] = 0.25
    rotate_wait: Annotated[Duration, Meta(description="how long a rotated-away file is still read")] = 5.0
    checkpoint_interval: Annotated[Duration, Meta(description="how often offsets are saved")] = 1.0
    queue_batches: Annotated[int, Meta(ge=1, le=10_000, description="batches queued per source")] = 64
    max_files: Annotated[int, Meta(ge=1, le=10_000, description="files followed at once")] = 256
    rules: Annotated[
        list[LogRule], Meta(description="metrics from the app's own log fields (see docs/logs.md)")
    ] = []
    otlp: Annotated[
        OtlpLogSettings, Meta(description="lines and access records as OTLP logs (see docs/logs.md)")
    ] = field(default_factory=OtlpLogSettings)

    @field_validator("poll_interval", "checkpoint_interval")
    @classmethod
    def _positive_interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @model_validator(mode="fields")
    @classmethod
    def _rules_agree(cls, info: ValidationInfo) -> None:
        # between the valid rules, in the same pass as an invalid rule's own problems
        problems = rules_problems(info.items.get("rules", []))
        if problems:
            raise ValidationError(problems)
