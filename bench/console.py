"""What the on-call console costs: resident memory with it on, and gateway throughput while it is watched.

Two measurements, in one run on this machine (so the figures compare as ratios):

1. Resident memory: the same sidecar (gateway, Redis and PostgreSQL checks) with ``console.enabled``
   false and true; for "true", after every page was fetched (so the lazily imported page modules are
   in) and the log tail polled. Budget: at most 3 MB more.
2. Gateway throughput (wrk, 32 connections, the app is nginx returning "ok") without anyone looking,
   then with console viewers polling as the browser does (Overview every 2 s, Traffic, Queues and
   Errors every 5 s, the log tail every second), one viewer and ten. Rounds are interleaved and the
   best of each kept. The sidecar is pinned to CPU 0, the app, wrk and the viewers to CPU 1.

    .venv/bin/python bench/console.py [--seconds 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

from bench._common import PYTHON, free_port, start, stop, wait_http
from bench.gateway import APP_CONF, APP_CPU, NGINX, PROXY_CPU, WRK_CPU, tree_cpu_seconds, wrk

TOKEN = "bench-console-token-0123456789"
RSS_BUDGET_MB = 3.0
VIEWER_PATHS = (  # (path, seconds between polls), as console.js polls them
    ("/console?part=live", 2.0),
    ("/console/traffic?part=live&window=1", 5.0),
    ("/console/queues?part=live", 5.0),
    ("/console/errors?part=live", 5.0),
    ("/console/api/logs?after=0", 1.0),
)
PAGES = (
    "/console",
    "/console/traffic",
    "/console/queues",
    "/console/errors",
    "/console/request?q=x",
    "/console/logs",
)


def _get(url: str) -> None:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _env(app_port: int, gw_port: int, admin_port: int, console: bool) -> dict[str, str]:
    return {
        "SIDECAR_UPSTREAM": f"http://127.0.0.1:{app_port}",
        "SIDECAR_GATEWAY_LISTEN": f"127.0.0.1:{gw_port}",
        "SIDECAR_LISTEN": f"127.0.0.1:{free_port()}",
        "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "SIDECAR_ADMIN_TOKEN": TOKEN,
        "SIDECAR_DEFAULT_CHECKS": "false",
        "SIDECAR_LOG_LEVEL": "warning",
        "SIDECAR_GATEWAY__DRAIN_PERIOD": "0",
        "SIDECAR_GATEWAY__ACCESS_LOG__ENABLED": "false",
        "SIDECAR_CONSOLE__ENABLED": "true" if console else "false",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
    }


def rss_mb(console: bool, app_port: int) -> float:
    gw_port, admin_port = free_port(), free_port()
    sidecar = start(
        [PYTHON, "-m", "sidecar", "run"], cpu=PROXY_CPU, env=_env(app_port, gw_port, admin_port, console)
    )
    try:
        wait_http(f"http://127.0.0.1:{gw_port}/", expect=(200,))
        for _ in range(200):  # some traffic, so the gateway's own state exists in both runs
            _get(f"http://127.0.0.1:{gw_port}/")
        if console:
            for path in PAGES:
                _get(f"http://127.0.0.1:{admin_port}{path}")
            for path, _ in VIEWER_PATHS:
                _get(f"http://127.0.0.1:{admin_port}{path}")
        time.sleep(3)
        return psutil.Process(sidecar.pid).memory_info().rss / 2**20
    finally:
        stop(sidecar)


class Viewers:
    """``count`` browsers' worth of console polling, in one thread."""

    def __init__(self, admin: str, count: int) -> None:
        self.admin = admin
        self.count = count
        self.fetched = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        due = {(path, i): time.monotonic() + i * 0.1 for path, _ in VIEWER_PATHS for i in range(self.count)}
        every = dict(VIEWER_PATHS)
        while not self._stop.is_set():
            now = time.monotonic()
            for (path, i), at in due.items():
                if at <= now:
                    _get(self.admin + path)
                    self.fetched += 1
                    due[(path, i)] = now + every[path]
            self._stop.wait(0.05)

    def __enter__(self) -> Viewers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rss-only", action="store_true", help="only the resident-memory comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        app_port = free_port()
        (Path(tmp) / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
        app = start([NGINX, "-p", tmp, "-e", f"{tmp}/app-error.log", "-c", f"{tmp}/app.conf"], cpu=APP_CPU)
        try:
            wait_http(f"http://127.0.0.1:{app_port}/", expect=(200,))
            off = [rss_mb(False, app_port) for _ in range(args.repeat)]
            on = [rss_mb(True, app_port) for _ in range(args.repeat)]
            growth = statistics.median(on) - statistics.median(off)
            print(f"RSS console off: {', '.join(f'{v:.1f}' for v in off)} MiB")
            print(f"RSS console on (every page viewed): {', '.join(f'{v:.1f}' for v in on)} MiB")
            print(f"RSS growth (medians): {growth:+.2f} MiB (budget {RSS_BUDGET_MB} MiB)")
            if args.rss_only:
                return

            gw_port, admin_port = free_port(), free_port()
            sidecar = start(
                [PYTHON, "-m", "sidecar", "run"], cpu=PROXY_CPU, env=_env(app_port, gw_port, admin_port, True)
            )
            try:
                url = f"http://127.0.0.1:{gw_port}/"
                admin = f"http://127.0.0.1:{admin_port}"
                wait_http(url, expect=(200,))
                wrk(url, connections=32, seconds=2, cpu=WRK_CPU)  # warm-up
                best: dict[str, tuple[float, float, int]] = {}
                for _ in range(args.repeat):
                    for name, count in (
                        ("nobody looking", 0),
                        ("1 console viewer", 1),
                        ("10 console viewers", 10),
                    ):
                        before = tree_cpu_seconds(sidecar.pid)
                        if count:
                            with Viewers(admin, count) as viewers:
                                result = wrk(url, connections=32, seconds=args.seconds, cpu=WRK_CPU)
                            fetched = viewers.fetched
                        else:
                            result = wrk(url, connections=32, seconds=args.seconds, cpu=WRK_CPU)
                            fetched = 0
                        cpu = tree_cpu_seconds(sidecar.pid) - before
                        per_request = cpu / (result.requests_per_second * args.seconds) * 1e6
                        if name not in best or result.requests_per_second > best[name][0]:
                            best[name] = (result.requests_per_second, per_request, fetched)
                base = best["nobody looking"][0]
                for name, (rps, per_request, fetched) in best.items():
                    print(
                        f"{name:20s} {rps:9.0f} req/s ({rps / base:6.1%} of nobody looking), "
                        f"{per_request:6.1f} us CPU/request, {fetched} console fetches"
                    )
            finally:
                stop(sidecar)
        finally:
            stop(app)


if __name__ == "__main__":
    main()
