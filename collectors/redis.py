"""Redis collector: PING latency and one ``INFO`` for memory, clients, stats, replication, server.

A ``redis.asyncio`` client with a pool of at most two connections, built in ``open()`` without
connecting. redis-py disconnects a connection whose command was cancelled and always returns it
to the pool, so a hung server cannot make the pool grow. Retries are off: a probe reports what
one attempt saw, and the probe template owns the timeout. Connections are named
``sidecar-<check>`` (CLIENT SETNAME), so an ACL user needs ``+client`` besides ``+ping +info``,
as for redis_exporter.

Metric names follow redis_exporter, so its community dashboards keep working.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    BusyLoadingError,
    InvalidResponse,
    NoPermissionError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    Observation,
    Reason,
    Sample,
)

SCHEMES = ("redis", "rediss", "unix")
EXAMPLE_TARGET = "redis://:password@cache.internal:6379/0"
MAX_CONNECTIONS = 2

# Commands: INFO without a section (the default set has server, clients, memory, stats, replication
# and keyspace in one round trip, and works before Redis 7's multi-section INFO), then a timed PING.

REDIS_MEMORY_USED = MetricSpec(
    "redis_memory_used_bytes", "Memory allocated by Redis (used_memory), in bytes."
)
REDIS_MEMORY_MAX = MetricSpec("redis_memory_max_bytes", "The maxmemory setting in bytes; 0 means no limit.")
REDIS_CONNECTED_CLIENTS = MetricSpec("redis_connected_clients", "Client connections (not replicas).")
REDIS_BLOCKED_CLIENTS = MetricSpec("redis_blocked_clients", "Clients waiting in a blocking call.")
REDIS_MAXCLIENTS = MetricSpec("redis_config_maxclients", "The maxclients setting.")
REDIS_CONNECTED_SLAVES = MetricSpec("redis_connected_slaves", "Connected replicas.")
REDIS_UPTIME = MetricSpec("redis_uptime_in_seconds", "Seconds since the server started.")
REDIS_MASTER_LINK_UP = MetricSpec(
    "redis_master_link_up", "On a replica: 1 when the link to its master is up."
)
REDIS_KEYSPACE_HITS = MetricSpec(
    "redis_keyspace_hits_total", "Successful key lookups since start.", type="counter"
)
REDIS_KEYSPACE_MISSES = MetricSpec(
    "redis_keyspace_misses_total", "Failed key lookups since start.", type="counter"
)
REDIS_EVICTED_KEYS = MetricSpec(
    "redis_evicted_keys_total", "Keys evicted because of maxmemory since start.", type="counter"
)
REDIS_EXPIRED_KEYS = MetricSpec("redis_expired_keys_total", "Keys expired since start.", type="counter")
REDIS_REJECTED_CONNECTIONS = MetricSpec(
    "redis_rejected_connections_total", "Connections rejected because of maxclients.", type="counter"
)
REDIS_CONNECTIONS_RECEIVED = MetricSpec(
    "redis_connections_received_total", "Connections accepted since start.", type="counter"
)
REDIS_COMMANDS_PROCESSED = MetricSpec(
    "redis_commands_processed_total", "Commands processed since start.", type="counter"
)
REDIS_DB_KEYS = MetricSpec("redis_db_keys", "Keys per database.", labels=("db",))
REDIS_DB_KEYS_EXPIRING = MetricSpec("redis_db_keys_expiring", "Keys with a TTL per database.", labels=("db",))
REDIS_INSTANCE_INFO = MetricSpec(
    "redis_instance_info",
    "Server identity, as labels; the value is always 1.",
    labels=("role", "redis_version", "redis_mode"),
)

# INFO field -> metric, for the plain numbers
INFO_FIELDS: Mapping[str, MetricSpec] = {
    "used_memory": REDIS_MEMORY_USED,
    "maxmemory": REDIS_MEMORY_MAX,
    "connected_clients": REDIS_CONNECTED_CLIENTS,
    "blocked_clients": REDIS_BLOCKED_CLIENTS,
    "maxclients": REDIS_MAXCLIENTS,
    "connected_slaves": REDIS_CONNECTED_SLAVES,
    "uptime_in_seconds": REDIS_UPTIME,
    "keyspace_hits": REDIS_KEYSPACE_HITS,
    "keyspace_misses": REDIS_KEYSPACE_MISSES,
    "evicted_keys": REDIS_EVICTED_KEYS,
    "expired_keys": REDIS_EXPIRED_KEYS,
    "rejected_connections": REDIS_REJECTED_CONNECTIONS,
    "total_connections_received": REDIS_CONNECTIONS_RECEIVED,
    "total_commands_processed": REDIS_COMMANDS_PROCESSED,
}
METRICS: tuple[MetricSpec, ...] = (
    *INFO_FIELDS.values(),
    REDIS_MASTER_LINK_UP,
    REDIS_DB_KEYS,
    REDIS_DB_KEYS_EXPIRING,
    REDIS_INSTANCE_INFO,
)
_DB_SECTION = re.compile(r"^db(\d+)$")

UNIT_SECONDS = "s"
UNIT_RATIO = "ratio"


class RedisOptions(CollectorOptions, frozen=True):
    """No options yet; the target URL says everything (``rediss://`` for TLS)."""


def client_name(check_name: str) -> str:
    """CLIENT SETNAME value (no spaces allowed), so CLIENT LIST shows the sidecar's connections."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", f"sidecar-{check_name}")


def probe_client(check: CheckTarget, max_connections: int) -> aioredis.Redis:
    """A client for probing: a small pool, the check's timeout, no retries (the scheduler backs off),
    named in CLIENT LIST; redis-py connects on the first command."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        check.target or "",
        max_connections=max_connections,
        socket_connect_timeout=check.timeout,
        socket_timeout=check.timeout,
        client_name=client_name(check.name),
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        decode_responses=True,
        protocol=2,  # RESP2 works on every server version and proxy; a URL ?protocol=3 wins
    )
    return client


class RedisCollector(Collector[RedisOptions]):
    """Probes one Redis server (or Valkey, KeyDB) with PING and INFO."""

    kind: ClassVar[str] = "redis"
    options_model: ClassVar[type[CollectorOptions]] = RedisOptions
    component_type: ClassVar[str] = "datastore"

    def __init__(self, check: CheckTarget, options: RedisOptions) -> None:
        super().__init__(check, options)
        self._client: aioredis.Redis | None = None

    async def open(self) -> None:
        """Build the client and its pool; redis-py connects on the first command."""
        if self._client is not None:
            return
        self._client = probe_client(self.check, MAX_CONNECTIONS)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def collect(self) -> Observation:
        client = self._client
        if client is None:
            raise RuntimeError("RedisCollector.collect() called before open()")
        # INFO first: it pays for a (re)connect, so the timed PING is one round trip.
        info: dict[str, Any] = await client.info()
        started = time.perf_counter()
        await cast("Awaitable[bool]", client.ping())  # redis-py 7 types it as Awaitable | bool
        response_time = time.perf_counter() - started
        return observe(response_time, info)

    def classify_error(self, exc: BaseException) -> Reason | None:
        return classify_redis_error(exc)

    def secrets(self) -> Sequence[str]:
        return url_passwords(self.check.target)

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        return validate_redis_target(target)


def _number(info: Mapping[str, Any], key: str) -> float | None:
    value = info.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def observe(response_time: float, info: Mapping[str, Any]) -> Observation:
    """Turn one parsed INFO reply into measurements, samples and identity."""
    samples = [
        Sample(spec, value) for key, spec in INFO_FIELDS.items() if (value := _number(info, key)) is not None
    ]
    role = str(info.get("role", ""))
    if role == "slave":
        samples.append(Sample(REDIS_MASTER_LINK_UP, 1.0 if info.get("master_link_status") == "up" else 0.0))
    for key in sorted(info):
        match = _DB_SECTION.match(key)
        if match and isinstance(info[key], Mapping):
            db = match.group(1)
            samples.append(Sample(REDIS_DB_KEYS, float(info[key].get("keys", 0)), (db,)))
            samples.append(Sample(REDIS_DB_KEYS_EXPIRING, float(info[key].get("expires", 0)), (db,)))
    version = str(info.get("redis_version", ""))
    mode = str(info.get("redis_mode", ""))
    samples.append(Sample(REDIS_INSTANCE_INFO, 1.0, (role, version, mode)))

    measurements = {"responseTime": Measurement(response_time, UNIT_SECONDS)}
    clients = _number(info, "connected_clients")
    if clients is not None:
        measurements["connections"] = Measurement(clients)
        maxclients = _number(info, "maxclients")
        if maxclients:
            measurements["connectionsUsedRatio"] = Measurement(clients / maxclients, UNIT_RATIO)
    used, limit = _number(info, "used_memory"), _number(info, "maxmemory")
    if used is not None and limit:
        measurements["memoryUsedRatio"] = Measurement(used / limit, UNIT_RATIO)
    identity = {"version": version, "role": role, "mode": mode}
    return Observation(measurements=measurements, samples=samples, info=identity)


_AUTH_PREFIXES = ("NOAUTH", "WRONGPASS", "NOPERM")

# redis-py exception -> reason, first match wins, so subclasses come before their bases
ERROR_REASONS: tuple[tuple[tuple[type[BaseException], ...], Reason], ...] = (
    (
        (AuthenticationError, AuthorizationError, AuthenticationWrongNumberOfArgsError, NoPermissionError),
        Reason.AUTH,
    ),
    ((RedisTimeoutError, TimeoutError), Reason.TIMEOUT),
    ((BusyLoadingError,), Reason.UNHEALTHY),  # LOADING: up, but not serving yet
    ((RedisConnectionError, OSError), Reason.CONNECT),
    ((ResponseError, InvalidResponse), Reason.PROTOCOL),
)


def classify_redis_error(exc: BaseException) -> Reason | None:
    """redis-py exception -> reason; ``None`` leaves it to the generic mapping."""
    # On unix sockets redis-py wraps handshake errors (a wrong password) in a plain ConnectionError.
    if type(exc) is RedisConnectionError and isinstance(exc.__cause__, RedisError):
        return classify_redis_error(exc.__cause__)
    if isinstance(exc, ResponseError) and str(exc).upper().startswith(_AUTH_PREFIXES):
        return Reason.AUTH
    for types, reason in ERROR_REASONS:
        if isinstance(exc, types):
            return reason
    return None


def url_passwords(url: str | None) -> tuple[str, ...]:
    """The password in a Redis URL (userinfo or ``?password=``), decoded and as written."""
    if not url:
        return ()
    parts = urlsplit(url)
    found: list[str] = []
    if parts.password:
        found += [unquote(parts.password), parts.password]
    elif parts.username and parts.scheme != "unix":
        # redis://secret@host is read by redis-py as a password-only URL (legacy form)
        found += [unquote(parts.username), parts.username]
    found += [value for key, value in parse_qsl(parts.query) if key == "password" and value]
    return tuple(dict.fromkeys(s for s in found if s))


def validate_redis_target(target: str | None) -> str:
    """Accept what ``redis.asyncio.Redis.from_url`` can use; say how to fix anything else."""
    if not target:
        raise ValueError(f"a redis check needs a target URL, e.g. {EXAMPLE_TARGET}")
    parts = urlsplit(target)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            "redis target must start with redis://, rediss:// or unix://, "
            f"not {parts.scheme or 'nothing'}://; e.g. {EXAMPLE_TARGET}"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(
                "unix:// redis target needs a socket path, e.g. unix:///run/redis/redis.sock?db=0"
            )
        db_text = query.get("db", "0")
    else:
        if not parts.hostname:
            raise ValueError(f"redis target needs a host, e.g. {EXAMPLE_TARGET}")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(
                f"redis target has an invalid port; use a number 1-65535, e.g. {EXAMPLE_TARGET}"
            ) from None
        db_text = query.get("db") or parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise ValueError(f"redis database must be a number (redis://host:6379/0), not {db_text!r}")
    return target
