"""A real Prometheus scrapes the real sidecar (probing real PostgreSQL, MariaDB, Redis, a BullMQ and a
Celery queue in that Redis, an HTTPS and two TCP endpoints; proxying traffic to an aiohttp app; fed log
lines) with the rule files of ``alerts/`` loaded. Every dashboard query and every rule is evaluated through
Prometheus' HTTP API, then Redis is stopped and the dependency alert turns pending.

When is an empty answer acceptable? A query answers "nothing" for one of three reasons, and only the
first two are accepted:

1. the expression filters: an alert condition (``... > 0.9``) on a healthy system, or a dashboard query
   that drops series on purpose (``maxmemory > 0``). Then every vector selector in it must return
   series on its own: the metrics are there, the condition is not met;
2. the metric counts events that did not happen here (dropped log lines, file rotations, Sentry
   failures): a labelled counter has no series before its first event. Then Prometheus must have
   scraped the family's metadata (``# HELP``/``# TYPE``) from the sidecar, which proves the name is
   exported, just not yet incremented;
3. the collector emits the metric only where the environment has the thing measured, and this machine
   does not: ``CONDITIONAL`` names each such metric with its condition;
4. anything else (a misspelt name, a label that does not exist, a metric the sidecar lost) fails.

Recording rules must produce series, and no rule may report an evaluation error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml
from aiohttp import web

from tests.certs import self_signed
from tests.e2e.sidecar_process import SidecarProcess
from tests.integration.gateway_support import HOST, run_upstream
from tests.promql_names import selectors
from tests.servers import MariaDBServer, PostgresServer, RedisServer, find_binary, free_port, require_binary
from tests.unit.alerts.test_alert_rules import rule_files, rules
from tests.unit.dashboards.test_dashboards import all_queries

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_START = 30.0
DATA_WAIT = 60.0
ALERT_WAIT = 30.0
_STRIP = re.compile(r'\{[^{}]*\}|"(?:[^"\\]|\\.)*"')  # label matchers and strings
# Collector metrics that exist only where the environment has what they measure.
CONDITIONAL = {
    "sidecar_container_memory_limit_bytes": "only when the sidecar's cgroup has a memory limit",
    "redis_master_link_up": "only when the Redis server is a replica",
}
COMPARISON = re.compile(r"(?<![=!<>])(?:==|!=|>=|<=|>|<)(?![=~])")


# -- a real Prometheus ------------------------------------------------------------------------------------


class Prometheus:
    """``/usr/bin/prometheus`` on a free loopback port, scraping one target as job="sidecar"."""

    def __init__(self, target: str) -> None:
        self.binary = require_binary("prometheus")
        self.tmp = Path(tempfile.mkdtemp(prefix="sidecar-e2e-prometheus-"))
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(p) for p in rule_files()],
            "scrape_configs": [
                {
                    "job_name": "sidecar",
                    "static_configs": [{"targets": [target], "labels": {"service": "e2e-app"}}],
                }
            ],
        }
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.log = (self.tmp / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.tmp / 'data'}",
                f"--web.listen-address={HOST}:{self.port}",
                "--web.console.templates=/dev/null",
                "--web.console.libraries=/dev/null",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )

    def logs(self) -> str:
        return (self.tmp / "prometheus.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Api:
    """Prometheus' HTTP API through one client session; every call bounded."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str, **params: str) -> Any:
        async with self.session.get(
            self.base + path, params=params, timeout=aiohttp.ClientTimeout(total=10)
        ) as r:
            body = await r.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data["result"]]
        return result

    async def has_metadata(self, family: str) -> bool:
        return bool(await self.get("/api/v1/metadata", metric=family))


def families(name: str) -> list[str]:
    """Metadata names a series name can belong to (counters are listed without ``_total``)."""
    found = [name]
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if name.endswith(suffix):
            found.append(name[: -len(suffix)])
    return found


async def explain_empty(api: Api, expr: str) -> str | None:
    """``None`` when an empty answer is acceptable (see the module docstring), else why not."""
    problems = []
    for selector in selectors(expr):
        if await api.query(selector):
            continue
        name = selector.split("{", 1)[0]
        if name in CONDITIONAL:
            continue
        if not any([await api.has_metadata(f) for f in families(name)]):
            problems.append(f"{selector} has no series and its family was never scraped")
    if problems:
        return "; ".join(problems)
    return None


# -- the environment ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def servers() -> Iterator[tuple[RedisServer, PostgresServer, MariaDBServer]]:
    require_binary("redis-server")
    require_binary("postgres")
    require_binary("mariadb-install-db")
    if find_binary("mysqld") is None:
        require_binary("mariadbd")
    with RedisServer() as cache, PostgresServer() as db, MariaDBServer() as mysql:
        yield cache, db, mysql


@contextlib.asynccontextmanager
async def https_endpoint(directory: Path) -> AsyncIterator[tuple[str, Path]]:
    cert, key = self_signed(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, HOST, port, ssl_context=context).start()
    try:
        yield f"https://{HOST}:{port}/healthz", cert
    finally:
        await runner.cleanup()


async def seed_queues(redis_url: str) -> None:
    """Real BullMQ jobs (waiting, and one delayed job nobody promotes), its metrics hash, a Celery task."""
    from bullmq import Queue

    queue = Queue("emails", {"connection": redis_url})
    try:
        for i in range(3):
            await queue.add("send", {"i": i})
        await queue.add("later", {}, {"delay": 10})
    finally:
        await queue.close()
    client = redis.Redis.from_url(redis_url)
    try:
        client.config_set("maxmemory", str(64 * 1024 * 1024))  # so the memory-ratio queries have a limit
        # BullMQ workers started with metrics keep these counters; no worker runs here.
        client.hset("bull:emails:metrics:completed", "count", 42)
        client.hset("bull:emails:metrics:failed", "count", 2)
        celery = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1")
        celery.lpush("celery", json.dumps({"headers": {"task": "reports.build"}, "body": ""}))
        celery.sadd("_kombu.binding.celery", "celery\x06\x16\x06\x16celery")
        celery.close()
    finally:
        client.close()


def sidecar_config(
    cache: RedisServer,
    db: PostgresServer,
    mysql: MariaDBServer,
    https: str,
    ca: Path,
    tmp: Path,
    gateway: int,
) -> str:
    (tmp / "app.log").write_text('{"level":"info","msg":"started"}\nplain text line\n')
    fast = {"interval": 1, "timeout": 0.8, "rise": 1, "fall": 1, "max_backoff": 1}
    checks = [
        {"name": "db", "kind": "postgres", "target": db.url},
        {"name": "mysql", "kind": "mysql", "target": mysql.url},
        {"name": "cache", "kind": "redis", "target": cache.url},
        {"name": "jobs", "kind": "bullmq", "target": cache.url, "options": {"overdue_grace_seconds": 1}},
        {"name": "tasks", "kind": "celery", "target": cache.url.rsplit("/", 1)[0] + "/1"},
        {"name": "tls", "kind": "http", "target": https, "options": {"ca_file": str(ca)}},
        {"name": "port", "kind": "tcp", "target": f"{HOST}:{cache.port}"},
        {"name": "closed", "kind": "tcp", "target": f"{HOST}:{free_port()}", "critical": False},
    ]
    config = {
        "service_name": "e2e-app",
        "checks": [fast | check for check in checks],
        "routes": {"templates": ["/users/{id}", "/status/{code}"]},
        "gateway": {
            "listen": f"{HOST}:{gateway}",
            "access_log": {"enabled": False},
            # one request an hour on /echo/limited: the rate-limit panels and alerts get allowed and
            # rejected decisions
            "rate_limits": [
                {
                    "name": "e2e-limited",
                    "limit": 1,
                    "window": "1h",
                    "match": {"path_prefixes": ["/echo/limited"]},
                }
            ],
        },
        "logs": {
            "state_dir": str(tmp / "logstate"),
            "files": [{"path": str(tmp / "app.log"), "source": "file", "start": "beginning"}],
        },
    }
    return yaml.safe_dump(config)


async def traffic(base: str, stop: asyncio.Event) -> None:
    """A steady mix through the gateway: 2xx, 5xx, 429, and some requests slower than 0.5 s."""
    paths = ["/echo", "/users/1", "/users/2", "/status/500", "/status/503", "/echo", "/echo/limited"]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            for path in paths:
                async with session.get(base + path) as resp:
                    await resp.read()
            async with session.post(base + "/echo", data=b"x" * 2048) as resp:
                await resp.read()
            slow = asyncio.create_task(session.get(base + "/slow?delay=0.6"))
            await asyncio.sleep(0.2)
            async with await slow as resp:
                await resp.read()


async def ingest_logs(admin: str) -> None:
    lines = [
        {"level": "info", "msg": "order placed", "reqId": "e2e-1"},
        {"level": "error", "msg": "payment failed", "reqId": "e2e-2"},
        {"level": "warn", "msg": "slow query"},
    ]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines) + b"{not json\n"
    async with (
        aiohttp.ClientSession() as session,
        session.post(admin + "/ingest/logs?source=app", data=body) as r,
    ):
        assert r.status == 200, await r.text()


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# -- the test -----------------------------------------------------------------------------------------------


async def test_dashboards_and_rules_against_a_real_prometheus(tmp_path: Path) -> None:
    require_binary("prometheus")
    with servers() as (cache, db, mysql):
        await seed_queues(cache.url)
        async with https_endpoint(tmp_path) as (https, ca), run_upstream() as upstream:
            gateway_port = free_port()
            sidecar = SidecarProcess(
                sidecar_config(cache, db, mysql, https, ca, tmp_path, gateway_port),
                env={"SIDECAR_UPSTREAM": upstream.url},
            )
            await asyncio.to_thread(sidecar.start)
            prometheus = Prometheus(f"{HOST}:{sidecar.port}")
            stop = asyncio.Event()
            load = asyncio.create_task(traffic(f"http://{HOST}:{gateway_port}", stop))
            try:
                prometheus.start()
                await ingest_logs(sidecar.admin)
                async with aiohttp.ClientSession() as session:
                    api = Api(session, prometheus.url)
                    await run_checks(api, prometheus, sidecar, cache)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(load, 15)
                prometheus.stop()
                await asyncio.to_thread(sidecar.__exit__, None, None, None)


async def run_checks(api: Api, prometheus: Prometheus, sidecar: SidecarProcess, cache: RedisServer) -> None:
    async def ready() -> bool:
        try:
            async with api.session.get(
                prometheus.url + "/-/ready", timeout=aiohttp.ClientTimeout(total=2)
            ) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(ready, PROMETHEUS_START, "Prometheus to start")
    except AssertionError:
        raise AssertionError(prometheus.logs()) from None

    # Enough scrapes for rate() over 1m, the queue and Celery checks measured, the rules evaluated.
    needed = [
        'up{job="sidecar"} == 1',
        "sidecar_queue_overdue_delayed_jobs > 0",
        "sidecar_celery_queue_priority_jobs",
        'rate(http_server_request_duration_seconds_count{http_response_status_code="500"}[1m]) > 0',
        "service:sidecar_http_errors:ratio_rate5m",
        "probe_ssl_earliest_cert_expiry",
        "pg_stat_activity_count",
        "mysql_global_status_threads_connected",
        'count(sidecar_log_lines_total{source="app"})',
    ]

    async def scraped() -> bool:
        return all([bool(await api.query(q)) for q in needed])

    try:
        await wait_until(scraped, DATA_WAIT, "the sidecar's series in Prometheus")
    except AssertionError:
        missing = [q for q in needed if not await api.query(q)]
        raise AssertionError(f"no data for {missing}\n{sidecar.logs()}") from None
    await asyncio.sleep(3)  # a few more samples for every rate window

    # Every dashboard query parses and returns data, or is empty for an accepted reason.
    dead = []
    filtered = []
    for dashboard, title, expr in all_queries():
        if await api.query(expr):
            continue
        problem = await explain_empty(api, expr)
        filters = COMPARISON.search(_STRIP.sub("", expr)) is not None
        if problem is None and not filters and not await some_selector_is_empty(api, expr):
            problem = "every selector has data, yet the query is empty and has no filter"
        if problem:
            dead.append(f"{dashboard} / {title}: {expr}\n    {problem}")
        else:
            filtered.append(f"{dashboard} / {title}: {expr}")
    assert not dead, "dead panels:\n" + "\n".join(dead)
    print("empty for an accepted reason (filter, or events that did not happen):", *filtered, sep="\n  ")

    # Every rule is healthy; recording rules record; alert expressions select live series.
    groups = (await api.get("/api/v1/rules"))["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    expected = {r.get("alert") or r["record"] for r in rules()}
    assert set(loaded) == expected
    unhealthy = {name: r.get("lastError") for name, r in loaded.items() if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    bad = []
    for rule in rules():
        if "record" in rule:
            if not await api.query(rule["record"]):
                bad.append(f"recording rule {rule['record']} recorded nothing")
            continue
        if await api.query(rule["expr"]):
            continue
        if problem := await explain_empty(api, rule["expr"]):
            bad.append(f"{rule['alert']}: {problem}")
    assert not bad, "\n".join(bad)

    # Alerts this environment must already show as pending: a non-critical check that always fails,
    # jobs waiting with no worker, a certificate that expires tomorrow.
    await expect_pending(api, "SidecarDependencyDown", check="closed")
    await expect_pending(api, "SidecarQueueNoWorkers", check="jobs")
    await expect_pending(api, "SidecarTLSCertificateExpiryImminent", check="tls")

    # Stop Redis: the critical check fails, readiness goes, the page is pending (for: 2m).
    await asyncio.to_thread(cache.stop)
    await expect_pending(api, "SidecarCriticalDependencyDown", check="cache")
    assert await api.query('sidecar_ready{job="sidecar"} == 0'), "readiness did not drop"


async def some_selector_is_empty(api: Api, expr: str) -> bool:
    """True when a selector has no series (``explain_empty`` has checked its family's metadata)."""
    return any([not await api.query(s) for s in selectors(expr)])


async def expect_pending(api: Api, alertname: str, **labels: str) -> None:
    async def pending() -> bool:
        alerts = (await api.get("/api/v1/alerts"))["alerts"]
        return any(
            a["labels"].get("alertname") == alertname
            and a["state"] in {"pending", "firing"}
            and all(a["labels"].get(k) == v for k, v in labels.items())
            for a in alerts
        )

    await wait_until(pending, ALERT_WAIT, f"{alertname}{labels} to be pending")
