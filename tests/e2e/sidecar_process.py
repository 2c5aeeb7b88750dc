"""The real sidecar process (``python -m sidecar run``) on free ports, for end-to-end tests."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.servers import free_port

START_TIMEOUT = 20.0


class SidecarProcess:
    """Starts the sidecar with a YAML config; output goes to files a failing test can show."""

    def __init__(self, config: str, env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sidecar-e2e-"))
        # its config and logs stay readable after stop() (failure messages quote them): gone at exit
        atexit.register(shutil.rmtree, self.tmp, True)
        self.config_path = self.tmp / "sidecar.yaml"
        self.config_path.write_text(config)
        self.port = free_port()
        self.admin_port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "SIDECAR_LISTEN": f"127.0.0.1:{self.port}",
            "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> Self:
        self.stdout = (self.tmp / "stdout.log").open("wb")
        self.stderr = (self.tmp / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "run", "--config", str(self.config_path)],
            env=self.env,
            stdout=self.stdout,
            stderr=self.stderr,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if self.get("/livez")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"sidecar did not start:\n{self.logs()}")

    def get(
        self, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0
    ) -> tuple[int, bytes]:
        return request(self.base + path, headers=headers, timeout=timeout)

    def wait_for(self, path: str, status: int, timeout: float, poll: float = 0.05) -> float:
        """Seconds until ``path`` answers ``status``; raises on timeout with the sidecar's logs."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.get(path)[0] == status:
                return time.monotonic() - started
            time.sleep(poll)
        raise AssertionError(f"{path} did not answer {status} within {timeout}s\n{self.logs()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        self.stdout.close()
        self.stderr.close()
        return self.proc.returncode

    def logs(self) -> str:
        parts = []
        for name in ("stdout.log", "stderr.log"):
            path = self.tmp / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop()


def request(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text output, or ``None``."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None
