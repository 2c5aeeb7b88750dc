"""The spool: every accepted envelope is on disk before it is acknowledged, and stays until Sentry took it.

Write-ahead, not write-on-failure: an event only in memory is lost to ``kill -9``, so each envelope is
written (temp file, fsync, rename, then one directory fsync per batch) before the relay answers the SDK.
A background writer batches the writes (group commit), so a burst costs one directory fsync, and the
synchronous capture API only appends to a bounded in-memory queue in front of it. A file is removed
only after Sentry answered 2xx; a crash in between means one re-send, which Sentry ignores because the
event ID is the same. The event IDs of acknowledged envelopes are journalled in the same commit
(``seen``), so an SDK that re-sends an event whose 200 it never got is recognised, even after
``kill -9``, and the event is not spooled (nor forwarded) twice.

File names are ``<sequence>.<categories>.env``: the order survives a restart and the rate-limit
categories are known without reading the file. Bounded by events and bytes; past either bound the
oldest envelope is dropped and counted. One process per directory (``flock``); if the directory cannot be
used the spool keeps envelopes in memory (same bounds) and says so in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sidecar.sentry.metrics import SentryStats
from sidecar.sentry.ratelimits import RateLimiter
from sidecar.sentry.seen import SeenIds

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<seq>\d{16})\.(?P<cats>[a-z_+]+)\.env$")
WRITE_BATCH = 256


class SpoolFull(Exception):
    """The write queue stayed full for longer than the caller could wait."""


@dataclass(slots=True, eq=False)
class SpoolEntry:
    seq: int
    categories: frozenset[str]
    size: int
    path: Path | None = None  # on disk
    data: bytes | None = None  # in memory (no directory, or the write failed)
    in_flight: bool = False
    held: bool = False  # already counted as rate_limited

    @property
    def name(self) -> str:
        return f"{self.seq:016d}.{'+'.join(sorted(self.categories)) or 'default'}.env"


@dataclass(slots=True, eq=False)
class _Pending:
    data: bytes
    categories: frozenset[str]
    done: asyncio.Future[None] | None = None
    event_id: str | None = None  # normalised; remembered in ``seen`` once durable


@dataclass(slots=True)
class _WriteResult:
    written: list[Path | None] = field(default_factory=list)
    error: str | None = None


class Spool:
    """Durable FIFO of envelopes, grouped by category set so a rate-limited category never blocks others."""

    def __init__(
        self,
        directory: Path | None,
        *,
        max_bytes: int,
        max_events: int,
        queue_events: int,
        stats: SentryStats,
        limiter: RateLimiter,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.queue_events = queue_events
        self.stats = stats
        self.limiter = limiter
        self.changed = asyncio.Event()  # new entries, or in-flight ones released
        self.bytes = 0
        self._entries: OrderedDict[int, SpoolEntry] = OrderedDict()
        self._groups: dict[frozenset[str], OrderedDict[int, SpoolEntry]] = {}
        self._pending: deque[_Pending] = deque()
        self._wake_writer = asyncio.Event()
        self._idle = asyncio.Event()  # the writer has nothing queued or in hand
        self._space = asyncio.Event()
        self._space.set()
        self._seq = 0
        self.seen = SeenIds(max_events)  # acknowledged event IDs, journalled beside the envelopes
        self._pending_ids: set[str] = set()  # being written now: a concurrent re-send is a duplicate too
        self._lock_file: IO[bytes] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def durable(self) -> bool:
        return self.directory is not None

    def size(self) -> tuple[int, int]:
        return len(self._entries), self.bytes

    # --- life cycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock and scan the directory (or fall back to memory), then start the writer."""
        if self.directory is not None:
            try:
                found = await asyncio.to_thread(self._open_directory, self.directory)
            except OSError as exc:
                log.error(
                    "sentry spool directory unusable, keeping events in memory only (lost on restart)",
                    extra={"directory": str(self.directory), "error": exc.strerror or str(exc)},
                )
                self.directory = None
            else:
                for entry in found:
                    self._insert(entry)
                self._seq = max((e.seq for e in found), default=0)
                if found:
                    log.info(
                        "sentry spool resumed",
                        extra={"events": len(found), "bytes": self.bytes, "directory": str(self.directory)},
                    )
                await self._enforce_bounds()
        self._writer = asyncio.create_task(self._write_loop(), name="sentry-spool-writer")
        self.changed.set()

    def _open_directory(self, directory: Path) -> list[SpoolEntry]:
        directory.mkdir(parents=True, exist_ok=True)
        lock = (directory / ".lock").open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise OSError(f"{directory} is in use by another sidecar process") from None
        self._lock_file = lock
        self.seen.load(directory)
        found: list[SpoolEntry] = []
        for path in directory.iterdir():
            if path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write that a crash interrupted; never acknowledged
                continue
            match = _NAME.match(path.name)
            if match is None:
                continue
            categories = frozenset(c for c in match["cats"].split("+") if c != "default")
            found.append(SpoolEntry(int(match["seq"]), categories, path.stat().st_size, path=path))
        found.sort(key=lambda e: e.seq)
        return found

    async def close(self, within: float = 5.0) -> None:
        """Write what is queued, stop the writer, release the directory; count what memory loses."""
        self._closed = True
        self._wake_writer.set()
        if self._writer is not None:
            try:
                async with asyncio.timeout(within):
                    await self._writer
            except TimeoutError:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        lost = len(self._pending) + sum(1 for e in self._entries.values() if e.path is None)
        if lost:
            self.stats.drop("shutdown", lost)
            log.warning("sentry events held in memory were lost at shutdown", extra={"events": lost})
        for pending in self._pending:
            if pending.done is not None and not pending.done.done():
                pending.done.set_exception(SpoolFull("shutting down"))
        self._pending.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # --- adding -----------------------------------------------------------------------------------

    def put_nowait(self, data: bytes, categories: frozenset[str]) -> None:
        """Queue for the writer without waiting (the sync capture API); full queue drops the oldest."""
        if self._closed:
            self.stats.drop("shutdown")
            return
        if len(self._pending) >= self.queue_events:
            victim = next((p for p in self._pending if p.done is None), None)
            if victim is None:
                self.stats.drop("queue_full")
                return
            self._pending.remove(victim)
            self.stats.drop("queue_full")
        self._pending.append(_Pending(data, categories))
        self._idle.clear()
        self._wake_writer.set()

    def claim(self, event_id: str) -> bool:
        """False when this event was acknowledged before or is being relayed now (a re-send); else
        hold it until ``unclaim``, so a concurrent re-send is recognised too."""
        if event_id in self.seen or event_id in self._pending_ids:
            return False
        self._pending_ids.add(event_id)
        return True

    def unclaim(self, event_id: str) -> None:
        """The relay of a claimed event ended: it is in ``seen`` now if it was acknowledged."""
        self._pending_ids.discard(event_id)

    async def put(
        self, data: bytes, categories: frozenset[str], within: float = 5.0, event_id: str | None = None
    ) -> None:
        """Queue and wait until the envelope (and its event ID) is durable (the relay acknowledges then)."""
        if self._closed:
            raise SpoolFull("shutting down")
        async with asyncio.timeout(within):
            while len(self._pending) >= self.queue_events:
                self._space.clear()
                await self._space.wait()
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending.append(_Pending(data, categories, done, event_id))
            self._idle.clear()
            self._wake_writer.set()
            await asyncio.shield(done)

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._closed:
                    return
                self._wake_writer.clear()
                await self._wake_writer.wait()
                continue
            batch = [self._pending.popleft() for _ in range(min(WRITE_BATCH, len(self._pending)))]
            self._space.set()
            try:
                await self._write(batch)
            except Exception as exc:  # never die: the relay would wait for an answer that never comes
                log.exception("sentry spool writer: unexpected error; batch dropped")
                self.stats.drop("spool_error", sum(1 for p in batch if p.done is None or not p.done.done()))
                for pending in batch:
                    if pending.done is not None and not pending.done.done():
                        pending.done.set_exception(SpoolFull(str(exc)))

    async def _write(self, batch: list[_Pending]) -> None:
        entries = []
        for pending in batch:
            self._seq += 1
            entries.append(SpoolEntry(self._seq, pending.categories, len(pending.data)))
        result = _WriteResult(written=[None] * len(batch))
        ids = [p.event_id for p in batch if p.event_id is not None]
        if self.directory is not None:
            result = await asyncio.to_thread(
                _write_batch,
                self.directory,
                [(e.name, p.data) for e, p in zip(entries, batch, strict=True)],
                self.seen,
                ids,
            )
            if result.error:
                log.error(
                    "sentry spool write failed; keeping events in memory", extra={"error": result.error}
                )
        for entry, pending, path in zip(entries, batch, result.written, strict=True):
            if path is None:
                entry.data = pending.data
                if self.directory is not None:
                    self.stats.drops["spool_error"] += 1  # kept in memory: counted, not an event drop
            entry.path = path
            if pending.event_id is not None:
                self.seen.add(pending.event_id)
            self._insert(entry)
            self.stats.count("spooled")
            if self.limiter.any_limited(entry.categories):
                entry.held = True
                self.stats.count("rate_limited")
            if pending.done is not None and not pending.done.done():
                pending.done.set_result(None)
        await self._enforce_bounds()
        self.changed.set()

    def _insert(self, entry: SpoolEntry) -> None:
        self._entries[entry.seq] = entry
        self._groups.setdefault(entry.categories, OrderedDict())[entry.seq] = entry
        self.bytes += entry.size

    def _forget(self, entry: SpoolEntry) -> None:
        if self._entries.pop(entry.seq, None) is None:
            return
        group = self._groups.get(entry.categories)
        if group is not None:
            group.pop(entry.seq, None)
            if not group:
                del self._groups[entry.categories]
        self.bytes -= entry.size

    async def _enforce_bounds(self) -> None:
        victims: list[SpoolEntry] = []
        for entry in list(self._entries.values()):
            if len(self._entries) <= self.max_events and self.bytes <= self.max_bytes:
                break
            if entry.in_flight:
                continue
            self._forget(entry)
            victims.append(entry)
        if victims:
            self.stats.drop("spool_full", len(victims))
            log.warning("sentry spool full, oldest events dropped", extra={"events": len(victims)})
            paths = [v.path for v in victims if v.path is not None]
            if paths:
                await asyncio.to_thread(_unlink_all, paths)

    async def flush(self) -> None:
        """Wait until everything queued so far is in the spool (on disk when there is a directory)."""
        if self._writer is not None and not self._writer.done():
            await self._idle.wait()

    # --- sending ----------------------------------------------------------------------------------

    def take_ready(self, limit: int) -> list[SpoolEntry]:
        """Up to ``limit`` oldest entries whose categories are not rate limited, marked in flight."""
        candidates: list[SpoolEntry] = []
        for categories, group in self._groups.items():
            if self.limiter.any_limited(categories):
                continue
            taken = 0
            for entry in group.values():
                if taken >= limit:
                    break
                if not entry.in_flight:
                    candidates.append(entry)
                    taken += 1
        candidates.sort(key=lambda e: e.seq)
        chosen = candidates[:limit]
        for entry in chosen:
            entry.in_flight = True
        return chosen

    async def read(self, entry: SpoolEntry) -> bytes | None:
        """The envelope bytes, or ``None`` when the file vanished or cannot be read (counted, forgotten)."""
        if entry.data is not None:
            return entry.data
        assert entry.path is not None
        try:
            return await asyncio.to_thread(entry.path.read_bytes)
        except OSError as exc:
            log.error(
                "sentry spool file unreadable, dropped", extra={"file": entry.path.name, "error": str(exc)}
            )
            self._forget(entry)
            self.stats.drop("spool_corrupt")
            return None

    async def remove(self, entry: SpoolEntry) -> None:
        """Sentry has it (or refused it for good): forget the entry and delete its file."""
        self._forget(entry)
        entry.in_flight = False
        if entry.path is not None:
            await asyncio.to_thread(entry.path.unlink, missing_ok=True)

    def release(self, entry: SpoolEntry) -> None:
        """Not sent this time; it stays in place for the next attempt."""
        entry.in_flight = False

    def release_all(self) -> None:
        """After an unexpected sender error: nothing is in flight any more."""
        for entry in self._entries.values():
            entry.in_flight = False

    def hold_limited(self) -> None:
        """After a new rate limit: count each waiting entry it holds back, once."""
        for categories, group in self._groups.items():
            if not self.limiter.any_limited(categories):
                continue
            for entry in group.values():
                if not entry.held:
                    entry.held = True
                    self.stats.count("rate_limited")


def _write_batch(
    directory: Path, items: list[tuple[str, bytes]], seen: SeenIds, ids: list[str]
) -> _WriteResult:
    """Temp file, fsync, rename for each, the event IDs onto the journal; then fsync the directory so
    the renames survive a crash."""
    result = _WriteResult()
    for name, data in items:
        tmp = directory / f".{name}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            final = directory / name
            os.replace(tmp, final)
            result.written.append(final)
        except OSError as exc:
            result.error = exc.strerror or str(exc)
            result.written.append(None)
            with contextlib.suppress(OSError):
                tmp.unlink()
    try:
        seen.append(directory, ids)
    except OSError as exc:
        result.error = exc.strerror or str(exc)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        result.error = exc.strerror or str(exc)
    return result


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
