"""Log lines piped into the sidecar's standard input (``app | sidecar run``).

Reading is event-driven for pipes, sockets and terminals (``connect_read_pipe``: no thread, never
blocks the loop). A full queue drops lines and counts them instead of pausing the pipe, because a
paused pipe fills and then blocks the app's own writes to its stdout: the sidecar must never slow the
app down. Standard input redirected from a regular file is read in chunks in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys

from sidecar.logs.sources.channel import Batch, SourceChannel
from sidecar.logs.sources.lines import LineSplitter

log = logging.getLogger(__name__)

SOURCE = "stdin"
CHUNK_BYTES = 256 * 1024


class _PipeReader(asyncio.Protocol):
    """Splits what arrives into lines and offers each chunk's lines to the channel."""

    def __init__(self, source: StdinSource) -> None:
        self._source = source

    def data_received(self, data: bytes) -> None:
        self._source.received(data)

    def eof_received(self) -> bool:
        self._source.ended()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._source.ended()


class StdinSource:
    """One reader of a file descriptor (standard input by default)."""

    def __init__(self, channel: SourceChannel, max_line_bytes: int, fd: int | None = None) -> None:
        self.channel = channel
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.splitter = LineSplitter(max_line_bytes)
        self.bytes_read = 0
        self.done = asyncio.Event()
        self._transport: asyncio.BaseTransport | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        mode = os.fstat(self.fd).st_mode
        if stat.S_ISREG(mode):
            self._task = asyncio.create_task(self._read_file(), name="stdin")
            return
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(os.dup(self.fd), "rb", buffering=0)
        self._transport, _ = await loop.connect_read_pipe(lambda: _PipeReader(self), pipe)

    def received(self, data: bytes) -> None:
        self.bytes_read += len(data)
        lines = self.splitter.feed(data)
        too_long, self.splitter.too_long = self.splitter.too_long, 0
        if lines or too_long:
            self.channel.offer(Batch(lines, too_long))

    def ended(self) -> None:
        if self.done.is_set():
            return
        last = self.splitter.flush()
        if last:
            self.channel.offer(Batch(last))
        self.done.set()
        log.info("standard input ended", extra={"bytes": self.bytes_read})

    async def _read_file(self) -> None:
        offset = 0
        while True:
            data = await asyncio.to_thread(os.pread, self.fd, CHUNK_BYTES, offset)
            if not data:
                break
            offset += len(data)
            self.bytes_read += len(data)
            lines = self.splitter.feed(data)
            too_long, self.splitter.too_long = self.splitter.too_long, 0
            await self.channel.put(Batch(lines, too_long))  # a file can wait: nothing is lost
        self.ended()

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
