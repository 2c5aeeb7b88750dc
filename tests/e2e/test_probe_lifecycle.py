"""The real sidecar process against throwaway Redis and PostgreSQL that are stopped, hung and restarted."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.e2e.sidecar_process import SidecarProcess, metric_value, request
from tests.exporter_names import own_findings
from tests.servers import PostgresServer, RedisServer, free_port, require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

INTERVAL = 1.0
TIMEOUT = 0.5
SLACK = 0.5  # process scheduling and poll granularity on a busy 2-core machine


def check_yaml(name: str, kind: str, target: str, **extra: object) -> str:
    fields = {"name": name, "kind": kind, "target": target, "interval": INTERVAL, "timeout": TIMEOUT} | extra
    return "  - " + json.dumps(fields) + "\n"


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    require_binary("redis-server")
    with RedisServer() as server:
        yield server


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    require_binary("postgres")
    with PostgresServer() as server:
        yield server


def test_readiness_follows_a_stopped_and_restarted_redis(redis: RedisServer) -> None:
    config = "default_checks: false\nchecks:\n" + check_yaml("cache", "redis", redis.url, fall=1, rise=1)
    with SidecarProcess(config) as sidecar:
        sidecar.wait_for("/readyz", 200, timeout=10)
        redis.stop()
        elapsed = sidecar.wait_for("/readyz", 503, timeout=INTERVAL + TIMEOUT + 5)
        assert elapsed <= INTERVAL + TIMEOUT + SLACK, f"503 after {elapsed:.2f}s"
        _status, body = sidecar.get("/readyz")
        assert body.decode() == "failing: cache"
        redis.start()
        # while failing the check backs off up to 4 x interval before probing again
        sidecar.wait_for("/readyz", 200, timeout=4 * INTERVAL + TIMEOUT + 3)
        text = sidecar.get("/metrics")[1].decode()
        assert metric_value(text, "sidecar_check_failures_total", check="cache", reason="connect")
        assert sidecar.stop() == 0


def test_readyz_stays_fast_while_postgres_hangs_and_recovers(postgres: PostgresServer) -> None:
    config = "default_checks: false\nchecks:\n" + check_yaml("db", "postgres", postgres.url, fall=1, rise=1)
    with SidecarProcess(config) as sidecar:
        sidecar.wait_for("/readyz", 200, timeout=10)
        postgres.pause()
        try:
            elapsed = sidecar.wait_for("/readyz", 503, timeout=INTERVAL + TIMEOUT + 5)
            assert elapsed <= INTERVAL + TIMEOUT + SLACK, f"503 after {elapsed:.2f}s"
            latencies = []
            for _ in range(100):
                started = time.perf_counter()
                status, _ = sidecar.get("/readyz", timeout=2)
                latencies.append(time.perf_counter() - started)
                assert status == 503
            latencies.sort()
            assert latencies[-1] < 0.05, f"slowest /readyz {latencies[-1] * 1000:.1f} ms while postgres hangs"
            text = sidecar.get("/metrics")[1].decode()
            assert metric_value(text, "sidecar_check_failures_total", check="db", reason="timeout")
        finally:
            postgres.resume()
        sidecar.wait_for("/readyz", 200, timeout=4 * INTERVAL + TIMEOUT + 3)


def _pg_backends(postgres: PostgresServer) -> int:
    """Client backends that came over TCP (the test's own admin session uses the unix socket)."""
    out = subprocess.run(
        [
            "psql",
            postgres.admin_url,
            "-Atc",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return int(out.stdout.strip())


def _redis_clients(redis: RedisServer) -> int:
    out = subprocess.run(
        ["redis-cli", "-u", redis.admin_url, "INFO", "clients"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("connected_clients:"))
    return int(line.split(":")[1]) - 1  # minus redis-cli itself


def _failures(sidecar: SidecarProcess, check: str) -> float:
    text = sidecar.get("/metrics")[1].decode()
    total = 0.0
    for reason in ("timeout", "connect", "protocol", "unexpected", "auth"):
        total += metric_value(text, "sidecar_check_failures_total", check=check, reason=reason) or 0.0
    return total


def test_no_connection_leak_across_100_failures(postgres: PostgresServer, redis: RedisServer) -> None:
    if not shutil.which("psql") or not shutil.which("redis-cli"):
        require_binary("psql")
        require_binary("redis-cli")
    fast = {"interval": 0.1, "timeout": 0.05, "max_backoff": 0.1, "fall": 1, "rise": 1}
    config = (
        "default_checks: false\nchecks:\n"
        + check_yaml("db", "postgres", postgres.url, **fast)
        + check_yaml("cache", "redis", redis.url, **fast)
    )
    with SidecarProcess(config) as sidecar:
        sidecar.wait_for("/readyz", 200, timeout=10)
        fds_before = psutil.Process(sidecar.proc.pid).num_fds()  # type: ignore[union-attr]
        assert _pg_backends(postgres) <= 1 and _redis_clients(redis) <= 2
        postgres.pause()
        redis.pause()
        try:
            deadline = time.monotonic() + 60
            while (
                time.monotonic() < deadline
                and min(_failures(sidecar, "db"), _failures(sidecar, "cache")) < 100
            ):
                time.sleep(0.5)
            assert _failures(sidecar, "db") >= 100 and _failures(sidecar, "cache") >= 100
        finally:
            postgres.resume()
            redis.resume()
        sidecar.wait_for("/readyz", 200, timeout=10)
        time.sleep(1.0)  # let the servers notice the connections the sidecar abandoned
        assert _pg_backends(postgres) <= 1, "postgres connections leaked"
        assert _redis_clients(redis) <= 2, "redis connections leaked"
        fds_after = psutil.Process(sidecar.proc.pid).num_fds()  # type: ignore[union-attr]
        assert fds_after <= fds_before + 4, (fds_before, fds_after)


def test_sigterm_fails_readiness_closes_pools_and_exits_zero(postgres: PostgresServer) -> None:
    config = "default_checks: false\nshutdown_timeout: 5s\nchecks:\n" + check_yaml(
        "db", "postgres", postgres.url, fall=1, rise=1
    )
    sidecar = SidecarProcess(config).start()
    try:
        sidecar.wait_for("/readyz", 200, timeout=10)
        assert _pg_backends(postgres) == 1
        started = time.monotonic()
        sidecar.signal(signal.SIGTERM)
        assert sidecar.proc is not None
        code = sidecar.proc.wait(10)
        assert code == 0
        assert time.monotonic() - started < 5
        time.sleep(0.3)
        assert _pg_backends(postgres) == 0, "pool not closed at shutdown"
        assert '"shutting down"' in sidecar.logs()
    finally:
        sidecar.stop()


def test_sighup_reload_removes_series_of_a_removed_check(redis: RedisServer) -> None:
    config = (
        "default_checks: false\nchecks:\n"
        + check_yaml("cache", "redis", redis.url)
        + check_yaml("port", "tcp", f"127.0.0.1:{redis.port}")
    )
    with SidecarProcess(config) as sidecar:
        sidecar.wait_for("/readyz", 200, timeout=10)
        text = sidecar.get("/metrics")[1].decode()
        assert metric_value(text, "sidecar_check_up", check="port") == 1
        sidecar.config_path.write_text(
            "default_checks: false\nchecks:\n" + check_yaml("cache", "redis", redis.url)
        )
        sidecar.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 'check="port"' in sidecar.get("/metrics")[1].decode():
            time.sleep(0.1)
        text = sidecar.get("/metrics")[1].decode()
        assert 'check="port"' not in text
        assert metric_value(text, "sidecar_check_up", check="cache") == 1
        assert sidecar.get("/readyz/port")[0] == 404


def test_health_document_and_content_negotiation(redis: RedisServer) -> None:
    config = "default_checks: true\nchecks:\n" + check_yaml("cache", "redis", redis.url)
    with SidecarProcess(config) as sidecar:
        sidecar.wait_for("/readyz", 200, timeout=10)
        status, body = sidecar.get("/health")
        doc = json.loads(body)
        assert status == 200 and doc["status"] in ("pass", "warn")
        entry = doc["checks"]["cache:responseTime"][0]
        assert entry["componentType"] == "datastore" and entry["observedUnit"] == "s"
        assert sidecar.get("/readyz/cache") == (200, b"cache ok")
        assert sidecar.get("/readyz/nope")[0] == 404
        verbose = sidecar.get("/readyz?verbose")[1].decode()
        assert "[+]cache ok" in verbose and "readyz check passed" in verbose
        status, om = sidecar.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert om.rstrip().endswith(b"# EOF")
        url = sidecar.base + "/metrics"
        import urllib.request

        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"


def test_promtool_finds_nothing_on_metrics(redis: RedisServer, postgres: PostgresServer) -> None:
    promtool = require_binary("promtool")
    config = (
        "default_checks: true\nchecks:\n"
        + check_yaml("cache", "redis", redis.url)
        + check_yaml("db", "postgres", postgres.url)
        + check_yaml("mysql", "mysql", "mysql://root@127.0.0.1:3306/test")
        + check_yaml("web", "http", "http://127.0.0.1:1/")
        + check_yaml("port", "tcp", f"127.0.0.1:{redis.port}")
    )
    with SidecarProcess(config) as sidecar:
        sidecar.wait_for("/readyz", 503, timeout=10)  # "web" is refused, so never ready
        time.sleep(1.5)
        _, body = request(sidecar.base + "/metrics")
        result = subprocess.run(
            [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
        )
        output = result.stdout.decode() + result.stderr.decode()
        # only naming-rule notes on the exporters' own names (pg_locks_count...), which the mixins need
        assert "error while linting" not in output, output
        assert own_findings(output) == [], output
        for family in ("redis_connected_clients", "pg_settings_max_connections", "sidecar_check_up"):
            assert family.encode() in body, family


def test_a_port_in_use_is_a_clear_error_not_a_traceback() -> None:
    import os
    import socket
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "SIDECAR_LISTEN": f"127.0.0.1:{port}",
            "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        }
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        proc = subprocess.run(
            [sys.executable, "-m", "sidecar", "run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert "cannot start" in proc.stderr
    assert "address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
