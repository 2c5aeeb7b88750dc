"""One JSON line per request, written off the event loop, sampled for successes, never for errors.

Lines are collected in memory and handed to a worker thread a few times a second, so a slow disk or
a full stdout pipe never stalls a request. The buffer is bounded: past it lines are dropped and
counted (``sidecar_gateway_access_log_dropped_total``). Successful responses (status below 400) are
kept with probability ``sample_success``; client errors (4xx), server errors and proxy failures are
always written: they are rarer and they are what someone will search for. Every record, sampled or
not, also goes to the correlation index under its request ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from typing import IO, Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from sidecar.correlation import CorrelationIndex
from sidecar.gateway.settings import AccessLogSettings

FLUSH_INTERVAL = 0.2
FLUSH_BYTES = 256 * 1024
MAX_BUFFER_BYTES = 16 * 1024 * 1024


class UtcClock:
    """ISO-8601 UTC timestamps with milliseconds, formatting the seconds part once per second."""

    __slots__ = ("_last", "_millisecond", "_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._millisecond = -1
        self._prefix = ""
        self._last = ""

    def iso(self, now: float) -> str:
        millisecond = int(now * 1000)
        if millisecond == self._millisecond:  # busy: many requests end within one millisecond
            return self._last
        second = millisecond // 1000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        self._millisecond = millisecond
        self._last = f"{self._prefix}.{millisecond % 1000:03d}Z"
        return self._last


class LineWriter:
    """Buffers encoded lines and writes them from a worker thread; bounded, drops counted."""

    def __init__(self, path: str, dropped: Counter) -> None:
        self._path = path
        self._dropped = dropped
        self._lines: list[bytes] = []
        self._bytes = 0
        self._file: IO[bytes] | None = None
        self._fd = -1
        self._flushing: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        if self._path in ("-", "stdout", ""):
            self._fd = sys.stdout.fileno()
        else:
            self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115 (closed in close())
            self._fd = self._file.fileno()

    def write(self, line: bytes) -> None:
        if self._bytes > MAX_BUFFER_BYTES:
            self._dropped.inc()
            return
        self._lines.append(line)
        self._bytes += len(line)
        if self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_soon)
        elif self._bytes >= FLUSH_BYTES and self._flushing is None:
            self._flush_soon()

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None or not self._lines:
            return
        data = b"".join(self._lines)
        self._lines, self._bytes = [], 0
        loop = asyncio.get_running_loop()
        self._flushing = loop.run_in_executor(None, self._write_all, data)
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, future: asyncio.Future[None]) -> None:
        self._flushing = None
        if future.exception() is not None:
            self._dropped.inc()
        if self._lines:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_soon)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with contextlib.suppress(OSError):
                await self._flushing
        if self._lines:
            data = b"".join(self._lines)
            self._lines, self._bytes = [], 0
            with contextlib.suppress(OSError):
                self._write_all(data)
        if self._file is not None:
            self._file.close()
            self._file = None


class AccessLog:
    """Builds access records, adds them to the correlation index, writes the ones that are kept."""

    def __init__(
        self, settings: AccessLogSettings, correlation: CorrelationIndex, registry: CollectorRegistry
    ) -> None:
        self.enabled = settings.enabled
        self.sample_success = settings.sample_success
        self._correlation = correlation
        self.dropped = Counter(
            "sidecar_gateway_access_log_dropped",
            "Access log lines dropped because the writer fell behind or failed.",
            registry=registry,
        )
        self._writer = LineWriter(settings.path, self.dropped)
        self.clock = UtcClock()

    def open(self) -> None:
        if self.enabled:
            self._writer.open()

    def emit(self, record: dict[str, Any], status: int, failed: bool, at: float) -> None:
        """Index the record; write it unless it is a success that sampling leaves out."""
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        self._correlation.add_access_line(record["request_id"], line, at)
        if not self.enabled:
            return
        sample = self.sample_success
        if not failed and status < 400 and sample < 1.0 and random.random() >= sample:
            return
        self._writer.write(line)

    async def close(self) -> None:
        await self._writer.close()
