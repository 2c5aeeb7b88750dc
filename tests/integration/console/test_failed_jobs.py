"""BullMQ's failed jobs as the console reads them, from jobs the real ``bullmq`` package failed.

The bounds the Queues page promises, held against a real redis-server: at most 50 jobs, one round trip
(one script call), at most one read per second per queue however often the page is viewed, read-only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue, Worker

from sidecar.console.queues import MAX_FAILED_JOBS, FailedJobsReader
from sidecar.probing.settings import CheckConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.usefixtures("flush_redis_after")]
JOBS = 60


async def _fail_jobs(url: str, name: str, count: int) -> None:
    queue = Queue(name, {"connection": url})
    done = asyncio.Event()
    failed = 0

    async def process(job: Any, token: str) -> None:
        raise RuntimeError(f"template {job.data['n']} missing; smtp password=hunter2")

    def on_failed(*_: Any) -> None:
        nonlocal failed
        failed += 1
        if failed >= count:
            done.set()

    worker = Worker(name, process, {"connection": url, "concurrency": 10})
    worker.on("failed", on_failed)
    for n in range(count):
        await queue.add("welcome", {"n": n})
    await asyncio.wait_for(done.wait(), 60)
    await worker.close()
    await queue.close()


async def _eval_calls(url: str) -> int:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


async def test_newest_failed_jobs_bounded_and_at_most_once_a_second(redis_url: str) -> None:
    await _fail_jobs(redis_url, "mail", JOBS)
    check = CheckConfig.model_validate({"name": "jobs", "kind": "bullmq", "target": redis_url, "timeout": 1})
    reader = FailedJobsReader()
    try:
        before = await _eval_calls(redis_url)
        jobs = await reader.read(check, "mail")
        assert len(jobs) == MAX_FAILED_JOBS
        assert all(job.name == "welcome" and job.attempts == 1 for job in jobs)
        assert all("template" in job.failed_reason and "hunter2" not in job.failed_reason for job in jobs)
        finished = [job.finished_at or 0 for job in jobs]
        assert finished == sorted(finished, reverse=True)  # newest first
        # many views at once and in the same second: still one script call
        again = await asyncio.gather(*(reader.read(check, "mail") for _ in range(20)))
        assert all(answer == jobs for answer in again)
        assert await _eval_calls(redis_url) - before == 1
        await asyncio.sleep(1.05)
        await reader.read(check, "mail")
        assert await _eval_calls(redis_url) - before == 2
        # read-only: the failed set is as the worker left it
        client = aioredis.Redis.from_url(redis_url)
        try:
            assert await client.zcard("bull:mail:failed") == JOBS
        finally:
            await client.aclose()
        assert await reader.read(check, "no-such-queue") == []
    finally:
        await reader.close()
