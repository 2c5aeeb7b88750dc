"""The ``sentry:`` section of the configuration.

Two DSNs, deliberately separate: ``dsn`` (or the conventional ``SENTRY_DSN``) is where the *sidecar's
own* errors go, through sentry-sdk; ``app_dsn`` is the *app's* project, which receives the errors found
in the app's logs, the gateway's 5xx responses and whatever the app's own SDK sends to the relay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from sidecar.core.durations import Duration
from sidecar.core.settings_model import Meta, Model, SecretStr, ValidationInfo, field, field_validator
from sidecar.sentry.dsn import Dsn

KIB = 1024
MIB = 1024 * KIB


def _check_dsn(value: SecretStr | None) -> SecretStr | None:
    if value is None or not value.get_secret_value().strip():
        return None
    Dsn.parse(value.get_secret_value())
    return value


class RelaySettings(Model):
    """``POST /api/<project>/envelope/`` and ``/store/`` on the admin listener, for the app's own SDK."""

    enabled: Annotated[bool, Meta(description="serve the relay routes when app_dsn is set")] = True
    max_body_bytes: Annotated[
        int, Meta(ge=KIB, le=256 * MIB, description="413 when the (compressed) body is larger")
    ] = 1 * MIB
    max_decompressed_bytes: Annotated[
        int, Meta(ge=KIB, le=1024 * MIB, description="413 when the body inflates past this")
    ] = 20 * MIB
    opaque_items: Annotated[
        Literal["drop", "forward"],
        Meta(
            description="items whose payload is not JSON (attachments, replay recordings, statsd, "
            "unknown binary) cannot be scrubbed: drop them (counted) or forward them unscrubbed"
        ),
    ] = "drop"


class SpoolSettings(Model):
    """Where events wait for Sentry: written before they are acknowledged, removed once Sentry took them."""

    dir: Annotated[
        Path | None, Meta(description="spool directory; null keeps events in memory only (lost on restart)")
    ] = Path("/var/lib/sidecar/sentry-spool")
    max_bytes: Annotated[int, Meta(ge=64 * KIB, le=64 * 1024 * MIB)] = 64 * MIB
    max_events: Annotated[int, Meta(ge=10, le=10_000_000)] = 10_000
    queue_events: Annotated[
        int, Meta(ge=10, le=1_000_000, description="events waiting in memory for the spool writer")
    ] = 1_000


class ScrubSettings(Model):
    """Additions to the built-in denylist, and keys that are never filtered by name."""

    extra_keys: Annotated[list[str], Meta(description="more sensitive key names")] = []
    allow_keys: Annotated[
        list[str], Meta(description="key names never filtered by name (value patterns still apply)")
    ] = []


class SentrySettings(Model):
    """Sentry forwarding; everything is off until ``app_dsn`` (app events) or ``dsn`` (own errors) is set."""

    dsn: Annotated[SecretStr | None, Meta(description="the sidecar's own errors (default: $SENTRY_DSN)")] = (
        None
    )
    app_dsn: Annotated[SecretStr | None, Meta(description="the app's Sentry project")] = None
    environment: Annotated[str | None, Meta(description="default: $SENTRY_ENVIRONMENT")] = None
    release: Annotated[str | None, Meta(description="default: $SENTRY_RELEASE")] = None
    relay: RelaySettings = field(default_factory=RelaySettings)
    forward_log_errors: Annotated[bool, Meta(description="error/fatal log lines become events")] = True
    forward_gateway_5xx: Annotated[bool, Meta(description="5xx responses become events")] = False
    dedupe_window: Annotated[Duration, Meta(description="identical errors within it are counted once")] = 60.0
    spool: SpoolSettings = field(default_factory=SpoolSettings)
    scrub: ScrubSettings = field(default_factory=ScrubSettings)
    max_in_flight: Annotated[int, Meta(ge=1, le=64, description="envelopes sent to Sentry at once")] = 4
    send_timeout: Annotated[Duration, Meta(description="longest wait for Sentry's answer")] = 10.0
    backoff_initial: Annotated[Duration, Meta(description="first wait after a failed send")] = 1.0
    backoff_max: Annotated[Duration, Meta(description="longest wait between failed sends")] = 60.0

    _check_dsns = field_validator("dsn", "app_dsn")(_check_dsn)

    @field_validator("send_timeout", "backoff_initial")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("backoff_max", always=True)
    @classmethod
    def _not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        # across fields: reads backoff_initial when it is valid, in the same pass as every other problem
        initial = info.data.get("backoff_initial")
        if initial is not None and initial > value:
            raise ValueError(
                f"sentry.backoff_initial ({initial:g}s) is above sentry.backoff_max ({value:g}s): "
                "lower the first or raise the second"
            )
        return value

    @property
    def app(self) -> Dsn | None:
        """The app's upstream DSN, parsed."""
        return Dsn.parse(self.app_dsn.get_secret_value()) if self.app_dsn else None

    def with_environment(self, env: Mapping[str, str]) -> SentrySettings:
        """Fill ``dsn``/``environment``/``release`` from ``SENTRY_*`` when not set explicitly.

        Like ``DATABASE_URL``, the conventional variables are a fallback: an explicit ``sentry.*`` setting
        (file or ``SIDECAR_SENTRY__*``) wins, so one pod can send the sidecar's errors elsewhere.
        """
        updates: dict[str, object] = {}
        dsn = env.get("SENTRY_DSN", "").strip()
        if self.dsn is None and dsn:
            Dsn.parse(dsn)
            updates["dsn"] = SecretStr(dsn)
        if self.environment is None and env.get("SENTRY_ENVIRONMENT", "").strip():
            updates["environment"] = env["SENTRY_ENVIRONMENT"].strip()
        if self.release is None and env.get("SENTRY_RELEASE", "").strip():
            updates["release"] = env["SENTRY_RELEASE"].strip()
        return self.model_copy(update=updates) if updates else self
