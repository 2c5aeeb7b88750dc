"""The real sidecar process, configured with known secrets, never shows them: not in any response,
not in its logs, not in a metric label, not in ``check-config`` output, not in an error text.

Every secret is distinctive, so a plain substring search is decisive; each is also searched for
percent-encoded and (for basic credentials) base64-encoded. The dependencies fail on purpose
(wrong PostgreSQL password, wrong Redis password, closed ports) because error paths are where
drivers like to quote connection strings.
"""

from __future__ import annotations

import base64
import gzip
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.servers import PostgresServer, RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PG_PASSWORD = "pgSecret-7Hq2wX"
REDIS_PASSWORD = "redisSecret-K9xv"
HTTP_PASSWORD = "httpSecret-8LmQ"
QUERY_TOKEN = "querySecret-4NbT"
ADMIN_TOKEN = "adminSecret-Token-5Zp0wE7"
METRICS_PASSWORD = "metricsSecret-3JdR"
SENTRY_KEY = "5ec7e7a0b1c2d3e4f5a6b7c8d9e0f1a2"
SECRETS = [PG_PASSWORD, REDIS_PASSWORD, HTTP_PASSWORD, QUERY_TOKEN, ADMIN_TOKEN, METRICS_PASSWORD, SENTRY_KEY]
HEADER_TIMEOUT = 2.0
LOG_REQUEST_ID = "req-leak-check-0001"
# An app log line quoting the sidecar's own secrets, as a careless app or driver might print them.
LEAKY_LOG_LINE = (
    json.dumps(
        {
            "level": "error",
            "msg": f"connect to postgresql://app:{PG_PASSWORD}@db:5432/app failed; password={PG_PASSWORD}",
            "request_id": LOG_REQUEST_ID,
            "err": {"type": "AuthError", "message": f"redis://:{REDIS_PASSWORD}@cache:6379/0 refused"},
            "headers": {"authorization": f"Bearer {ADMIN_TOKEN}"},
        }
    ).encode()
    + b"\n"
)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def forms(secret: str) -> set[str]:
    """The ways a secret could appear in text: as is, percent-encoded, inside basic credentials."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        base64.b64encode(f"prom:{secret}".encode()).decode(),
    }


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def slow_exchange(port: int, data: bytes, delay: float, budget: float) -> tuple[bytes, float]:
    """Send ``data`` one byte every ``delay`` seconds until the server hangs up or ``budget`` ends."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=budget) as sock:
        sock.settimeout(delay)
        for byte in data:
            if time.monotonic() - started > budget:
                break
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            received += chunk
            if not chunk or b"408" in received:
                break
    return received, time.monotonic() - started


@pytest.fixture
def rejecting_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL that wants scram-sha-256 with another password than the one configured."""
    from tests.servers import require_binary

    require_binary("initdb")
    require_binary("postgres")
    server = PostgresServer(auth="scram-sha-256", password="the-right-one-xyz")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def rejecting_redis() -> Iterator[RedisServer]:
    from tests.servers import require_binary

    require_binary("redis-server")
    server = RedisServer(password="the-right-one-xyz")
    try:
        server.start()
        yield server
    finally:
        server.close()


def sidecar_config(closed: int) -> str:
    checks = [
        {
            "name": "api",
            "kind": "http",
            "target": f"http://user:{HTTP_PASSWORD}@127.0.0.1:{closed}/health?token={QUERY_TOKEN}",
            "interval": 1,
            "timeout": 0.5,
        },
        {
            "name": "cache-closed",
            "kind": "redis",
            "target": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed}/0",
            "interval": 1,
            "timeout": 0.5,
        },
    ]
    return (
        "default_checks: false\n"
        "log_level: debug\n"
        f"metrics_auth: {{basic: {{username: prom, password: {METRICS_PASSWORD}}}}}\n"
        f"limits: {{header_timeout: {HEADER_TIMEOUT}, max_header_bytes: 8192}}\n"
        "checks:\n" + "".join(f"  - {json.dumps(c)}\n" for c in checks)
    )


def test_no_secret_leaves_the_process(
    rejecting_postgres: PostgresServer, rejecting_redis: RedisServer
) -> None:
    closed = free_port()
    env = {
        "DATABASE_URL": f"postgresql://app:{PG_PASSWORD}@127.0.0.1:{rejecting_postgres.port}/postgres",
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{rejecting_redis.port}/0",
        "SENTRY_DSN": f"http://{SENTRY_KEY}@127.0.0.1:{closed}/1",
        "SIDECAR_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    seen: list[str] = []  # every response (status, headers, body) and every CLI output

    def record(label: str, status: int, body: bytes) -> None:
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        seen.append(f"--- {label} -> {status}\n{body.decode(errors='replace')}")

    sidecar = SidecarProcess(sidecar_config(closed), env=env)
    with sidecar:
        auth = {"Authorization": basic("prom", METRICS_PASSWORD)}
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        # wait until every check has failed at least once, so error texts exist everywhere
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, body = sidecar.get("/readyz?verbose")
            text = body.decode()
            if all(f"[-]{name} failed" in text for name in ("database", "redis", "api", "cache-closed")):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"checks did not fail as arranged:\n{text}\n{sidecar.logs()}")

        gets: list[tuple[str, dict[str, str]]] = [
            ("/livez", {}),
            ("/readyz", {}),
            ("/readyz?verbose", {}),
            ("/readyz/database", {}),
            ("/readyz/redis", {}),
            ("/readyz/api", {}),
            ("/readyz/cache-closed", {}),
            ("/readyz/nope", {}),
            ("/health", {}),
            ("/health", {"Authorization": basic("prom", "wrong")}),
            ("/health", auth),
            ("/metrics", {}),
            ("/metrics", {"Authorization": basic("prom", METRICS_PASSWORD + "x")}),
            ("/metrics", {"Authorization": f"Bearer {METRICS_PASSWORD}"}),
            ("/metrics", auth),
            ("/metrics", {**auth, "Accept": "application/openmetrics-text; version=1.0.0"}),
            ("/metrics", {**auth, "Accept-Encoding": "gzip"}),
            ("/does-not-exist", {}),
        ]
        for path, headers in gets:
            status, body = sidecar.get(path, headers=headers)
            record(f"GET {path} {sorted(headers)}", status, body)
        assert sidecar.get("/metrics")[0] == 401
        assert sidecar.get("/metrics", headers=auth)[0] == 200
        metrics_text = sidecar.get("/metrics", headers=auth)[1].decode()
        assert 'sidecar_check_failures_total{check="database"' in metrics_text

        for method, path, headers, data in [
            ("GET", "/debug/checks", {}, None),
            ("GET", "/debug/checks", {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, None),
            ("GET", "/debug/checks", {"Authorization": f"Basic {ADMIN_TOKEN}"}, None),
            ("GET", "/debug/checks", admin, None),
            ("GET", "/debug/requests", admin, None),
            ("POST", "/drain", {}, b""),
            ("POST", "/drain", admin, b""),
            ("POST", "/undrain", admin, b""),
            ("POST", "/ingest/logs", admin, LEAKY_LOG_LINE),
            ("GET", f"/debug/requests/{LOG_REQUEST_ID}", admin, None),
            ("GET", "/nope", admin, None),
        ]:
            status, body = admin_request(sidecar.admin + path, method, headers, data)
            record(f"{method} admin {path} {sorted(headers)}", status, body)
        assert admin_request(sidecar.admin + "/debug/checks", "GET", {}, None)[0] == 401
        timeline = admin_request(sidecar.admin + f"/debug/requests/{LOG_REQUEST_ID}", "GET", admin, None)
        if (
            timeline[0] != 404 or b"no such request ID" not in timeline[1]
        ):  # correlation wired: it shows the line
            assert timeline[0] == 200 and b"connect to postgresql://app:" in timeline[1], timeline
        assert admin_request(sidecar.admin + "/debug/checks", "GET", admin, None)[0] == 200

        for port in (sidecar.port, sidecar.admin_port):
            for label, data in [
                ("bad header", b"GET /livez HTTP/1.1\r\nBad\x01: x\r\n\r\n"),
                ("huge header", b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"),
                ("huge body", b"POST /drain HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
                ("bad length", b"POST /drain HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
                ("not http", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64),
                ("bad method", b"G(T / HTTP/1.1\r\n\r\n"),
                ("bad version", b"GET / HTTP/9\r\n\r\n"),
            ]:
                answer = raw_exchange(port, data)
                assert answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")) or answer == b"", (
                    label,
                    answer[:120],
                )
                record(f"raw {label} on {port}", 0, answer)

        # a slow-header client is cut off by the real process (uvloop) while others are answered
        answer, elapsed = slow_exchange(sidecar.port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", 0.5, 15)
        assert b"408" in answer and elapsed < HEADER_TIMEOUT + 1.5, (answer, elapsed)
        assert sidecar.get("/livez")[0] == 200
        record("slow header", 0, answer)

        # a reload with a broken file that carries new secrets is refused without quoting them
        good = sidecar.config_path.read_text()
        sidecar.config_path.write_text(
            good + f"  - {{name: bad, kind: postgres, target: 'postgresql://u:{PG_PASSWORD}@h/db', "
            "timeout: 9, interval: 1}\n"
        )
        sidecar.signal(signal.SIGHUP)
        time.sleep(1.0)
        sidecar.config_path.write_text(good)

        # the CLI, with the same configuration and environment, valid and invalid
        for args, extra in [
            (["check-config", "--config", str(sidecar.config_path)], {}),
            (["check-config", "--config", str(sidecar.config_path)], {"SIDECAR_ADMIN_LISTEN": "0.0.0.0:1"}),
            (["check-config"], {"DATABASE_URL": f"sqlserver://sa:{PG_PASSWORD}@h/db"}),
            (["check-config"], {"REDIS_URL": f"redis://:{REDIS_PASSWORD}@h:notaport/0"}),
        ]:
            done = subprocess.run(
                [sys.executable, "-m", "sidecar", *args],
                env={**sidecar.env, **extra},
                capture_output=True,
                timeout=60,
                check=False,
            )
            record(f"cli {args} {sorted(extra)}", done.returncode, done.stdout + done.stderr)
        assert sidecar.stop() == 0

    logs = "\n".join(
        (sidecar.tmp / name).read_text(errors="replace") for name in ("stdout.log", "stderr.log")
    )
    assert "listening" in logs, "the sidecar's logs were not captured"
    everything = "\n".join(seen) + "\n--- logs\n" + logs
    leaks = [(secret, form) for secret in SECRETS for form in forms(secret) if form in everything]
    if leaks:
        where = []
        for _secret, form in leaks:
            index = everything.index(form)
            where.append(everything[max(0, index - 300) : index + 100])
        pytest.fail(f"secrets leaked: {[s for s, _ in leaks]}\n" + "\n=====\n".join(where))


def admin_request(url: str, method: str, headers: dict[str, str], data: bytes | None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
