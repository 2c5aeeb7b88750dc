"""The spool: durable before acknowledged, survives a restart, bounded with drops counted, per-category."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.sentry.metrics import SentryMetrics, SentryStats
from sidecar.sentry.ratelimits import RateLimiter
from sidecar.sentry.spool import Spool

pytestmark = pytest.mark.timeout(30)
ERROR = frozenset({"error"})
TRANSACTION = frozenset({"transaction"})


def spool(directory: Path | None, *, limiter: RateLimiter | None = None, **bounds: int) -> Spool:
    return Spool(
        directory,
        max_bytes=bounds.get("max_bytes", 1 << 20),
        max_events=bounds.get("max_events", 1000),
        queue_events=bounds.get("queue_events", 100),
        stats=SentryStats(),
        limiter=limiter or RateLimiter(),
    )


async def settle(s: Spool) -> None:
    async with asyncio.timeout(10):
        await s.flush()


async def test_put_is_durable_and_a_restart_finds_everything_in_order(tmp_path: Path) -> None:
    first = spool(tmp_path)
    await first.open()
    await first.put(b"one", ERROR)
    assert [p.name for p in tmp_path.glob("*.env")] == ["0000000000000001.error.env"]
    first.put_nowait(b"two", TRANSACTION)
    first.put_nowait(b"three", ERROR | {"attachment"})
    await settle(first)
    await first.close()
    assert first.stats.drops["shutdown"] == 0, "nothing lost: it is all on disk"

    (tmp_path / ".0000000000000009.error.env.tmp").write_bytes(b"half-written")  # a crash mid-write
    (tmp_path / "README").write_text("not ours")
    second = spool(tmp_path)
    await second.open()
    assert not list(tmp_path.glob("*.tmp"))
    assert (tmp_path / "README").exists()
    ready = second.take_ready(10)
    assert [await second.read(e) for e in ready] == [b"one", b"two", b"three"]
    assert [e.categories for e in ready] == [ERROR, TRANSACTION, frozenset({"error", "attachment"})]
    await second.remove(ready[0])
    second.release(ready[1])
    assert sorted(p.name.split(".")[0][-1] for p in tmp_path.glob("*.env")) == ["2", "3"]
    second.put_nowait(b"four", ERROR)
    await settle(second)
    assert max(e.seq for e in second._entries.values()) == 4, "sequence numbers continue after a restart"
    await second.close()


async def test_bounds_drop_the_oldest_and_count(tmp_path: Path) -> None:
    s = spool(tmp_path, max_events=10)
    await s.open()
    for n in range(15):
        s.put_nowait(f"event {n:02d}".encode(), ERROR)
    await settle(s)
    assert len(s) == 10 and len(list(tmp_path.glob("*.env"))) == 10
    assert s.stats.drops["spool_full"] == 5 and s.stats.outcomes["dropped"] == 5
    assert await s.read(s.take_ready(1)[0]) == b"event 05"
    await s.close()

    by_bytes = spool(None, max_bytes=100)
    await by_bytes.open()
    for _ in range(5):
        by_bytes.put_nowait(b"x" * 40, ERROR)
    await settle(by_bytes)
    assert by_bytes.size() == (2, 80)
    assert by_bytes.stats.drops["spool_full"] == 3
    await by_bytes.close()
    assert by_bytes.stats.drops["shutdown"] == 2, "memory-only entries are counted as lost at shutdown"


async def test_rate_limited_categories_wait_while_others_flow(tmp_path: Path) -> None:
    limiter = RateLimiter()
    s = spool(tmp_path, limiter=limiter)
    await s.open()
    await s.put(b"e1", ERROR)
    limiter.update(429, {"X-Sentry-Rate-Limits": "60:error:key"})
    s.hold_limited()
    await s.put(b"e2", ERROR)
    await s.put(b"t1", TRANSACTION)
    assert [await s.read(e) for e in s.take_ready(10)] == [b"t1"]
    assert s.stats.outcomes["rate_limited"] == 2, "each held event is counted once"
    s.hold_limited()
    assert s.stats.outcomes["rate_limited"] == 2
    await s.close()


async def test_one_process_per_directory_and_unusable_directories(tmp_path: Path) -> None:
    owner = spool(tmp_path)
    await owner.open()
    intruder = spool(tmp_path)
    await intruder.open()
    assert owner.durable and not intruder.durable
    await intruder.close()
    await owner.close()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    fallback = spool(not_a_dir / "spool")
    await fallback.open()
    assert not fallback.durable
    await fallback.put(b"kept in memory", ERROR)
    assert await fallback.read(fallback.take_ready(1)[0]) == b"kept in memory"
    await fallback.close()


async def test_metrics_render_from_stats_and_spool(tmp_path: Path) -> None:
    s = spool(tmp_path)
    await s.open()
    await s.put(b"12345", ERROR)
    families = {m.name: m for m in SentryMetrics(s.stats, s.size).collect()}
    assert {s.labels["outcome"]: s.value for s in families["sidecar_sentry_events"].samples} == {
        "sent": 0,
        "spooled": 1,
        "deduplicated": 0,
        "rate_limited": 0,
        "dropped": 0,
        "rejected": 0,
    }
    assert families["sidecar_sentry_spool_events"].samples[0].value == 1
    assert families["sidecar_sentry_spool_bytes"].samples[0].value == 5
    await s.close()
