"""RQ collector against a throwaway redis-server, with jobs enqueued by RQ and run by real RQ workers.

Workers are real ``rq worker`` processes (``python -m rq.cli``), bounded in time and killed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from collectors.base import CheckTarget, Observation, Status
from collectors.rq import RQCollector, RQOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.usefixtures("flush_redis_after")]

TASKS = textwrap.dedent(
    """
    import time

    def ok():
        return 1

    def boom():
        raise ValueError("planned failure")

    def hang():
        time.sleep(3600)
    """
)
ALL_STATES = ("wait", "active", "failed", "completed", "deferred", "delayed", "canceled")


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rq_app")
    (path / "rqtasks.py").write_text(TASKS)
    return path


@pytest.fixture
def queue(redis_url: str) -> Iterator[Queue]:
    with redis.Redis.from_url(redis_url) as connection:
        yield Queue("work", connection=connection)


def rq_cli(url: str, app_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(app_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "rq.cli", *args, "--url", url],
        cwd=app_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal the worker and its work horse (same process group); bounded wait."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


async def observe(url: str, **options: Any) -> Observation:
    collector = RQCollector(CheckTarget("rq", url, 5.0), RQOptions.model_validate(options))
    await collector.open()
    try:
        return await collector.collect()
    finally:
        await collector.close()


def series(obs: Observation, name: str) -> dict[tuple[str, ...], float]:
    return {s.label_values: s.value for s in obs.samples if s.spec.name == name}


def jobs(obs: Observation, queue: str = "work") -> dict[str, float]:
    return {labels[1]: v for labels, v in series(obs, "sidecar_queue_jobs").items() if labels[0] == queue}


def value(obs: Observation, name: str, queue: str = "work") -> float:
    return series(obs, name)[(queue,)]


def counts(**nonzero: int) -> dict[str, float]:
    return {state: nonzero.get(state, 0) for state in ALL_STATES}


async def poll(url: str, predicate: Any, timeout: float = 30.0) -> Observation:
    async with asyncio.timeout(timeout):
        while True:
            obs = await observe(url)
            if predicate(obs):
                return obs
            await asyncio.sleep(0.2)


async def test_waiting_deferred_and_overdue_scheduled_jobs(redis_url: str, queue: Queue) -> None:
    first = queue.enqueue("rqtasks.ok")
    for _ in range(4):
        queue.enqueue("rqtasks.ok")
    queue.enqueue("rqtasks.ok", depends_on=first)
    queue.enqueue_in(timedelta(seconds=1), "rqtasks.ok")
    queue.enqueue_in(timedelta(hours=1), "rqtasks.ok")
    enqueued = time.time()
    await asyncio.sleep(2.2)

    obs = await observe(redis_url, overdue_grace_seconds=0)
    assert jobs(obs) == counts(wait=5, deferred=1, delayed=2)
    assert value(obs, "sidecar_queue_overdue_delayed_jobs") == 1  # no worker runs a scheduler
    assert 1.0 <= value(obs, "sidecar_queue_overdue_delayed_seconds") <= time.time() - enqueued
    assert 2.2 <= value(obs, "sidecar_queue_oldest_waiting_job_age_seconds") <= time.time() - enqueued + 0.1
    assert value(obs, "sidecar_queue_workers") == 0
    assert value(obs, "sidecar_queue_stalled_jobs") == 0
    assert value(obs, "sidecar_queue_paused") == 0
    assert obs.measurements["backlog"].value == 5
    assert obs.measurements["minWorkers"].value == 0
    assert obs.status is Status.PASS
    assert (
        value(await observe(redis_url, overdue_grace_seconds=60), "sidecar_queue_overdue_delayed_jobs") == 0
    )


async def test_burst_worker_completes_and_fails_jobs(redis_url: str, queue: Queue, app_dir: Path) -> None:
    for _ in range(3):
        queue.enqueue("rqtasks.ok")
    for _ in range(2):
        queue.enqueue("rqtasks.boom")
    worker = rq_cli(redis_url, app_dir, "worker", "--burst", "work")
    try:
        await asyncio.to_thread(worker.wait, 60)
    finally:
        kill_group(worker)
    obs = await observe(redis_url)
    assert jobs(obs) == counts(completed=3, failed=2)
    assert value(obs, "sidecar_queue_oldest_waiting_job_age_seconds") == 0
    assert obs.measurements["failed"].value == 2
    assert obs.measurements["backlog"].value == 0


async def test_live_worker_then_abandoned_job(redis_url: str, queue: Queue, app_dir: Path) -> None:
    queue.enqueue("rqtasks.hang")
    queue.enqueue("rqtasks.ok")
    worker = rq_cli(redis_url, app_dir, "worker", "--name", "w1", "work")
    try:
        running = await poll(redis_url, lambda o: jobs(o).get("active") == 1)
        assert jobs(running) == counts(wait=1, active=1)
        assert value(running, "sidecar_queue_workers") == 1
        assert value(running, "sidecar_queue_stalled_jobs") == 0
    finally:
        kill_group(worker)  # worker and work horse die mid-job
    # RQ leases a started job for at least 60 s past the last heartbeat; move that lease into the past
    # instead of waiting, exactly as time would.
    with redis.Redis.from_url(redis_url) as client:
        members = client.zrange("rq:wip:work", 0, -1)
        assert len(members) == 1
        client.zadd("rq:wip:work", {members[0]: time.time() - 1}, xx=True)
    obs = await observe(redis_url)
    assert jobs(obs) == counts(wait=1)  # the abandoned job is no longer counted as running
    assert value(obs, "sidecar_queue_stalled_jobs") == 1
    assert obs.measurements["stalled"].value == 1


async def test_suspended_workers_pause_every_queue(redis_url: str, queue: Queue, app_dir: Path) -> None:
    queue.enqueue("rqtasks.ok")
    Queue("mail", connection=queue.connection).enqueue("rqtasks.ok")
    suspend = rq_cli(redis_url, app_dir, "suspend")
    await asyncio.to_thread(suspend.wait, 30)
    obs = await observe(redis_url)
    assert series(obs, "sidecar_queue_paused") == {("mail",): 1, ("work",): 1}
    assert obs.measurements["paused"].value == 2
    resume = rq_cli(redis_url, app_dir, "resume")
    await asyncio.to_thread(resume.wait, 30)
    assert series(await observe(redis_url), "sidecar_queue_paused") == {("mail",): 0, ("work",): 0}


async def test_configured_queue_that_rq_does_not_know(redis_url: str, queue: Queue) -> None:
    queue.enqueue("rqtasks.ok")
    obs = await observe(redis_url, queues=["work", "ghost"])
    assert obs.status is Status.WARN
    assert obs.output == "configured queue not found: 'ghost'"
    assert {labels[0] for labels in series(obs, "sidecar_queue_jobs")} == {"work"}
    assert (await observe(redis_url, key_prefix="other")).samples == []
