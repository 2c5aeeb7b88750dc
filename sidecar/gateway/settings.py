"""Gateway configuration: the ``gateway:`` YAML section, ``SIDECAR_GATEWAY__<KEY>`` and two aliases.

The gateway is off until an upstream is configured. ``SIDECAR_UPSTREAM`` and ``SIDECAR_GATEWAY_LISTEN``
(the names in the public interface) are short aliases for ``gateway.upstream`` and ``gateway.listen``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from sidecar.core.durations import Duration
from sidecar.core.settings_model import (
    IPvAnyNetwork,
    Meta,
    Model,
    Unique,
    ValidationInfo,
    field,
    field_validator,
)
from sidecar.gateway.ratelimit.settings import RateLimitRedis, RateLimitRule
from sidecar.gateway.security_headers import SecurityHeaderSettings

ENV_ALIASES = {"SIDECAR_UPSTREAM": "upstream", "SIDECAR_GATEWAY_LISTEN": "listen"}


@dataclass(frozen=True, slots=True)
class UpstreamAddress:
    """Where the app listens: TCP ``host:port`` or a unix socket path; ``host_header`` names it for Host."""

    host: str
    port: int
    unix_path: str | None
    host_header: bytes

    def __str__(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path else f"http://{self.host_header.decode()}"


def parse_host_port(value: str, default_port: int | None = None, any_port: bool = False) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6) -> (host, port); ``any_port`` allows 0 (kernel picks)."""
    host, sep, port_text = value.rpartition(":")
    if not sep and default_port is not None and "]" not in value:
        host, port_text = value, str(default_port)
    digits = port_text.isascii() and port_text.isdigit()  # not '²' or other Unicode digits
    if not digits or not (0 if any_port else 1) <= int(port_text) < 65536:
        raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:3000 or [::1]:3000")
    return host.strip("[]") or "0.0.0.0", int(port_text)


def parse_upstream(value: str) -> UpstreamAddress:
    """``http://host:port``, ``host:port`` or ``unix:/path/app.sock`` -> an address the pool connects to."""
    text = value.strip()
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        path = path.removeprefix("//") if path.startswith("///") else path
        if not path.startswith("/"):
            raise ValueError(f"{value!r}: a unix socket upstream is unix:/absolute/path.sock")
        return UpstreamAddress("", 0, path, b"localhost")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an upstream address ({exc}): use http://host:port") from None
    if parts.scheme != "http":
        raise ValueError(
            f"{value!r}: the upstream must be http://host:port or unix:/path"
            " (TLS to the app is not supported)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r}: the upstream is an address only; remove the path {parts.path!r}")
    if parts.username or parts.password:
        raise ValueError("the upstream address cannot carry credentials")
    if not parts.netloc.isascii():
        raise ValueError(f"{value!r}: write the upstream host in ASCII (xn-- form for international names)")
    host, port = parse_host_port(parts.netloc, default_port=80)
    return UpstreamAddress(host, port, None, parts.netloc.encode("ascii"))


class AccessLogSettings(Model):
    """One JSON line per request, to stdout (``-``) or a file."""

    enabled: bool = True
    path: Annotated[str, Meta(description="'-' for stdout, else a file appended to")] = "-"
    sample_success: Annotated[
        float, Meta(ge=0.0, le=1.0, description="share of responses below 400 that are logged")
    ] = 1.0


class GatewaySettings(Model):
    """The reverse proxy in front of the app: where it listens, where the app is, limits and drain."""

    upstream: Annotated[str | None, Meta(description="the app: http://127.0.0.1:3000 or unix:/path")] = None
    listen: Annotated[str, Meta(description="where clients connect")] = "0.0.0.0:8080"
    trusted_proxies: Annotated[
        list[IPvAnyNetwork], Meta(description="CIDRs whose X-Forwarded-* headers are believed")
    ] = []
    preserve_host: Annotated[bool, Meta(description="pass the client's Host to the app")] = True
    websockets: Annotated[bool, Meta(description="proxy Upgrade: websocket requests")] = True
    connect_timeout: Annotated[Duration, Meta(description="longest wait to connect to the app")] = 5.0
    read_timeout: Annotated[Duration, Meta(description="longest silence from the app mid-request")] = 60.0
    idle_timeout: Annotated[Duration, Meta(description="keep-alive: close a silent client after this")] = 75.0
    header_timeout: Annotated[Duration, Meta(description="a client must send its headers within this")] = 10.0
    body_timeout: Annotated[Duration, Meta(description="longest silence from a client sending a body")] = 60.0
    min_body_rate: Annotated[
        int,
        Meta(
            ge=0,
            le=1_000_000_000,
            description="bytes/s a body must keep up on average: its deadline is body_timeout after the "
            "head plus a second per this many bytes (0: only silence is bounded)",
        ),
    ] = 500
    upstream_idle_timeout: Annotated[
        Duration, Meta(description="close pooled app connections idle this long (below the app's own)")
    ] = 4.0
    max_idle_upstream: Annotated[int, Meta(ge=0, le=100_000, description="pooled app connections")] = 128
    max_header_bytes: Annotated[int, Meta(ge=1024, le=1024 * 1024, description="request head size")] = 16384
    max_concurrent_requests: Annotated[
        int, Meta(ge=1, le=1_000_000, description="in flight before 503 + Retry-After")
    ] = 4096
    drain_period: Annotated[
        Duration, Meta(description="keep serving after SIGTERM so load balancers see /readyz fail")
    ] = 10.0
    grace_period: Annotated[Duration, Meta(description="then wait this long for in-flight requests")] = 15.0
    exit_on_zero_active: Annotated[
        bool,
        Meta(description="after SIGTERM, once the app refuses connections: stop accepting, exit when idle"),
    ] = True
    new_trace_sampled: Annotated[bool, Meta(description="sampled flag on traces the gateway starts")] = True
    access_log: AccessLogSettings = field(default_factory=AccessLogSettings)
    rate_limits: Annotated[
        list[RateLimitRule], Unique("name", "rate-limit rule"), Meta(description="docs/edge-protections.md")
    ] = []
    rate_limit_redis: Annotated[RateLimitRedis | None, Meta(description="shared rate-limit state")] = None
    security_headers: SecurityHeaderSettings = field(default_factory=SecurityHeaderSettings)

    @field_validator("upstream")
    @classmethod
    def _valid_upstream(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_upstream(value)
        return value.strip()

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_host_port(value, any_port=True)
        return value

    @field_validator("connect_timeout", "read_timeout", "idle_timeout", "header_timeout", "body_timeout")
    @classmethod
    def _timeout_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    # Checks across fields read the valid fields before them (``info.data``): one pass reports all.

    @field_validator("rate_limit_redis", always=True)
    @classmethod
    def _redis_for_redis_rules(
        cls, value: RateLimitRedis | None, info: ValidationInfo
    ) -> RateLimitRedis | None:
        rules: list[tuple[int, RateLimitRule]] = info.items.get("rate_limits", [])  # each valid rule
        wanting = [f"gateway.rate_limits[{i}] ({r.name!r})" for i, r in rules if r.backend == "redis"]
        if value is None and wanting:
            raise ValueError(
                f"{', '.join(wanting)} {'has' if len(wanting) == 1 else 'have'} backend: redis but "
                "gateway.rate_limit_redis is not set: set it (redis://host:6379/0) or use backend: local"
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.upstream is not None

    @property
    def upstream_address(self) -> UpstreamAddress:
        if self.upstream is None:
            raise ValueError("the gateway has no upstream configured")
        return parse_upstream(self.upstream)


def gateway_env_aliases(env: Mapping[str, str]) -> dict[str, Any]:
    """``SIDECAR_UPSTREAM``/``SIDECAR_GATEWAY_LISTEN`` as ``gateway`` keys (empty values ignored)."""
    return {key: env[name].strip() for name, key in ENV_ALIASES.items() if env.get(name, "").strip()}
