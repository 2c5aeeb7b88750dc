"""Writes held until the event loop finishes its current batch of I/O callbacks, then sent back to back.

Why: profiling the gateway under load showed a fifth of its CPU time in the kernel waking the peer
(wrk, the app) on every single write: when the peer sleeps in ``epoll_wait`` on the other CPU, each
wake-up is a cross-CPU interrupt, and in a VM an expensive one. Sending every socket's pending bytes
together, once per loop iteration, wakes a sleeping peer once per batch instead of once per message.
The number of write syscalls is unchanged (one per connection per batch, a head and body together)
and nothing waits longer than one loop iteration (``call_soon`` runs before the next poll).

Write first, account after: work that no byte waits for (recording finished requests, remembering
request IDs) is handed to ``later``, which runs right after the batch's writes, still before the next
poll. A response leaves before its access line is encoded, so the accounting is off the latency path
and nothing can observe the difference: no new bytes are read before it has run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, Protocol

JOIN_LIMIT: Final = 16 * 1024  # two pieces up to this size together are copied into one write


class Flushable(Protocol):
    def flush(self) -> None: ...


class WriteBatch:
    """Connections with bytes waiting; ``flush`` is scheduled once per loop iteration.

    ``later``: run after the writes of an iteration in which ``after_writes`` was called.
    """

    __slots__ = ("_dirty", "_later_due", "_loop", "_scheduled", "later")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self._scheduled = False
        self._later_due = False
        self.later: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, conn: Flushable) -> None:
        """Called by a connection the first time it holds bytes in this iteration."""
        self._dirty.append(conn)
        if not self._scheduled:
            self._schedule()

    def after_writes(self) -> None:
        """Have ``later`` run once this iteration's writes have left (scheduling the batch if none)."""
        self._later_due = True
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        """``flush`` at the end of this iteration.

        The loop is looked up once: ``asyncio.get_running_loop`` checks the process ID with a
        ``getpid`` system call every time, one per loop iteration here (two per request at one
        connection). A listener's batch lives and dies with the loop its gateway started on.
        """
        self._scheduled = True
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for conn in dirty:
                if isinstance(conn, BatchedWriter):  # the gateway's connections: a native call
                    conn.flush()
                else:  # anything else that batches its writes (the rate limiter's Redis connection)
                    conn.flush()
        if self._later_due:
            self._later_due = False
            later = self.later
            if later is not None:
                later()


class BatchedWriter:
    """``send``/``flush`` for a connection whose bytes leave with the loop iteration's write batch.

    Shared by the client and upstream connections; they hold ``closed`` and ``transport`` in their
    own slots.
    """

    __slots__ = ("out", "writes")
    out: list[bytes] | None  # bytes waiting for this loop iteration's write batch
    writes: WriteBatch  # the gateway's one batch (``GatewayContext.writes``)
    closed: bool
    transport: Any

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer; they leave with the loop iteration's write batch."""
        out = self.out
        if out is not None:
            out.append(data)
        elif not self.closed:
            self.out = [data]
            self.writes.add(self)

    def flush(self) -> None:
        out = self.out
        self.out = None
        if out and not self.closed:
            if len(out) == 1:
                self.transport.write(out[0])
            elif len(out) == 2 and len(out[0]) + len(out[1]) <= JOIN_LIMIT:
                # a response head and a small body: joined, one write. uvloop writes a single buffer
                # at once; several go through a write request object and writev (about 500
                # instructions more than copying a few kilobytes).
                self.transport.write(out[0] + out[1])
            else:
                self.transport.writelines(out)
