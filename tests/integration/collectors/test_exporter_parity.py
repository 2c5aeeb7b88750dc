"""The sidecar against the real exporters: the community mixins' expressions answer the same on both.

Debian's redis_exporter, postgres_exporter, mysqld_exporter, node_exporter and blackbox_exporter and
one sidecar process probe the same real servers (Redis, PostgreSQL, MariaDB, an HTTP endpoint, a TCP
port, this host). Two private Prometheus servers scrape them every second: one the exporters, one the
sidecar through the shipped ``sidecar-exporters`` job (deploy/compose/prometheus.yml), which gives
every check its own ``instance`` and the exporter's ``job``. Every expression of
``mixin_expressions`` is then evaluated over the same seconds on both (averaged, see query_window).
An expression that answers for the exporters must answer for the sidecar with as many series and values within its tolerance,
except the declared gaps, which must stay silent for the sidecar (so the list is never stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pytest
import redis.asyncio as aioredis
import yaml

from tests.e2e.sidecar_process import SidecarProcess
from tests.integration.collectors.mixin_expressions import EXPRESSIONS, GAPS, Expr
from tests.servers import (
    MariaDBServer,
    PostgresServer,
    RedisServer,
    free_port,
    require_binary,
    wait_port,
)

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
EXPORTERS = (
    "prometheus-redis-exporter",
    "prometheus-postgres-exporter",
    "prometheus-mysqld-exporter",
    "prometheus-node-exporter",
    "prometheus-blackbox-exporter",
)
SCRAPES = 10  # successful scrapes of every target (1 s apart) before the expressions are evaluated
WINDOW = 6  # seconds over which each expression's values are averaged (see query_window)
SCRAPE_WAIT = 40.0  # Prometheus starts scraping some seconds after it is ready (discovery is batched)
# Labels that name where a series came from rather than what it measures: the per-check instance
# and check on one side, the exporter's address (and Debian postgres_exporter 0.11's `server`) on
# the other.
ORIGIN_LABELS = frozenset({"__name__", "instance", "check", "job", "server", "service"})


class Processes:
    """Started subprocesses, stopped by PID (never by name) when the test ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.directory / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=self.directory
        )
        log.close()
        self.procs.append((name, proc))

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}"
            for path in sorted(self.directory.glob("*.log"))
        )

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class _Healthz(http.server.BaseHTTPRequestHandler):
    """The HTTP dependency both blackbox_exporter and the sidecar's http check probe."""

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@contextlib.contextmanager
def http_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((HOST, 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


LOAD_PERIOD = 0.02  # seconds between the steady load's rounds of one query per server


@contextlib.contextmanager
def steady_load(redis_url: str, postgres_url: str, mysql_port: int) -> Iterator[None]:
    """A steady stream of queries on every server, so activity counters move at an even pace.

    Left alone, the servers' counters move only with the scrapers' own bursts, and backends flush
    their statistics about once a second: two scrapers a fraction of a second apart would then
    see different rates over a few seconds. Under an even load both see the same pace.
    """
    stop = threading.Event()

    async def load() -> None:
        pg = await asyncpg.connect(postgres_url)
        await pg.execute("SET enable_seqscan = off")  # index scans: tup_fetched moves too
        my = await aiomysql.connect(host=HOST, port=mysql_port, user="root", autocommit=True)
        rd = aioredis.Redis.from_url(redis_url)
        try:
            while not stop.is_set():
                await pg.fetch("SELECT relname FROM pg_class WHERE oid > 0")
                async with my.cursor() as cursor:
                    await cursor.execute("SELECT 1")
                await rd.get("parity-load")
                await asyncio.sleep(LOAD_PERIOD)
        finally:
            await pg.close()
            my.close()
            await rd.aclose()

    thread = threading.Thread(target=asyncio.run, args=(load(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def shipped_exporter_job() -> dict[str, Any]:
    """The ``sidecar-exporters`` job of the compose example, as users copy it."""
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "sidecar-exporters"]
    return dict(job)


def prometheus_config(scrape_configs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": scrape_configs,
        }
    )


def exporter_scrape_configs(ports: dict[str, int], http_target: str, tcp_target: str) -> list[dict[str, Any]]:
    """One job per exporter, named as the mixins expect; blackbox the usual multi-target way."""
    jobs: list[dict[str, Any]] = [
        {"job_name": job, "static_configs": [{"targets": [f"{HOST}:{ports[job]}"]}]}
        for job in ("redis", "postgres", "mysql", "node")
    ]
    # postgres_exporter 0.13+ no longer reports pg_stat_database's shared-objects row (datname
    # NULL); Debian's 0.11 still does. Dropped so the comparison is with the exporter as it is now.
    jobs[1]["metric_relabel_configs"] = [
        {"source_labels": ["__name__", "datname"], "regex": "pg_stat_database_.+;", "action": "drop"}
    ]
    for module, target in (("http_2xx", http_target), ("tcp_connect", tcp_target)):
        jobs.append(
            {
                "job_name": f"blackbox-{module}",
                "metrics_path": "/probe",
                "params": {"module": [module]},
                "static_configs": [{"targets": [target]}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"{HOST}:{ports['blackbox']}"},
                    {"target_label": "job", "replacement": "blackbox"},
                ],
            }
        )
    return jobs


def query_window(base: str, expr: str, at: float) -> list[dict[str, Any]]:
    """The expression at every second of the last ``WINDOW`` seconds up to ``at``, averaged per series.

    Counters such as pg_stat_database's move in steps (backends flush their statistics about once a
    second), and each side reads them at its own moment, so one instant of ``irate`` can be a whole
    step apart on the two sides; over a few seconds both see the same movement.
    """
    params = {"query": expr, "start": f"{at - WINDOW:.3f}", "end": f"{at:.3f}", "step": "1"}
    url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as resp:
        payload = json.load(resp)
    assert payload["status"] == "success", (expr, payload)
    rows = []
    for row in payload["data"]["result"]:
        values = [float(v) for _t, v in row["values"]]
        finite = [v for v in values if not math.isnan(v)]
        mean = sum(finite) / len(finite) if finite else math.nan
        rows.append({"metric": row["metric"], "value": [at, str(mean)]})
    return rows


def query(base: str, expr: str, at: float) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    with urllib.request.urlopen(url, timeout=10) as resp:
        payload = json.load(resp)
    assert payload["status"] == "success", (expr, payload)
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def _series(result: list[dict[str, Any]]) -> list[tuple[tuple[tuple[str, str], ...], float]]:
    """(what the series measures, value), sorted: origin labels aside, pairs line up by position."""
    rows = [
        (
            tuple(sorted((k, v) for k, v in row["metric"].items() if k not in ORIGIN_LABELS)),
            float(row["value"][1]),
        )
        for row in result
    ]
    return sorted(rows, key=lambda r: (r[0], r[1]))


def compare(expr: Expr, exporter: list[dict[str, Any]], sidecar: list[dict[str, Any]]) -> str | None:
    """Why the sidecar's answer differs from the exporter's, or ``None`` when they agree."""
    theirs, ours = _series(exporter), _series(sidecar)
    if len(theirs) != len(ours):
        return f"{len(theirs)} series from the exporters, {len(ours)} from the sidecar: {theirs[:4]} / {ours[:4]}"
    for (their_labels, their_value), (our_labels, our_value) in zip(theirs, ours, strict=True):
        if their_labels != our_labels:
            return f"labels {dict(their_labels)} (exporters) vs {dict(our_labels)} (sidecar)"
        if math.isnan(their_value) and math.isnan(our_value):
            continue
        allowed = max(expr.abs_tol, expr.rel_tol * max(abs(their_value), abs(our_value)))
        if not abs(their_value - our_value) <= allowed:
            return f"{dict(their_labels)}: exporters {their_value:g}, sidecar {our_value:g} (allowed ±{allowed:g})"
    return None


@pytest.fixture
def binaries() -> dict[str, str]:
    found = {name: require_binary(name) for name in EXPORTERS}
    found["prometheus"] = require_binary("prometheus")
    return found


def wait_ready(base: str, processes: Processes, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(base + "/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise AssertionError(f"{base} not ready\n{processes.logs()}")


def wait_scraped(bases: tuple[str, ...], processes: Processes) -> None:
    """Until every target of both Prometheus servers has ``SCRAPES`` successful scrapes."""
    deadline = time.monotonic() + SCRAPE_WAIT
    expr = f"min(sum_over_time(up[{SCRAPES + 5}s])) >= {SCRAPES}"
    while time.monotonic() < deadline:
        if all(query(base, expr, time.time()) for base in bases):
            return
        time.sleep(0.5)
    raise AssertionError(f"fewer than {SCRAPES} scrapes of every target\n{processes.logs()}")


def test_mixin_expressions_answer_the_same_for_the_sidecar_and_the_exporters(
    binaries: dict[str, str],
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    mariadb_server: MariaDBServer,
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="exporter-parity-"))
    processes = Processes(directory)
    sidecar: SidecarProcess | None = None
    try:
        with (
            http_endpoint() as http_target,
            steady_load(redis_server.url, postgres_server.url, mariadb_server.port),
        ):
            tcp_target = f"{HOST}:{redis_server.port}"
            ports = {name: free_port() for name in ("redis", "postgres", "mysql", "node", "blackbox")}
            blackbox_config = directory / "blackbox.yml"
            blackbox_config.write_text(
                yaml.safe_dump(
                    {
                        "modules": {
                            "http_2xx": {"prober": "http", "timeout": "2s"},
                            "tcp_connect": {"prober": "tcp", "timeout": "2s"},
                        }
                    }
                )
            )
            listen = "--web.listen-address={}:{}".format
            processes.start(
                "redis_exporter",
                [
                    binaries[EXPORTERS[0]],
                    listen(HOST, ports["redis"]),
                    f"--redis.addr={redis_server.url}",
                    "--include-system-metrics",  # redis_total_system_memory_bytes, for RedisOutOfMemory
                ],
            )
            pg_dsn = f"{postgres_server.url}?sslmode=disable"
            processes.start(
                "postgres_exporter",
                [binaries[EXPORTERS[1]], listen(HOST, ports["postgres"])],
                env={"DATA_SOURCE_NAME": pg_dsn},
            )
            processes.start(
                "mysqld_exporter",
                [binaries[EXPORTERS[2]], listen(HOST, ports["mysql"])],
                env={"DATA_SOURCE_NAME": f"root@tcp({HOST}:{mariadb_server.port})/"},
            )
            # Only the root filesystem, the one the sidecar's host check watches.
            processes.start(
                "node_exporter",
                [
                    binaries[EXPORTERS[3]],
                    listen(HOST, ports["node"]),
                    "--collector.filesystem.mount-points-exclude=^/.+",
                ],
            )
            processes.start(
                "blackbox_exporter",
                [binaries[EXPORTERS[4]], listen(HOST, ports["blackbox"]), f"--config.file={blackbox_config}"],
            )
            checks = [
                {"name": "cache", "kind": "redis", "target": redis_server.url},
                {"name": "db", "kind": "postgres", "target": postgres_server.url},
                {"name": "mysql", "kind": "mysql", "target": f"mysql://root@{HOST}:{mariadb_server.port}/"},
                {"name": "web", "kind": "http", "target": http_target},
                {"name": "port", "kind": "tcp", "target": tcp_target},
                {"name": "host", "kind": "host", "options": {"paths": ["/"]}},
            ]
            config = yaml.safe_dump(
                {
                    "default_checks": False,
                    "checks": [{**c, "interval": "1s", "timeout": "0.9s"} for c in checks],
                }
            )
            sidecar = SidecarProcess(config).start()
            for port in ports.values():
                wait_port(HOST, port)

            exporter_prom, sidecar_prom = free_port(), free_port()
            sidecar_job = {
                **shipped_exporter_job(),
                "static_configs": [{"targets": [f"{HOST}:{sidecar.port}"]}],
            }
            for name, port, scrape in (
                (
                    "prometheus-exporters",
                    exporter_prom,
                    exporter_scrape_configs(ports, http_target, tcp_target),
                ),
                ("prometheus-sidecar", sidecar_prom, [sidecar_job]),
            ):
                (directory / name).mkdir()
                (directory / name / "prometheus.yml").write_text(prometheus_config(scrape))
                processes.start(
                    name,
                    [
                        binaries["prometheus"],
                        f"--config.file={directory / name / 'prometheus.yml'}",
                        f"--storage.tsdb.path={directory / name / 'data'}",
                        listen(HOST, port),
                        "--web.console.templates=/dev/null",
                        "--web.console.libraries=/dev/null",
                    ],
                )
            bases = (f"http://{HOST}:{exporter_prom}", f"http://{HOST}:{sidecar_prom}")
            for base in bases:
                wait_ready(base, processes)
            wait_scraped(bases, processes)
            at = time.time() - 1.5  # a moment both have scraped; the same instant on both sides

            tried = answered_exporters = answered_sidecar = matched = 0
            mismatches: list[str] = []
            gaps_seen: set[str] = set()
            for expr in EXPRESSIONS:
                tried += 1
                theirs = query_window(bases[0], expr.expr, at)
                ours = query_window(bases[1], expr.expr, at)
                answered_exporters += bool(theirs)
                answered_sidecar += bool(ours)
                if expr.expr in GAPS:
                    if ours:
                        mismatches.append(f"[{expr.source}] declared a gap but answers: {expr.expr}")
                    gaps_seen.add(expr.expr)
                    continue
                if not theirs:
                    continue
                why = compare(expr, theirs, ours)
                if why is None:
                    matched += 1
                else:
                    mismatches.append(f"[{expr.source}] {expr.expr}\n    {why}")
            print(  # the counts the issue asks for, in the test's output (pytest -s or -rA)
                f"mixin expressions: {tried} tried, {answered_exporters} answered by the exporters, "
                f"{answered_sidecar} by the sidecar; {matched} of the exporters' answers matched by the sidecar, "
                f"{len(GAPS)} declared gaps"
            )
            assert gaps_seen == set(GAPS), f"gaps not in the expression list: {set(GAPS) - gaps_seen}"
            assert not mismatches, "\n".join(mismatches)
            assert answered_exporters >= 60, f"too few expressions answered: {answered_exporters}"
    finally:
        if sidecar is not None:
            sidecar.stop()
        processes.stop()
        shutil.rmtree(directory, ignore_errors=True)
