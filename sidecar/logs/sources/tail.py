"""Follow files matched by globs, across rename and copy-truncate rotation, from checkpointed offsets.

Reading never blocks the event loop: every ``open``, ``stat``, ``glob`` and every read that may wait for
the disk runs in a worker thread (``asyncio.to_thread``), in large chunks so the thread hop is paid
rarely. A chunk in the middle of a file that the page cache already holds is copied on the loop instead
(``preadv`` with ``RWF_NOWAIT``, which refuses rather than waits; ``Follower._read_cached`` says why).
Each file has its own task, so a file on a stuck disk stalls only itself; each ``files:`` entry has its
own bounded queue, and a reader whose queue is full waits (the file keeps the lines; nothing is lost).

Rotation:

* **rename** (``RotatingFileHandler``, logrotate's default): the open file keeps its inode, so its
  follower reads on to the end; the new file at the path has a new inode and gets its own follower
  from its beginning. A file no longer matched by its glob is closed after ``rotate_wait`` at its end.
* **copy-truncate** (logrotate ``copytruncate``): same inode, but the size drops below our offset or
  the first bytes change (truncated and rewritten past our offset before we looked). This is checked
  before reading on from the end of the file, so new content is never read from the middle. The
  lines written since our last read went into the copy: the copy beside the file (``app.log.1``,
  found by name and first bytes) is read from our offset to its end, then the file again from 0.
  What remains lost: lines written between logrotate's copy and its truncate (inherent to
  copy-truncate), and, when the copy cannot be found by the next poll (compressed at once without
  ``delaycompress``, moved to an ``olddir``), the lines of up to one ``poll_interval`` before it.

Start position: a file with a matching checkpoint resumes there. Otherwise, for files found when a
glob is started for the first time ever, ``start`` decides (``end`` skips history); files appearing
later, or found at a restart (they were created while the sidecar was down), are read from the
beginning, so a restart neither loses nor repeats lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidecar.logs.metrics import LogMetrics
from sidecar.logs.settings import FileSourceSettings, LogSettings
from sidecar.logs.sources.channel import Batch, SourceChannel
from sidecar.logs.sources.checkpoint import (
    FINGERPRINT_BYTES,
    CheckpointStore,
    FileKey,
    FileOffset,
    fingerprint,
    read_head,
)
from sidecar.logs.sources.lines import LineSplitter

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024  # large reads make the thread hop rare; one batch is still a few ms of parsing
# Linux's "copy from the page cache or refuse" read flag; 0 where the platform has none (thread reads only).
NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
SKIPPED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")
_MAX_BACKOFF = 5.0


@dataclass(slots=True)
class Found:
    """A file seen by one scan: where, which inode, and (for files not yet followed) an open descriptor."""

    path: str
    key: FileKey
    entry: int
    fd: int | None = None
    size: int = 0
    head: bytes = b""


def _open(path: str) -> tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IsADirectoryError(path)
    return fd, st


class Follower:
    """Reads one file (one inode) from an offset to its end, again and again, until it is let go."""

    def __init__(
        self,
        tailer: FileTailer,
        entry: int,
        path: str,
        key: FileKey,
        fd: int,
        offset: int,
        head: bytes,
    ) -> None:
        self.tailer = tailer
        self.entry = entry
        self.source = tailer.entries[entry].source
        self.path = path
        self.key = key
        self.fd = fd
        self.pos = offset
        self.fp_len = min(len(head), FINGERPRINT_BYTES)
        self.fp = fingerprint(head[: self.fp_len])
        self.splitter = LineSplitter(tailer.settings.max_line_bytes)
        self.last_seen = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.at_end = False  # the last read reached the end of the file: check for truncation first
        self.copy_fd: int | None = None  # the rotated copy, while its rest is read
        self.copy_pos = 0
        self.nowait = bool(NOWAIT)  # cleared when this file's filesystem refuses RWF_NOWAIT

    def offset_entry(self) -> FileOffset:
        return FileOffset(
            self.key[0],
            self.key[1],
            self.pos - self.splitter.pending,
            self.fp,
            self.fp_len,
            self.path,
            self.tailer.entries[self.entry].path,
        )

    # -- worker-thread side ----------------------------------------------------------------------

    def _read(self) -> bytes | None:
        """The next chunk; at the end of the file ``b""``, or ``None`` when it was truncated under us.

        After the end of the file was reached, the file is checked for copy-truncate *before* reading
        on: a file truncated and rewritten past our offset must be read again from its start, not from
        the middle of its new content. When it was truncated, the rotated copy (``app.log.1``) is read
        from our offset to its end first, so the lines written since our last read are not lost.
        """
        if self.copy_fd is not None:
            return self._read_copy()
        if self.at_end and self._truncated():
            self.copy_fd = self._find_copy()
            if self.copy_fd is not None:
                self.copy_pos = self.pos
                return self._read_copy()
            return None
        data = os.pread(self.fd, CHUNK_BYTES, self.pos)
        self.at_end = len(data) < CHUNK_BYTES
        if not data:
            return data
        self.pos += len(data)
        if self.fp_len < FINGERPRINT_BYTES and self.pos > self.fp_len:
            head = read_head(self.fd)
            self.fp_len = len(head)
            self.fp = fingerprint(head)
        return data

    def _read_copy(self) -> bytes | None:
        """The rest of the rotated copy, chunk by chunk; ``None`` (start over) once it is read."""
        assert self.copy_fd is not None
        data = os.pread(self.copy_fd, CHUNK_BYTES, self.copy_pos)
        if data:
            self.copy_pos += len(data)
            return data
        os.close(self.copy_fd)
        self.copy_fd = None
        return None

    def _find_copy(self) -> int | None:
        """The copy logrotate made before truncating: a file beside ours that starts as ours did.

        Same directory, name starting with ours (``app.log.1``, ``app.log-20250101``), not compressed,
        not matched by our own glob (its own follower reads it then), at least as long as our offset,
        and the same first bytes as the ones we read. The newest such file, opened; else ``None``.
        """
        if not self.fp_len or not self.pos:
            return None
        directory, name = os.path.split(self.path)
        pattern = self.tailer.entries[self.entry].path
        best: tuple[float, str] | None = None
        try:
            with os.scandir(directory or ".") as listing:
                for item in listing:
                    if (
                        not item.name.startswith(name)
                        or item.name == name
                        or item.name.endswith(SKIPPED_SUFFIXES)
                    ):
                        continue
                    if fnmatch.fnmatchcase(item.path, pattern):
                        continue
                    st = item.stat(follow_symlinks=False)
                    if (
                        not stat.S_ISREG(st.st_mode)
                        or st.st_size < self.pos
                        or (st.st_dev, st.st_ino) == self.key
                    ):
                        continue
                    if best is None or st.st_mtime > best[0]:
                        best = (st.st_mtime, item.path)
        except OSError:
            return None
        if best is None:
            return None
        try:
            fd, _st = _open(best[1])
        except OSError:
            return None
        if fingerprint(os.pread(fd, self.fp_len, 0)) != self.fp:
            os.close(fd)
            return None
        return fd

    def _truncated(self) -> bool:
        """Copy-truncate: the file shrank below our offset, or its first bytes are not what we read."""
        size = os.fstat(self.fd).st_size
        if size < self.pos:
            return True
        if self.fp_len:
            head = os.pread(self.fd, self.fp_len, 0)
            return len(head) < self.fp_len or fingerprint(head) != self.fp
        return False

    # -- event-loop side -------------------------------------------------------------------------

    def _read_cached(self) -> bytes | None:
        """The next chunk copied on the loop when the page cache holds it; ``None``: read on the thread.

        Why: a thread hop needs the GIL to start the read and again to hand it back, and while a batch
        is parsed the loop holds the GIL, so the worker waited up to the interpreter's switch interval
        (5 ms) each time. The reader never got ahead of the parser: catching up on a file spent about
        an eighth of its wall-clock time between batches, waiting for reads. ``RWF_NOWAIT`` copies what
        the page cache holds and raises ``BlockingIOError`` rather than wait for the disk, so the loop
        is held for a memory copy (about 0.1 ms a chunk), never for I/O.

        Only in the middle of a file: at its end the copy-truncate checks come first, and they (like
        the fingerprint of a file still shorter than it, a rotated copy, and a filesystem that refuses
        the flag) stay on the thread. A short read sets ``at_end`` as the thread's read does, so the
        next read checks for truncation first; at worst that check runs once more than needed.
        """
        if not self.nowait or self.at_end or self.copy_fd is not None or self.fp_len < FINGERPRINT_BYTES:
            return None
        buffer = self.tailer.read_buffer()
        try:
            size = os.preadv(self.fd, [buffer], self.pos, NOWAIT)
        except BlockingIOError:  # not in the page cache: the thread waits for the disk
            return None
        except OSError:  # EOPNOTSUPP and the like: this file is read on the thread from now on
            self.nowait = False
            return None
        if not size:  # the end of the file: the thread's read decides what that means
            return None
        self.at_end = size < CHUNK_BYTES
        self.pos += size
        return bytes(memoryview(buffer)[:size])

    async def run(self) -> None:
        tailer = self.tailer
        channel = tailer.channels[self.entry]
        metrics = tailer.metrics
        poll = tailer.settings.poll_interval
        errors = 0
        try:
            while True:
                cached = self._read_cached()
                if cached is not None:
                    await self._hand_over(channel, cached)
                    await asyncio.sleep(0)  # one chunk per turn: the channel parses it before the next read
                    continue
                try:
                    data = await asyncio.to_thread(self._read)
                except OSError as exc:
                    errors += 1
                    metrics.file_error(self.source, "read")
                    log.warning("cannot read log file", extra={"path": self.path, "error": str(exc)})
                    if self._abandoned():
                        break
                    await asyncio.sleep(min(poll * 2**errors, _MAX_BACKOFF))
                    continue
                errors = 0
                if data:
                    await self._hand_over(channel, data)
                    continue
                if data is None:
                    metrics.rotation(self.source, "truncate")
                    log.info("log file truncated, reading it again from the start", extra={"path": self.path})
                    self.pos = 0
                    self.at_end = False
                    self.fp_len = 0
                    self.fp = fingerprint(b"")
                    self.splitter.reset()
                    await channel.put(Batch([], 0, self._commit(self.offset_entry())))
                    continue
                if self._abandoned():
                    break
                await asyncio.sleep(poll)
            # Rotated away (or deleted) and read to its end: the last line may lack its newline.
            await channel.put(Batch(self.splitter.flush(), 0, self._forget()))
        finally:
            tailer.release(self)

    async def _hand_over(self, channel: SourceChannel, data: bytes) -> None:
        """A chunk read: count it, split it into lines and queue them with the offset they reach."""
        self.tailer.metrics.read_bytes.labels(self.source).inc(len(data))
        lines = self.splitter.feed(data)
        too_long, self.splitter.too_long = self.splitter.too_long, 0
        await channel.put(Batch(lines, too_long, self._commit(self.offset_entry())))

    def _abandoned(self) -> bool:
        """Not matched by its glob for longer than ``rotate_wait``: it was rotated away or deleted."""
        return time.monotonic() - self.last_seen > self.tailer.settings.rotate_wait

    def _commit(self, entry: FileOffset) -> Callable[[], None]:
        checkpoints = self.tailer.checkpoints

        def commit() -> None:
            checkpoints.set(entry)

        return commit

    def _forget(self) -> Callable[[], None]:
        checkpoints, key = self.tailer.checkpoints, self.key

        def forget() -> None:
            checkpoints.forget(key)

        return forget

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.copy_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.copy_fd)
            self.copy_fd = None


class FileTailer:
    """Discovers files for every ``files:`` entry and runs one ``Follower`` per file."""

    def __init__(
        self,
        settings: LogSettings,
        channels: list[SourceChannel],
        metrics: LogMetrics,
        checkpoints: CheckpointStore,
    ) -> None:
        self.settings = settings
        self.entries: list[FileSourceSettings] = list(settings.files)
        self.channels = channels
        self.metrics = metrics
        self.checkpoints = checkpoints
        self.followers: dict[FileKey, Follower] = {}
        self._warned_full = False
        self._buffer: bytearray | None = None

    def read_buffer(self) -> bytearray:
        """The chunk buffer of reads on the loop, shared by every follower (each copies out of it at once).

        Made at the first such read, so a sidecar that tails no file never holds its 512 KiB.
        """
        if self._buffer is None:
            self._buffer = bytearray(CHUNK_BYTES)
        return self._buffer

    @property
    def followed(self) -> int:
        return len(self.followers)

    async def run(self) -> None:
        """Scan the globs every ``poll_interval``; start followers for new files."""
        if not self.checkpoints.loaded:
            await asyncio.to_thread(self.checkpoints.load)
        first = True
        while True:
            try:
                await self._scan(first)
            except Exception:  # a scan must never end the source; the next one retries
                log.exception("scanning log files failed")
            first = False
            await asyncio.sleep(self.settings.poll_interval)

    async def _scan(self, first: bool) -> None:
        known = {key: f.path for key, f in self.followers.items()}
        found = await asyncio.to_thread(self._find, known)
        now = time.monotonic()
        restart = {i: self.checkpoints.started_before(e.path) for i, e in enumerate(self.entries)}
        by_path = {f.path: key for key, f in self.followers.items()}
        for item in found:
            follower = self.followers.get(item.key)
            if follower is not None:
                follower.last_seen = now
                follower.path = item.path
                if item.fd is not None:
                    os.close(item.fd)
                continue
            if item.fd is None:
                continue
            if by_path.get(item.path, item.key) != item.key:  # a new file took a followed file's path
                self.metrics.rotation(self.entries[item.entry].source, "rename")
            start = self._start_offset(item, first and not restart[item.entry])
            self._follow(item, start)
        if first:
            await self._resume_rotated(found)
            for entry in self.entries:
                self.checkpoints.mark_started(entry.path)

    def _start_offset(self, item: Found, first_run: bool) -> int:
        saved = self.checkpoints.get(item.key)
        if saved is not None and saved.same_file(item.head) and saved.offset <= item.size:
            return saved.offset
        if first_run and self.entries[item.entry].start == "end":
            return item.size
        return 0

    def _follow(self, item: Found, start: int) -> None:
        assert item.fd is not None
        if len(self.followers) >= self.settings.max_files:
            os.close(item.fd)
            self.metrics.file_error(self.entries[item.entry].source, "too_many_files")
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "logs.max_files reached; further files are not followed",
                    extra={"max_files": self.settings.max_files, "path": item.path},
                )
            return
        follower = Follower(self, item.entry, item.path, item.key, item.fd, start, item.head)
        self.followers[item.key] = follower
        self.checkpoints.set(follower.offset_entry())
        self.metrics.files.labels(follower.source).inc()
        follower.task = asyncio.create_task(follower.run(), name=f"tail {item.path}")
        log.info("following log file", extra={"path": item.path, "offset": start})

    def release(self, follower: Follower) -> None:
        """A follower ended (rotated away, deleted, or stopping): close its file."""
        if self.followers.get(follower.key) is follower:
            del self.followers[follower.key]
            self.metrics.files.labels(follower.source).dec()
        follower.close()

    def _find(self, known: dict[FileKey, str]) -> list[Found]:
        """Worker thread: every regular file the globs match; open (and fingerprint) only new ones."""
        found: list[Found] = []
        claimed: set[FileKey] = set()
        for index, entry in enumerate(self.entries):
            for path in sorted(glob.glob(entry.path)):
                if path.endswith(SKIPPED_SUFFIXES):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if not stat.S_ISREG(st.st_mode) or key in claimed:
                    continue  # a file matched by two globs belongs to the first
                claimed.add(key)
                if key in known:
                    found.append(Found(path, key, index))
                    continue
                try:
                    fd, st = _open(path)
                except OSError as exc:
                    self.metrics.file_error(entry.source, "open")
                    log.warning("cannot open log file", extra={"path": path, "error": str(exc)})
                    continue
                key = (st.st_dev, st.st_ino)
                found.append(Found(path, key, index, fd, st.st_size, read_head(fd)))
        return found

    async def _resume_rotated(self, found: list[Found]) -> None:
        """At start-up: checkpointed files no glob matches any more were rotated while we were down.

        Look for each in its old directory by inode; if it is still there (``app.log.1``) and has
        lines we had not read, read them; otherwise forget its checkpoint.
        """
        seen = {item.key for item in found}
        globs = {entry.path: i for i, entry in enumerate(self.entries)}
        for saved in self.checkpoints.entries():
            if saved.key in seen or saved.key in self.followers:
                continue
            entry = globs.get(saved.glob)
            if entry is None:
                self.checkpoints.forget(saved.key)
                continue
            item = await asyncio.to_thread(_find_by_inode, saved, entry)
            if item is None or not saved.same_file(item.head) or saved.offset >= item.size:
                if item is not None and item.fd is not None:
                    os.close(item.fd)
                self.checkpoints.forget(saved.key)
                continue
            log.info("reading the rest of a file rotated while stopped", extra={"path": item.path})
            self._follow(item, saved.offset)
            rotated = self.followers.get(item.key)
            if rotated is not None:
                rotated.last_seen = 0.0  # not matched by the glob: close once read to the end

    async def stop(self) -> None:
        tasks = [f.task for f in self.followers.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for follower in list(self.followers.values()):
            self.release(follower)


def _find_by_inode(saved: FileOffset, entry: int) -> Found | None:
    """Worker thread: the file with ``saved``'s inode in ``saved``'s old directory, opened."""
    directory = Path(saved.path).parent
    try:
        with os.scandir(directory) as listing:
            for item in listing:
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) != saved.key or not stat.S_ISREG(st.st_mode):
                    continue
                fd, st = _open(item.path)
                return Found(item.path, (st.st_dev, st.st_ino), entry, fd, st.st_size, read_head(fd))
    except OSError:
        return None
    return None
