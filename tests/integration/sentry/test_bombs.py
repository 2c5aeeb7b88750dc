"""Decompression bombs against the real sidecar process: refused before they cost memory or time.

Each bomb is 1 MB on the wire and inflates to about a gigabyte. The sidecar runs as its own process
(``python -m sidecar run``) so its peak resident memory (``VmHWM`` in ``/proc/PID/status``) is
measured, not the test's. Before the fix, the first of these took the process from 44 MB to 782 MB and
about 10 s.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import time
import zlib
from collections.abc import Iterator

import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.sentry_upstream import FakeSentry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "publickey123"
WIRE = 1_000_000
MAX_GROWTH_MB = 8


def peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def compressed_zeros(wbits: int, size: int) -> bytes:
    """``size`` bytes of a compressed stream of zeros (about 1000:1, so ~1 GB inflated).

    After a full flush the compressor starts afresh, so the segment for one MiB of zeros can be
    repeated: a valid stream, built in milliseconds instead of compressing a gigabyte.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b"\0" * (1 << 20)
    head = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    return (head + segment * (size // len(segment) + 1))[:size]


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float, bytes]:
    """Status, seconds to the first byte of the answer, and the answer, over a raw socket."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the sidecar may answer and close before reading it all
            sock.sendall(head.encode() + body)
        first = sock.recv(65536)
        elapsed = time.monotonic() - started
        answer = first
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), elapsed, answer


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    with FakeSentry() as upstream:
        config = (
            f"default_checks: false\nsentry:\n  app_dsn: {upstream.dsn(KEY, '42')}\n  spool: {{dir: null}}\n"
        )
        with SidecarProcess(config) as process:
            yield process


GZIP = compressed_zeros(31, WIRE)
LEGACY = base64.b64encode(compressed_zeros(15, WIRE * 3 // 4))


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/42/store/", LEGACY, {}, 401),
        ("/api/42/envelope/", GZIP, {"Content-Encoding": "gzip"}, 401),
        (f"/api/42/store/?sentry_key={KEY}", LEGACY, {}, 413),
        (f"/api/42/envelope/?sentry_key={KEY}", GZIP, {"Content-Encoding": "gzip"}, 413),
        ("/ingest/logs", GZIP, {"Content-Encoding": "gzip"}, 413),
    ],
    ids=["store-no-key", "envelope-no-key", "store-key", "envelope-key", "ingest"],
)
def test_a_one_megabyte_bomb_costs_a_few_megabytes_and_milliseconds(
    sidecar: SidecarProcess, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    before = peak_mb(pid)
    got, elapsed, answer = post(sidecar.admin_port, path, body, headers)
    growth = peak_mb(pid) - before
    assert got == status, answer[:500]
    assert growth < MAX_GROWTH_MB, f"peak RSS grew by {growth:.1f} MB"
    assert elapsed < 2.0, f"answered after {elapsed:.2f}s"  # milliseconds unloaded; slack for busy CI
    assert sidecar.proc.poll() is None
    assert b"Traceback" not in (sidecar.tmp / "stderr.log").read_bytes()
