"""Resident memory: idle, after 1,000,000 proxied requests, after 3,000,000 log lines (issue 17, item 4).

Two sidecar processes, each measured from its own idle figure, both with the correlation index at its
default size (10,000 requests):

* **gateway**: the sidecar proxies to nginx answering ``return 200`` (not measured), its access line
  written to a file as deployed; ``wrk`` sends keep-alive GETs in rounds until ``--requests`` were
  answered. Every request gets a fresh request ID, so the index fills and turns over.
* **logs**: pino-http access lines (the generator of ``bench/logs.py``, every line a new request ID)
  posted as NDJSON to ``POST /ingest/logs`` on the admin listener until ``--lines`` were accepted.

Printed: RSS idle and after, the difference against the goal (idle + 15 MB), the index's own count
and byte estimate (``sidecar_correlation_*``) and the resident bytes per correlation entry (growth
over entries held). RSS is read from ``/proc`` (psutil), after a pause so the access-log writer and
the RED flush have settled.

    .venv/bin/python bench/memory.py [--requests 1000000] [--lines 3000000]
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, free_port, start, stop, wait_http

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GOAL_MB = 15.0  # issue: at most idle + 15 MB
INGEST_LINES = 2_000  # per POST: ~700 kB of pino lines, under the 1 MiB body limit
APP_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/app.pid;
error_log {tmp}/app-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}
}}
"""


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def settle_rss(pid: int, seconds: float = 3.0) -> float:
    time.sleep(seconds)
    return rss_mb(pid)


def correlation_figures(metrics_url: str) -> tuple[float, float]:
    """(requests held, bytes estimated) from the sidecar's own correlation gauges."""
    with urllib.request.urlopen(metrics_url, timeout=30) as resp:
        text = resp.read().decode()
    held = re.search(r"^sidecar_correlation_requests (\S+)$", text, re.MULTILINE)
    size = re.search(r"^sidecar_correlation_bytes (\S+)$", text, re.MULTILINE)
    return (float(held[1]) if held else 0.0, float(size[1]) if size else 0.0)


def sidecar_env(health: int, admin: int) -> dict[str, str]:
    return {
        "PYTHONHASHSEED": "0",
        "SIDECAR_LISTEN": f"127.0.0.1:{health}",
        "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{admin}",
        "SIDECAR_DEFAULT_CHECKS": "false",
        "SIDECAR_LOG_LEVEL": "warning",
    }


def gateway_phase(tmp: Path, requests: int) -> dict[str, float]:
    app_port, gw_port, health, admin = free_port(), free_port(), free_port(), free_port()
    (tmp / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
    app = subprocess.Popen([NGINX, "-c", str(tmp / "app.conf"), "-p", str(tmp)], stderr=subprocess.DEVNULL)
    env = {
        **sidecar_env(health, admin),
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{app_port}",
        "SIDECAR_GATEWAY_LISTEN": f"127.0.0.1:{gw_port}",
        "SIDECAR_GATEWAY__ACCESS_LOG__PATH": str(tmp / "access.log"),
    }
    sidecar = start([PYTHON, "-m", "sidecar", "run"], env=env)
    try:
        wait_http(f"http://127.0.0.1:{app_port}/")
        wait_http(f"http://127.0.0.1:{gw_port}/", timeout=60, expect=(200,))
        idle = settle_rss(sidecar.pid)
        done = 0
        started = time.monotonic()
        while done < requests:
            out = subprocess.run(
                ["wrk", "-t1", "-c16", "-d10s", f"http://127.0.0.1:{gw_port}/"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
            if "Non-2xx" in out or "Socket errors" in out:  # only answered requests count
                raise RuntimeError(f"the gateway did not answer every request with 2xx:\n{out}")
            done += int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
        elapsed = time.monotonic() - started
        after = settle_rss(sidecar.pid)
        held, index_bytes = correlation_figures(f"http://127.0.0.1:{health}/metrics")
    finally:
        stop(sidecar)
        app.terminate()
        app.wait(10)
    return {
        "idle": idle,
        "after": after,
        "count": done,
        "seconds": elapsed,
        "held": held,
        "bytes": index_bytes,
    }


def logs_phase(tmp: Path, lines: int) -> dict[str, float]:
    from bench.logs import generate

    health, admin = free_port(), free_port()
    sidecar = start([PYTHON, "-m", "sidecar", "run"], env=sidecar_env(health, admin))
    log = tmp / "pino.log"
    generate(log, min(lines, 500_000))  # posted repeatedly with fresh request IDs below
    source = log.read_bytes().splitlines()
    try:
        wait_http(f"http://127.0.0.1:{health}/livez", timeout=60, expect=(200,))
        idle = settle_rss(sidecar.pid)
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=120)
        accepted = sent = 0
        started = time.monotonic()
        round_no = 0
        while sent < lines:
            for at in range(0, len(source), INGEST_LINES):
                chunk = source[at : at + INGEST_LINES][: lines - sent]
                if not chunk:
                    break
                if round_no:  # every round a new set of request IDs: the index keeps turning over
                    chunk = [line.replace(b'"reqId":"', b'"reqId":"r%d-' % round_no, 1) for line in chunk]
                conn.request(
                    "POST",
                    "/ingest/logs",
                    body=b"\n".join(chunk),
                    headers={"Content-Type": "application/x-ndjson"},
                )
                response = conn.getresponse()
                body = response.read()
                if response.status == 503:  # too many at once: the sidecar asks to retry
                    time.sleep(0.05)
                    continue
                if response.status != 200:
                    raise RuntimeError(f"ingest answered {response.status}: {body[:200]!r}")
                accepted += int(orjson.loads(body)["accepted"])
                sent += len(chunk)
                if sent >= lines:
                    break
            round_no += 1
        conn.close()
        elapsed = time.monotonic() - started
        after = settle_rss(sidecar.pid)
        held, index_bytes = correlation_figures(f"http://127.0.0.1:{health}/metrics")
    finally:
        stop(sidecar)
    return {
        "idle": idle,
        "after": after,
        "count": accepted,
        "seconds": elapsed,
        "held": held,
        "bytes": index_bytes,
    }


def report(name: str, unit: str, r: dict[str, float]) -> None:
    grown = r["after"] - r["idle"]
    met = "met" if grown <= GOAL_MB else "NOT met"
    per_entry = grown * 1e6 / r["held"] if r["held"] else float("nan")
    index_per_entry = r["bytes"] / r["held"] if r["held"] else float("nan")
    print(
        f"{name:<8} RSS idle {r['idle']:6.1f} MB, after {r['count']:,.0f} {unit} {r['after']:6.1f} MB: "
        f"+{grown:5.1f} MB (goal <= +{GOAL_MB:g} MB: {met}); {r['seconds']:.0f} s"
    )
    print(
        f"{'':<8} correlation index: {r['held']:,.0f} entries, {index_per_entry:,.0f} bytes each by its own "
        f"count; resident growth per entry held {per_entry:,.0f} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=3_000_000)
    parser.add_argument("--only", choices=["gateway", "logs"], action="append")
    args = parser.parse_args()
    wanted = args.only or ["gateway", "logs"]
    print("resident memory (RSS) of the sidecar; correlation index at its default size (10,000 requests)")
    with tempfile.TemporaryDirectory(prefix="sidecar-memory-") as tmp_name:
        tmp = Path(tmp_name)
        if "gateway" in wanted:
            report("gateway", "proxied requests", gateway_phase(tmp, args.requests))
        if "logs" in wanted:
            report("logs", "log lines", logs_phase(tmp, args.lines))


if __name__ == "__main__":
    main()
