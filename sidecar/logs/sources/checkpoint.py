"""File offsets saved on disk, so a restart of the sidecar neither loses nor repeats a line.

A file is identified by ``(device, inode)`` plus a fingerprint of its first bytes: the inode follows a
file through rename rotation, and the fingerprint tells a reused inode (a new file that got the number
of a deleted one) or a file truncated and rewritten in place from the file we were reading.

Only offsets of lines already processed are saved (the consumer, not the reader, advances them), and
the file is replaced atomically (write a temporary file, fsync, rename, fsync the directory), so a crash
leaves either the old or the new state, never a torn one. A crash repeats at most the lines processed
since the last save; a clean stop saves last and repeats nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1024
STATE_FILE = "log-offsets.json"
STATE_VERSION = 1

FileKey = tuple[int, int]  # (st_dev, st_ino)


def fingerprint(head: bytes) -> str:
    """A short digest of a file's first bytes (up to ``FINGERPRINT_BYTES``)."""
    return hashlib.blake2b(head[:FINGERPRINT_BYTES], digest_size=12).hexdigest()


def read_head(fd: int, length: int = FINGERPRINT_BYTES) -> bytes:
    """The first ``length`` bytes of an open file, without moving any read position."""
    return os.pread(fd, length, 0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The serialised state and its sequence number (newer numbers win on disk)."""

    number: int
    body: bytes


@dataclass(slots=True)
class FileOffset:
    """Where reading of one file stands."""

    dev: int
    ino: int
    offset: int
    fp: str
    fp_len: int
    path: str
    glob: str = ""

    @property
    def key(self) -> FileKey:
        return (self.dev, self.ino)

    def same_file(self, head: bytes) -> bool:
        """True when ``head`` (the file's first bytes now) starts like the file we checkpointed."""
        return len(head) >= self.fp_len and fingerprint(head[: self.fp_len]) == self.fp


class CheckpointStore:
    """Offsets by file, plus the globs already started once (so ``start: end`` applies only to a first run).

    Methods that touch the disk are synchronous and meant for ``asyncio.to_thread``; the in-memory
    methods run on the event loop.
    """

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / STATE_FILE if state_dir is not None else None
        self._offsets: dict[FileKey, FileOffset] = {}
        self._globs: set[str] = set()
        self._dirty = False
        self.errors = 0
        self.loaded = False
        self._failing = False
        self._taken = 0  # snapshots taken (event loop)
        self._written = 0  # newest snapshot on disk (under _write_lock, in worker threads)
        self._write_lock = threading.Lock()

    def load(self) -> None:
        """Read the state file; a missing file is a first run, a broken one is logged and ignored."""
        self.loaded = True
        if self.path is None:
            return
        try:
            data: Any = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            self.errors += 1
            log.error(
                "log offsets unreadable, starting afresh", extra={"path": str(self.path), "error": str(exc)}
            )
            return
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            log.warning("log offsets in an unknown format, starting afresh", extra={"path": str(self.path)})
            return
        self._globs = {g for g in data.get("globs", []) if isinstance(g, str)}
        for item in data.get("files", []):
            try:
                entry = FileOffset(**item)
            except TypeError:
                continue
            self._offsets[entry.key] = entry

    def snapshot(self, *, force: bool = False) -> Snapshot | None:
        """The state to write, taken on the event loop (the loop owns the dict), or None if unchanged.

        ``force`` takes one even when nothing changed: its write waits for any write still in flight,
        so the final save at shutdown returns only once the newest state is on disk.
        """
        if self.path is None or not (self._dirty or force):
            return None
        self._dirty = False
        self._taken += 1
        body = orjson.dumps(
            {
                "version": STATE_VERSION,
                "globs": sorted(self._globs),
                "files": [asdict(entry) for entry in self._offsets.values()],
            }
        )
        return Snapshot(self._taken, body)

    def write(self, snapshot: Snapshot) -> bool:
        """Replace the state file atomically; False (and counted) when the disk refused.

        Writes are serialised and an older snapshot never replaces a newer one: a write abandoned by a
        cancelled task still finishes in its thread, possibly after the final save at shutdown.
        """
        if self.path is None:
            return True
        with self._write_lock:
            if snapshot.number <= self._written:
                return True
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{snapshot.number}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, snapshot.body)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError as exc:
                self._dirty = True
                self.errors += 1
                if not self._failing:  # once per outage, not once a second; the metric counts every one
                    log.error(
                        "cannot save log offsets; a restart will re-read or skip lines until this is fixed",
                        extra={"path": str(self.path), "error": str(exc)},
                    )
                self._failing = True
                return False
            self._written = snapshot.number
        if self._failing:
            log.info("log offsets saved again", extra={"path": str(self.path)})
        self._failing = False
        return True

    def save(self) -> bool:
        """Snapshot and write in one go (for synchronous callers and tests)."""
        snapshot = self.snapshot()
        return True if snapshot is None else self.write(snapshot)

    def started_before(self, glob: str) -> bool:
        return glob in self._globs

    def mark_started(self, glob: str) -> None:
        if glob not in self._globs:
            self._globs.add(glob)
            self._dirty = True

    def get(self, key: FileKey) -> FileOffset | None:
        return self._offsets.get(key)

    def entries(self) -> list[FileOffset]:
        return list(self._offsets.values())

    def set(self, entry: FileOffset) -> None:
        current = self._offsets.get(entry.key)
        if current != entry:
            self._offsets[entry.key] = entry
            self._dirty = True

    def advance(self, key: FileKey, offset: int, fp: str, fp_len: int) -> None:
        """Move a known file's offset (the consumer calls this after processing a batch)."""
        entry = self._offsets.get(key)
        if entry is not None and (entry.offset, entry.fp_len) != (offset, fp_len):
            entry.offset = offset
            entry.fp = fp
            entry.fp_len = fp_len
            self._dirty = True

    def forget(self, key: FileKey) -> None:
        if self._offsets.pop(key, None) is not None:
            self._dirty = True
