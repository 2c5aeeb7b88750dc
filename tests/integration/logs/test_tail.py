"""File tailing against real files: rotation by a real logging library, logrotate-style copy-truncate,
restarts with checkpoints (every line exactly once), hostile content, and independence of sources."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.settings import LogSettings
from sidecar.logs.sources import tail
from sidecar.logs.sources.channel import Batch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Harness:
    """A log runtime over real files that records every line handed to the pipeline."""

    def __init__(self, tmp: Path, files: list[dict[str, Any]], **settings: Any) -> None:
        self.settings = LogSettings.model_validate(
            {
                "files": files,
                "state_dir": str(tmp / "state"),
                "poll_interval": 0.03,
                "rotate_wait": 0.3,
                "checkpoint_interval": 0.05,
                **settings,
            }
        )
        self.delivered: list[bytes] = []
        self.registry = CollectorRegistry()
        self.runtime: LogRuntime | None = None
        self.batch_delay = 0.0

    async def start(self) -> LogRuntime:
        self.registry = CollectorRegistry()
        http = HttpMetrics(self.registry, RouteNormaliser())
        runtime = LogRuntime(self.settings, self.registry, http, CorrelationIndex())
        consume = runtime.pipeline.consume

        def recording_consume(source: str, batch: Batch) -> None:
            self.delivered.extend(line for line in batch.lines if line)
            if self.batch_delay:
                time.sleep(self.batch_delay)  # a slow consumer, to stop mid-stream
            consume(source, batch)

        for channel in runtime.file_channels:  # the pipeline may be compiled: wrap what calls it
            channel._sink = recording_consume
        await runtime.start()
        self.runtime = runtime
        return runtime

    async def stop(self) -> None:
        assert self.runtime is not None
        await self.runtime.stop()
        self.runtime = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; delivered {len(self.delivered)} lines")
            await asyncio.sleep(0.02)

    def messages(self) -> list[str]:
        out = []
        for line in self.delivered:
            try:
                out.append(orjson.loads(line)["msg"])
            except (orjson.JSONDecodeError, KeyError):
                out.append(line.decode(errors="replace"))
        return out

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def json_logger(path: Path, handler: logging.Handler | None = None) -> logging.Logger:
    """A Python ``logging`` logger writing pino-shaped JSON lines (``msg``, numeric level)."""
    logger = logging.getLogger(f"tailtest.{path}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for old in list(logger.handlers):
        old.close()
        logger.removeHandler(old)
    handler = handler or logging.FileHandler(path)
    handler.setFormatter(logging.Formatter('{"level":30,"reqId":"%(message)s","msg":"%(message)s"}'))
    logger.addHandler(handler)
    return logger


@pytest.fixture
def loggers() -> Iterator[list[logging.Logger]]:
    made: list[logging.Logger] = []
    yield made
    for logger in made:
        for handler in list(logger.handlers):
            handler.close()
            logger.removeHandler(handler)


def exactly_once(delivered: list[str], expected: list[str]) -> None:
    assert len(delivered) == len(set(delivered)), "some lines were delivered twice"
    missing = set(expected) - set(delivered)
    assert not missing, f"{len(missing)} lines lost, e.g. {sorted(missing)[:3]}"
    assert len(delivered) == len(expected)


async def test_rename_rotation_by_rotating_file_handler(
    tmp_path: Path, loggers: list[logging.Logger]
) -> None:
    path = tmp_path / "app.log"
    handler = RotatingFileHandler(path, maxBytes=8_000, backupCount=100)
    logger = json_logger(path, handler)
    loggers.append(logger)
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}])
    runtime = await harness.start()
    try:
        expected = []
        for burst in range(8):  # each file lives for a few polls, like a real app's
            for i in range(100):
                name = f"line-{burst}-{i}"
                expected.append(name)
                logger.info(name)
            await asyncio.sleep(0.15)
        await harness.wait_for(lambda: len(harness.delivered) >= len(expected))
        await asyncio.sleep(0.2)
        exactly_once(harness.messages(), expected)
        assert len(list(tmp_path.glob("app.log.*"))) >= 5
        assert harness.metric("sidecar_log_file_rotations_total", source="app", kind="rename") >= 5
        await harness.wait_for(lambda: runtime.tailer is not None and runtime.tailer.followed == 1, 5)
    finally:
        await harness.stop()


async def test_fast_rotation_with_a_glob_over_rotated_names(
    tmp_path: Path, loggers: list[logging.Logger]
) -> None:
    """Rotating faster than the poll: the glob also matches app.log.N, and inodes keep it exactly-once."""
    path = tmp_path / "app.log"
    logger = json_logger(path, RotatingFileHandler(path, maxBytes=4_000, backupCount=1000))
    loggers.append(logger)
    harness = Harness(tmp_path, [{"path": f"{path}*", "start": "beginning"}], rotate_wait=60)
    await harness.start()
    try:
        expected = [f"fast-{i}" for i in range(3000)]
        for name in expected:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= len(expected))
        await asyncio.sleep(0.2)
        exactly_once(harness.messages(), expected)
    finally:
        await harness.stop()


async def test_copy_truncate_like_logrotate(tmp_path: Path, loggers: list[logging.Logger]) -> None:
    path = tmp_path / "app.log"
    logger = json_logger(path)  # FileHandler opens with O_APPEND, as logrotate's copytruncate expects
    loggers.append(logger)
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}])
    await harness.start()
    try:
        expected = [f"before-{i}" for i in range(500)]
        for name in expected:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= 500)
        # logrotate copytruncate: copy the file, then truncate the original in place.
        shutil.copyfile(path, tmp_path / "app.log.1")
        with path.open("r+b") as original:
            original.truncate(0)
        await asyncio.sleep(0.1)
        after = [f"after-{i}" for i in range(300)]
        for name in after:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= 800)
        await asyncio.sleep(0.2)
        exactly_once(harness.messages(), expected + after)
        assert harness.metric("sidecar_log_file_rotations_total", source="app", kind="truncate") == 1
    finally:
        await harness.stop()


async def test_truncated_and_regrown_past_the_offset_while_stopped(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(b'{"msg":"old-%d"}\n' % i for i in range(10)))
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning"}])
    await harness.start()
    await harness.wait_for(lambda: len(harness.delivered) == 10)
    await harness.stop()
    # Truncated in place and rewritten with more than before: same inode, size past the old offset.
    path.write_bytes(b"".join(b'{"msg":"new-%d"}\n' % i for i in range(50)))
    await harness.start()
    try:
        await harness.wait_for(lambda: len(harness.delivered) == 60)
        exactly_once(harness.messages(), [f"old-{i}" for i in range(10)] + [f"new-{i}" for i in range(50)])
    finally:
        await harness.stop()


async def test_restart_mid_stream_neither_loses_nor_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail, "CHUNK_BYTES", 2048)
    path = tmp_path / "app.log"
    first = [f"first-{i:05d}" for i in range(3000)]
    path.write_bytes(b"".join(b'{"level":30,"msg":"%s"}\n' % n.encode() for n in first))
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning"}])
    harness.batch_delay = 0.005
    await harness.start()
    await harness.wait_for(lambda: len(harness.delivered) >= 600)
    stopped_at = len(harness.delivered)
    with path.open("ab") as out:
        out.write(b'{"level":30,"msg":"during-0"}\n{"level":30,"msg":"during-1"}\n')
    await harness.stop()
    assert stopped_at < 3000, "the tailer finished before it could be stopped mid-stream"
    with path.open("ab") as out:  # written while the sidecar is down, the last one without its newline yet
        out.write(b'{"level":30,"msg":"while-down"}\n{"level":30,"msg":"partial"')
    harness.batch_delay = 0.0
    await harness.start()
    try:
        await harness.wait_for(lambda: len(harness.delivered) >= 3003)
        with path.open("ab") as out:
            out.write(b"}\n")
        await harness.wait_for(lambda: len(harness.delivered) >= 3004)
        await asyncio.sleep(0.2)
        exactly_once(harness.messages(), [*first, "during-0", "during-1", "while-down", "partial"])
    finally:
        await harness.stop()


async def test_rotation_while_stopped_reads_the_rest_of_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b'{"msg":"a-0"}\n')
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning"}])
    await harness.start()
    await harness.wait_for(lambda: len(harness.delivered) == 1)
    await harness.stop()
    with path.open("ab") as out:
        out.write(b'{"msg":"a-1"}\n')
    path.rename(tmp_path / "app.log.1")  # rotated by rename while the sidecar was down
    path.write_bytes(b'{"msg":"b-0"}\n')
    await harness.start()
    try:
        await harness.wait_for(lambda: len(harness.delivered) == 3)
        await asyncio.sleep(0.5)
        exactly_once(harness.messages(), ["a-0", "a-1", "b-0"])
    finally:
        await harness.stop()


async def test_start_end_skips_history_only_on_the_first_run(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b'{"msg":"history"}\n')
    harness = Harness(tmp_path, [{"path": str(tmp_path / "*.log"), "start": "end"}])
    await harness.start()
    try:
        await asyncio.sleep(0.2)
        with path.open("ab") as out:
            out.write(b'{"msg":"new"}\n')
        (tmp_path / "other.log").write_bytes(b'{"msg":"new file"}\n')  # appeared later: from the start
        await harness.wait_for(lambda: len(harness.delivered) == 2)
    finally:
        await harness.stop()
    (tmp_path / "while-down.log").write_bytes(b'{"msg":"created while down"}\n')
    await harness.start()
    try:
        await harness.wait_for(lambda: len(harness.delivered) == 3)
        await asyncio.sleep(0.2)
        assert sorted(harness.messages()) == ["created while down", "new", "new file"]
    finally:
        await harness.stop()


async def test_hostile_file_content_is_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    with path.open("wb") as out:
        out.write(b'{"level":30,"msg":"good-1"}\n')
        out.write(b'{"level":30,"msg":"caf\xc3"}\n')  # invalid UTF-8
        out.write(b'{"level":30,"msg":"broken\n')  # broken JSON
        out.write(b'{"level":30,"msg":"' + b"x" * (10 * 1024 * 1024) + b'"}\n')  # a 10 MB line
        out.write(os.urandom(4096).replace(b"\n", b"\x00") + b"\n")  # binary noise
        out.write(b'{"level":50,"msg":"good-2"}\n')
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}])
    await harness.start()
    try:
        await harness.wait_for(
            lambda: harness.metric("sidecar_log_lines_total", source="app", level="error") == 1
        )

        def rejected(reason: str) -> float:
            return harness.metric("sidecar_log_lines_rejected_total", source="app", reason=reason)

        assert harness.metric("sidecar_log_lines_total", source="app", level="info") == 1
        assert rejected("invalid_utf8") == 1
        assert rejected("invalid_json") == 1
        assert rejected("too_long") == 1
        assert rejected("binary") == 1
        assert max(len(line) for line in harness.delivered) < 1024 * 1024  # the long line never reached it
    finally:
        await harness.stop()


async def test_a_stuck_file_does_not_stall_another_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck_path, good_path = tmp_path / "stuck.log", tmp_path / "good.log"
    stuck_path.write_bytes(b'{"msg":"never mind"}\n')
    good_path.write_bytes(b"".join(b'{"msg":"good-%d"}\n' % i for i in range(1000)))
    release = threading.Event()
    real_read = tail.Follower._read

    def read(self: tail.Follower) -> bytes | None:
        if self.path == str(stuck_path):
            release.wait(10)  # a read hanging on a dead disk
        return real_read(self)

    monkeypatch.setattr(tail.Follower, "_read", read)
    harness = Harness(
        tmp_path,
        [
            {"path": str(stuck_path), "start": "beginning", "source": "stuck"},
            {"path": str(good_path), "start": "beginning", "source": "good"},
        ],
    )
    await harness.start()
    try:
        await harness.wait_for(
            lambda: harness.metric("sidecar_log_lines_total", source="good", level="unknown") == 1000, 5
        )
        assert harness.metric("sidecar_log_lines_total", source="stuck", level="unknown") == 0
        release.set()
        await harness.wait_for(
            lambda: harness.metric("sidecar_log_lines_total", source="stuck", level="unknown") == 1, 5
        )
    finally:
        release.set()
        await harness.stop()


async def test_copy_truncate_loses_nothing_written_since_the_last_poll(
    tmp_path: Path, loggers: list[logging.Logger]
) -> None:
    """Lines written after the last read and before logrotate's copy come from the copy (app.log.1)."""
    path = tmp_path / "app.log"
    logger = json_logger(path)
    loggers.append(logger)
    harness = Harness(
        tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}], poll_interval=1.0
    )
    await harness.start()
    try:
        before = [f"before-{i}" for i in range(200)]
        for name in before:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= 200)
        late = [f"late-{i}" for i in range(150)]  # within the poll interval after the last read
        for name in late:
            logger.info(name)
        shutil.copyfile(path, tmp_path / "app.log.1")
        with path.open("r+b") as original:
            original.truncate(0)
        after = [f"after-{i}" for i in range(400)]  # more than before: the file regrows past our offset
        for name in after:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= 750, timeout=10)
        await asyncio.sleep(1.2)
        exactly_once(harness.messages(), before + late + after)
        assert harness.metric("sidecar_log_file_rotations_total", source="app", kind="truncate") == 1
    finally:
        await harness.stop()


async def test_without_the_copy_the_regrown_file_is_read_from_its_start(
    tmp_path: Path, loggers: list[logging.Logger]
) -> None:
    """Copy compressed or moved away: the late lines are the documented loss, the new file is whole."""
    path = tmp_path / "app.log"
    logger = json_logger(path)
    loggers.append(logger)
    harness = Harness(
        tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}], poll_interval=1.0
    )
    await harness.start()
    try:
        before = [f"before-{i}" for i in range(100)]
        for name in before:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= 100)
        for i in range(20):
            logger.info(f"late-{i}")
        with path.open("r+b") as original:
            original.truncate(0)
        after = [f"after-{i}" for i in range(300)]
        for name in after:
            logger.info(name)
        await harness.wait_for(lambda: len(harness.delivered) >= 400, timeout=10)
        await asyncio.sleep(1.2)
        exactly_once(harness.messages(), before + after)
    finally:
        await harness.stop()


def _counting_thread_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every chunk the worker thread read (``b""`` and ``None`` count as 0)."""
    sizes: list[int] = []
    real_read = tail.Follower._read

    def read(self: tail.Follower) -> bytes | None:
        data = real_read(self)
        sizes.append(len(data) if data else 0)
        return data

    monkeypatch.setattr(tail.Follower, "_read", read)
    return sizes


def _big_log(path: Path, lines: int) -> list[str]:
    names = [f"line-{i}" for i in range(lines)]
    path.write_bytes(
        b"".join(b'{"level":30,"msg":"%s","pad":"%s"}\n' % (n.encode(), b"p" * 200) for n in names)
    )
    return names


async def _deliver_all(tmp_path: Path, path: Path, names: list[str]) -> Harness:
    """A file source over ``path`` until every line arrived, then stopped; the lines came once, in order."""
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}])
    await harness.start()
    try:
        await harness.wait_for(lambda: len(harness.delivered) >= len(names))
    finally:
        await harness.stop()
    assert harness.messages() == names
    return harness


async def test_a_file_in_the_page_cache_is_read_on_the_loop_without_thread_hops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catching up on a file the page cache holds: every chunk is copied on the loop (RWF_NOWAIT), the
    worker thread only answers at the end of the file; every line arrives once, in order."""
    assert tail.NOWAIT, "Linux has RWF_NOWAIT; without it every read goes through the thread"
    path = tmp_path / "app.log"
    names = _big_log(path, 20_000)  # about 4.5 MB: nine chunks
    path.read_bytes()  # in the page cache, as a file the app just wrote is
    thread_reads = _counting_thread_reads(monkeypatch)
    harness = await _deliver_all(tmp_path, path, names)
    assert harness.metric("sidecar_log_read_bytes_total", source="app") == path.stat().st_size
    assert sum(thread_reads) == 0, f"the thread read {thread_reads}"


async def test_a_file_not_in_the_page_cache_is_read_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages evicted from the cache: RWF_NOWAIT refuses, the thread waits for the disk, nothing is lost."""
    path = tmp_path / "app.log"
    names = _big_log(path, 20_000)
    with path.open("rb") as cold:
        os.fsync(cold.fileno())  # clean pages can be dropped
        os.posix_fadvise(cold.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    thread_reads = _counting_thread_reads(monkeypatch)
    await _deliver_all(tmp_path, path, names)
    assert sum(thread_reads) > 0  # at least the first chunk came from the disk through the thread


async def test_a_filesystem_refusing_nowait_is_read_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without RWF_NOWAIT (EOPNOTSUPP): asked once per file, then the thread reads it all."""
    path = tmp_path / "app.log"
    names = _big_log(path, 20_000)
    asked: list[int] = []

    def refusing_preadv(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
        asked.append(offset)
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "preadv", refusing_preadv)  # tail.py calls it as os.preadv
    thread_reads = _counting_thread_reads(monkeypatch)
    await _deliver_all(tmp_path, path, names)
    assert asked == [0]
    assert sum(thread_reads) == path.stat().st_size


async def test_stopping_folds_in_the_access_lines_still_on_the_timer(tmp_path: Path) -> None:
    """The request histogram is folded in on a timer (0.1 s): a stop right after the last batch must
    still leave every access line in it."""
    path = tmp_path / "app.log"
    line = (
        b'{"level":30,"reqId":"r-%d","req":{"method":"GET","url":"/x"},'
        b'"res":{"statusCode":200},"responseTime":5,"msg":"request completed"}\n'
    )
    path.write_bytes(b"".join(line % i for i in range(300)))
    harness = Harness(tmp_path, [{"path": str(path), "start": "beginning", "source": "app"}])
    await harness.start()
    await harness.wait_for(lambda: len(harness.delivered) >= 300)
    await harness.stop()
    labels = {
        "http_request_method": "GET",
        "http_route": "/x",
        "http_response_status_code": "200",
        "error_type": "",
    }
    assert harness.metric("http_server_request_duration_seconds_count", **labels) == 300
