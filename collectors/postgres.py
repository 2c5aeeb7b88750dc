"""PostgreSQL collector: round-trip latency, version, recovery state and connections by state.

One asyncpg pool of at most one connection, created in ``open()`` without connecting
(``min_size=0``), reused across probes. A probe that fails or is cancelled (the probe template
cancels on timeout) terminates its connection, so a hung server can never make the pool hold more
than one connection or hand a half-read connection to the next probe.

Metric names follow postgres_exporter where one exists, so its community dashboards keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    Observation,
    Reason,
    Sample,
    Status,
)

SCHEMES = ("postgres", "postgresql")
EXAMPLE_TARGET = "postgresql://user:password@db.internal:5432/app"

# DSN query parameters asyncpg understands (it passes unknown ones to the server as settings, where
# Prisma's ``schema`` or ``connection_limit`` make the connection fail).
ASYNCPG_DSN_PARAMS = frozenset(
    {
        "host",
        "port",
        "dbname",
        "database",
        "user",
        "password",
        "passfile",
        "service",
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
    }
)
# Startup-packet parameters the server itself accepts; asyncpg forwards them as server settings.
SERVER_STARTUP_PARAMS = frozenset({"application_name", "options"})

PING_QUERY = "SELECT 1"
SERVER_QUERY = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS server_version,
       version() AS version,
       pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved_connections,
       current_setting('max_locks_per_transaction')::int AS max_locks_per_transaction,
       extract(epoch FROM pg_postmaster_start_time())::float8 AS start_time,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections
"""
# Same shape as postgres_exporter's pg_stat_activity query: every (database, state) pair, zeros
# included, so series do not appear and vanish with traffic.
ACTIVITY_QUERY = """
SELECT d.datname::text AS datname, s.state, coalesce(a.count, 0) AS count,
       coalesce(a.max_tx_duration, 0)::float8 AS max_tx_duration
FROM pg_database d
CROSS JOIN (VALUES ('active'), ('idle'), ('idle in transaction'), ('idle in transaction (aborted)'),
                   ('fastpath function call'), ('disabled')) AS s(state)
LEFT JOIN (
    SELECT datname, state, count(*) AS count,
           max(extract(epoch FROM now() - xact_start))::float8 AS max_tx_duration
    FROM pg_stat_activity GROUP BY datname, state
) a ON a.datname = d.datname AND a.state = s.state
ORDER BY 1, 2
"""

# One more round trip, four of postgres_exporter's collectors in one statement (each set as a JSON
# array, so the shapes stay apart): pg_stat_database (rows without a datname, the shared-objects row,
# are skipped as the exporter does), pg_locks per database and mode with zeros (the exporter's
# query), and pg_database_size for the databases this role may measure (CONNECT privilege or
# pg_read_all_stats; a role without either would otherwise fail the whole probe), and pg_stat_bgwriter
# as one object, whatever columns this version has (PostgreSQL 17 moved the checkpoint ones out).
STATS_QUERY = """
SELECT
  (SELECT coalesce(json_agg(json_build_object(
      'datid', datid::text, 'datname', datname, 'numbackends', numbackends,
      'xact_commit', xact_commit, 'xact_rollback', xact_rollback, 'blks_read', blks_read,
      'blks_hit', blks_hit, 'tup_returned', tup_returned, 'tup_fetched', tup_fetched,
      'tup_inserted', tup_inserted, 'tup_updated', tup_updated, 'tup_deleted', tup_deleted,
      'conflicts', conflicts, 'temp_files', temp_files, 'temp_bytes', temp_bytes,
      'deadlocks', deadlocks, 'blk_read_time', blk_read_time, 'blk_write_time', blk_write_time,
      'stats_reset', coalesce(extract(epoch FROM stats_reset), 0)) ORDER BY datname), '[]')
   FROM pg_stat_database WHERE datname IS NOT NULL) AS stat_database,
  (SELECT coalesce(json_agg(json_build_array(d.datname, m.mode, coalesce(l.count, 0))
                            ORDER BY d.datname, m.mode), '[]')
   FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'),
                ('shareupdateexclusivelock'), ('sharelock'), ('sharerowexclusivelock'),
                ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) AS m(mode)
   CROSS JOIN pg_database d
   LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks
              WHERE database IS NOT NULL GROUP BY database, lower(mode)) l
     ON l.mode = m.mode AND l.database = d.oid) AS locks,
  (SELECT coalesce(json_agg(json_build_array(datname, datconnlimit,
            CASE WHEN has_database_privilege(oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'MEMBER')
                 THEN pg_database_size(oid) END) ORDER BY datname), '[]')
   FROM pg_database) AS databases,
  (SELECT to_jsonb(b) || jsonb_build_object('stats_reset', coalesce(extract(epoch FROM b.stats_reset), 0))
   FROM pg_stat_bgwriter b) AS bgwriter
"""

EXPORTER = "postgres_exporter"


def _pg(name: str, help_text: str, labels: tuple[str, ...] = (), *, untyped: bool = False) -> MetricSpec:
    """A postgres_exporter family; its counters without ``_total`` are untyped here (see sidecar.metrics)."""
    return MetricSpec(
        name, help_text, type="untyped" if untyped else "gauge", labels=labels, exporter=EXPORTER
    )


PG_UP = _pg("pg_up", "1 when the last probe could connect to and query PostgreSQL, else 0.")
PG_MAX_CONNECTIONS = _pg(
    "pg_settings_max_connections", "Server parameter max_connections: the most concurrent connections."
)
PG_SUPERUSER_RESERVED_CONNECTIONS = _pg(
    "pg_settings_superuser_reserved_connections",
    "Server parameter superuser_reserved_connections: connection slots kept for superusers.",
)
PG_MAX_LOCKS_PER_TRANSACTION = _pg(
    "pg_settings_max_locks_per_transaction",
    "Server parameter max_locks_per_transaction: the lock table holds this many per connection.",
)
PG_SERVER_VERSION_NUM = _pg(
    "pg_settings_server_version_num", "Server parameter server_version_num (e.g. 150004 for 15.4)."
)
PG_STAT_ACTIVITY_COUNT = _pg(
    "pg_stat_activity_count",
    "Connections per database and state, from pg_stat_activity.",
    labels=("datname", "state"),
)
PG_STAT_ACTIVITY_MAX_TX_DURATION = _pg(
    "pg_stat_activity_max_tx_duration",
    "Longest running transaction per database and state, in seconds.",
    labels=("datname", "state"),
)
PG_POSTMASTER_START_TIME = _pg(
    "pg_postmaster_start_time_seconds", "Time the postmaster started, in seconds since the Unix epoch."
)
PG_REPLICATION_IS_REPLICA = _pg(
    "pg_replication_is_replica", "1 when the server is in recovery (a standby), 0 on a primary."
)
PG_STATIC = _pg(
    "pg_static", "Server version, as labels; the value is always 1.", labels=("short_version", "version")
)
PG_LOCKS_COUNT = _pg(
    "pg_locks_count", "Locks held per database and lock mode (pg_locks).", labels=("datname", "mode")
)
PG_DATABASE_SIZE = _pg("pg_database_size_bytes", "Disk space used by the database.", labels=("datname",))
PG_DATABASE_CONNECTION_LIMIT = _pg(
    "pg_database_connection_limit", "Connection limit set for the database (-1: none).", labels=("datname",)
)
STAT_DATABASE_LABELS = ("datid", "datname")
PG_STAT_DATABASE_NUMBACKENDS = _pg(
    "pg_stat_database_numbackends", "Backends currently connected to this database.", STAT_DATABASE_LABELS
)
# pg_stat_database column -> help; counters in postgres_exporter, untyped here (no `_total`).
_STAT_DATABASE_COUNTERS: tuple[tuple[str, str], ...] = (
    ("xact_commit", "Transactions in this database that have been committed."),
    ("xact_rollback", "Transactions in this database that have been rolled back."),
    ("blks_read", "Disk blocks read in this database."),
    ("blks_hit", "Disk blocks found already in the buffer cache."),
    ("tup_returned", "Rows returned by queries in this database."),
    ("tup_fetched", "Rows fetched by queries in this database."),
    ("tup_inserted", "Rows inserted by queries in this database."),
    ("tup_updated", "Rows updated by queries in this database."),
    ("tup_deleted", "Rows deleted by queries in this database."),
    ("conflicts", "Queries canceled due to conflicts with recovery in this database."),
    ("temp_files", "Temporary files created by queries in this database."),
    ("temp_bytes", "Data written to temporary files by queries in this database, in bytes."),
    ("deadlocks", "Deadlocks detected in this database."),
    ("blk_read_time", "Time spent reading data file blocks by backends, in milliseconds."),
    ("blk_write_time", "Time spent writing data file blocks by backends, in milliseconds."),
    ("stats_reset", "Time at which these statistics were last reset, in unix seconds (0: never)."),
)
STAT_DATABASE_COLUMNS: Mapping[str, MetricSpec] = {
    "numbackends": PG_STAT_DATABASE_NUMBACKENDS,
    **{
        column: _pg(f"pg_stat_database_{column}", text, STAT_DATABASE_LABELS, untyped=True)
        for column, text in _STAT_DATABASE_COUNTERS
    },
}
# pg_stat_bgwriter column -> family (postgres_exporter's names; counters with _total)
_BGWRITER_COUNTERS: tuple[tuple[str, str], ...] = (
    ("checkpoints_timed", "Scheduled checkpoints that have been performed."),
    ("checkpoints_req", "Requested checkpoints that have been performed."),
    ("checkpoint_write_time", "Time spent writing checkpoint files to disk, in milliseconds."),
    ("checkpoint_sync_time", "Time spent synchronizing checkpoint files to disk, in milliseconds."),
    ("buffers_checkpoint", "Buffers written during checkpoints."),
    ("buffers_clean", "Buffers written by the background writer."),
    ("maxwritten_clean", "Times the background writer stopped a cleaning scan for writing too many buffers."),
    ("buffers_backend", "Buffers written directly by a backend."),
    ("buffers_backend_fsync", "Times a backend had to execute its own fsync call."),
    ("buffers_alloc", "Buffers allocated."),
    ("stats_reset", "Time at which these statistics were last reset, in unix seconds."),
)
BGWRITER_COLUMNS: Mapping[str, MetricSpec] = {
    column: MetricSpec(f"pg_stat_bgwriter_{column}_total", text, type="counter", exporter=EXPORTER)
    for column, text in _BGWRITER_COUNTERS
}
PG_STAT_BGWRITER_BUFFERS_ALLOC = BGWRITER_COLUMNS["buffers_alloc"]
PG_STAT_BGWRITER_BUFFERS_BACKEND = BGWRITER_COLUMNS["buffers_backend"]
PG_STAT_BGWRITER_BUFFERS_BACKEND_FSYNC = BGWRITER_COLUMNS["buffers_backend_fsync"]
PG_STAT_BGWRITER_BUFFERS_CHECKPOINT = BGWRITER_COLUMNS["buffers_checkpoint"]
PG_STAT_BGWRITER_BUFFERS_CLEAN = BGWRITER_COLUMNS["buffers_clean"]
PG_STAT_BGWRITER_CHECKPOINTS_REQ = BGWRITER_COLUMNS["checkpoints_req"]
PG_STAT_BGWRITER_CHECKPOINTS_TIMED = BGWRITER_COLUMNS["checkpoints_timed"]
PG_STAT_BGWRITER_CHECKPOINT_SYNC_TIME = BGWRITER_COLUMNS["checkpoint_sync_time"]
PG_STAT_BGWRITER_CHECKPOINT_WRITE_TIME = BGWRITER_COLUMNS["checkpoint_write_time"]
PG_STAT_BGWRITER_MAXWRITTEN_CLEAN = BGWRITER_COLUMNS["maxwritten_clean"]
PG_STAT_BGWRITER_STATS_RESET = BGWRITER_COLUMNS["stats_reset"]
PG_STAT_DATABASE_XACT_COMMIT = STAT_DATABASE_COLUMNS["xact_commit"]
PG_STAT_DATABASE_XACT_ROLLBACK = STAT_DATABASE_COLUMNS["xact_rollback"]
PG_STAT_DATABASE_BLKS_READ = STAT_DATABASE_COLUMNS["blks_read"]
PG_STAT_DATABASE_BLKS_HIT = STAT_DATABASE_COLUMNS["blks_hit"]
PG_STAT_DATABASE_TUP_RETURNED = STAT_DATABASE_COLUMNS["tup_returned"]
PG_STAT_DATABASE_TUP_FETCHED = STAT_DATABASE_COLUMNS["tup_fetched"]
PG_STAT_DATABASE_TUP_INSERTED = STAT_DATABASE_COLUMNS["tup_inserted"]
PG_STAT_DATABASE_TUP_UPDATED = STAT_DATABASE_COLUMNS["tup_updated"]
PG_STAT_DATABASE_TUP_DELETED = STAT_DATABASE_COLUMNS["tup_deleted"]
PG_STAT_DATABASE_CONFLICTS = STAT_DATABASE_COLUMNS["conflicts"]
PG_STAT_DATABASE_TEMP_FILES = STAT_DATABASE_COLUMNS["temp_files"]
PG_STAT_DATABASE_TEMP_BYTES = STAT_DATABASE_COLUMNS["temp_bytes"]
PG_STAT_DATABASE_DEADLOCKS = STAT_DATABASE_COLUMNS["deadlocks"]
PG_STAT_DATABASE_BLK_READ_TIME = STAT_DATABASE_COLUMNS["blk_read_time"]
PG_STAT_DATABASE_BLK_WRITE_TIME = STAT_DATABASE_COLUMNS["blk_write_time"]
PG_STAT_DATABASE_STATS_RESET = STAT_DATABASE_COLUMNS["stats_reset"]

METRICS: tuple[MetricSpec, ...] = (
    PG_UP,
    PG_MAX_CONNECTIONS,
    PG_SUPERUSER_RESERVED_CONNECTIONS,
    PG_MAX_LOCKS_PER_TRANSACTION,
    PG_SERVER_VERSION_NUM,
    PG_STAT_ACTIVITY_COUNT,
    PG_STAT_ACTIVITY_MAX_TX_DURATION,
    PG_POSTMASTER_START_TIME,
    PG_REPLICATION_IS_REPLICA,
    PG_STATIC,
    PG_LOCKS_COUNT,
    PG_DATABASE_SIZE,
    PG_DATABASE_CONNECTION_LIMIT,
    *STAT_DATABASE_COLUMNS.values(),
    *BGWRITER_COLUMNS.values(),
)

CLOSE_TIMEOUT = 1.0  # seconds for a polite goodbye (or release) before the socket is simply closed
UNIT_SECONDS = "s"
UNIT_RATIO = "ratio"


class PostgresOptions(CollectorOptions, frozen=True):
    """``expect_primary``: True fails the check on a standby, False fails it on a primary."""

    expect_primary: bool | None = None


@dataclass(frozen=True, slots=True)
class PreparedDsn:
    """A DSN asyncpg accepts, plus what was taken out of it to become connect arguments."""

    dsn: str
    connect_timeout: float | None = None
    pgbouncer: bool = False
    has_application_name: bool = False
    dropped: tuple[str, ...] = ()


def prepare_dsn(dsn: str) -> PreparedDsn:
    """Keep only query parameters asyncpg or the server understand; turn the rest into arguments.

    ``connect_timeout`` becomes asyncpg's ``timeout``; Prisma's ``pgbouncer=true`` turns the
    statement cache off (transaction pooling breaks named prepared statements); everything else
    unknown (``schema``, ``connection_limit``, ``pool_timeout`` ...) is dropped.
    """
    parts = urlsplit(dsn)
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    connect_timeout: float | None = None
    pgbouncer = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ASYNCPG_DSN_PARAMS or key in SERVER_STARTUP_PARAMS:
            kept.append((key, value))
        elif key == "connect_timeout":
            connect_timeout = _positive_float(value)
        elif key == "pgbouncer":
            pgbouncer = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            dropped.append(key)
    query = urlencode(kept, quote_via=quote)
    return PreparedDsn(
        dsn=urlunsplit(parts._replace(query=query)),
        connect_timeout=connect_timeout,
        pgbouncer=pgbouncer,
        has_application_name=any(key == "application_name" for key, _ in kept),
        dropped=tuple(dropped),
    )


def _positive_float(text: str) -> float | None:
    """libpq treats 0 or garbage as "no timeout"; so do we."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def dsn_passwords(dsn: str | None) -> tuple[str, ...]:
    """The password(s) in a DSN, decoded and as written, for redaction."""
    if not dsn:
        return ()
    parts = urlsplit(dsn)
    found: list[str] = []
    if parts.password:
        found += [unquote(parts.password), parts.password]
    found += [value for key, value in parse_qsl(parts.query) if key == "password" and value]
    return tuple(dict.fromkeys(s for s in found if s))


def short_version(version_num: int) -> str:
    """postgres_exporter's ``short_version``: 150004 -> 15.4.0, 90624 -> 9.6.24."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}.0"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def application_name(check_name: str) -> str:
    """How the sidecar's connections show up in pg_stat_activity (NAMEDATALEN is 64)."""
    return f"sidecar-{check_name}"[:63]


class PostgresCollector(Collector[PostgresOptions]):
    """Probes one PostgreSQL server through a pool of at most one connection."""

    kind: ClassVar[str] = "postgres"
    measurements: ClassVar[tuple[str, ...]] = ("responseTime", "connections", "connectionsUsedRatio")
    options_model: ClassVar[type[CollectorOptions]] = PostgresOptions
    component_type: ClassVar[str] = "datastore"
    up_metric: ClassVar[MetricSpec | None] = PG_UP

    def __init__(self, check: CheckTarget, options: PostgresOptions) -> None:
        super().__init__(check, options)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the pool; ``min_size=0`` means no connection until the first probe."""
        if self._pool is not None:
            return
        prepared = prepare_dsn(self.check.target or "")
        kwargs: dict[str, Any] = {
            "min_size": 0,
            "max_size": 1,
            "timeout": prepared.connect_timeout or self.check.timeout,
            "max_inactive_connection_lifetime": 300.0,
            "reset": _keep_session,
        }
        if not prepared.has_application_name:
            kwargs["server_settings"] = {"application_name": application_name(self.check.name)}
        if prepared.pgbouncer:
            kwargs["statement_cache_size"] = 0
        pool = asyncpg.create_pool(prepared.dsn, **kwargs)
        await pool  # initialises the holders; connects nobody with min_size=0
        self._pool = pool

    async def close(self) -> None:
        """Close the pool; a connection stuck on a hung server is terminated instead of awaited."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await pool.close()
        except TimeoutError:
            pool.terminate()

    async def collect(self) -> Observation:
        pool = self._pool
        if pool is None:
            raise RuntimeError("PostgresCollector.collect() called before open()")
        conn = await pool.acquire()
        try:
            started = time.perf_counter()
            await conn.fetchval(PING_QUERY)
            response_time = time.perf_counter() - started
            server = await conn.fetchrow(SERVER_QUERY)
            activity = await conn.fetch(ACTIVITY_QUERY)
            stats = await conn.fetchrow(STATS_QUERY)
        except BaseException:
            _terminate(conn)
            raise
        finally:
            await pool.release(conn, timeout=CLOSE_TIMEOUT)
        return self._observe(response_time, server, activity, stats)

    def _observe(
        self, response_time: float, server: Any, activity: Sequence[Any], stats: Any = None
    ) -> Observation:
        """Turn the query results into measurements, samples and a verdict."""
        version_num = int(server["version_num"])
        in_recovery = bool(server["in_recovery"])
        max_connections = int(server["max_connections"])
        connections = int(server["connections"])
        samples = [
            Sample(PG_MAX_CONNECTIONS, float(max_connections)),
            Sample(PG_SUPERUSER_RESERVED_CONNECTIONS, float(server["superuser_reserved_connections"])),
            Sample(PG_MAX_LOCKS_PER_TRANSACTION, float(server["max_locks_per_transaction"])),
            Sample(PG_SERVER_VERSION_NUM, float(version_num)),
            Sample(PG_POSTMASTER_START_TIME, float(server["start_time"])),
            Sample(PG_REPLICATION_IS_REPLICA, 1.0 if in_recovery else 0.0),
            Sample(PG_STATIC, 1.0, (short_version(version_num), str(server["version"]))),
        ]
        for row in activity:
            labels = (str(row["datname"]), str(row["state"]))
            samples.append(Sample(PG_STAT_ACTIVITY_COUNT, float(row["count"]), labels))
            samples.append(Sample(PG_STAT_ACTIVITY_MAX_TX_DURATION, float(row["max_tx_duration"]), labels))
        if stats is not None:
            samples += stats_samples(stats)
        measurements = {
            "responseTime": Measurement(response_time, UNIT_SECONDS),
            "connections": Measurement(float(connections)),
            "connectionsUsedRatio": Measurement(connections / max_connections, UNIT_RATIO),
        }
        role = "standby" if in_recovery else "primary"
        info = {"version": str(server["server_version"]), "role": role, "versionNum": str(version_num)}
        status, output = self._verdict(in_recovery)
        return Observation(
            measurements=measurements, samples=samples, status=status, output=output, info=info
        )

    def _verdict(self, in_recovery: bool) -> tuple[Status, str]:
        """Compare the server's role with ``expect_primary``."""
        expected = self.options.expect_primary
        if expected is True and in_recovery:
            return Status.FAIL, "server is a standby (in recovery) but expect_primary is true"
        if expected is False and not in_recovery:
            return Status.FAIL, "server is a primary but expect_primary is false"
        return Status.PASS, ""

    def classify_error(self, exc: BaseException) -> Reason | None:
        return classify_postgres_error(exc)

    def secrets(self) -> Sequence[str]:
        return dsn_passwords(self.check.target)

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        return validate_postgres_target(target)


def stats_samples(stats: Mapping[str, Any]) -> list[Sample]:
    """Samples from the JSON columns of ``STATS_QUERY``."""
    samples: list[Sample] = []
    for row in _json_rows(stats["stat_database"]):
        labels = (str(row["datid"]), str(row["datname"]))
        for column, spec in STAT_DATABASE_COLUMNS.items():
            value = row.get(column)
            if value is not None:
                samples.append(Sample(spec, float(value), labels))
    for datname, mode, count in _json_rows(stats["locks"]):
        samples.append(Sample(PG_LOCKS_COUNT, float(count), (str(datname), str(mode))))
    bgwriter = stats["bgwriter"]
    bgwriter = json.loads(bgwriter) if isinstance(bgwriter, str | bytes) else bgwriter
    if isinstance(bgwriter, dict):
        for column, spec in BGWRITER_COLUMNS.items():
            value = bgwriter.get(column)
            if isinstance(value, int | float) and not isinstance(value, bool):
                samples.append(Sample(spec, float(value)))
    for datname, connlimit, size in _json_rows(stats["databases"]):
        samples.append(Sample(PG_DATABASE_CONNECTION_LIMIT, float(connlimit), (str(datname),)))
        if size is not None:
            samples.append(Sample(PG_DATABASE_SIZE, float(size), (str(datname),)))
    return samples


def _json_rows(value: Any) -> list[Any]:
    """asyncpg returns ``json`` as text; an aggregate over nothing is the literal ``[]``."""
    rows = json.loads(value) if isinstance(value, str | bytes) else value
    return rows if isinstance(rows, list) else []


# asyncpg exception -> reason, first match wins, so subclasses come before their bases.
ERROR_REASONS: tuple[tuple[tuple[type[BaseException], ...], Reason | None], ...] = (
    # bad password, "no pg_hba.conf entry", role without rights
    ((asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InsufficientPrivilegeError), Reason.AUTH),
    ((asyncpg.QueryCanceledError,), Reason.TIMEOUT),  # statement_timeout
    ((asyncpg.TooManyConnectionsError,), Reason.UNHEALTHY),
    ((asyncpg.ProtocolViolationError,), Reason.PROTOCOL),
    # lost connection; server starting up or shutting down
    ((asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError), Reason.CONNECT),
    ((asyncpg.ClientConfigurationError,), None),  # a DSN asyncpg rejects: not the server's fault
    ((asyncpg.InterfaceError,), Reason.PROTOCOL),
    ((TimeoutError,), Reason.TIMEOUT),
    ((OSError,), Reason.CONNECT),  # refused, reset, unreachable; ConnectionError is an OSError
)


async def _keep_session(conn: Any) -> None:
    """Pool ``reset`` hook: probes change no session state, so skip asyncpg's ``RESET ALL``.

    The default reset is a network round trip inside a shielded release; on a server that hangs
    right after a probe it would hold the pool's only slot until the server answers again.
    """


def _terminate(conn: Any) -> None:
    """Drop a pooled connection whose state is unknown (cancelled mid-query or broken).

    ``terminate()`` closes the socket without a network round trip, so it works on a hung server,
    and returns the slot to the pool; the next probe connects afresh. A connection that already
    died has been detached from the pool by asyncpg, which then refuses the call.
    """
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def classify_postgres_error(exc: BaseException) -> Reason | None:
    """asyncpg exception -> reason; ``None`` leaves it to the template's generic mapping."""
    for types, reason in ERROR_REASONS:
        if isinstance(exc, types):
            return reason
    return None


def validate_postgres_target(target: str | None) -> str:
    """Accept ``postgres[ql]://`` URLs asyncpg can use; say how to fix anything else."""
    if not target:
        raise ValueError(f"a postgres check needs a target URL, e.g. {EXAMPLE_TARGET}")
    parts = urlsplit(target)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"postgres target must start with postgresql:// or postgres://, not {parts.scheme or 'nothing'}"
            f"://; e.g. {EXAMPLE_TARGET}"
        )
    if "," not in parts.netloc:  # a multi-host list is asyncpg's to parse
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise ValueError(
                f"postgres target has an invalid port; use a number 1-65535, e.g. {EXAMPLE_TARGET}"
            ) from None
    try:
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise ValueError("postgres target has a malformed query string; use ?key=value&key2=value2") from None
    # Without a host or a database the driver silently probes its defaults (localhost, a database
    # named like the user), which is not the dependency the configuration meant.
    if not parts.hostname and "," not in parts.netloc and not query.get("host"):
        raise ValueError(
            f"postgres target has no host: write it after '//', e.g. {EXAMPLE_TARGET} "
            "(or ?host=/run/postgresql for a unix socket)"
        )
    if not unquote(parts.path.lstrip("/")) and not (query.get("dbname") or query.get("database")):
        raise ValueError(f"postgres target has no database: write it after the host, e.g. {EXAMPLE_TARGET}")
    return target
