"""Celery collector against a throwaway redis-server, with tasks sent by Celery and run by real workers.

The worker is a real ``celery worker`` process (solo pool, late acks, prefetch 1), started with
``subprocess`` for a bounded time and killed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from collectors.base import CheckTarget, Observation
from collectors.celery import CeleryCollector, CeleryOptions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.usefixtures("flush_redis_after")]

APP = textwrap.dedent(
    """
    import os, time
    from celery import Celery

    app = Celery("qapp", broker=os.environ["BROKER_URL"])
    app.conf.update(
        task_default_queue="work",
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="add")
    def add(x, y):
        return x + y

    @app.task(name="hang")
    def hang():
        time.sleep(3600)
    """
)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("celery_app")
    (path / "qapp.py").write_text(APP)
    return path


def send(url: str, *tasks: tuple[str, str, int]) -> None:
    """Publish (task name, queue, priority) messages with Celery itself."""
    app = Celery("producer", broker=url)
    try:
        with app.connection_for_write() as connection:
            for name, queue, priority in tasks:
                app.send_task(name, args=(1, 2) if name == "add" else (), queue=queue, priority=priority,
                              connection=connection)  # fmt: skip
    finally:
        app.close()


class CeleryWorker:
    """A real ``celery worker`` process for the ``work`` queue, in its own process group."""

    def __init__(self, url: str, app_dir: Path) -> None:
        env = {**os.environ, "BROKER_URL": url, "PYTHONPATH": str(app_dir)}
        command = [sys.executable, "-m", "celery", "-A", "qapp", "worker", "-Q", "work", "--pool", "solo"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
        self.proc = subprocess.Popen(
            command, cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


async def observe(url: str, **options: Any) -> Observation:
    collector = CeleryCollector(CheckTarget("tasks", url, 5.0), CeleryOptions.model_validate(options))
    await collector.open()
    try:
        return await collector.collect()
    finally:
        await collector.close()


def series(obs: Observation, name: str) -> dict[tuple[str, ...], float]:
    return {s.label_values: s.value for s in obs.samples if s.spec.name == name}


async def poll(url: str, predicate: Any, timeout: float = 30.0, **options: Any) -> Observation:
    """Observe until ``predicate(observation)`` holds; bounded."""
    async with asyncio.timeout(timeout):
        while True:
            obs = await observe(url, **options)
            if predicate(obs):
                return obs
            await asyncio.sleep(0.2)


async def test_queue_lengths_include_priority_sub_queues(redis_url: str) -> None:
    await asyncio.to_thread(
        send,
        redis_url,
        *[("add", "work", 0)] * 3,
        *[("add", "work", 6)] * 2,
        ("add", "work", 9),
        ("add", "mail", 0),
    )
    obs = await observe(redis_url)  # queues discovered from kombu's bindings
    assert series(obs, "sidecar_queue_jobs") == {("mail", "wait"): 1, ("work", "wait"): 6}
    assert series(obs, "sidecar_celery_queue_priority_jobs") == {
        ("mail", "0"): 1, ("mail", "3"): 0, ("mail", "6"): 0, ("mail", "9"): 0,
        ("work", "0"): 3, ("work", "3"): 0, ("work", "6"): 2, ("work", "9"): 1,
    }  # fmt: skip
    assert obs.measurements["backlog"].value == 6
    assert obs.measurements["unacked"].value == 0
    assert obs.measurements["stalled"].value == 0

    configured = await observe(redis_url, queues=["work"])
    assert series(configured, "sidecar_queue_jobs") == {("work", "wait"): 6}


async def test_worker_drains_the_queue(redis_url: str, app_dir: Path) -> None:
    await asyncio.to_thread(send, redis_url, *[("add", "work", 0)] * 4, ("add", "work", 3))
    before = await observe(redis_url, queues=["work"])
    assert series(before, "sidecar_queue_jobs") == {("work", "wait"): 5}
    worker = CeleryWorker(redis_url, app_dir)
    try:
        obs = await poll(
            redis_url,
            lambda o: o.measurements["backlog"].value == 0 and o.measurements["unacked"].value == 0,
            queues=["work"],
        )
        with redis.Redis.from_url(redis_url) as client:
            assert client.exists("_kombu.binding.celery.pidbox")
        # the running worker bound its remote-control (pidbox) queue: discovery leaves it out
        discovered = await observe(redis_url)
        assert series(discovered, "sidecar_queue_jobs") == {("work", "wait"): 0}
    finally:
        worker.kill(signal.SIGTERM)
    assert series(obs, "sidecar_queue_jobs") == {("work", "wait"): 0}
    assert series(obs, "sidecar_celery_unacked_messages") == {(): 0}
    assert obs.measurements["stalled"].value == 0


async def test_killed_worker_leaves_a_stalled_message(redis_url: str, app_dir: Path) -> None:
    await asyncio.to_thread(send, redis_url, ("hang", "work", 0), ("add", "work", 0))
    worker = CeleryWorker(redis_url, app_dir)
    try:
        running = await poll(
            redis_url,
            lambda o: o.measurements["unacked"].value == 1 and o.measurements["backlog"].value == 1,
            queues=["work"],
        )
        assert running.measurements["stalled"].value == 0  # within the visibility timeout
        delivered_by = time.time()
    finally:
        worker.kill(signal.SIGKILL)  # dies holding the message: nobody acks or restores it
    await asyncio.sleep(1.2)
    obs = await observe(redis_url, queues=["work"], visibility_timeout_seconds=1)
    assert obs.measurements["unacked"].value == 1
    assert obs.measurements["stalled"].value == 1
    age = obs.measurements["oldestUnackedAge"].value
    assert isinstance(age, float)
    assert 1.2 <= age <= time.time() - delivered_by + 30
    assert series(obs, "sidecar_queue_jobs") == {("work", "wait"): 1}
    patient = await observe(redis_url, queues=["work"])  # default visibility timeout: one hour
    assert patient.measurements["stalled"].value == 0
