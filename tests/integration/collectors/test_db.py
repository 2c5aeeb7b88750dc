"""PostgreSQL, MariaDB and Redis collectors against throwaway real servers (``tests/servers.py``).

Each server is started for the test on a free loopback port, so tests may stop, pause (SIGSTOP) and
restart it. Values are checked against what a separate admin connection changes or reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import aiomysql
import asyncpg
import pytest
import redis.asyncio as aioredis

from collectors.base import CheckTarget, Collector, Observation, Reason, Status
from collectors.mysql import MySQLCollector, MySQLOptions
from collectors.postgres import PostgresCollector, PostgresOptions
from collectors.redis import REDIS_INSTANCE_INFO, RedisCollector, RedisOptions
from tests.servers import MariaDBServer, PostgresServer, RedisServer, free_port, port_open, skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CollectorT = TypeVar("CollectorT", bound=Collector)  # type: ignore[type-arg]
PROBE_TIMEOUT = 2.0
HUNG_PROBES = 30
HUNG_PROBE_TIMEOUT = 0.1
PG_PASSWORD = "pg-s3cret/with:odd@chars"
MY_PASSWORD = "my-s3cret"
REDIS_PASSWORD = "redis-s3cret"


# --- helpers ------------------------------------------------------------------------------------


def sample(observation: Observation, name: str, labels: tuple[str, ...] = ()) -> float:
    values = [s.value for s in observation.samples if s.spec.name == name and s.label_values == labels]
    assert len(values) == 1, (
        f"{name}{labels}: {values} in {sorted({s.spec.name for s in observation.samples})}"
    )
    return values[0]


def label_sets(observation: Observation, name: str) -> list[tuple[str, ...]]:
    return [s.label_values for s in observation.samples if s.spec.name == name]


@asynccontextmanager
async def opened(collector: CollectorT) -> AsyncIterator[CollectorT]:
    await collector.open()
    try:
        yield collector
    finally:
        await collector.close()


def pg(url: str, name: str = "pg", **options: Any) -> PostgresCollector:
    return PostgresCollector(CheckTarget(name, url, PROBE_TIMEOUT), PostgresOptions(**options))


def my(url: str, name: str = "my") -> MySQLCollector:
    return MySQLCollector(CheckTarget(name, url, PROBE_TIMEOUT), MySQLOptions())


def rd(url: str, name: str = "rd") -> RedisCollector:
    return RedisCollector(CheckTarget(name, url, PROBE_TIMEOUT), RedisOptions())


async def failure_of(collector: Collector) -> BaseException:  # type: ignore[type-arg]
    """The exception a failing collect() raises (bounded, so a hang is a test failure)."""
    with pytest.raises(Exception) as info:  # noqa: PT011 - any driver exception; classified below
        await asyncio.wait_for(collector.collect(), 10)
    return info.value


def assert_redactable(collector: Collector, exc: BaseException, password: str) -> None:  # type: ignore[type-arg]
    """secrets() names the password, so the template's redaction leaves none in the error text."""
    assert password in collector.secrets()
    text = f"{type(exc).__name__}: {exc}"
    for secret in collector.secrets():
        text = text.replace(secret, "***")
    assert password not in text


async def eventually(
    read: Callable[[], Awaitable[int]], ok: Callable[[int], bool], timeout: float = 10
) -> int:
    """Poll ``read()`` until ``ok(value)``; return the last value (the caller asserts)."""
    deadline = time.monotonic() + timeout
    value = await read()
    while not ok(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        value = await read()
    return value


async def hammer_while_hung(collector: Collector) -> list[BaseException]:  # type: ignore[type-arg]
    """Run HUNG_PROBES probes against a paused server, each cut off like the template does."""
    errors: list[BaseException] = []
    for _ in range(HUNG_PROBES):
        try:
            await asyncio.wait_for(collector.collect(), HUNG_PROBE_TIMEOUT)
        except Exception as exc:  # TimeoutError expected; anything else is reported by the caller
            errors.append(exc)
        else:
            raise AssertionError("a probe of a paused server succeeded")
    return errors


# --- PostgreSQL ---------------------------------------------------------------------------------


async def pg_backends(server: PostgresServer, application_name: str) -> int:
    conn = await asyncpg.connect(server.admin_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return count
    finally:
        await conn.close()


async def test_postgres_collect_values(postgres_server: PostgresServer) -> None:
    async with opened(pg(postgres_server.url)) as collector:
        before = await collector.collect()
        extras = [await asyncpg.connect(postgres_server.admin_url) for _ in range(3)]
        try:
            after = await collector.collect()
        finally:
            for conn in extras:
                await conn.close()

    assert after.status is Status.PASS
    assert 0 < after.measurements["responseTime"].value < 1
    assert after.measurements["responseTime"].unit == "s"
    idle = ("postgres", "idle")
    assert sample(after, "pg_stat_activity_count", idle) - sample(before, "pg_stat_activity_count", idle) == 3
    assert sample(after, "pg_stat_activity_count", ("postgres", "active")) >= 1  # the probe itself
    assert after.measurements["connections"].value - before.measurements["connections"].value == 3
    assert sample(after, "pg_settings_max_connections") == 50
    ratio = after.measurements["connectionsUsedRatio"]
    assert ratio.unit == "ratio"
    assert ratio.value == pytest.approx(after.measurements["connections"].value / 50)
    # every (database, state) pair, zeros included, as postgres_exporter does
    assert ("template1", "idle in transaction") in label_sets(after, "pg_stat_activity_count")
    assert sample(after, "pg_replication_is_replica") == 0
    # postgres_exporter's pg_stat_database, pg_locks and pg_database families, from one more query
    (datid,) = [lv[0] for lv in label_sets(after, "pg_stat_database_numbackends") if lv[1] == "postgres"]
    db = (datid, "postgres")
    assert sample(after, "pg_stat_database_numbackends", db) >= 4  # the probe and the 3 extra connections
    assert sample(after, "pg_stat_database_xact_commit", db) > sample(
        before, "pg_stat_database_xact_commit", db
    )
    assert all(lv[1] for lv in label_sets(after, "pg_stat_database_xact_commit"))  # no shared-objects row
    assert len(label_sets(after, "pg_locks_count")) == 9 * len(label_sets(after, "pg_database_size_bytes"))
    assert sample(after, "pg_locks_count", ("postgres", "accesssharelock")) >= 1  # the probe's own query
    assert sample(after, "pg_database_size_bytes", ("postgres",)) > 1_000_000
    assert sample(after, "pg_database_connection_limit", ("template1",)) == -1
    assert sample(after, "pg_stat_bgwriter_buffers_alloc_total") >= 0  # present (a fresh server may show 0)
    assert sample(after, "pg_stat_bgwriter_stats_reset_total") > 1e9
    assert after.info["role"] == "primary"
    version_num = int(sample(after, "pg_settings_server_version_num"))
    assert after.info["version"].startswith(f"{version_num // 10000}.")
    (static,) = label_sets(after, "pg_static")
    assert static[0] == f"{version_num // 10000}.{version_num % 10000}.0"
    assert static[1].startswith("PostgreSQL ")
    assert time.time() - 3600 < sample(after, "pg_postmaster_start_time_seconds") <= time.time()


async def test_postgres_expect_primary(postgres_server: PostgresServer) -> None:
    async with opened(pg(postgres_server.url, expect_primary=True)) as collector:
        assert (await collector.collect()).status is Status.PASS
    async with opened(pg(postgres_server.url, expect_primary=False)) as collector:
        observation = await collector.collect()
    assert observation.status is Status.FAIL
    assert "primary" in observation.output
    assert observation.samples  # a verdict, not a failed probe: the values are still there


async def test_postgres_prisma_style_dsn(postgres_server: PostgresServer) -> None:
    """Query parameters asyncpg would send to the server as settings are dropped or translated."""
    url = (
        postgres_server.url
        + "?schema=public&connection_limit=5&pool_timeout=10&pgbouncer=true&connect_timeout=3"
        + "&application_name=from-dsn&sslmode=disable"
    )
    async with opened(pg(url)) as collector:
        observation = await collector.collect()
        assert observation.status is Status.PASS
        assert await pg_backends(postgres_server, "from-dsn") == 1


@pytest.mark.parametrize(
    "postgres_server",
    [
        {"auth": "scram-sha-256", "user": "app", "password": PG_PASSWORD},
        {"auth": "md5", "user": "app", "password": PG_PASSWORD},
    ],
    indirect=True,
    ids=["scram", "md5"],
)
async def test_postgres_auth_failure(postgres_server: PostgresServer) -> None:
    wrong_password = "wrong-" + PG_PASSWORD
    bad = f"postgresql://app:{quote(wrong_password, safe='')}@127.0.0.1:{postgres_server.port}/postgres"
    async with opened(pg(bad)) as collector:
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.AUTH, repr(exc)
        assert_redactable(collector, exc, wrong_password)
    async with opened(pg(postgres_server.url)) as collector:
        assert (await collector.collect()).status is Status.PASS
        assert PG_PASSWORD in collector.secrets()


async def test_postgres_server_stopped(postgres_server: PostgresServer) -> None:
    async with opened(pg(postgres_server.url)) as collector:
        await collector.collect()
        await asyncio.to_thread(postgres_server.stop)
        for _ in range(2):  # the pooled connection dies, then connecting is refused
            exc = await failure_of(collector)
            assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)


async def test_postgres_down_at_open_then_up(postgres_server: PostgresServer) -> None:
    """open() does not connect; the collector starts working once the server is up."""
    postgres_server.stop()
    collector = pg(postgres_server.url)
    started = time.monotonic()
    async with opened(collector):
        assert time.monotonic() - started < 1
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)
        await asyncio.to_thread(postgres_server.start)
        assert (await collector.collect()).status is Status.PASS


async def test_postgres_paused_probes_time_out_without_leaking(postgres_server: PostgresServer) -> None:
    async with opened(pg(postgres_server.url, name="hung")) as collector:
        await collector.collect()
        postgres_server.pause()
        try:
            errors = await hammer_while_hung(collector)
        finally:
            postgres_server.resume()
        assert all(isinstance(e, TimeoutError) for e in errors), errors[:3]
        assert (await collector.collect()).status is Status.PASS
        count = await eventually(lambda: pg_backends(postgres_server, "sidecar-hung"), lambda n: n <= 1)
        assert count <= 1  # max_size=1; the cancelled probes' connections are gone
    assert await eventually(lambda: pg_backends(postgres_server, "sidecar-hung"), lambda n: n == 0) == 0


async def test_postgres_recovers_after_restart(postgres_server: PostgresServer) -> None:
    async with opened(pg(postgres_server.url)) as collector:
        first = await collector.collect()
        await asyncio.to_thread(postgres_server.restart)
        second = await collector.collect()
    assert second.status is Status.PASS
    assert sample(second, "pg_postmaster_start_time_seconds") > sample(
        first, "pg_postmaster_start_time_seconds"
    )


async def test_postgres_standard_port_server() -> None:
    """The machine's own PostgreSQL (5432, trust, db ``test``) when there is one."""
    if not port_open("127.0.0.1", 5432):
        skip_or_fail("no PostgreSQL on 127.0.0.1:5432")
    async with opened(pg("postgresql://postgres@127.0.0.1:5432/test")) as collector:
        observation = await collector.collect()
    assert observation.status is Status.PASS
    assert observation.measurements["connections"].value >= 1


# --- MariaDB / MySQL ----------------------------------------------------------------------------


async def my_admin(server: MariaDBServer) -> Any:
    return await aiomysql.connect(host=server.host, port=server.port, user="root", autocommit=True)


async def my_threads(server: MariaDBServer, user: str) -> int:
    conn = await my_admin(server)
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)
            )
            (count,) = await cursor.fetchone()
            return int(count)
    finally:
        conn.close()


async def test_mysql_collect_values(mariadb_server: MariaDBServer) -> None:
    async with opened(my(mariadb_server.url)) as collector:
        before = await collector.collect()
        extras = [await my_admin(mariadb_server) for _ in range(4)]
        try:
            after = await collector.collect()
        finally:
            for conn in extras:
                conn.close()

    connected = "mysql_global_status_threads_connected"
    assert sample(after, connected) - sample(before, connected) == 4
    assert after.measurements["connections"].value == sample(after, connected)
    assert sample(after, "mysql_global_variables_max_connections") == 50
    assert after.measurements["connectionsUsedRatio"].value == pytest.approx(sample(after, connected) / 50)
    assert 0 < after.measurements["responseTime"].value < 1
    assert sample(after, "mysql_global_variables_read_only") == 0
    assert sample(after, "mysql_global_status_threads_running") >= 1
    assert sample(after, "mysql_global_status_connection_errors_total", ("max_connections",)) == 0
    (version_labels,) = label_sets(after, "mysql_version_info")
    assert "MariaDB" in version_labels[1]
    assert after.info["flavor"] == "mariadb"
    assert after.info["version"] == version_labels[1]


async def test_mysql_mariadb_scheme_and_database(mariadb_server: MariaDBServer) -> None:
    url = mariadb_server.url.replace("mysql://", "mariadb://") + "mysql?connection_limit=3"
    async with opened(my(url)) as collector:
        assert (await collector.collect()).status is Status.PASS


async def test_mysql_unix_socket(mariadb_server: MariaDBServer) -> None:
    url = f"mysql://root@localhost/?socket={mariadb_server.socket_path}"
    async with opened(my(url)) as collector:
        assert (await collector.collect()).status is Status.PASS


@pytest.mark.parametrize("mariadb_server", [{"user": "probe", "password": MY_PASSWORD}], indirect=True)
async def test_mysql_auth_failure(mariadb_server: MariaDBServer) -> None:
    wrong = "wrong-" + MY_PASSWORD
    async with opened(my(mariadb_server.url.replace(MY_PASSWORD, wrong))) as collector:
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.AUTH, repr(exc)
        assert_redactable(collector, exc, wrong)
    async with opened(my(mariadb_server.url)) as collector:
        assert (await collector.collect()).status is Status.PASS


async def test_mysql_server_stopped(mariadb_server: MariaDBServer) -> None:
    async with opened(my(mariadb_server.url)) as collector:
        await collector.collect()
        await asyncio.to_thread(mariadb_server.stop)
        for _ in range(2):
            exc = await failure_of(collector)
            assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)


async def test_mysql_down_at_open_then_up(mariadb_server: MariaDBServer) -> None:
    mariadb_server.stop()
    async with opened(my(mariadb_server.url)) as collector:
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)
        await asyncio.to_thread(mariadb_server.start)
        assert (await collector.collect()).status is Status.PASS


@pytest.mark.parametrize("mariadb_server", [{"user": "probe", "password": MY_PASSWORD}], indirect=True)
async def test_mysql_paused_probes_time_out_without_leaking(mariadb_server: MariaDBServer) -> None:
    async with opened(my(mariadb_server.url)) as collector:
        await collector.collect()
        mariadb_server.pause()
        try:
            errors = await hammer_while_hung(collector)
        finally:
            mariadb_server.resume()
        assert all(isinstance(e, TimeoutError) for e in errors), errors[:3]
        assert (await collector.collect()).status is Status.PASS
        count = await eventually(lambda: my_threads(mariadb_server, "probe"), lambda n: n <= 1)
        assert count <= 1
    assert await eventually(lambda: my_threads(mariadb_server, "probe"), lambda n: n == 0) == 0


async def test_mysql_recovers_after_restart(mariadb_server: MariaDBServer) -> None:
    async with opened(my(mariadb_server.url)) as collector:
        first = await collector.collect()
        await asyncio.to_thread(mariadb_server.restart)
        second = await collector.collect()
    assert second.status is Status.PASS
    assert sample(second, "mysql_global_status_uptime") <= sample(first, "mysql_global_status_uptime") + 1


async def test_mysql_standard_port_server() -> None:
    """The machine's own MariaDB (3306, root without password) when there is one."""
    if not port_open("127.0.0.1", 3306):
        skip_or_fail("no MySQL/MariaDB on 127.0.0.1:3306")
    async with opened(my("mysql://root@127.0.0.1:3306/")) as collector:
        observation = await collector.collect()
    assert sample(observation, "mysql_global_status_threads_connected") >= 1


# --- Redis --------------------------------------------------------------------------------------


@asynccontextmanager
async def redis_admin(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.admin_url, decode_responses=True, protocol=2)
    try:
        yield client
    finally:
        await client.aclose()


async def redis_clients(server: RedisServer, name: str) -> int:
    async with redis_admin(server) as admin:
        return sum(1 for client in await admin.client_list() if client.get("name") == name)


async def test_redis_collect_values(redis_server: RedisServer) -> None:
    limit = 64 * 1024 * 1024
    async with redis_admin(redis_server) as admin, opened(rd(redis_server.url)) as collector:
        await admin.ping()
        before = await collector.collect()
        assert "memoryUsedRatio" not in before.measurements  # maxmemory 0: no limit, no ratio
        await admin.config_set("maxmemory", str(limit))
        await admin.set("present", "1")
        for _ in range(5):
            assert await admin.get("present") == "1"
        for _ in range(3):
            assert await admin.get("absent") is None
        extras = [aioredis.Redis.from_url(redis_server.url, protocol=2) for _ in range(3)]
        try:
            for client in extras:
                await client.ping()
            after = await collector.collect()
        finally:
            for client in extras:
                await client.aclose()

    assert sample(after, "redis_keyspace_hits_total") - sample(before, "redis_keyspace_hits_total") == 5
    assert sample(after, "redis_keyspace_misses_total") - sample(before, "redis_keyspace_misses_total") == 3
    assert sample(after, "redis_connected_clients") - sample(before, "redis_connected_clients") == 3
    assert after.measurements["connections"].value == sample(after, "redis_connected_clients")
    assert sample(after, "redis_memory_max_bytes") == limit
    used = sample(after, "redis_memory_used_bytes")
    assert 0 < used < limit
    assert after.measurements["memoryUsedRatio"].value == pytest.approx(used / limit)
    assert after.measurements["memoryUsedRatio"].unit == "ratio"
    assert sample(after, "redis_db_keys", ("db0",)) == 1
    assert sample(after, "redis_db_keys_expiring", ("db0",)) == 0
    assert sample(after, "redis_db_keys", ("db15",)) == 0  # empty databases too, like redis_exporter
    assert sample(after, "redis_commands_total", ("get",)) == 8  # a fresh server: only the GETs above
    assert sample(after, "redis_evicted_keys_total") == 0
    assert sample(after, "redis_rejected_connections_total") == 0
    (identity,) = label_sets(after, "redis_instance_info")
    labels = dict(zip(REDIS_INSTANCE_INFO.labels, identity, strict=True))
    assert labels["role"] == "master"
    assert labels["redis_mode"] == "standalone"
    assert labels["tcp_port"] == str(redis_server.port)
    assert after.info["version"] == labels["redis_version"]
    assert labels["redis_version"][0].isdigit()
    assert 0 < after.measurements["responseTime"].value < 1
    assert 0 < after.measurements["connectionsUsedRatio"].value < 1


@pytest.mark.parametrize("redis_server", [{"password": REDIS_PASSWORD, "unix_socket": True}], indirect=True)
async def test_redis_password_and_unix_socket(redis_server: RedisServer) -> None:
    wrong = "wrong-" + REDIS_PASSWORD
    for url in (
        redis_server.url.replace(REDIS_PASSWORD, wrong),
        redis_server.unix_url.replace(REDIS_PASSWORD, wrong),
    ):
        async with opened(rd(url)) as collector:
            exc = await failure_of(collector)
            assert collector.classify_error(exc) is Reason.AUTH, repr(exc)
            assert_redactable(collector, exc, wrong)
    no_password = f"redis://{redis_server.host}:{redis_server.port}/0"
    async with opened(rd(no_password)) as collector:
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.AUTH, repr(exc)
    for url in (redis_server.url, redis_server.unix_url):
        async with opened(rd(url)) as collector:
            assert (await collector.collect()).status is Status.PASS


@pytest.mark.parametrize(
    "redis_server", [{"password": "default-pw", "acl_user": "probe", "acl_password": "acl-pw"}], indirect=True
)
async def test_redis_acl_user(redis_server: RedisServer) -> None:
    async with opened(rd(redis_server.url)) as collector:  # redis://probe:acl-pw@...
        assert (await collector.collect()).status is Status.PASS
        assert "acl-pw" in collector.secrets()
    async with opened(rd(redis_server.url.replace("acl-pw", "nope"))) as collector:
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.AUTH, repr(exc)


async def test_redis_server_stopped(redis_server: RedisServer) -> None:
    async with opened(rd(redis_server.url)) as collector:
        await collector.collect()
        await asyncio.to_thread(redis_server.stop)
        for _ in range(2):
            exc = await failure_of(collector)
            assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)


async def test_redis_down_at_open_then_up(redis_server: RedisServer) -> None:
    redis_server.stop()
    async with opened(rd(redis_server.url)) as collector:
        exc = await failure_of(collector)
        assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)
        await asyncio.to_thread(redis_server.start)
        assert (await collector.collect()).status is Status.PASS


async def test_redis_paused_probes_time_out_without_leaking(redis_server: RedisServer) -> None:
    async with opened(rd(redis_server.url, name="hung")) as collector:
        await collector.collect()
        redis_server.pause()
        try:
            errors = await hammer_while_hung(collector)
        finally:
            redis_server.resume()
        assert all(isinstance(e, TimeoutError) for e in errors), errors[:3]
        assert (await collector.collect()).status is Status.PASS
        count = await eventually(lambda: redis_clients(redis_server, "sidecar-hung"), lambda n: n <= 2)
        assert count <= 2  # max_connections=2
    assert await eventually(lambda: redis_clients(redis_server, "sidecar-hung"), lambda n: n == 0) == 0


async def test_redis_recovers_after_restart(redis_server: RedisServer) -> None:
    async with opened(rd(redis_server.url)) as collector:
        await collector.collect()
        await asyncio.to_thread(redis_server.restart)
        observation = await collector.collect()
    assert observation.status is Status.PASS
    assert sample(observation, "redis_uptime_in_seconds") < 5


async def test_redis_standard_port_server() -> None:
    """The machine's own Redis (6379) when there is one."""
    if not port_open("127.0.0.1", 6379):
        skip_or_fail("no Redis on 127.0.0.1:6379")
    async with opened(rd("redis://127.0.0.1:6379/0")) as collector:
        observation = await collector.collect()
    assert sample(observation, "redis_connected_clients") >= 1


async def test_nothing_listening_is_connect() -> None:
    """A port nobody listens on: every collector reports CONNECT quickly."""
    port = free_port()
    for collector in (
        pg(f"postgresql://postgres@127.0.0.1:{port}/postgres"),
        my(f"mysql://root@127.0.0.1:{port}/"),
        rd(f"redis://127.0.0.1:{port}/0"),
    ):
        async with opened(collector):
            exc = await failure_of(collector)
            assert collector.classify_error(exc) is Reason.CONNECT, repr(exc)


async def test_open_does_not_connect() -> None:
    """open() prepares pools only: a listener sees no connection until the first collect()."""
    accepted: list[asyncio.StreamWriter] = []

    async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answers, like a hung server

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for collector in (
            pg(f"postgresql://postgres@127.0.0.1:{port}/postgres"),
            my(f"mysql://root@127.0.0.1:{port}/"),
            rd(f"redis://127.0.0.1:{port}/0"),
        ):
            async with opened(collector):
                await asyncio.sleep(0.05)
                assert accepted == [], type(collector).__name__
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(collector.collect(), 0.5)
                assert len(accepted) == 1, type(collector).__name__
            for writer in accepted:
                writer.close()
            accepted.clear()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("server_fixture", ["postgres_server", "mariadb_server", "redis_server"])
async def test_close_while_paused_is_bounded(server_fixture: str, request: pytest.FixtureRequest) -> None:
    """Shutdown must not hang on a dependency that stopped answering."""
    server = request.getfixturevalue(server_fixture)
    factory = {"postgres_server": pg, "mariadb_server": my, "redis_server": rd}[server_fixture]
    collector = factory(server.url)
    await collector.open()
    await collector.collect()
    server.pause()
    try:
        started = time.monotonic()
        await asyncio.wait_for(collector.close(), 5)
        assert time.monotonic() - started < 3
    finally:
        server.resume()
