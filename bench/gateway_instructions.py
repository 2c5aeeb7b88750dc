"""Instructions per proxied request, counted by callgrind: the sidecar's gateway against nginx, in one run.

Wall-clock throughput on a shared 2-core machine swings with whatever else runs; instruction counts
do not. Each proxy runs once under ``valgrind --tool=callgrind``. After a warm-up (pools, caches) its
counters are zeroed and ``--requests`` keep-alive requests are served over 32 connections; the counts
are dumped (the busy window); then the proxy sits idle and the counts are dumped again (the idle
window, at least ``IDLE_SECONDS`` long, scaled to the busy window's length). One request costs
(busy - idle) / requests.

Why the idle window: under valgrind a process runs about 50x slower, so work that happens per
wall-clock second (the gateway's deadline sweeper, access-log and metric flush timers, the app
check's probe, the console's snapshots) would otherwise be billed to the requests served meanwhile.
Those timers tick as often in the idle window as in the busy one, so subtracting it leaves the
request path. Start-up and shutdown fall outside both windows. Both the corrected figure and the raw
busy one are printed. Python's hash seed is fixed so every run starts the same way.

Proxies: the sidecar's gateway (its access line to a file, as deployed); nginx with one worker and
no access log; nginx writing a buffered access line per request (like for like). The app behind them
is nginx answering ``return 200`` (not under valgrind). ``--paths N`` spreads the requests over N
distinct paths (``/items/<n>``, every request after the warm-up a path not seen before when N is at
least the number of requests), to show the cost does not grow with the number of distinct targets;
``--paths 1,100000`` measures both in one run and prints the ratio.

    .venv/bin/python bench/gateway_instructions.py [--requests 4000] [--paths 1[,100000]] [--keep DIR]

``--keep DIR`` keeps the busy window's callgrind file for
``callgrind_annotate --inclusive=yes DIR/sidecar-busy.callgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, free_port, wait_http
from bench.gateway import APP_CONF  # the same app as the throughput bench: nginx answering 200

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONNECTIONS = 32
WARM_UP = 200  # requests before counting: pools, caches
# with many paths: enough distinct targets before counting to fill the gateway's target caches, so the
# counted requests meet caches that are full and turning over, as after hours of distinct paths
WARM_UP_PATHS = 5000
IDLE_SECONDS = 10.0  # the idle window's least length: several ticks of the slowest timers
FLAT_GOAL = 1.05  # issue: cost within 5 % from 1 to 100,000 distinct paths
GOAL_VS_NGINX_WITH_LOG = 2.0  # issue: at most 2x nginx-with-access-log per request

# master_process off: one process, so callgrind counts the worker itself.
PROXY_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  {access_log}
  keepalive_requests 1000000;
  upstream app {{ server 127.0.0.1:{app_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


async def drive(port: int, requests: int, paths: int, path: str | None = "/", first: int = 0) -> None:
    """``requests`` GETs over ``CONNECTIONS`` keep-alive connections; every response read in full.

    The n-th request (counting from ``first``) asks for ``/items/<n mod paths>``, or for ``path`` when
    it is given and there is one path.
    """

    async def one_connection(start: int, count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in range(start, start + count):
                target = f"/items/{n % paths}" if path is None or paths > 1 else path
                writer.write(f"GET {target} HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head[:80]!r}")
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length is None:
                    raise RuntimeError(f"no Content-Length: {head!r}")
                await reader.readexactly(int(length[1]))
        finally:
            writer.close()

    share, extra = divmod(requests, CONNECTIONS)
    tasks, start = [], first
    for c in range(CONNECTIONS):
        count = share + (1 if c < extra else 0)
        tasks.append(one_connection(start, count))
        start += count
    await asyncio.gather(*tasks)


def callgrind_total(out_file: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s+(\d+)", out_file.read_text(errors="replace"), re.MULTILINE)
    if not match:
        raise RuntimeError(f"no totals in {out_file}")
    return int(match[1])


def _control(option: str, pid: int) -> None:
    """``callgrind_control -z`` (zero) or ``-d`` (dump, which also zeroes); returns once it was done."""
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=300)


@dataclass
class Windows:
    """Instructions of one proxy's busy window (``requests`` served) and of idling as long as it lasted."""

    requests: int
    busy: int
    idle: int
    seconds: float

    @property
    def per_request(self) -> float:
        """The request path's cost: what the busy window executed beyond the idle one, per request."""
        return (self.busy - self.idle) / self.requests

    @property
    def raw_per_request(self) -> float:
        """The busy window alone per request: what per-second timers add under valgrind included."""
        return self.busy / self.requests


def measure(
    name: str,
    cmd: Sequence[str],
    port: int,
    requests: int,
    paths: int,
    tmp: Path,
    env: dict[str, str],
    path: str | None = "/",
    expect: Sequence[int] = (200, 502, 503, 504),
) -> Windows:
    """Start ``cmd`` under callgrind, warm it up, count a busy window and an idle one as long, stop it."""
    out = tmp / f"{name}.callgrind"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{name}.stderr").open("wb"),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}{path or '/items/0'}", timeout=1200.0, expect=expect)
        warm_up = WARM_UP if paths == 1 else WARM_UP_PATHS
        asyncio.run(drive(port, warm_up, paths, path, first=requests))  # pools, caches; other paths
        _control("-z", proc.pid)
        began = time.monotonic()
        asyncio.run(drive(port, requests, paths, path))
        seconds = time.monotonic() - began
        _control("-d", proc.pid)  # part 1: the busy window
        began = time.monotonic()
        time.sleep(max(seconds, IDLE_SECONDS))
        _control("-d", proc.pid)  # part 2: the idle window
        idle_seconds = time.monotonic() - began
    finally:
        proc.send_signal(signal.SIGTERM if name.startswith("sidecar") else signal.SIGQUIT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    busy, idle = (Path(f"{out}.{part}") for part in (1, 2))
    busy.rename(tmp / f"{name}-busy.callgrind")
    idle.rename(tmp / f"{name}-idle.callgrind")
    idle_scaled = round(callgrind_total(tmp / f"{name}-idle.callgrind") * seconds / idle_seconds)
    return Windows(requests, callgrind_total(tmp / f"{name}-busy.callgrind"), idle_scaled, seconds)


def per_request(
    name: str,
    cmd: Sequence[str],
    port: int,
    requests: int,
    paths: int,
    tmp: Path,
    env: dict[str, str],
    path: str = "/",
    expect: Sequence[int] = (200, 502, 503, 504),
) -> float:
    """Instructions of one request on the request path (see ``measure``)."""
    return measure(name, cmd, port, requests, paths, tmp, env, path, expect).per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument(
        "--paths", default="1", help="distinct request paths, or several counts comma-separated (1,100000)"
    )
    parser.add_argument("--only", choices=["sidecar", "nginx", "nginx-log"], action="append")
    parser.add_argument(
        "--keep", type=Path, help="copy the callgrind files here (callgrind_annotate --inclusive=yes)"
    )
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian package valgrind)")
    wanted = args.only or ["sidecar", "nginx", "nginx-log"]
    counts = [int(n) for n in args.paths.split(",")]
    # One path is "/" (the figure's history); several counts compare like with like: /items/<n>.
    path = "/" if counts == [1] else None
    with tempfile.TemporaryDirectory(prefix="gw-instr-") as tmp_name:
        tmp = Path(tmp_name)
        app_port = free_port()
        (tmp / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
        app = subprocess.Popen(
            [NGINX, "-c", str(tmp / "app.conf"), "-p", str(tmp)], stderr=subprocess.DEVNULL
        )
        results: dict[str, Windows] = {}
        try:
            wait_http(f"http://127.0.0.1:{app_port}/")
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            for name in wanted:
                for paths in counts:
                    label = name if paths == counts[0] else f"{name}@{paths}"
                    port = free_port()
                    if name == "sidecar":
                        env_sidecar = {
                            **env,
                            "SIDECAR_UPSTREAM": f"http://127.0.0.1:{app_port}",
                            "SIDECAR_GATEWAY_LISTEN": f"127.0.0.1:{port}",
                            "SIDECAR_LISTEN": f"127.0.0.1:{free_port()}",
                            "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
                            "SIDECAR_DEFAULT_CHECKS": "false",
                            "SIDECAR_LOG_LEVEL": "warning",
                            "SIDECAR_GATEWAY__ACCESS_LOG__PATH": str(tmp / f"{label}-access.log"),
                            # no drain: stopping under valgrind would wait it out in wall time
                            "SIDECAR_GATEWAY__DRAIN_PERIOD": "0",
                        }
                        cmd = [PYTHON, "-m", "sidecar", "run"]
                        results[label] = measure(
                            label, cmd, port, args.requests, paths, tmp, env_sidecar, path
                        )
                    else:
                        log = (
                            f"access_log {tmp}/{label}-access.log combined buffer=64k flush=1s;"
                            if name == "nginx-log"
                            else "access_log off;"
                        )
                        conf = tmp / f"{label}.conf"
                        conf.write_text(
                            PROXY_CONF.format(
                                tmp=tmp, name=label, access_log=log, app_port=app_port, port=port
                            )
                        )
                        cmd = [NGINX, "-c", str(conf), "-p", str(tmp)]
                        results[label] = measure(label, cmd, port, args.requests, paths, tmp, env, path)
        finally:
            app.send_signal(signal.SIGQUIT)
            app.wait(timeout=30)
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                for out in tmp.glob("*.callgrind"):
                    shutil.copy(out, args.keep / out.name)
    print(
        f"instructions per proxied request (callgrind; {args.requests} requests after {WARM_UP} of warm-up "
        f"({WARM_UP_PATHS} with several paths), "
        f"{CONNECTIONS} connections, {args.paths} distinct path(s)): the busy window minus an idle window "
        "as long (timers that tick per wall-clock second, which valgrind stretches about 50x)"
    )
    for label, windows in results.items():
        print(
            f"  {label:<16} {windows.per_request / 1000:8.1f}k   (busy window {windows.raw_per_request / 1000:.1f}k"
            f" per request over {windows.seconds:.1f} s, idling as long {windows.idle / 1e6:.2f}M instructions)"
        )
    if "sidecar" in results and "nginx-log" in results:
        ratio = results["sidecar"].per_request / results["nginx-log"].per_request
        met = "met" if ratio <= GOAL_VS_NGINX_WITH_LOG else "NOT met"
        print(f"  sidecar / nginx-with-log: {ratio:.2f}x (goal <= {GOAL_VS_NGINX_WITH_LOG}x: {met})")
    if len(counts) > 1 and "sidecar" in results:
        for paths in counts[1:]:
            ratio = results[f"sidecar@{paths}"].per_request / results["sidecar"].per_request
            met = "met" if ratio <= FLAT_GOAL else "NOT met"
            print(f"  sidecar at {paths} paths / at {counts[0]}: {ratio:.3f}x (goal <= {FLAT_GOAL}x: {met})")


if __name__ == "__main__":
    main()
