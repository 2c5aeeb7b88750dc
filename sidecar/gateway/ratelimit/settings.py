"""``gateway.rate_limits`` (the rules) and ``gateway.rate_limit_redis`` (shared state), validated.

A rule says which requests it covers (``match``), whose budget a request spends (``key``), how big
the budget is (``limit`` per ``window``, ``algorithm``, ``burst``), what spends it (``count``: every
request, or only failed responses) and where the state lives (``backend``). Names become metric
labels and ``RateLimit`` policy names, so they are short and plain.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from sidecar.core.durations import Duration
from sidecar.core.redaction import mask_url
from sidecar.core.routes import RouteTemplate
from sidecar.core.settings_model import (
    Meta,
    Model,
    ValidationInfo,
    check_each,
    field,
    field_validator,
    model_validator,
)

RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Z-]+")
MAX_WINDOW = 30 * 86400.0


def _path_prefix(prefix: str) -> str:
    if not prefix.startswith("/") or not prefix.isascii():
        raise ValueError(f"path prefix {prefix!r} must be ASCII and start with '/'")
    return prefix


def _method(raw: str) -> str:
    method = raw.strip().upper()
    if not METHOD.fullmatch(method):
        raise ValueError(f"{method!r} is not an HTTP method")
    return method


def _status(status: int) -> int:
    if not 100 <= status <= 599:
        raise ValueError(f"{status} is not an HTTP status")
    return status


class RateLimitMatch(Model):
    """Which requests a rule covers: any listed route or path prefix (all paths if none), any method."""

    routes: Annotated[list[str], Meta(description="route templates such as /users/{id}")] = []
    path_prefixes: Annotated[list[str], Meta(description="raw path prefixes such as /api/")] = []
    methods: Annotated[list[str], Meta(description="HTTP methods (all when empty)")] = []

    @field_validator("routes")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        check_each(enumerate(value), RouteTemplate)  # raises ValueError naming the template, each at [i]
        return value

    @field_validator("path_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return check_each(enumerate(value), _path_prefix)

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        return check_each(enumerate(value), _method)


class RateLimitRule(Model, kw_only=True):
    """One limit: ``limit`` requests per ``window`` for each key among the requests ``match`` covers."""

    name: Annotated[str, Meta(description="metric label and RateLimit policy name: letters, digits, _ . -")]
    match: RateLimitMatch = field(default_factory=RateLimitMatch)
    key: Annotated[str, Meta(description="client_ip, header:<name> or route")] = "client_ip"
    on_missing_key: Annotated[
        Literal["client_ip", "anonymous", "skip"],
        Meta(description="header key absent: limit by client address, share one 'anonymous' budget, or skip"),
    ] = "client_ip"
    limit: Annotated[int, Meta(ge=1, le=1_000_000_000, description="requests per window")]
    window: Annotated[Duration, Meta(description="window length, at least 1s (e.g. 1s, 1m, 15m, 1h)")]
    algorithm: Literal["sliding_window", "token_bucket"] = "sliding_window"
    burst: (
        Annotated[int, Meta(ge=1, le=1_000_000_000, description="token bucket capacity (default: limit)")]
        | None
    ) = None
    count: Annotated[
        Literal["all", "failed"],
        Meta(description="all requests, or only failed responses (checked before, counted after)"),
    ] = "all"
    failed_statuses: Annotated[
        list[int], Meta(description="with count: failed, the statuses that count (default: >= 400)")
    ] = []
    backend: Annotated[
        Literal["local", "redis"] | None,
        Meta(description="local or redis (default: redis when rate_limit_redis is set)"),
    ] = None
    on_redis_error: Annotated[
        Literal["open", "closed"],
        Meta(description="Redis failed or too slow: allow (open) or refuse with 503 (closed)"),
    ] = "open"
    headers: Annotated[bool, Meta(description="RateLimit/RateLimit-Policy on allowed responses")] = True
    max_keys: Annotated[
        int, Meta(ge=1, le=10_000_000, description="local backend: keys kept (LRU, evictions counted)")
    ] = 100_000

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RULE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r}: a rule name is 1-64 letters, digits, '_', '.' or '-' (it becomes a metric label)"
            )
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        text = value.strip()
        if text in ("client_ip", "route"):
            return text
        kind, sep, header = text.partition(":")
        if kind.strip().lower() == "header" and sep and HEADER_NAME.fullmatch(header.strip()):
            return "header:" + header.strip().lower()
        raise ValueError(f"{value!r}: key is client_ip, route or header:<name> (e.g. header:X-API-Key)")

    # Checks across fields read the valid fields before them (``info.data``): one pass reports all.

    @field_validator("window")
    @classmethod
    def _window(cls, value: float, info: ValidationInfo) -> float:
        if not 1.0 <= value <= MAX_WINDOW:
            raise ValueError(f"{_rule(info)}window must be between 1s and 30 days")
        return value

    @field_validator("burst")
    @classmethod
    def _burst_needs_bucket(cls, value: int | None, info: ValidationInfo) -> int | None:
        algorithm = info.data.get("algorithm")
        if value is not None and algorithm is not None and algorithm != "token_bucket":
            raise ValueError(f"{_rule(info)}burst applies to algorithm: token_bucket only")
        return value

    @field_validator("failed_statuses")
    @classmethod
    def _statuses(cls, value: list[int], info: ValidationInfo) -> list[int]:
        check_each(enumerate(value), _status)
        count = info.data.get("count")
        if value and count is not None and count != "failed":
            raise ValueError(f"{_rule(info)}failed_statuses needs count: failed")
        return value


def _rule(info: ValidationInfo) -> str:
    """``rule 'api': `` when the rule's name is valid, to say which rule a problem is about."""
    name = info.data.get("name")
    return f"rule {name!r}: " if name is not None else ""


class RateLimitRedis(Model):
    """Shared rate-limit state: a Redis URL, or an object with the URL and options."""

    url: Annotated[str, Meta(description="redis://[user:password@]host:port/db, rediss:// for TLS")]
    timeout: Annotated[Duration, Meta(description="longest wait for a decision before on_redis_error")] = 0.05
    connect_timeout: Annotated[Duration, Meta(description="longest wait to connect")] = 1.0
    key_prefix: Annotated[str, Meta(description="prefix of every key")] = "sidecar:ratelimit:"

    def __repr__(self) -> str:  # the URL may carry a password
        return (
            f"RateLimitRedis(url={mask_url(self.url)!r}, timeout={self.timeout!r}, "
            f"connect_timeout={self.connect_timeout!r}, key_prefix={self.key_prefix!r})"
        )

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_redis_url(value)
        return value.strip()

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0.001 <= value <= 10.0:
            raise ValueError("rate_limit_redis.timeout must be between 1ms and 10s (e.g. 50ms)")
        return value

    @field_validator("connect_timeout")
    @classmethod
    def _connect_timeout(cls, value: float) -> float:
        if not 0.01 <= value <= 60.0:
            raise ValueError("rate_limit_redis.connect_timeout must be between 10ms and 60s")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        if not value.isascii() or any(c in value for c in " \r\n"):
            raise ValueError("rate_limit_redis.key_prefix must be ASCII without spaces")
        return value


class RedisAddress(Model):
    """A parsed Redis URL (the password is only ever sent to Redis)."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool


def parse_redis_url(value: str) -> RedisAddress:
    """``redis://[user:password@]host[:port][/db]`` or ``rediss://...``; errors never echo the password."""
    shown = mask_url(value.strip())
    try:
        parts = urlsplit(value.strip())
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{shown!r} is not a Redis URL: use redis://host:6379/0") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{shown!r}: rate_limit_redis must start with redis:// or rediss://")
    if not parts.hostname:
        raise ValueError(f"{shown!r}: the Redis URL has no host")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isascii() or not db_text.isdigit():
        raise ValueError(f"{shown!r}: the path of a Redis URL is a database number, e.g. /0")
    if parts.query:
        raise ValueError(f"{shown!r}: query options are not supported in rate_limit_redis")
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(db_text),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
    )
