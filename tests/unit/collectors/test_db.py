"""PostgreSQL, MySQL and Redis collectors without a network: DSNs, targets, errors, metric specs."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import pymysql
import pytest
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    BusyLoadingError,
    NoPermissionError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from collectors import mysql, postgres, redis
from collectors.base import CheckTarget, MetricSpec, Reason, Status
from collectors.registry import load_collector
from tests.servers import free_port, require_binary

ALL_METRICS = (*postgres.METRICS, *mysql.METRICS, *redis.METRICS)


# --- PostgreSQL DSNs ----------------------------------------------------------------------------


def query_of(dsn: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(dsn).query))


def test_prepare_dsn_drops_prisma_parameters() -> None:
    prepared = postgres.prepare_dsn(
        "postgresql://app:p%40ss@db:5432/app?schema=public&connection_limit=5&pool_timeout=10"
        "&sslmode=require&application_name=api&socket_timeout=3"
    )
    assert query_of(prepared.dsn) == {"sslmode": "require", "application_name": "api"}
    assert prepared.dsn.startswith("postgresql://app:p%40ss@db:5432/app?")
    assert set(prepared.dropped) == {"schema", "connection_limit", "pool_timeout", "socket_timeout"}
    assert prepared.has_application_name


def test_prepare_dsn_keeps_what_asyncpg_and_the_server_understand() -> None:
    params = {
        "host": "/var/run/postgresql",
        "port": "5433",
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/ca.pem",
        "sslcert": "/etc/ssl/c.pem",
        "sslkey": "/etc/ssl/c.key",
        "target_session_attrs": "read-write",
        "options": "-c statement_timeout=5000",
        "user": "u",
        "password": "p",
        "dbname": "d",
    }
    dsn = "postgres:///?" + "&".join(f"{k}={v}" for k, v in params.items())
    prepared = postgres.prepare_dsn(dsn)
    assert query_of(prepared.dsn) == params
    assert prepared.dropped == ()
    assert not prepared.has_application_name


def test_prepare_dsn_turns_connect_timeout_and_pgbouncer_into_arguments() -> None:
    prepared = postgres.prepare_dsn("postgresql://db/app?connect_timeout=7&pgbouncer=true")
    assert prepared.connect_timeout == 7.0
    assert prepared.pgbouncer
    assert prepared.dsn == "postgresql://db/app"
    assert postgres.prepare_dsn("postgresql://db/app?connect_timeout=0").connect_timeout is None
    assert postgres.prepare_dsn("postgresql://db/app?connect_timeout=x").connect_timeout is None
    assert not postgres.prepare_dsn("postgresql://db/app?pgbouncer=false").pgbouncer


def test_prepare_dsn_without_query_is_unchanged() -> None:
    dsn = "postgresql://app:secret@db.internal:5432/app"
    assert postgres.prepare_dsn(dsn).dsn == dsn


@pytest.mark.parametrize(
    ("version_num", "short"),
    [(150004, "15.4.0"), (160000, "16.0.0"), (100023, "10.23.0"), (90624, "9.6.24"), (90500, "9.5.0")],
)
def test_short_version(version_num: int, short: str) -> None:
    assert postgres.short_version(version_num) == short


# --- validate_target ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "postgresql://app:secret@db:5432/app",
        "postgres://db/app",
        "postgresql:///app?host=/var/run/postgresql",
        "postgresql://h1:5432,h2:5433/app?target_session_attrs=read-write",
        "postgresql://db/app?schema=public&connection_limit=1",
    ],
)
def test_postgres_valid_targets(target: str) -> None:
    assert postgres.PostgresCollector.validate_target(target) == target


@pytest.mark.parametrize(
    ("target", "fix"),
    [
        (None, "postgresql://user:password@"),
        ("", "postgresql://user:password@"),
        ("mysql://db/app", "must start with postgresql://"),
        ("db.internal:5432", "must start with postgresql://"),
        ("postgresql://db:99999/app", "port"),
        ("postgresql://db:abc/app", "port"),
        ("postgresql://db/app?x", "query string"),
    ],
)
def test_postgres_invalid_targets(target: str | None, fix: str) -> None:
    with pytest.raises(ValueError, match="postgres") as info:
        postgres.PostgresCollector.validate_target(target)
    assert fix in str(info.value)


@pytest.mark.parametrize(
    "target",
    [
        "mysql://root@127.0.0.1:3306/",
        "mariadb://u:p@db/app",
        "mysql://u@localhost/app?socket=/run/mysqld/mysqld.sock",
        "mysql://u:p@db/app?ssl-mode=REQUIRED&connection_limit=5",
    ],
)
def test_mysql_valid_targets(target: str) -> None:
    assert mysql.MySQLCollector.validate_target(target) == target


@pytest.mark.parametrize(
    ("target", "fix"),
    [
        (None, "mysql://user:password@"),
        ("postgresql://db/app", "must start with mysql:// or mariadb://"),
        ("mysql://db:70000/", "port"),
        ("mysql:///app", "needs a host"),
        ("mysql://db/app?ssl-mode=sometimes", "ssl-mode must be one of"),
    ],
)
def test_mysql_invalid_targets(target: str | None, fix: str) -> None:
    with pytest.raises(ValueError, match="mysql") as info:
        mysql.MySQLCollector.validate_target(target)
    assert fix in str(info.value)


def test_parse_mysql_url() -> None:
    target = mysql.parse_mysql_url("mariadb://us%40er:p%3Ass@db.internal/app?ssl-mode=verify_identity")
    assert (target.host, target.port, target.user, target.password) == ("db.internal", 3306, "us@er", "p:ss")
    assert (target.database, target.unix_socket, target.ssl_mode) == ("app", None, "verify_identity")
    assert "p:ss" not in repr(target)
    socket_target = mysql.parse_mysql_url("mysql://root@localhost/?unix_socket=/tmp/m.sock")
    assert socket_target.unix_socket == "/tmp/m.sock"
    assert socket_target.database is None


def test_mysql_ssl_context_per_mode() -> None:
    def context(mode: str) -> object:
        return mysql.ssl_context(mysql.parse_mysql_url(f"mysql://db/?ssl-mode={mode}"))

    assert context("DISABLED") is None
    assert context("preferred") is None
    required = mysql.ssl_context(mysql.parse_mysql_url("mysql://db/?ssl-mode=required"))
    assert required is not None
    assert not required.check_hostname
    full = mysql.ssl_context(mysql.parse_mysql_url("mysql://db/?sslmode=verify-identity"))
    assert full is not None
    assert full.check_hostname


@pytest.mark.parametrize(
    "target",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:secret@cache:6380",
        "redis://user:secret@cache/3",
        "unix:///run/redis/redis.sock?db=1",
        "unix://:secret@/run/redis.sock",
    ],
)
def test_redis_valid_targets(target: str) -> None:
    assert redis.RedisCollector.validate_target(target) == target


@pytest.mark.parametrize(
    ("target", "fix"),
    [
        (None, "redis://:password@"),
        ("http://cache:6379", "must start with redis://"),
        ("cache:6379", "must start with redis://"),
        ("redis://:6379/0", "needs a host"),
        ("redis://cache:port/0", "port"),
        ("redis://cache:6379/zero", "must be a number"),
        ("unix://", "socket path"),
        ("unix:///run/redis.sock?db=x", "must be a number"),
    ],
)
def test_redis_invalid_targets(target: str | None, fix: str) -> None:
    with pytest.raises(ValueError, match="redis") as info:
        redis.RedisCollector.validate_target(target)
    assert fix in str(info.value)


# --- secrets ------------------------------------------------------------------------------------


def check(target: str) -> CheckTarget:
    return CheckTarget("db", target, 1.0)


def test_secrets_return_decoded_and_written_passwords() -> None:
    pg = postgres.PostgresCollector(check("postgresql://u:p%40ss%2Fw@db/app"), postgres.PostgresOptions())
    assert set(pg.secrets()) == {"p@ss/w", "p%40ss%2Fw"}
    pg_query = postgres.PostgresCollector(check("postgresql://db/app?password=q"), postgres.PostgresOptions())
    assert pg_query.secrets() == ("q",)
    my = mysql.MySQLCollector(check("mysql://u:plain@db/"), mysql.MySQLOptions())
    assert my.secrets() == ("plain",)
    rd = redis.RedisCollector(check("redis://:r%23pw@cache:6379/0"), redis.RedisOptions())
    assert set(rd.secrets()) == {"r#pw", "r%23pw"}
    legacy = redis.RedisCollector(check("redis://onlypassword@cache/0"), redis.RedisOptions())
    assert "onlypassword" in legacy.secrets()
    assert redis.RedisCollector(check("redis://cache/0"), redis.RedisOptions()).secrets() == ()
    assert (
        postgres.PostgresCollector(check("postgresql://db/app"), postgres.PostgresOptions()).secrets() == ()
    )


# --- error classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (asyncpg.InvalidPasswordError("password authentication failed"), Reason.AUTH),
        (asyncpg.InvalidAuthorizationSpecificationError("no pg_hba.conf entry"), Reason.AUTH),
        (asyncpg.InsufficientPrivilegeError("permission denied"), Reason.AUTH),
        (asyncpg.CannotConnectNowError("the database system is starting up"), Reason.CONNECT),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), Reason.CONNECT),
        (asyncpg.AdminShutdownError("terminating connection"), Reason.CONNECT),
        (asyncpg.ProtocolViolationError("bad message"), Reason.PROTOCOL),
        (asyncpg.InterfaceError("cannot perform operation"), Reason.PROTOCOL),
        (asyncpg.TooManyConnectionsError("too many clients"), Reason.UNHEALTHY),
        (asyncpg.QueryCanceledError("statement timeout"), Reason.TIMEOUT),
        (ConnectionRefusedError(111, "refused"), Reason.CONNECT),
        (OSError(113, "no route"), Reason.CONNECT),
        (TimeoutError(), Reason.TIMEOUT),
        (asyncpg.ClientConfigurationError("bad sslmode"), None),
        (ValueError("x"), None),
    ],
)
def test_classify_postgres_error(exc: BaseException, reason: Reason | None) -> None:
    assert postgres.classify_postgres_error(exc) is reason


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (pymysql.err.OperationalError(1045, "Access denied"), Reason.AUTH),
        (pymysql.err.OperationalError(1044, "Access denied to database"), Reason.AUTH),
        (pymysql.err.OperationalError(2003, "Can't connect"), Reason.CONNECT),
        (pymysql.err.OperationalError(2013, "Lost connection"), Reason.CONNECT),
        (pymysql.err.OperationalError(2006, "Server has gone away"), Reason.CONNECT),
        (pymysql.err.OperationalError(1040, "Too many connections"), Reason.UNHEALTHY),
        (pymysql.err.InternalError("Packet sequence number wrong"), Reason.PROTOCOL),
        (pymysql.err.InterfaceError(0, "Not connected"), Reason.PROTOCOL),
        (ConnectionResetError(), Reason.CONNECT),
        (TimeoutError(), Reason.TIMEOUT),
        (pymysql.err.ProgrammingError(1064, "syntax"), None),
    ],
)
def test_classify_mysql_error(exc: BaseException, reason: Reason | None) -> None:
    assert mysql.classify_mysql_error(exc) is reason


def _wrapped_auth_error() -> RedisConnectionError:
    """What redis-py raises for a wrong password on a unix socket."""
    try:
        try:
            raise AuthenticationError("invalid username-password pair")
        except AuthenticationError as inner:
            raise RedisConnectionError(inner) from inner
    except RedisConnectionError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (AuthenticationError("invalid username-password pair"), Reason.AUTH),
        (AuthenticationWrongNumberOfArgsError("wrong number of arguments"), Reason.AUTH),
        (NoPermissionError("NOPERM this user has no permissions"), Reason.AUTH),
        (ResponseError("NOAUTH Authentication required."), Reason.AUTH),
        (ResponseError("WRONGPASS invalid username-password pair"), Reason.AUTH),
        (_wrapped_auth_error(), Reason.AUTH),
        (RedisConnectionError("Error 111 connecting"), Reason.CONNECT),
        (ConnectionRefusedError(), Reason.CONNECT),
        (RedisTimeoutError("Timeout reading"), Reason.TIMEOUT),
        (BusyLoadingError("Redis is loading the dataset in memory"), Reason.UNHEALTHY),
        (ResponseError("ERR unknown command"), Reason.PROTOCOL),
        (ValueError("x"), None),
    ],
)
def test_classify_redis_error(exc: BaseException, reason: Reason | None) -> None:
    assert redis.classify_redis_error(exc) is reason


# --- observations from canned server answers ----------------------------------------------------


def test_redis_observe_ratios_and_replica_fields() -> None:
    info = {
        "redis_version": "7.2.4",
        "redis_mode": "standalone",
        "role": "slave",
        "master_host": "10.0.0.5",
        "master_port": 6379,
        "master_link_status": "down",
        "master_last_io_seconds_ago": -1,
        "master_sync_in_progress": 0,
        "used_memory": 25,
        "maxmemory": 100,
        "connected_clients": 5,
        "maxclients": 50,
        "keyspace_hits": 7,
        "db0": {"keys": 3, "expires": 1, "avg_ttl": 0},
        "db2": {"keys": 4, "expires": 0, "avg_ttl": 0},
        "cmdstat_client|setname": {"calls": 2, "usec": 6, "rejected_calls": 0, "failed_calls": 1},
    }
    observation = redis.observe(0.002, info, databases=4)
    assert observation.measurements["memoryUsedRatio"].value == 0.25
    assert observation.measurements["connectionsUsedRatio"].value == 0.1
    values = {(s.spec.name, s.label_values): s.value for s in observation.samples}
    assert values[("redis_master_link_up", ("10.0.0.5", "6379"))] == 0
    assert values[("redis_master_last_io_seconds_ago", ("10.0.0.5", "6379"))] == -1
    assert values[("redis_master_sync_in_progress", ("10.0.0.5", "6379"))] == 0
    # redis_exporter's shape: db="db0", and every database below `databases` (empty ones are 0)
    assert values[("redis_db_keys", ("db2",))] == 4
    assert values[("redis_db_keys_expiring", ("db0",))] == 1
    assert [lv for name, lv in values if name == "redis_db_keys"] == [("db0",), ("db1",), ("db2",), ("db3",)]
    assert values[("redis_db_keys", ("db3",))] == 0
    assert values[("redis_commands_total", ("client|setname",))] == 2
    assert values[("redis_commands_duration_seconds_total", ("client|setname",))] == 6e-6
    assert values[("redis_commands_failed_calls_total", ("client|setname",))] == 1
    ((identity, one),) = [(lv, v) for (name, lv), v in values.items() if name == "redis_instance_info"]
    assert one == 1
    assert dict(zip(redis.REDIS_INSTANCE_INFO.labels, identity, strict=True)) == {
        **dict.fromkeys(redis.REDIS_INSTANCE_INFO.labels, ""),
        "role": "slave",
        "redis_version": "7.2.4",
        "redis_mode": "standalone",
    }
    assert observation.info == {"version": "7.2.4", "role": "slave", "mode": "standalone"}
    no_limit = redis.observe(0.002, {**info, "maxmemory": 0})
    assert "memoryUsedRatio" not in no_limit.measurements


def test_mysql_observe_status_and_variables() -> None:
    status = {
        "threads_connected": "10",
        "uptime": "99",
        "connection_errors_max_connections": "2",
        "com_select": "7",
        "innodb_buffer_pool_pages_data": "5",
        "innodb_buffer_pool_pages_dirty": "1",
        "innodb_buffer_pool_pages_total": "9",
        "innodb_buffer_pool_pages_flushed": "3",
        "rpl_status": "AUTH_MASTER",
    }
    variables = {
        "max_connections": "200",
        "version": "10.11.19-MariaDB-0+deb12u1",
        "innodb_version": "10.11.19",
        "version_comment": "Debian 12",
        "read_only": "ON",
        "log_bin_basename": "/var/lib/mysql/binlog.000012",
        "long_query_time": "10.000000",
    }
    observation = mysql.observe(0.001, status, variables)
    assert observation.measurements["connectionsUsedRatio"].value == 0.05
    values = {(s.spec.name, s.label_values): s.value for s in observation.samples}
    types = {s.spec.name: s.spec.type for s in observation.samples}
    # mysqld_exporter's mapping: labelled groups, generic untyped status, gauge variables, text skipped
    assert values[("mysql_global_status_connection_errors_total", ("max_connections",))] == 2
    assert values[("mysql_global_status_commands_total", ("select",))] == 7
    assert values[("mysql_global_status_buffer_pool_pages", ("data",))] == 5
    assert values[("mysql_global_status_buffer_pool_dirty_pages", ())] == 1
    assert values[("mysql_global_status_buffer_pool_page_changes_total", ("flushed",))] == 3
    assert values[("mysql_global_status_threads_connected", ())] == 10
    assert types["mysql_global_status_threads_connected"] == "untyped"
    assert values[("mysql_global_variables_read_only", ())] == 1
    assert values[("mysql_global_variables_long_query_time", ())] == 10
    assert types["mysql_global_variables_max_connections"] == "gauge"
    assert not any(
        name.endswith(("rpl_status", "pages_total", "_version", "log_bin_basename")) for name, _ in values
    )
    assert values[("mysql_version_info", ("10.11.19", "10.11.19-MariaDB-0+deb12u1", "Debian 12"))] == 1
    assert observation.info["flavor"] == "mariadb"


@pytest.mark.parametrize(
    ("expect_primary", "in_recovery", "status"),
    [
        (None, True, Status.PASS),
        (True, False, Status.PASS),
        (True, True, Status.FAIL),
        (False, False, Status.FAIL),
    ],
)
def test_postgres_expect_primary_verdict(
    expect_primary: bool | None, in_recovery: bool, status: Status
) -> None:
    collector = postgres.PostgresCollector(
        check("postgresql://db/app"), postgres.PostgresOptions(expect_primary=expect_primary)
    )
    verdict, output = collector._verdict(in_recovery)
    assert verdict is status
    assert bool(output) == (status is Status.FAIL)


def test_postgres_options_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="expect_primry"):
        postgres.PostgresOptions.model_validate({"expect_primry": True})


# --- metric specs -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda s: s.name)
def test_metric_spec_conventions(spec: MetricSpec) -> None:
    assert spec.help
    assert spec.name.islower()
    assert "check" not in spec.labels  # the sidecar adds it
    assert spec.name.endswith("_total") == (spec.type == "counter")


def test_registry_loads_the_db_collectors() -> None:
    assert load_collector("postgres") is postgres.PostgresCollector
    assert load_collector("mysql") is mysql.MySQLCollector
    assert load_collector("redis") is redis.RedisCollector
    for cls in (postgres.PostgresCollector, mysql.MySQLCollector, redis.RedisCollector):
        assert cls.component_type == "datastore"


# --- open() does not touch the network ----------------------------------------------------------


async def test_open_and_close_do_not_connect() -> None:
    """Nothing listens on the port, yet open() and close() return at once: connecting is lazy."""
    port = free_port()
    collectors = [
        postgres.PostgresCollector(
            check(f"postgresql://u:p@127.0.0.1:{port}/db"), postgres.PostgresOptions()
        ),
        mysql.MySQLCollector(check(f"mysql://u:p@127.0.0.1:{port}/"), mysql.MySQLOptions()),
        redis.RedisCollector(check(f"redis://127.0.0.1:{port}/0"), redis.RedisOptions()),
    ]
    started = time.monotonic()
    for collector in collectors:
        await collector.open()
        await collector.open()  # idempotent
    for collector in collectors:
        await collector.close()
        await collector.close()
    assert time.monotonic() - started < 0.5


async def test_collect_before_open_says_so() -> None:
    for collector in (
        postgres.PostgresCollector(check("postgresql://db/app"), postgres.PostgresOptions()),
        mysql.MySQLCollector(check("mysql://db/"), mysql.MySQLOptions()),
        redis.RedisCollector(check("redis://cache/0"), redis.RedisOptions()),
    ):
        with pytest.raises(RuntimeError, match="before open"):
            await collector.collect()


# --- tests/servers.py helpers -------------------------------------------------------------------


def test_require_binary_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "no-such-server-binary-for-sure"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=missing):
        require_binary(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        require_binary(missing)
    assert require_binary("sh").endswith("/sh")
