"""The Logs page's live tail: the log pipeline's parsed records, bounded, kept only while someone looks.

The tail taps the pipeline only while a browser polls it: the first poll attaches the tap, and a tap
not polled for ``IDLE_AFTER`` seconds detaches itself on the next batch, so an unwatched console costs
the log flow nothing. Messages are redacted and cut, like everything else the admin listener shows.
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
        """Lines newer than ``after``; attaches the tap so lines keep coming while this is polled."""
        self._polled = time.monotonic()
        if not self._attached:
            self.pipeline.taps.append(self._tap)
            self._attached = True
        return [line for line in self.lines if line.seq > after]

    def _tap(self, source: str, records: list[LogRecord]) -> None:
        if time.monotonic() - self._polled > IDLE_AFTER:
            self.pipeline.taps.remove(self._tap)
            self._attached = False
            self.lines.clear()
            return
        if len(self.sources) < MAX_SOURCES:
            self.sources.add(source)
        for record in records[-MAX_LINES:]:
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
        if self._attached:
            self.pipeline.taps.remove(self._tap)
            self._attached = False
