"""What a rate-limit rule costs the gateway: no rule, a local rule and a Redis-backed rule, in one run.

Three sidecar gateways in front of one app (nginx ``return 200 "ok"``, as in ``bench/gateway.py``):
without rules, with one local rule, and with one rule in a throwaway ``redis-server``. The rules
cover every request, are keyed by client address (so all of wrk's requests hit one key: the hot-key
worst case) and have a limit no run reaches, so every request is decided and allowed; the
``RateLimit``/``RateLimit-Policy`` fields are on every response. Pinning as in ``bench/gateway.py``:
the gateway under test alone on CPU 0; the app, wrk (1 thread, 32 connections) and Redis on CPU 1.
Reported: requests/s at 32 connections; the gateway's CPU per request (user+system time / requests);
the cost per request of each rule (CPU per request minus the no-rule run's); Redis' own CPU per
request; p50/p99 at one connection.

    .venv/bin/python bench/gateway_ratelimit.py [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, WrkResult, free_port, start, stop, wait_http
from bench.gateway import APP_CONF, APP_CPU, NGINX, PROXY_CPU, WRK_CPU, tree_cpu_seconds, wrk

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
RULE = {"name": "bench", "limit": 1_000_000_000, "window": "1h"}


@dataclass
class Run:
    name: str
    throughput: WrkResult
    latency: WrkResult
    cpu_us: float
    redis_cpu_us: float | None


def sidecar_config(gw_port: int, rules: list[dict[str, object]], redis_url: str | None) -> str:
    gateway: dict[str, object] = {
        "listen": f"127.0.0.1:{gw_port}",
        "drain_period": 0,
        "access_log": {"enabled": False},
        "rate_limits": rules,
    }
    if redis_url:
        gateway["rate_limit_redis"] = redis_url
    return yaml.safe_dump({"default_checks": False, "log_level": "warning", "gateway": gateway})


def measure(name: str, url: str, seconds: int, pid: int, redis_pid: int | None) -> Run:
    wrk(url, connections=32, seconds=2, cpu=WRK_CPU)  # warm-up
    before = tree_cpu_seconds(pid)
    redis_before = tree_cpu_seconds(redis_pid) if redis_pid else 0.0
    throughput = wrk(url, connections=32, seconds=seconds, cpu=WRK_CPU)
    cpu = tree_cpu_seconds(pid) - before
    redis_cpu = tree_cpu_seconds(redis_pid) - redis_before if redis_pid else None
    latency = wrk(url, connections=1, seconds=max(5, seconds // 2), cpu=WRK_CPU)
    served = throughput.requests_per_second * seconds
    return Run(
        name,
        throughput,
        latency,
        cpu / served * 1e6,
        redis_cpu / served * 1e6 if redis_cpu is not None else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is kept")
    args = parser.parse_args()
    rounds: list[list[Run]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        app_port, redis_port = free_port(), free_port()
        (Path(tmp) / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        setups = [
            ("no rule", [], None),
            ("local rule", [{**RULE, "backend": "local"}], None),
            ("redis rule", [{**RULE, "backend": "redis"}], redis_url),
        ]
        procs = []
        try:
            procs.append(
                start([NGINX, "-p", tmp, "-e", f"{tmp}/app-error.log", "-c", f"{tmp}/app.conf"], cpu=APP_CPU)
            )
            redis_args = [
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            redis = start([REDIS, *redis_args, "--dir", tmp, "--protected-mode", "no"], cpu=APP_CPU)
            procs.append(redis)
            gateways = []
            for name, rules, url in setups:
                gw_port = free_port()
                config = Path(tmp) / f"sidecar-{gw_port}.yaml"
                config.write_text(sidecar_config(gw_port, rules, url))
                proc = start(
                    [PYTHON, "-m", "sidecar", "run", "--config", str(config)],
                    cpu=PROXY_CPU,
                    env={
                        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{app_port}",
                        "SIDECAR_LISTEN": f"127.0.0.1:{free_port()}",
                        "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
                    },
                )
                procs.append(proc)
                gateways.append((name, f"http://127.0.0.1:{gw_port}/", proc, url is not None))
            wait_http(f"http://127.0.0.1:{app_port}/", expect=(200,))
            for _, url, _, _ in gateways:
                wait_http(url, expect=(200,))
            check = subprocess.run(
                ["curl", "-si", gateways[2][1]], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            assert "RateLimit: " in check, f"the Redis rule did not decide:\n{check}"
            for _ in range(args.repeat):
                rounds.append(
                    [
                        measure(name, url, args.seconds, proc.pid, redis.pid if uses_redis else None)
                        for name, url, proc, uses_redis in gateways
                    ]
                )
                time.sleep(0.5)
        finally:
            for proc in reversed(procs):
                stop(proc)
    report([best(runs) for runs in zip(*rounds, strict=True)], len(rounds))


def best(runs: tuple[Run, ...]) -> Run:
    top = max(runs, key=lambda r: r.throughput.requests_per_second)
    redis = [r.redis_cpu_us for r in runs if r.redis_cpu_us is not None]
    return Run(
        runs[0].name,
        top.throughput,
        min((r.latency for r in runs), key=lambda w: w.p50_ms),
        min(r.cpu_us for r in runs),
        min(redis) if redis else None,
    )


def report(runs: list[Run], rounds: int) -> None:
    base = runs[0]
    print(
        f"== gateway rate-limit benchmark (wrk, keep-alive, GET / -> 200 'ok'; best of {rounds} interleaved rounds)"
    )
    print(
        f"pinning: gateway under test on CPU {PROXY_CPU}; app (nginx), wrk (1 thread) and redis-server on CPU "
        f"{APP_CPU}; one rule covering every request, one key (client address), never exceeded"
    )
    print(
        f"{'':12} {'req/s @32':>10} {'vs no rule':>10} {'p50 @1':>9} {'p99 @1':>9} {'errors':>7} "
        f"{'CPU/req':>9} {'rule cost':>10} {'redis CPU/req':>14}"
    )
    for run in runs:
        ratio = run.throughput.requests_per_second / base.throughput.requests_per_second
        cost = f"{run.cpu_us - base.cpu_us:+.1f} us" if run is not base else "-"
        redis = f"{run.redis_cpu_us:.1f} us" if run.redis_cpu_us is not None else "-"
        print(
            f"{run.name:12} {run.throughput.requests_per_second:10.0f} {ratio:9.2f}x {run.latency.p50_ms:7.3f}ms "
            f"{run.latency.p99_ms:7.3f}ms {run.throughput.errors + run.latency.errors:7d} "
            f"{run.cpu_us:6.1f} us {cost:>10} {redis:>14}"
        )
    for run in runs[1:]:
        wall = 1e6 / run.throughput.requests_per_second - 1e6 / base.throughput.requests_per_second
        print(
            f"{run.name}: +{run.cpu_us - base.cpu_us:.1f} us of gateway CPU per request, "
            f"+{wall:.1f} us of wall time per request at 32 connections, "
            f"p50 @1 connection {run.latency.p50_ms - base.latency.p50_ms:+.3f} ms"
        )
    print(f"machine load average during the run: {psutil.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
