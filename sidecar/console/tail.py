"""The Logs page's live tail: the log pipeline's parsed records, bounded, kept only while someone looks.

The tail is one of the pipeline's ``record_sinks`` only while a browser polls it: the first poll
attaches it, and a tail not polled for ``IDLE_AFTER`` seconds detaches itself on the next record, so an
unwatched console costs the log flow nothing. Messages are redacted and cut, like everything else the
admin listener shows.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from sidecar.core.redaction import redact_text
from sidecar.logs.parse import LogRecord
from sidecar.logs.pipeline import LogPipeline

MAX_LINES = 500
MAX_MESSAGE = 1000
IDLE_AFTER = 30.0
MAX_SOURCES = 50


@dataclass(frozen=True, slots=True)
class TailLine:
    seq: int
    at: float
    source: str
    level: str
    message: str
    request_id: str | None


class LogTail:
    """A ring of the newest lines, each with a sequence number a poll can resume after."""

    def __init__(self, pipeline: LogPipeline) -> None:
        self.pipeline = pipeline
        self.lines: deque[TailLine] = deque(maxlen=MAX_LINES)
        self.sources: set[str] = set()
        self.seq = 0
        self._polled = 0.0
        self._attached = False

    def poll(self, after: int) -> list[TailLine]:
        """Lines newer than ``after``; attaches the sink so lines keep coming while this is polled."""
        self._polled = time.monotonic()
        if not self._attached:
            self.pipeline.record_sinks = [*self.pipeline.record_sinks, self._sink]
            self._attached = True
        return [line for line in self.lines if line.seq > after]

    def _sink(self, record: LogRecord) -> None:
        if time.monotonic() - self._polled > IDLE_AFTER:
            self.detach()
            self.lines.clear()
            return
        source = record.source
        if len(self.sources) < MAX_SOURCES:
            self.sources.add(source)
        self.seq += 1
        self.lines.append(
            TailLine(
                self.seq,
                record.time or time.time(),
                source,
                record.level,
                redact_text(record.message[:MAX_MESSAGE]),
                record.request_id,
            )
        )

    def detach(self) -> None:
        """Leave the pipeline; a new list, so a batch being fed goes on over the one it holds."""
        if self._attached:
            self.pipeline.record_sinks = [s for s in self.pipeline.record_sinks if s != self._sink]
            self._attached = False
