"""How fast /readyz tells the truth when the app behind the gateway dies, and when it comes back.

The real sidecar process (``python -m sidecar run``) in front of a small aiohttp app (another process),
steady traffic through the gateway (~``--rate`` requests a second from this process). The app is
killed with SIGKILL; the script polls ``/readyz`` every 10 ms and prints the time until it answers 503.
Then the app is started again, and the script prints the time until ``/readyz`` is 200 again, counted
from the moment the app accepts connections (its own start-up time is not the sidecar's).

Two configurations by default: passive detection on (the default ``app_check``), and off (only the
active TCP probe every ``interval``), so the gain is visible. No probe runs faster than its interval
in either: passive detection reads the requests the gateway serves anyway.

    .venv/bin/python bench/app_outage.py [--rounds 3] [--rate 200] [--base-ejection 10s]

Wall-clock figures on a shared 2-core machine: the detection time includes the polling step (10 ms)
and the first failed requests' connect attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, ROOT, free_port

POLL = 0.01
HOST = "127.0.0.1"


def start_app(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "hello_aiohttp.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_accepting(port: int, timeout: float = 20.0) -> float:
    """Block until the app accepts connections; the monotonic time it first did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if accepts(port):
            return time.monotonic()
        time.sleep(0.005)
    raise RuntimeError(f"the app on port {port} did not start")


async def status_of(client: aiohttp.ClientSession, url: str) -> int:
    try:
        async with client.get(url) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError:
        return 0


async def wait_status(client: aiohttp.ClientSession, url: str, status: int, timeout: float) -> float:
    """Poll ``url`` every 10 ms until it answers ``status``; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await status_of(client, url) == status:
            return time.monotonic()
        await asyncio.sleep(POLL)
    raise RuntimeError(f"{url} did not answer {status} within {timeout}s")


async def traffic(client: aiohttp.ClientSession, url: str, rate: float, stop: asyncio.Event) -> int:
    """Steady requests through the gateway until ``stop``; how many were sent."""
    sent = 0
    gap = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        await status_of(client, url)
        sent += 1
        next_at += gap
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent


async def one_configuration(name: str, app_check: dict[str, object], rounds: int, rate: float) -> None:
    app_port, health_port, admin_port, gateway_port = free_port(), free_port(), free_port(), free_port()
    config = {
        "listen": f"{HOST}:{health_port}",
        "admin_listen": f"{HOST}:{admin_port}",
        "default_checks": False,
        "log_level": "warning",
        "gateway": {
            "upstream": f"http://{HOST}:{app_port}",
            "listen": f"{HOST}:{gateway_port}",
            "access_log": {"enabled": False},
        },
        "app_check": app_check,
    }
    down: list[float] = []
    back: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sidecar.yaml"
        path.write_text(yaml.safe_dump(config))
        app = start_app(app_port)
        wait_accepting(app_port)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sidecar = subprocess.Popen(
            [PYTHON, "-m", "sidecar", "run", "--config", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        readyz = f"http://{HOST}:{health_port}/readyz"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
                await wait_status(client, readyz, 200, 30)
                stop = asyncio.Event()
                load = asyncio.create_task(
                    traffic(client, f"http://{HOST}:{gateway_port}/readyz", rate, stop)
                )
                for _ in range(rounds):
                    await asyncio.sleep(1.0)  # steady state first
                    killed = time.monotonic()
                    app.send_signal(signal.SIGKILL)
                    app.wait()
                    down.append(await wait_status(client, readyz, 503, 120) - killed)
                    await asyncio.sleep(1.0)
                    app = start_app(app_port)
                    accepting = await asyncio.to_thread(wait_accepting, app_port)
                    back.append(await wait_status(client, readyz, 200, 600) - accepting)
                stop.set()
                sent = await load
        finally:
            for proc in (sidecar, app):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
    print(f"\n{name}  ({sent} requests through the gateway, {rate:g}/s)")
    print(f"  app killed -> /readyz 503:     {_figures(down)}")
    print(f"  app accepting -> /readyz 200:  {_figures(back)}")


def _figures(values: list[float]) -> str:
    shown = ", ".join(f"{v:.3f}" for v in values)
    return f"median {statistics.median(values):.3f} s  (each: {shown})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second through the gateway")
    parser.add_argument("--interval", default="5s", help="the active probe's interval")
    parser.add_argument("--base-ejection", default="10s", help="app_check.outlier.base_ejection_time")
    parser.add_argument("--passive-only", action="store_true", help="skip the active-only comparison")
    args = parser.parse_args()
    print(
        f"app check: TCP connect every {args.interval}, rise 2, fall 2; "
        f"outlier: 3 connect failures / 5 5xx in a row, base ejection {args.base_ejection}"
    )
    common: dict[str, object] = {"interval": args.interval}
    asyncio.run(
        one_configuration(
            "passive detection on (default)",
            {**common, "outlier": {"base_ejection_time": args.base_ejection}},
            args.rounds,
            args.rate,
        )
    )
    if not args.passive_only:
        asyncio.run(
            one_configuration(
                "active probe only (outlier.enabled: false)",
                {**common, "outlier": {"enabled": False}},
                args.rounds,
                args.rate,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
