"""What tracing costs the gateway: the same sidecar with tracing off and on, in one run.

Reuses ``bench/gateway.py``'s set-up: the app is nginx answering ``return 200 "ok\\n"`` (one worker),
the proxy under test alone on CPU 0, the app and wrk on CPU 1. Two sidecar processes run side by
side (only the measured one is busy): one without tracing, one exporting every request's two spans
(sampled: all of them) over OTLP/HTTP to a local sink (a second nginx on CPU 1 that accepts
``POST /v1/traces`` and discards it). Reported for both: requests/s at 32 connections, p50/p99 at one
connection, the sidecar's CPU per request (its export thread included); then the cost of tracing:
CPU µs per request, added p50 latency, throughput ratio, and the sidecar's own span counters (so a
run whose spans were dropped rather than exported cannot pass for cheap).

    .venv/bin/python bench/gateway_tracing.py [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, free_port, start, stop, wait_http
from bench.gateway import APP_CONF, APP_CPU, NGINX, PROXY_CPU, WRK_CPU, Run, best, measure

SINK_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/sink.pid;
error_log {tmp}/sink-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_max_body_size 64m;
  client_body_buffer_size 1m;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/traces {{ return 200; }}
  }}
}}
"""


def sidecar_env(app_port: int, gw_port: int, health_port: int, tracing: dict[str, str]) -> dict[str, str]:
    return {
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{app_port}",
        "SIDECAR_GATEWAY_LISTEN": f"127.0.0.1:{gw_port}",
        "SIDECAR_LISTEN": f"127.0.0.1:{health_port}",
        "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "SIDECAR_DEFAULT_CHECKS": "false",
        "SIDECAR_LOG_LEVEL": "warning",
        "SIDECAR_GATEWAY__DRAIN_PERIOD": "0",
        **tracing,
    }


def span_counters(health_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counters = {}
    for name, pattern in (
        ("exported", r"^sidecar_otel_spans_exported_total (\S+)"),
        ("queue_full", r'^sidecar_otel_spans_dropped_total\{reason="queue_full"\} (\S+)'),
        ("export_failed", r'^sidecar_otel_spans_dropped_total\{reason="export_failed"\} (\S+)'),
        ("requests", r"^http_server_request_duration_seconds_count\{[^}]*\} (\S+)"),
        ("queued", r"^sidecar_otel_queue_spans (\S+)"),
    ):
        match = re.search(pattern, text, re.MULTILINE)
        counters[name] = float(match[1]) if match else 0.0
    return counters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is kept")
    args = parser.parse_args()
    rounds: list[list[Run]] = []
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        app_port, sink_port = free_port(), free_port()
        off_port, on_port, on_health = free_port(), free_port(), free_port()
        (Path(tmp) / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
        (Path(tmp) / "sink.conf").write_text(SINK_CONF.format(tmp=tmp, port=sink_port))
        procs = []
        try:
            procs.append(
                start([NGINX, "-p", tmp, "-e", f"{tmp}/app-error.log", "-c", f"{tmp}/app.conf"], cpu=APP_CPU)
            )
            procs.append(
                start(
                    [NGINX, "-p", tmp, "-e", f"{tmp}/sink-error.log", "-c", f"{tmp}/sink.conf"], cpu=APP_CPU
                )
            )
            off = start(
                [PYTHON, "-m", "sidecar", "run"],
                cpu=PROXY_CPU,
                env=sidecar_env(app_port, off_port, free_port(), {}),
            )
            procs.append(off)
            on = start(
                [PYTHON, "-m", "sidecar", "run"],
                cpu=PROXY_CPU,
                env=sidecar_env(
                    app_port,
                    on_port,
                    on_health,
                    {
                        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
                        "OTEL_SERVICE_NAME": "bench",
                    },
                ),
            )
            procs.append(on)
            for port in (app_port, off_port, on_port):
                wait_http(f"http://127.0.0.1:{port}/", expect=(200,))
            wait_http(f"http://127.0.0.1:{on_health}/livez", expect=(200,))
            for _ in range(args.repeat):
                rounds.append(
                    [
                        measure("app directly", f"http://127.0.0.1:{app_port}/", args.seconds, None),
                        measure("tracing off", f"http://127.0.0.1:{off_port}/", args.seconds, off.pid),
                        measure("tracing on", f"http://127.0.0.1:{on_port}/", args.seconds, on.pid),
                    ]
                )
            counters = span_counters(on_health)
            deadline = time.monotonic() + 10  # let the last partial batch leave (schedule delay 5 s)
            while counters["queued"] and time.monotonic() < deadline:
                time.sleep(0.5)
                counters = span_counters(on_health)
            on_rss = psutil.Process(on.pid).memory_info().rss
            off_rss = psutil.Process(off.pid).memory_info().rss
        finally:
            for proc in reversed(procs):
                stop(proc)
    report([best(runs) for runs in zip(*rounds, strict=True)], len(rounds), counters, off_rss, on_rss)


def report(runs: list[Run], rounds: int, counters: dict[str, float], off_rss: int, on_rss: int) -> None:
    direct, off, on = runs
    print(
        "== gateway tracing benchmark (wrk, HTTP/1.1 keep-alive, GET / -> 200 'ok'; "
        f"best of {rounds} interleaved rounds)"
    )
    print(
        f"pinning: sidecar under test on CPU {PROXY_CPU}; app (nginx, 1 worker), OTLP sink (nginx, 1 worker) "
        f"and wrk on CPU {APP_CPU}/{WRK_CPU}; tracing on = every request sampled, 2 spans each, OTLP/HTTP"
    )
    print(f"{'':14} {'req/s @32':>10} {'p50 @1':>9} {'p99 @1':>9} {'errors':>7} {'CPU/req':>10} {'busy':>6}")
    for run in runs:
        per_request = f"{run.cpu_us_per_request:.1f} us" if run.cpu_us_per_request else "-"
        busy = f"{run.cpu_busy * 100:.0f} %" if run.cpu_busy is not None else "-"
        print(
            f"{run.name:14} {run.throughput.requests_per_second:10.0f} {run.latency.p50_ms:7.3f}ms "
            f"{run.latency.p99_ms:7.3f}ms {run.throughput.errors + run.latency.errors:7d} {per_request:>10} {busy:>6}"
        )
    print(
        f"added latency @1 connection vs the app: tracing off p50 +{off.latency.p50_ms - direct.latency.p50_ms:.3f} ms, "
        f"tracing on p50 +{on.latency.p50_ms - direct.latency.p50_ms:.3f} ms"
    )
    ratio = on.throughput.requests_per_second / off.throughput.requests_per_second
    extra_p50_us = (on.latency.p50_ms - off.latency.p50_ms) * 1000
    extra_p99_us = (on.latency.p99_ms - off.latency.p99_ms) * 1000
    if on.cpu_us_per_request and off.cpu_us_per_request:
        cost = on.cpu_us_per_request - off.cpu_us_per_request
        print(
            f"cost of tracing per request: {cost:.1f} us CPU ({on.cpu_us_per_request:.1f} vs "
            f"{off.cpu_us_per_request:.1f} us, export thread included); p50 {extra_p50_us:+.0f} us, "
            f"p99 {extra_p99_us:+.0f} us at one connection; throughput {ratio:.2f} x tracing off"
        )
    total = counters["exported"] + counters["queue_full"] + counters["export_failed"]
    print(
        f"spans of the traced sidecar: {counters['exported']:.0f} exported, {counters['queue_full']:.0f} dropped "
        f"(queue full), {counters['export_failed']:.0f} failed, for {counters['requests']:.0f} requests "
        f"({total / max(counters['requests'], 1):.2f} spans/request accounted, {counters['queued']:.0f} still queued)"
    )
    print(f"RSS after the run: tracing off {off_rss / 2**20:.1f} MiB, tracing on {on_rss / 2**20:.1f} MiB")
    load = psutil.getloadavg()[0]
    print(f"machine load average during the run: {load:.2f} (other work on the 2 cores skews req/s)")


if __name__ == "__main__":
    main()
