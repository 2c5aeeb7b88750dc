"""Shared helpers for the benchmarks: free ports, starting processes, running wrk and parsing its output."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, expect: Sequence[int] = (200, 503)) -> None:
    """Poll an URL until it answers with one of ``expect`` statuses."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status in expect:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in expect:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def start(
    cmd: Sequence[str], cpu: int | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process, pinned to one CPU when ``taskset`` exists."""
    full = list(cmd)
    if cpu is not None and shutil.which("taskset"):
        full = ["taskset", "-c", str(cpu), *full]
    return subprocess.Popen(
        full, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match[1]) * _UNIT_MS[match[2]]


def wrk(url: str, *, connections: int, seconds: int, threads: int = 1, cpu: int | None = None) -> WrkResult:
    """Run wrk with --latency and parse requests/s, p50, p99 and socket errors/non-2xx."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.MULTILINE)[1])  # type: ignore[index]
    errors = 0
    for pattern in (r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",):
        match = re.search(pattern, out)
        if match:
            errors += sum(int(g) for g in match.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    return WrkResult(rps, p50, p99, errors)
