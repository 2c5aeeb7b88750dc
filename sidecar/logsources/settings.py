"""The ``logs:`` section of the configuration: sources, limits, field overrides and sinks.

Defaults are chosen so that turning a source on is one line: formats are detected per line, and
only the unusual field names need ``fields:`` overrides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sidecar.durations import Duration

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


class FileSourceSettings(BaseModel):
    """One glob of files to follow; every file it matches is read as the same ``source``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="file path or glob, e.g. /var/log/app/*.log")
    start: Literal["beginning", "end"] = Field(
        default="end",
        description="where to start in files found at the first start (later files: beginning)",
    )
    source: str = Field(default="file", description="the `source` label of the lines read")

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


class HttpIngestSettings(BaseModel):
    """``POST /ingest/logs`` on the admin listener (NDJSON, optionally gzip-compressed)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_body_bytes: int = Field(default=1 * MIB, ge=KIB, le=256 * MIB, description="413 above this")
    max_decompressed_bytes: int = Field(
        default=16 * MIB, ge=KIB, le=1024 * MIB, description="413 when a compressed body inflates past this"
    )
    max_concurrent: int = Field(default=4, ge=1, le=256, description="ingest requests at once; 503 beyond")


class FieldOverrides(BaseModel):
    """Where to find each normalised field when the app's names are not the usual ones.

    Each entry is a list of paths tried in order before the built-in names; a path is a top-level key
    or dotted (``ctx.requestId``).
    """

    model_config = ConfigDict(extra="forbid")

    level: list[str] = Field(default_factory=list)
    message: list[str] = Field(default_factory=list)
    time: list[str] = Field(default_factory=list)
    request_id: list[str] = Field(default_factory=list)
    trace_id: list[str] = Field(default_factory=list)
    error_type: list[str] = Field(default_factory=list)
    error_message: list[str] = Field(default_factory=list)
    error_stack: list[str] = Field(default_factory=list)
    method: list[str] = Field(default_factory=list)
    url: list[str] = Field(default_factory=list)
    route: list[str] = Field(default_factory=list)
    status: list[str] = Field(default_factory=list)
    duration: list[str] = Field(default_factory=list)
    duration_unit: Literal["s", "ms", "us", "ns"] = Field(
        default="ms", description="unit of the values found through `duration` overrides"
    )
    bytes: list[str] = Field(default_factory=list)
    levels: dict[str, str] = Field(
        default_factory=dict, description="the app's level names mapped to trace/debug/info/warn/error/fatal"
    )

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, value: dict[str, str]) -> dict[str, str]:
        for name, level in value.items():
            if level not in NORMAL_LEVELS:
                raise ValueError(f"level {name!r} maps to {level!r}; use one of: {', '.join(NORMAL_LEVELS)}")
        return value

    def is_empty(self) -> bool:
        return not any(
            getattr(self, name) for name in type(self).model_fields if name not in {"duration_unit"}
        )


class LogSettings(BaseModel):
    """Everything about reading the app's logs; all sources are off until configured."""

    model_config = ConfigDict(extra="forbid")

    files: list[FileSourceSettings] = Field(default_factory=list)
    stdin: bool = Field(default=False, description="read log lines piped into the sidecar")
    http: HttpIngestSettings = Field(default_factory=HttpIngestSettings)
    state_dir: Path = Field(
        default=Path("/var/lib/sidecar"), description="where file offsets are checkpointed"
    )
    fields: FieldOverrides = Field(default_factory=FieldOverrides)
    reemit: bool = Field(default=False, description="write normalised JSON lines to stdout")
    access_metrics: bool = Field(
        default=True, description="feed access lines into http_server_request_duration_seconds"
    )
    correlate: bool = Field(default=True, description="index lines with a request ID for /debug/requests")
    max_line_bytes: int = Field(default=1 * MIB, ge=KIB, le=64 * MIB, description="longer lines are skipped")
    poll_interval: Duration = Field(default=0.25, description="how often a file at its end is checked")
    rotate_wait: Duration = Field(default=5.0, description="how long a rotated-away file is still read")
    checkpoint_interval: Duration = Field(default=1.0, description="how often offsets are saved")
    queue_batches: int = Field(default=64, ge=1, le=10_000, description="batches queued per source")
    max_files: int = Field(default=256, ge=1, le=10_000, description="files followed at once")

    @model_validator(mode="after")
    def _positive_intervals(self) -> LogSettings:
        for name in ("poll_interval", "checkpoint_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"logs.{name} must be greater than zero")
        return self
