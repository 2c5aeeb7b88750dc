"""The event IDs the relay has already acknowledged, kept on disk beside the spool: exactly once.

An SDK re-sends an event when it did not get the relay's 200 (the sidecar was killed after the
envelope was on disk, or the answer was lost). The spool deletes an envelope once Sentry took it, so
the spool alone cannot recognise such a re-send: this journal can. Each acknowledged event ID is
appended to ``seen-ids`` in the spool directory and fsynced in the same group commit as the envelope
itself, before the 200; at start-up the journal is read back.

Bounded: the last ``limit`` IDs (the spool's ``max_events``) are remembered, in memory and on disk;
the file is rewritten without the forgotten ones when it holds twice that many. An SDK re-sends within
seconds or minutes, far inside that window.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import deque
from pathlib import Path
from typing import Final

JOURNAL: Final = "seen-ids"
_HEX32 = re.compile(r"[0-9a-f]{32}")


def normalise(event_id: object) -> str | None:
    """An event ID as Sentry compares them (32 lowercase hex digits, UUID dashes removed), or None."""
    if not isinstance(event_id, str):
        return None
    text = event_id.replace("-", "").lower()
    return text if _HEX32.fullmatch(text) else None


class SeenIds:
    """A bounded set of event IDs in arrival order, with its journal file (when there is a directory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        self._lines = 0  # lines in the journal file, forgotten IDs included

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add(self, event_id: str) -> None:
        if event_id in self._set:
            return
        self._order.append(event_id)
        self._set.add(event_id)
        while len(self._order) > self.limit:
            self._set.discard(self._order.popleft())

    # -- the journal: called from the spool's worker thread -------------------------------------------

    def load(self, directory: Path) -> None:
        """Read the journal back (the last ``limit`` valid IDs); a torn last line is ignored."""
        try:
            text = (directory / JOURNAL).read_bytes().decode("ascii", "replace")
        except FileNotFoundError:
            return
        lines = text.splitlines()
        self._lines = len(lines)
        for line in lines[-self.limit :]:
            event_id = normalise(line.strip())
            if event_id is not None:
                self.add(event_id)

    def append(self, directory: Path, event_ids: list[str]) -> None:
        """Append and fsync (the caller fsyncs the directory after); compact when it has grown."""
        if not event_ids:
            return
        if self._lines + len(event_ids) > 2 * self.limit:
            self._compact(directory)
        fd = os.open(directory / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(f"{e}\n" for e in event_ids).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines += len(event_ids)

    def _compact(self, directory: Path) -> None:
        """Rewrite the journal with only the remembered IDs (temp file, fsync, rename)."""
        tmp = directory / f".{JOURNAL}.tmp"
        data = "".join(f"{e}\n" for e in self._order).encode("ascii")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, directory / JOURNAL)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._lines = len(self._order)
