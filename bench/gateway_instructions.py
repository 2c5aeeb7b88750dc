"""Instructions per proxied request, counted by callgrind: the sidecar's gateway against nginx, in one run.

Wall-clock throughput on a shared 2-core machine swings with whatever else runs; instruction counts
do not. Each proxy runs under ``valgrind --tool=callgrind`` twice, serving ``--requests`` and then
``2 x --requests`` keep-alive requests over 32 connections, and the cost of one request is the
difference of the two totals divided by the difference of the counts: start-up, warm-up and shutdown
cancel out. Python's hash seed is fixed so both runs start the same way.

Proxies: the sidecar's gateway (its access line to a file, as deployed); nginx with one worker and
no access log; nginx writing a buffered access line per request (like for like). The app behind them
is nginx answering ``return 200`` (not under valgrind). ``--paths N`` spreads the requests over N
distinct paths, to show the cost does not grow with the number of distinct targets.

    .venv/bin/python bench/gateway_instructions.py [--requests 4000] [--paths 1] [--keep DIR]

``--keep DIR`` keeps the callgrind out files for ``callgrind_annotate --inclusive=yes DIR/sidecar-8000.callgrind``.
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
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, free_port, wait_http
from bench.gateway import APP_CONF  # the same app as the throughput bench: nginx answering 200

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONNECTIONS = 32
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


async def drive(port: int, requests: int, paths: int, path: str = "/") -> None:
    """``requests`` GETs over ``CONNECTIONS`` keep-alive connections; every response read in full."""

    async def one_connection(first: int, count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in range(first, first + count):
                target = f"/items/{n % paths}" if paths > 1 else path
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
    tasks, first = [], 0
    for c in range(CONNECTIONS):
        count = share + (1 if c < extra else 0)
        tasks.append(one_connection(first, count))
        first += count
    await asyncio.gather(*tasks)


def callgrind_total(out_file: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s+(\d+)", out_file.read_text(errors="replace"), re.MULTILINE)
    if not match:
        raise RuntimeError(f"no totals in {out_file}")
    return int(match[1])


def run_once(
    name: str,
    cmd: Sequence[str],
    port: int,
    requests: int,
    paths: int,
    tmp: Path,
    env: dict[str, str],
    path: str = "/",
    expect: Sequence[int] = (200, 502, 503, 504),
) -> int:
    """Start ``cmd`` under callgrind, serve ``requests``, stop it; the instructions it executed."""
    out = tmp / f"{name}-{requests}.callgrind"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{name}-{requests}.stderr").open("wb"),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}{path}", timeout=1200.0, expect=expect)
        asyncio.run(drive(port, 200, paths, path))  # warm-up: pools, caches; the same in both runs
        asyncio.run(drive(port, requests, paths, path))
    finally:
        proc.send_signal(signal.SIGTERM if name.startswith("sidecar") else signal.SIGQUIT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return callgrind_total(out)


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
    """Instructions of one request: the difference of a run of ``2 x requests`` and one of ``requests``."""
    small = run_once(name, cmd, port, requests, paths, tmp, env, path, expect)
    large = run_once(name, cmd, port, 2 * requests, paths, tmp, env, path, expect)
    return (large - small) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--paths", type=int, default=1, help="distinct request paths")
    parser.add_argument("--only", choices=["sidecar", "nginx", "nginx-log"], action="append")
    parser.add_argument(
        "--keep", type=Path, help="copy the callgrind out files here (for callgrind_annotate --inclusive=yes)"
    )
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian package valgrind)")
    wanted = args.only or ["sidecar", "nginx", "nginx-log"]
    with tempfile.TemporaryDirectory(prefix="gw-instr-") as tmp_name:
        tmp = Path(tmp_name)
        app_port = free_port()
        (tmp / "app.conf").write_text(APP_CONF.format(tmp=tmp, port=app_port))
        app = subprocess.Popen(
            [NGINX, "-c", str(tmp / "app.conf"), "-p", str(tmp)], stderr=subprocess.DEVNULL
        )
        results: dict[str, float] = {}
        try:
            wait_http(f"http://127.0.0.1:{app_port}/")
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            for name in wanted:
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
                        "SIDECAR_GATEWAY__ACCESS_LOG__PATH": str(tmp / "sidecar-access.log"),
                        # no drain: its timers tick by wall time, which valgrind stretches unevenly
                        "SIDECAR_GATEWAY__DRAIN_PERIOD": "0",
                    }
                    cmd = [PYTHON, "-m", "sidecar", "run"]
                    results[name] = per_request(name, cmd, port, args.requests, args.paths, tmp, env_sidecar)
                else:
                    log = (
                        f"access_log {tmp}/{name}-access.log combined buffer=64k flush=1s;"
                        if name == "nginx-log"
                        else "access_log off;"
                    )
                    conf = tmp / f"{name}.conf"
                    conf.write_text(
                        PROXY_CONF.format(tmp=tmp, name=name, access_log=log, app_port=app_port, port=port)
                    )
                    cmd = [NGINX, "-c", str(conf), "-p", str(tmp)]
                    results[name] = per_request(name, cmd, port, args.requests, args.paths, tmp, env)
        finally:
            app.send_signal(signal.SIGQUIT)
            app.wait(timeout=30)
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                for out in tmp.glob("*.callgrind"):
                    shutil.copy(out, args.keep / out.name)
    print(
        f"instructions per proxied request (callgrind; {args.requests} vs {2 * args.requests} requests, "
        f"{CONNECTIONS} connections, {args.paths} distinct path(s))"
    )
    for name, value in results.items():
        print(f"  {name:<10} {value / 1000:8.1f}k")
    if "sidecar" in results and "nginx-log" in results:
        ratio = results["sidecar"] / results["nginx-log"]
        met = "met" if ratio <= GOAL_VS_NGINX_WITH_LOG else "NOT met"
        print(f"  sidecar / nginx-with-log: {ratio:.2f}x (goal <= {GOAL_VS_NGINX_WITH_LOG}x: {met})")


if __name__ == "__main__":
    main()
