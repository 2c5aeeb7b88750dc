"""The ``app_check:`` section: the app behind the gateway as a dependency like any other.

When ``gateway.upstream`` is set, the sidecar adds one check (default name ``app``, critical) that
probes the upstream actively with the existing collectors: a TCP connect by default, or an HTTP GET
of ``path`` (the app's own ``/health``) expecting ``expect_status``. The same check is judged
passively from live traffic (``outlier``: Envoy's outlier detection, see ``probing.outlier``), and a
starting app is ``starting`` until its first pass, within ``startup_grace`` (``/startupz``).

``app_check: {enabled: false}`` removes it; a check of your own under ``checks:`` with its name takes
the place of the active probe (passive detection and the grace still apply). Why a section and not
only a ``checks:`` entry: its target follows the upstream, and the outlier rules read what only the
gateway sees.
"""

from __future__ import annotations

from typing import Annotated, Any

from collectors import load_collector
from sidecar.core.durations import Duration
from sidecar.core.settings_model import Meta, Model, ValidationError, ValidationInfo, field, field_validator
from sidecar.probing.settings import CHECK_NAME, CheckConfig


class OutlierSettings(Model):
    """Passive detection on live traffic (Envoy's outlier detection); 0 turns a rule off."""

    enabled: Annotated[bool, Meta(description="eject the app on failures seen in live traffic")] = True
    consecutive_5xx: Annotated[
        int, Meta(ge=0, le=10_000, description="5xx answers (the app's or the gateway's 502/504) in a row")
    ] = 5
    consecutive_connect_failures: Annotated[
        int, Meta(ge=0, le=10_000, description="refused or timed-out connections to the app in a row")
    ] = 3
    error_ratio: Annotated[
        float, Meta(ge=0.0, le=1.0, description="share of failed requests in a window that ejects; 0: off")
    ] = 0.5
    min_requests: Annotated[
        int, Meta(ge=1, le=1_000_000, description="requests a window needs before its ratio counts")
    ] = 20
    window: Annotated[Duration, Meta(description="length of an error-ratio window")] = 10.0
    base_ejection_time: Annotated[
        Duration, Meta(description="first ejection; the n-th in a row lasts n times as long")
    ] = 10.0
    max_ejection_time: Annotated[Duration, Meta(description="longest ejection")] = 300.0

    # Checks across fields read the valid fields before them (``info.data``): one pass reports all.

    @field_validator("window", "base_ejection_time")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _positive_duration(value)

    @field_validator("max_ejection_time", always=True)
    @classmethod
    def _not_below_base(cls, value: float, info: ValidationInfo) -> float:
        _positive_duration(value)
        base = info.data.get("base_ejection_time")
        if base is not None and value < base:
            raise ValueError(
                f"max_ejection_time ({value:g}s) is shorter than base_ejection_time ({base:g}s): "
                "raise it or lower the base"
            )
        return value


def _positive_duration(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


class AppCheckSettings(Model):
    """The check of the app behind the gateway; only used when ``gateway.upstream`` is set."""

    enabled: Annotated[bool, Meta(description="probe the app and judge it from live traffic")] = True
    name: Annotated[str, Meta(description="the check's name in /health, /readyz and metrics")] = "app"
    critical: Annotated[bool, Meta(description="a failing app fails /readyz")] = True
    path: Annotated[str | None, Meta(description="HTTP path to GET (e.g. /health); unset: a TCP connect")] = (
        None
    )
    expect_status: Annotated[
        list[int | str], Meta(description='statuses that pass, e.g. [200] or ["2xx"]')
    ] = field(default_factory=lambda: ["2xx"])
    interval: Duration = 5.0
    timeout: Annotated[Duration | None, Meta(description="default: 2s, or the interval if shorter")] = None
    rise: Annotated[int, Meta(ge=1, le=100, description="passes in a row that bring the app back")] = 2
    fall: Annotated[int, Meta(ge=1, le=100, description="failed probes in a row before not ready")] = 2
    startup_grace: Annotated[
        Duration, Meta(description="a starting app is 'starting', not failing, this long")
    ] = 60.0
    outlier: OutlierSettings = field(default_factory=OutlierSettings)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not CHECK_NAME.match(value):
            raise ValueError(
                "a check name is 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} is not a path: write it from the root, e.g. /health")
        return value

    # What the generated check (``app_check_config``) would refuse is refused here, field by field, so
    # it comes out with the file's other problems instead of after them.

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, value: list[int | str]) -> list[int | str]:
        try:  # the http check's own rule for its expect_status option
            load_collector("http").options_model.model_validate({"expect_status": value})
        except ValidationError as exc:
            raise ValueError("; ".join(message for _loc, message in exc.problems)) from None
        return value

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("interval must be greater than zero")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_within_interval(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return None
        if value <= 0:
            raise ValueError("timeout must be greater than zero")
        interval = info.data.get("interval")
        if interval is not None and value > interval:
            raise ValueError(
                f"timeout ({value:g}s) is longer than interval ({interval:g}s): "
                "shorten the timeout so one probe ends before the next is due"
            )
        return value


def app_check_config(settings: AppCheckSettings, host: str, port: int, unix_path: str | None) -> CheckConfig:
    """The ``checks:`` entry that probes the upstream at ``host:port`` (or the unix socket) actively."""
    spec: dict[str, Any] = {
        "name": settings.name,
        "critical": settings.critical,
        "interval": settings.interval,
        "timeout": settings.timeout if settings.timeout is not None else min(2.0, settings.interval),
        "rise": settings.rise,
        "fall": settings.fall,
        "startup_grace": settings.startup_grace,
    }
    if unix_path is not None:
        spec["kind"] = "tcp"
        spec["target"] = f"unix:{unix_path}"
        if settings.path is not None:
            spec |= {"kind": "http", "target": f"http://localhost{settings.path}"}
            spec["options"] = {"expect_status": settings.expect_status, "unix_socket": unix_path}
        return CheckConfig(**spec)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if settings.path is None:
        spec |= {"kind": "tcp", "target": netloc}
    else:
        spec |= {"kind": "http", "target": f"http://{netloc}{settings.path}"}
        spec["options"] = {"expect_status": settings.expect_status}
    return CheckConfig(**spec)
