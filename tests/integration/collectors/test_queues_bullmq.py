"""BullMQ collector against a throwaway redis-server, with jobs made by the real BullMQ libraries.

Jobs are added, processed, failed and delayed by the ``bullmq`` Python package and, where Node.js and
``tests/integration/node/node_modules`` are present (``tests/run.sh`` runs ``npm install``), by the
``bullmq`` npm package. Counts are asserted exactly; ages with bounds that follow from the sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue, Worker
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio.connection import AbstractConnection

from collectors.base import CheckTarget, Observation, Reason, Status
from collectors.bullmq import BullMQCollector, BullMQOptions
from sidecar.probing.check_metrics import CheckMetrics
from sidecar.probing.health import HealthModel
from sidecar.probing.probe import Probe
from sidecar.probing.results import ResultStore
from sidecar.probing.settings import CheckConfig
from tests.servers import free_port, skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60), pytest.mark.usefixtures("flush_redis_after")]

NODE_DIR = Path(__file__).parents[1] / "node"
NODE_SCRIPT = NODE_DIR / "bullmq_jobs.mjs"


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[list[Queue]]:
    """Python BullMQ queues made by a test, closed afterwards."""
    made: list[Queue] = []
    yield made
    for queue in made:
        await queue.close()


def new_queue(made: list[Queue], url: str, name: str, **opts: Any) -> Queue:
    queue = Queue(name, {"connection": url, **opts})
    made.append(queue)
    return queue


async def observe(url: str, **options: Any) -> Observation:
    collector = BullMQCollector(CheckTarget("jobs", url, 5.0), BullMQOptions.model_validate(options))
    await collector.open()
    try:
        return await collector.collect()
    finally:
        await collector.close()


def series(obs: Observation, name: str) -> dict[tuple[str, ...], float]:
    return {s.label_values: s.value for s in obs.samples if s.spec.name == name}


def jobs(obs: Observation, queue: str) -> dict[str, float]:
    return {labels[1]: v for labels, v in series(obs, "sidecar_queue_jobs").items() if labels[0] == queue}


def value(obs: Observation, name: str, queue: str) -> float:
    return series(obs, name)[(queue,)]


async def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    """Poll an async predicate until true; bounded."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.1)


# --- Python BullMQ --------------------------------------------------------------------------------


async def test_waiting_delayed_prioritized_and_overdue(redis_url: str, queues: list[Queue]) -> None:
    queue = new_queue(queues, redis_url, "emails")
    for i in range(5):
        await queue.add("send", {"i": i})
    await queue.add("send", {"i": 5}, {"priority": 4})
    await queue.add("later", {}, {"delay": 300})
    await queue.add("much-later", {}, {"delay": 3_600_000})
    started = time.time()
    await asyncio.sleep(1.5)

    obs = await observe(redis_url, overdue_grace_seconds=0)
    elapsed = time.time() - started
    assert jobs(obs, "emails") == {
        "wait": 5, "paused": 0, "active": 0, "prioritized": 1, "delayed": 2, "waiting-children": 0,
        "completed": 0, "failed": 0,
    }  # fmt: skip
    assert value(obs, "sidecar_queue_overdue_delayed_jobs", "emails") == 1
    assert 1.2 - 0.05 <= value(obs, "sidecar_queue_overdue_delayed_seconds", "emails") <= elapsed
    assert 1.5 <= value(obs, "sidecar_queue_oldest_waiting_job_age_seconds", "emails") <= elapsed + 0.1
    assert value(obs, "sidecar_queue_workers", "emails") == 0
    assert value(obs, "sidecar_queue_paused", "emails") == 0
    assert value(obs, "sidecar_queue_stalled_jobs", "emails") == 0
    assert (obs.measurements["backlog"].value, obs.measurements["overdueDelayed"].value) == (6, 1)
    assert obs.measurements["minWorkers"].value == 0
    assert not series(obs, "sidecar_queue_jobs_completed_total")  # metrics not enabled: no counter
    assert obs.status is Status.PASS

    relaxed = await observe(redis_url, overdue_grace_seconds=30)
    assert value(relaxed, "sidecar_queue_overdue_delayed_jobs", "emails") == 0


async def test_worker_completes_and_fails_jobs_with_metrics(redis_url: str, queues: list[Queue]) -> None:
    queue = new_queue(queues, redis_url, "reports")
    for i in range(5):
        await queue.add("render", {"fail": i >= 3})

    async def process(job: Any, token: str) -> int:
        if job.data["fail"]:
            raise ValueError("planned failure")
        return 1

    worker = Worker("reports", process, {"connection": redis_url, "metrics": {"maxDataPoints": 60}})
    try:

        async def finished() -> bool:
            counts = await queue.getJobCounts("completed", "failed")
            return counts["completed"] + counts["failed"] == 5

        await wait_until(finished)
        running = await observe(redis_url)
        # A Python BullMQ worker names both its connections (as Queue.getWorkersCount counts them).
        assert value(running, "sidecar_queue_workers", "reports") == 2
    finally:
        await worker.close()

    obs = await observe(redis_url)
    assert jobs(obs, "reports") == {
        "wait": 0, "paused": 0, "active": 0, "prioritized": 0, "delayed": 0, "waiting-children": 0,
        "completed": 3, "failed": 2,
    }  # fmt: skip
    assert value(obs, "sidecar_queue_jobs_completed_total", "reports") == 3
    assert value(obs, "sidecar_queue_jobs_failed_total", "reports") == 2
    assert value(obs, "sidecar_queue_oldest_waiting_job_age_seconds", "reports") == 0
    assert value(obs, "sidecar_queue_workers", "reports") == 0
    assert obs.measurements["failed"].value == 2


async def test_paused_queue(redis_url: str, queues: list[Queue]) -> None:
    queue = new_queue(queues, redis_url, "exports")
    await queue.pause()
    for _ in range(3):
        await queue.add("export", {})
    obs = await observe(redis_url)
    assert value(obs, "sidecar_queue_paused", "exports") == 1
    assert obs.measurements["paused"].value == 1
    assert jobs(obs, "exports")["wait"] + jobs(obs, "exports")["paused"] == 3
    assert obs.measurements["backlog"].value == 3
    await queue.resume()
    assert value(await observe(redis_url), "sidecar_queue_paused", "exports") == 0


HANGING_WORKER = """
import asyncio, sys
from bullmq import Worker

async def main():
    async def process(job, token):
        print("started", flush=True)
        await asyncio.sleep(3600)
    Worker(sys.argv[2], process, {"connection": sys.argv[1], "lockDuration": 1000, "stalledInterval": 600000})
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_job_of_a_killed_worker_is_stalled(redis_url: str, queues: list[Queue]) -> None:
    queue = new_queue(queues, redis_url, "thumbs")
    await queue.add("resize", {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HANGING_WORKER, redis_url, "thumbs", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            assert (await proc.stdout.readline()).strip() == b"started"
        alive = await observe(redis_url)
        assert jobs(alive, "thumbs")["active"] == 1
        assert value(alive, "sidecar_queue_stalled_jobs", "thumbs") == 0  # the worker renews its lock
        assert value(alive, "sidecar_queue_workers", "thumbs") == 2
        proc.kill()  # SIGKILL: no chance to release the job
        await proc.wait()
        await asyncio.sleep(1.6)  # lockDuration 1000 ms runs out
        obs = await observe(redis_url)
        assert jobs(obs, "thumbs")["active"] == 1
        assert value(obs, "sidecar_queue_stalled_jobs", "thumbs") == 1
        assert obs.measurements["stalled"].value == 1
        assert value(obs, "sidecar_queue_workers", "thumbs") == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_configured_queues_missing_and_prefix(redis_url: str, queues: list[Queue]) -> None:
    queue = new_queue(queues, redis_url, "billing", prefix="myapp")
    await queue.add("charge", {})

    default_prefix = await observe(redis_url)
    assert default_prefix.samples == []  # nothing under "bull": no series at all
    assert default_prefix.measurements["queues"].value == 0

    discovered = await observe(redis_url, prefix="myapp")
    assert jobs(discovered, "billing")["wait"] == 1

    configured = await observe(redis_url, prefix="myapp", queues=["billing", "ghost"])
    assert configured.status is Status.WARN
    assert configured.output == "configured queue not found: 'ghost'"
    assert configured.measurements["missingQueues"].value == 1
    assert {labels[0] for labels in series(configured, "sidecar_queue_jobs")} == {"billing"}


SCRIPT_COMMANDS = {
    "llen",
    "lindex",
    "lrange",
    "hmget",
    "hget",
    "hexists",
    "exists",
    "zrange",
    "zcard",
    "zcount",
}


async def test_one_round_trip_per_batch(
    redis_url: str, queues: list[Queue], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per probe: one EVALSHA per chunk of queues and one CLIENT LIST, sent together in one write."""
    for name in ("q1", "q2", "q3"):
        await new_queue(queues, redis_url, name).add("job", {})
    collector = BullMQCollector(
        CheckTarget("jobs", redis_url, 5.0),
        BullMQOptions(discovery_interval_seconds=600, queues_per_script=2),
    )
    admin = aioredis.Redis.from_url(redis_url)
    await collector.open()
    writes: list[int] = []
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        writes.append(1)
        await original(self, command, check_health)

    try:
        await collector.collect()  # loads the script, discovers the queues
        await admin.config_resetstat()
        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
        await collector.collect()
        monkeypatch.undo()
        stats = await admin.info("commandstats")
    finally:
        await collector.close()
        await admin.aclose()
    calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    top_level = {k: v for k, v in calls.items() if k not in SCRIPT_COMMANDS | {"info", "config|resetstat"}}
    assert top_level == {"evalsha": 2, "client|list": 1}  # 3 queues, 2 per script
    assert len(writes) == 1


async def test_first_probe_loads_the_script_once_and_reuses_the_discovery(
    redis_url: str, queues: list[Queue]
) -> None:
    """A fresh collector loads its script before the first batch (no batch answered NOSCRIPT), and
    the probes between discovery refreshes reuse the discovered names (no SCAN)."""
    for name in ("q1", "q2", "q3"):
        await new_queue(queues, redis_url, name).add("job", {})
    collector = BullMQCollector(
        CheckTarget("jobs", redis_url, 5.0),
        BullMQOptions(discovery_interval_seconds=600, queues_per_script=2),
    )
    admin = aioredis.Redis.from_url(redis_url)
    await collector.open()
    try:
        await admin.config_resetstat()
        first = await collector.collect()
        first_stats = await admin.info("commandstats")
        await admin.config_resetstat()
        second = await collector.collect()
        second_stats = await admin.info("commandstats")
    finally:
        await collector.close()
        await admin.aclose()

    def top_level(stats: dict[str, Any]) -> dict[str, int]:
        calls = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
        return {k: v for k, v in calls.items() if k not in SCRIPT_COMMANDS | {"info", "config|resetstat"}}

    first_calls = top_level(first_stats)
    assert first_calls.pop("client|setname", 0) <= 1  # redis-py names a new connection
    assert first_calls == {"scan": 1, "script|load": 1, "evalsha": 2, "client|list": 1}
    assert top_level(second_stats) == {"evalsha": 2, "client|list": 1}
    assert first.measurements["queues"].value == second.measurements["queues"].value == 3
    assert [(s.spec.name, s.label_values) for s in first.samples] == [
        (s.spec.name, s.label_values) for s in second.samples
    ]


async def test_a_collector_kept_between_probes_sees_what_a_fresh_one_sees(
    redis_url: str, queues: list[Queue]
) -> None:
    """Queues whose row did not change keep their samples; changed ones are measured afresh. After
    jobs are added, delayed, prioritized and a queue paused, a kept collector reports what a new one
    does (ages to within the time between the two probes)."""
    mail, idle = new_queue(queues, redis_url, "mail"), new_queue(queues, redis_url, "idle")
    await mail.add("send", {})
    await idle.add("noop", {})
    kept = BullMQCollector(CheckTarget("jobs", redis_url, 5.0), BullMQOptions(overdue_grace_seconds=0))
    await kept.open()
    try:
        await kept.collect()
        await kept.collect()  # nothing changed: every queue kept
        await mail.add("send", {}, {"priority": 2})
        await mail.add("later", {}, {"delay": 100})
        await idle.pause()
        await asyncio.sleep(0.3)  # the delayed job is overdue
        again = await kept.collect()
        fresh = await observe(redis_url, overdue_grace_seconds=0)
    finally:
        await kept.close()
    ages = {"sidecar_queue_oldest_waiting_job_age_seconds", "sidecar_queue_overdue_delayed_seconds"}

    def exact(obs: Observation) -> list[tuple[str, tuple[str, ...], float]]:
        return [(s.spec.name, s.label_values, s.value) for s in obs.samples if s.spec.name not in ages]

    assert exact(again) == exact(fresh)
    assert jobs(again, "mail")["prioritized"] == 1 and value(again, "sidecar_queue_paused", "idle") == 1
    assert value(again, "sidecar_queue_overdue_delayed_jobs", "mail") == 1
    for name in ages:
        for labels, seconds in series(again, name).items():
            assert seconds <= series(fresh, name)[labels] <= seconds + 2.0
    assert again.measurements.keys() == fresh.measurements.keys()


async def test_legacy_markers_and_many_active_jobs(redis_url: str) -> None:
    """BullMQ <5 markers ("0:...") in the lists, and more active jobs than one EXISTS takes (1,000
    locks per call) or than max_active_scan reads, written in BullMQ's key layout."""
    now_ms = int(time.time() * 1000)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with admin.pipeline(transaction=False) as pipe:
            pipe.hset("bull:old:meta", "opts.maxLenEvents", 10000)
            for job, age_ms in (("1", 30_000), ("2", 40_000), ("3", 50_000)):
                pipe.hset(f"bull:old:{job}", mapping={"name": "j", "timestamp": now_ms - age_ms, "delay": 0})
            pipe.rpush("bull:old:wait", "1", "2", "3", "0:0")  # the head is at the right, then a marker
            pipe.rpush("bull:old:paused", "0:1")  # a marker alone
            pipe.rpush("bull:old:active", *[f"a{i}" for i in range(1, 1201)], "0:x")
            for i in range(1, 1001):
                pipe.set(f"bull:old:a{i}:lock", "token", px=60_000)
            await pipe.execute()
        wide = await observe(redis_url, max_active_scan=1500)
        narrow = await observe(redis_url, max_active_scan=100)
        none = await observe(redis_url, max_active_scan=0)
    finally:
        await admin.aclose()
    assert jobs(wide, "old")["wait"] == 3 and jobs(wide, "old")["paused"] == 0
    assert 50.0 <= value(wide, "sidecar_queue_oldest_waiting_job_age_seconds", "old") <= 60.0
    assert jobs(wide, "old")["active"] == jobs(narrow, "old")["active"] == jobs(none, "old")["active"] == 1201
    assert value(wide, "sidecar_queue_stalled_jobs", "old") == 200  # a1001..a1200 hold no lock
    assert value(narrow, "sidecar_queue_stalled_jobs", "old") == 99  # the last 100 entries: 99 jobs
    assert value(none, "sidecar_queue_stalled_jobs", "old") == 0


# --- through the sidecar: thresholds, failures, exposition ----------------------------------------


async def test_probe_thresholds_warn_and_unreachable_fails(redis_url: str, queues: list[Queue]) -> None:
    queue = new_queue(queues, redis_url, "emails")
    for _ in range(5):
        await queue.add("send", {})
    config = CheckConfig(
        name="jobs",
        kind="bullmq",
        target=redis_url,
        warn={"backlog": 3, "oldestJobAge": 3600},
        fail={"stalled": 0},
    )
    assert config.is_critical is False
    probe = Probe(config)
    await probe.collector.open()
    try:
        result = await probe.run()
    finally:
        await probe.collector.close()
    assert result.status is Status.WARN
    assert result.output == "backlog 5 >3"

    down = Probe(CheckConfig(name="jobs", kind="bullmq", target=f"redis://:pw@127.0.0.1:{free_port()}/0"))
    await down.collector.open()
    try:
        failed = await down.run()
    finally:
        await down.collector.close()
    assert (failed.status, failed.reason) == (Status.FAIL, Reason.CONNECT)
    assert "pw" not in failed.output


async def test_exposition_passes_promtool(redis_url: str, queues: list[Queue]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        skip_or_fail("promtool is not installed (Debian package prometheus)")
    queue = new_queue(queues, redis_url, "emails")
    await queue.add("send", {})
    worker = Worker("emails", _ok, {"connection": redis_url, "metrics": {"maxDataPoints": 5}})
    try:
        await wait_until(lambda: _count(queue, "completed", 1))
    finally:
        await worker.close()
    await queue.add("send", {}, {"delay": 60_000})
    config = CheckConfig(name="jobs", kind="bullmq", target=redis_url)
    store = ResultStore()
    health = HealthModel(store)
    health.configure([config])
    store.register("jobs", "bullmq")
    probe = Probe(config)
    await probe.collector.open()
    try:
        store.record(await probe.run())
    finally:
        await probe.collector.close()
    registry = CollectorRegistry()
    registry.register(CheckMetrics(store, health))
    text = generate_latest(registry).decode()
    assert 'sidecar_queue_jobs{check="jobs",queue="emails",state="completed"} 1.0' in text
    assert 'sidecar_queue_jobs_completed_total{check="jobs",queue="emails"} 1.0' in text
    result = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


async def _ok(job: Any, token: str) -> int:
    return 1


async def _count(queue: Queue, state: str, n: int) -> bool:
    return bool((await queue.getJobCounts(state))[state] == n)


# --- Node BullMQ ----------------------------------------------------------------------------------


def require_node_bullmq() -> str:
    node = shutil.which("node")
    reason = ""
    if node is None:
        reason = "Node.js is not installed"
    elif not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        reason = f"run `npm install` in {NODE_DIR} (tests/run.sh does)"
    if reason:
        skip_or_fail(reason)
    assert node is not None
    return node


async def node(*args: str, timeout: float = 40.0) -> str:
    """Run the Node fixture script to completion (bounded) and return its output."""
    proc = await asyncio.create_subprocess_exec(
        require_node_bullmq(),
        str(NODE_SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=NODE_DIR,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@contextlib.asynccontextmanager
async def node_worker(url: str, queue: str) -> AsyncIterator[None]:
    """An idle Node BullMQ worker, running until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        require_node_bullmq(),
        str(NODE_SCRIPT),
        "serve",
        url,
        queue,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=NODE_DIR,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        async with asyncio.timeout(30):
            assert (await proc.stdout.readline()).strip() == b"ready"
        yield
        proc.stdin.close()
        async with asyncio.timeout(15):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()


async def test_node_producer_and_worker(redis_url: str) -> None:
    require_node_bullmq()
    await node("produce", redis_url, "node-mail", "5", "2", "300")
    await asyncio.sleep(1.5)
    obs = await observe(redis_url, overdue_grace_seconds=0)
    assert jobs(obs, "node-mail") == {
        "wait": 5, "paused": 0, "active": 0, "prioritized": 0, "delayed": 1, "waiting-children": 0,
        "completed": 0, "failed": 0,
    }  # fmt: skip
    assert value(obs, "sidecar_queue_overdue_delayed_jobs", "node-mail") == 1
    assert value(obs, "sidecar_queue_overdue_delayed_seconds", "node-mail") >= 1.0
    assert value(obs, "sidecar_queue_oldest_waiting_job_age_seconds", "node-mail") >= 1.5

    assert '"completed":4,"failed":2' in await node("drain", redis_url, "node-mail", "6")
    done = await observe(redis_url)
    assert jobs(done, "node-mail")["completed"] == 4
    assert jobs(done, "node-mail")["failed"] == 2
    assert jobs(done, "node-mail")["wait"] == jobs(done, "node-mail")["delayed"] == 0
    assert value(done, "sidecar_queue_jobs_completed_total", "node-mail") == 4
    assert value(done, "sidecar_queue_jobs_failed_total", "node-mail") == 2

    async with node_worker(redis_url, "node-mail"):
        # A Node BullMQ worker names one connection <prefix>:<base64(queue)>.
        assert value(await observe(redis_url), "sidecar_queue_workers", "node-mail") == 1
    assert value(await observe(redis_url), "sidecar_queue_workers", "node-mail") == 0
