"""One bounded queue per source and the task that drains it, so no source can stall another.

Readers of durable input (files) wait when their queue is full: the file keeps the lines, nothing is
lost, the reader only falls behind. Readers of input that cannot wait (standard input of a running
app) drop instead and the drop is counted, because blocking them would block the app's writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Batch:
    """Lines read together, what was skipped while reading them, and what to do once they are processed."""

    lines: list[bytes]
    too_long: int = 0
    after: Callable[[], None] | None = None  # e.g. advance the file's checkpoint


Sink = Callable[[str, Batch], None]
DropCounter = Callable[[str, str, int], None]


class SourceChannel:
    """A source's bounded queue of batches, consumed into ``sink`` by its own task."""

    def __init__(self, source: str, maxsize: int, sink: Sink, count_drop: DropCounter) -> None:
        self.source = source
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize)
        self._sink = sink
        self._count_drop = count_drop

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def put(self, batch: Batch) -> None:
        """Enqueue, waiting while the queue is full (for sources that can fall behind without loss)."""
        await self._queue.put(batch)

    def offer(self, batch: Batch) -> bool:
        """Enqueue if there is room, else drop the batch and count its lines as ``queue_full``."""
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self._count_drop(self.source, "queue_full", len(batch.lines))
            return False
        return True

    async def run(self) -> None:
        """Drain forever; yields to the loop after every batch so one busy source cannot hog it."""
        while True:
            batch = await self._queue.get()
            try:
                self._sink(self.source, batch)
                if batch.after is not None:
                    batch.after()
            except Exception:
                log.exception("log batch failed", extra={"source": self.source})
                self._count_drop(self.source, "sink_error", len(batch.lines))
            await asyncio.sleep(0)
