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

# Commands: INFO ALL (what redis_exporter reads: server, clients, memory, stats, replication, cpu,
# commandstats and keyspace in one round trip, on every server version), then a timed PING. Once per
# server run (its run_id), CONFIG GET databases, so empty databases show as 0 like redis_exporter.
INFO_SECTION = "all"
DATABASES_CONFIG = "databases"
DEFAULT_DATABASES = 16  # redis_exporter's fallback when CONFIG is refused or renamed
MAX_DATABASES = 256  # label values stay bounded whatever a server's config says

EXPORTER = "redis_exporter"


def _gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, help_text, labels=labels, exporter=EXPORTER)


def _counter(name: str, help_text: str, labels: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, help_text, type="counter", labels=labels, exporter=EXPORTER)


REDIS_UP = _gauge("redis_up", "1 when the last probe could talk to Redis (INFO and PING answered), else 0.")
REDIS_MEMORY_USED = _gauge("redis_memory_used_bytes", "Memory allocated by Redis (used_memory), in bytes.")
REDIS_MEMORY_RSS = _gauge(
    "redis_memory_used_rss_bytes", "Resident memory of the Redis process (used_memory_rss)."
)
REDIS_MEMORY_PEAK = _gauge(
    "redis_memory_used_peak_bytes", "Peak memory allocated by Redis (used_memory_peak)."
)
REDIS_MEMORY_MAX = _gauge("redis_memory_max_bytes", "The maxmemory setting in bytes; 0 means no limit.")
REDIS_MEM_FRAGMENTATION = _gauge(
    "redis_mem_fragmentation_ratio", "used_memory_rss divided by used_memory (mem_fragmentation_ratio)."
)
REDIS_TOTAL_SYSTEM_MEMORY = _gauge(
    "redis_total_system_memory_bytes", "Memory of the host Redis runs on (total_system_memory)."
)
REDIS_CONNECTED_CLIENTS = _gauge("redis_connected_clients", "Client connections (not replicas).")
REDIS_BLOCKED_CLIENTS = _gauge("redis_blocked_clients", "Clients waiting in a blocking call.")
REDIS_MAXCLIENTS = _gauge("redis_config_maxclients", "The maxclients setting.")
REDIS_CONNECTED_SLAVES = _gauge("redis_connected_slaves", "Connected replicas.")
REDIS_UPTIME = _gauge("redis_uptime_in_seconds", "Seconds since the server started.")
REDIS_START_TIME = _gauge("redis_start_time_seconds", "Start time of the Redis server, in unix seconds.")
REDIS_PUBSUB_CHANNELS = _gauge("redis_pubsub_channels", "Pub/sub channels with subscribers.")
REDIS_RDB_CHANGES = _gauge(
    "redis_rdb_changes_since_last_save", "Changes since the last RDB save (rdb_changes_since_last_save)."
)
REDIS_RDB_LAST_SAVE = _gauge(
    "redis_rdb_last_save_timestamp_seconds", "Time of the last successful RDB save, in unix seconds."
)
REDIS_MASTER_REPL_OFFSET = _gauge("redis_master_repl_offset", "Replication offset of this server.")
REDIS_MASTER_LINK_UP = _gauge(
    "redis_master_link_up",
    "On a replica: 1 when the link to its master is up.",
    labels=("master_host", "master_port"),
)
REDIS_MASTER_LAST_IO = _gauge(
    "redis_master_last_io_seconds_ago",
    "On a replica: seconds since the last interaction with its master.",
    labels=("master_host", "master_port"),
)
REDIS_MASTER_SYNC_IN_PROGRESS = _gauge(
    "redis_master_sync_in_progress",
    "On a replica: 1 while it is syncing with its master.",
    labels=("master_host", "master_port"),
)
REDIS_KEYSPACE_HITS = _counter("redis_keyspace_hits_total", "Successful key lookups since start.")
REDIS_KEYSPACE_MISSES = _counter("redis_keyspace_misses_total", "Failed key lookups since start.")
REDIS_EVICTED_KEYS = _counter("redis_evicted_keys_total", "Keys evicted because of maxmemory since start.")
REDIS_EXPIRED_KEYS = _counter("redis_expired_keys_total", "Keys expired since start.")
REDIS_REJECTED_CONNECTIONS = _counter(
    "redis_rejected_connections_total", "Connections rejected because of maxclients."
)
REDIS_CONNECTIONS_RECEIVED = _counter("redis_connections_received_total", "Connections accepted since start.")
REDIS_COMMANDS_PROCESSED = _counter("redis_commands_processed_total", "Commands processed since start.")
REDIS_NET_INPUT = _counter("redis_net_input_bytes_total", "Bytes read from the network since start.")
REDIS_NET_OUTPUT = _counter("redis_net_output_bytes_total", "Bytes written to the network since start.")
REDIS_CPU_SYS = _counter("redis_cpu_sys_seconds_total", "System CPU consumed by the server (used_cpu_sys).")
REDIS_CPU_USER = _counter("redis_cpu_user_seconds_total", "User CPU consumed by the server (used_cpu_user).")
REDIS_COMMANDS = _counter("redis_commands_total", "Calls per command (INFO commandstats).", labels=("cmd",))
REDIS_COMMANDS_DURATION = _counter(
    "redis_commands_duration_seconds_total", "Time spent per command (INFO commandstats).", labels=("cmd",)
)
REDIS_COMMANDS_REJECTED = _counter(
    "redis_commands_rejected_calls_total", "Rejected calls per command (Redis 7+).", labels=("cmd",)
)
REDIS_COMMANDS_FAILED = _counter(
    "redis_commands_failed_calls_total", "Failed calls per command (Redis 7+).", labels=("cmd",)
)
REDIS_DB_KEYS = _gauge("redis_db_keys", "Keys per database (db0, db1...), 0 for empty ones.", labels=("db",))
REDIS_DB_KEYS_EXPIRING = _gauge(
    "redis_db_keys_expiring", "Keys with a TTL per database, 0 for empty ones.", labels=("db",)
)
REDIS_INSTANCE_INFO = _gauge(
    "redis_instance_info",
    "Server identity, as labels; the value is always 1.",
    labels=(
        "role",
        "redis_version",
        "redis_build_id",
        "redis_mode",
        "os",
        "maxmemory_policy",
        "tcp_port",
        "run_id",
        "process_id",
        "master_replid",
    ),
)

# INFO field -> metric, for the plain numbers
INFO_FIELDS: Mapping[str, MetricSpec] = {
    "used_memory": REDIS_MEMORY_USED,
    "used_memory_rss": REDIS_MEMORY_RSS,
    "used_memory_peak": REDIS_MEMORY_PEAK,
    "maxmemory": REDIS_MEMORY_MAX,
    "mem_fragmentation_ratio": REDIS_MEM_FRAGMENTATION,
    "total_system_memory": REDIS_TOTAL_SYSTEM_MEMORY,
    "connected_clients": REDIS_CONNECTED_CLIENTS,
    "blocked_clients": REDIS_BLOCKED_CLIENTS,
    "maxclients": REDIS_MAXCLIENTS,
    "connected_slaves": REDIS_CONNECTED_SLAVES,
    "uptime_in_seconds": REDIS_UPTIME,
    "pubsub_channels": REDIS_PUBSUB_CHANNELS,
    "rdb_changes_since_last_save": REDIS_RDB_CHANGES,
    "rdb_last_save_time": REDIS_RDB_LAST_SAVE,
    "master_repl_offset": REDIS_MASTER_REPL_OFFSET,
    "keyspace_hits": REDIS_KEYSPACE_HITS,
    "keyspace_misses": REDIS_KEYSPACE_MISSES,
    "evicted_keys": REDIS_EVICTED_KEYS,
    "expired_keys": REDIS_EXPIRED_KEYS,
    "rejected_connections": REDIS_REJECTED_CONNECTIONS,
    "total_connections_received": REDIS_CONNECTIONS_RECEIVED,
    "total_commands_processed": REDIS_COMMANDS_PROCESSED,
    "total_net_input_bytes": REDIS_NET_INPUT,
    "total_net_output_bytes": REDIS_NET_OUTPUT,
    "used_cpu_sys": REDIS_CPU_SYS,
    "used_cpu_user": REDIS_CPU_USER,
}
METRICS: tuple[MetricSpec, ...] = (
    REDIS_UP,
    *INFO_FIELDS.values(),
    REDIS_START_TIME,
    REDIS_MASTER_LINK_UP,
    REDIS_MASTER_LAST_IO,
    REDIS_MASTER_SYNC_IN_PROGRESS,
    REDIS_COMMANDS,
    REDIS_COMMANDS_DURATION,
    REDIS_COMMANDS_REJECTED,
    REDIS_COMMANDS_FAILED,
    REDIS_DB_KEYS,
    REDIS_DB_KEYS_EXPIRING,
    REDIS_INSTANCE_INFO,
)
_CMDSTAT_PREFIX = "cmdstat_"
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
    measurements: ClassVar[tuple[str, ...]] = (
        "responseTime",
        "connections",
        "connectionsUsedRatio",
        "memoryUsedRatio",
    )
    options_model: ClassVar[type[CollectorOptions]] = RedisOptions
    component_type: ClassVar[str] = "datastore"
    up_metric: ClassVar[MetricSpec | None] = REDIS_UP

    def __init__(self, check: CheckTarget, options: RedisOptions) -> None:
        super().__init__(check, options)
        self._client: aioredis.Redis | None = None
        self._databases: tuple[str, int] | None = None  # (run_id, CONFIG GET databases)

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
        info: dict[str, Any] = await client.info(INFO_SECTION)
        if _number(info, "cluster_enabled") == 1:
            databases = 1  # a cluster node has db0 only, whatever `databases` says (as redis_exporter)
        else:
            databases = await self._database_count(client, str(info.get("run_id", "")))
        started = time.perf_counter()
        await cast("Awaitable[bool]", client.ping())  # redis-py 7 types it as Awaitable | bool
        response_time = time.perf_counter() - started
        return observe(response_time, info, databases)

    async def _database_count(self, client: aioredis.Redis, run_id: str) -> int:
        """``databases`` from CONFIG GET, asked once per server run (it cannot change while it runs).

        Where CONFIG is refused (an ACL without ``+config|get``, a managed Redis that renames it),
        the count is redis_exporter's default of 16.
        """
        if self._databases is not None and self._databases[0] == run_id:
            return self._databases[1]
        try:
            reply = await client.config_get(DATABASES_CONFIG)
            count = int(reply.get(DATABASES_CONFIG, DEFAULT_DATABASES))
        except (ResponseError, ValueError, TypeError):
            count = DEFAULT_DATABASES
        count = max(0, min(count, MAX_DATABASES))
        self._databases = (run_id, count)
        return count

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


def observe(response_time: float, info: Mapping[str, Any], databases: int = DEFAULT_DATABASES) -> Observation:
    """Turn one parsed ``INFO ALL`` reply into measurements, samples and identity."""
    samples = [
        Sample(spec, value) for key, spec in INFO_FIELDS.items() if (value := _number(info, key)) is not None
    ]
    uptime = _number(info, "uptime_in_seconds")
    if (
        uptime is not None
    ):  # the server's clock where INFO has it (Redis 5+), like redis_exporter's now - uptime
        server_time = _number(info, "server_time_usec")
        now = server_time / 1e6 if server_time is not None else time.time()
        samples.append(Sample(REDIS_START_TIME, float(int(now - uptime))))
    role = str(info.get("role", ""))
    if role == "slave":
        link = (str(info.get("master_host", "")), str(info.get("master_port", "")))
        samples.append(
            Sample(REDIS_MASTER_LINK_UP, 1.0 if info.get("master_link_status") == "up" else 0.0, link)
        )
        for key, spec in (
            ("master_last_io_seconds_ago", REDIS_MASTER_LAST_IO),
            ("master_sync_in_progress", REDIS_MASTER_SYNC_IN_PROGRESS),
        ):
            if (value := _number(info, key)) is not None:
                samples.append(Sample(spec, value, link))
    samples += _command_samples(info)
    samples += _keyspace_samples(info, databases)
    samples.append(
        Sample(REDIS_INSTANCE_INFO, 1.0, tuple(str(info.get(k, "")) for k in REDIS_INSTANCE_INFO.labels))
    )

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
    version = str(info.get("redis_version", ""))
    identity = {"version": version, "role": role, "mode": str(info.get("redis_mode", ""))}
    return Observation(measurements=measurements, samples=samples, info=identity)


def _command_samples(info: Mapping[str, Any]) -> list[Sample]:
    """redis_exporter's per-command counters from the ``cmdstat_<cmd>`` fields (``client|setname``)."""
    samples: list[Sample] = []
    for key, stats in info.items():
        if not key.startswith(_CMDSTAT_PREFIX) or not isinstance(stats, Mapping):
            continue
        cmd = (key.removeprefix(_CMDSTAT_PREFIX),)
        samples.append(Sample(REDIS_COMMANDS, float(stats.get("calls", 0)), cmd))
        samples.append(Sample(REDIS_COMMANDS_DURATION, float(stats.get("usec", 0)) / 1e6, cmd))
        if "rejected_calls" in stats:  # Redis 7+
            samples.append(Sample(REDIS_COMMANDS_REJECTED, float(stats["rejected_calls"]), cmd))
            samples.append(Sample(REDIS_COMMANDS_FAILED, float(stats.get("failed_calls", 0)), cmd))
    return samples


def _keyspace_samples(info: Mapping[str, Any], databases: int) -> list[Sample]:
    """``db_keys``/``db_keys_expiring`` with ``db="db0"``, every database below ``databases`` included."""
    found: dict[int, tuple[float, float]] = {}
    for key, stats in info.items():
        match = _DB_SECTION.match(key)
        if match and isinstance(stats, Mapping):
            found[int(match.group(1))] = (float(stats.get("keys", 0)), float(stats.get("expires", 0)))
    samples: list[Sample] = []
    for index in sorted(set(range(databases)) | set(found)):
        keys, expiring = found.get(index, (0.0, 0.0))
        db = (f"db{index}",)
        samples.append(Sample(REDIS_DB_KEYS, keys, db))
        samples.append(Sample(REDIS_DB_KEYS_EXPIRING, expiring, db))
    return samples


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
