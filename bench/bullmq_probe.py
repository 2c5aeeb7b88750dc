"""Probe time, Redis commands and round trips of one BullMQ probe for 1, 100 and 1,000 queues.

A throwaway redis-server on a free loopback port is filled with queues written directly in BullMQ's
key layout (20 waiting, 3 prioritized, 5 delayed of which 2 overdue, 2 active with locks, 10
completed, 2 failed jobs, and BullMQ's metrics hashes per queue); one queue is cross-checked against
the real ``bullmq`` package's ``getJobCounts``. Then the collector probes repeatedly:

- the first probe discovers the queues (bounded ``SCAN``) and loads the script: shown apart;
- the steady-state probes reuse the discovered list: median and p95 wall time, commands per probe
  (``INFO commandstats`` deltas, split into top-level commands and commands run inside the scripts)
  and round trips (writes of a pipelined batch to the socket, counted in redis-py);
- then steady probes after a job was pushed onto every queue's wait list since the last one (not
  timed): no queue's figures are as they were, so the collector keeps none of its samples (the
  worst case of a steady probe; the one above, where nothing changed, is the best).

    .venv/bin/python bench/bullmq_probe.py [--probes 30] [--sizes 1,100,1000]

Target: the first probe of 1,000 queues under 100 ms, steady probes under 50 ms, and O(1) round trips
per batch of queues. On a loaded machine wall time inflates (both processes wait for a core), so the
probe's CPU time (client) and the Redis server's CPU time (``INFO cpu``) are printed too, and the
time Redis spent in each command (``INFO commandstats`` usec), first probe apart.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import free_port  # noqa: E402
from collectors.base import CheckTarget  # noqa: E402
from collectors.bullmq import BULLMQ_QUEUE_LUA, DELAYED_SCORE_FACTOR, BullMQCollector, BullMQOptions  # noqa: E402

FIRST_GOAL_MS = 100  # issue 17: the first probe of 1,000 queues (discovery) under 100 ms
STEADY_GOAL_MS = 50  # and steady probes under 50 ms
WAITING, PRIORITIZED, DELAYED, OVERDUE, ACTIVE, COMPLETED, FAILED = 20, 3, 5, 2, 2, 10, 2
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


class RoundTrips:
    """Counts socket writes of redis-py connections (one per command or per pipelined batch)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = AbstractConnection.send_packed_command

    def __enter__(self) -> RoundTrips:
        original = self._original
        counter = self

        async def counting(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            await original(conn, command, check_health)

        AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        AbstractConnection.send_packed_command = self._original  # type: ignore[method-assign]


async def fill(client: aioredis.Redis, queues: int, now_ms: int) -> None:
    """Write ``queues`` BullMQ queues in BullMQ's own key layout."""
    async with client.pipeline(transaction=False) as pipe:
        for q in range(queues):
            base = f"bull:queue-{q:04d}"
            pipe.hset(f"{base}:meta", mapping={"opts.maxLenEvents": 10000, "version": "bullmq:5.0.0"})
            job = 0
            for i in range(WAITING):
                job += 1
                pipe.hset(
                    f"{base}:{job}", mapping={"name": "job", "data": "{}", "timestamp": now_ms - 60_000 + i}
                )
                pipe.lpush(f"{base}:wait", str(job))
            for i in range(PRIORITIZED):
                job += 1
                pipe.hset(
                    f"{base}:{job}", mapping={"name": "job", "data": "{}", "timestamp": now_ms, "priority": 5}
                )
                pipe.zadd(f"{base}:prioritized", {str(job): 5 * 0x100000000 + i})
            for i in range(DELAYED):
                job += 1
                due = now_ms - 30_000 if i < OVERDUE else now_ms + 3_600_000
                pipe.hset(
                    f"{base}:{job}", mapping={"name": "job", "data": "{}", "timestamp": now_ms, "delay": 1}
                )
                pipe.zadd(f"{base}:delayed", {str(job): due * DELAYED_SCORE_FACTOR + (job & 0xFFF)})
            for _ in range(ACTIVE):
                job += 1
                pipe.hset(f"{base}:{job}", mapping={"name": "job", "data": "{}", "timestamp": now_ms})
                pipe.lpush(f"{base}:active", str(job))
                pipe.set(f"{base}:{job}:lock", "token", px=600_000)
            for state, n in (("completed", COMPLETED), ("failed", FAILED)):
                for _ in range(n):
                    job += 1
                    pipe.hset(f"{base}:{job}", mapping={"name": "job", "data": "{}", "timestamp": now_ms})
                    pipe.zadd(f"{base}:{state}", {str(job): now_ms})
            pipe.set(f"{base}:id", job)
            pipe.hset(
                f"{base}:metrics:completed", mapping={"count": 1000, "prevTS": now_ms, "prevCount": 990}
            )
            pipe.hset(f"{base}:metrics:failed", mapping={"count": 7, "prevTS": now_ms, "prevCount": 7})
        await pipe.execute()


async def cross_check(url: str) -> None:
    """The real bullmq package reads the written layout the same way."""
    try:
        from bullmq import Queue
    except ImportError:
        print("(bullmq package not installed: layout cross-check skipped)")
        return
    queue = Queue("queue-0000", {"connection": url})
    try:
        counts = await queue.getJobCounts("wait", "prioritized", "delayed", "active", "completed", "failed")
    finally:
        await queue.close()
    expected = {
        "wait": WAITING, "prioritized": PRIORITIZED, "delayed": DELAYED, "active": ACTIVE,
        "completed": COMPLETED, "failed": FAILED,
    }  # fmt: skip
    assert counts == expected, (counts, expected)


async def commandstats(admin: aioredis.Redis) -> tuple[Counter[str], Counter[str]]:
    """Calls and total server microseconds per command."""
    stats = await admin.info("commandstats")
    calls = Counter({name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()})
    usec = Counter({name.removeprefix("cmdstat_"): int(entry["usec"]) for name, entry in stats.items()})
    return calls, usec


async def redis_cpu_ms(admin: aioredis.Redis) -> float:
    """CPU time the Redis server has used so far, in ms (robust to machine load, unlike wall time)."""
    cpu = await admin.info("cpu")
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1000


async def bench_size(url: str, admin: aioredis.Redis, queues: int, probes: int) -> dict[str, Any]:
    await admin.flushall()
    now_ms = int(time.time() * 1000)
    await fill(admin, queues, now_ms)
    keys = await admin.dbsize()
    collector = BullMQCollector(
        CheckTarget("bench", url, 10.0), BullMQOptions(discovery_interval_seconds=3600, max_queues=10_000)
    )
    await collector.open()
    try:
        _, usec_0 = await commandstats(admin)
        redis_cpu_0 = await redis_cpu_ms(admin)
        with RoundTrips() as trips:
            cpu_started = time.process_time()
            started = time.perf_counter()
            first = await collector.collect()
            first_ms = (time.perf_counter() - started) * 1000
            first_cpu_ms = (time.process_time() - cpu_started) * 1000
        first_redis_cpu_ms = await redis_cpu_ms(admin) - redis_cpu_0
        _, usec_1 = await commandstats(admin)
        first_usec = usec_1 - usec_0
        for name in ("info", *SCRIPT_COMMANDS):  # inside a script: already in evalsha's time
            first_usec.pop(name, None)
        first_trips, scan_calls = trips.count, collector._scan.calls
        assert first.measurements["queues"].value == queues, first.measurements
        assert first.measurements["overdueDelayed"].value == OVERDUE * queues
        assert first.measurements["backlog"].value == WAITING + PRIORITIZED

        times: list[float] = []
        cpu_times: list[float] = []
        before, usec_before = await commandstats(admin)
        redis_cpu_before = await redis_cpu_ms(admin)
        with RoundTrips() as trips:
            for _ in range(probes):
                cpu_started = time.process_time()
                started = time.perf_counter()
                await collector.collect()
                times.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.process_time() - cpu_started) * 1000)
        redis_cpu = (await redis_cpu_ms(admin) - redis_cpu_before) / probes
        after, usec_after = await commandstats(admin)
        churn = await changed_probes(collector, admin, queues, probes)
    finally:
        await collector.close()
    delta = after - before
    steady_usec = usec_after - usec_before
    for name in ("info", *SCRIPT_COMMANDS):
        steady_usec.pop(name, None)
    script_usec = (usec_after - usec_before)["evalsha"] / max(1, delta["evalsha"])
    delta.pop("info", None)
    inner = sum(n for name, n in delta.items() if name in SCRIPT_COMMANDS) / probes
    top = {name: n / probes for name, n in delta.items() if name not in SCRIPT_COMMANDS}
    return {
        "queues": queues,
        "keys": keys,
        "first_ms": first_ms,
        "first_cpu_ms": first_cpu_ms,
        "first_redis_ms": sum(first_usec.values()) / 1000,
        "first_redis_by_command": {name: us / 1000 for name, us in first_usec.items() if us},
        "first_redis_cpu_ms": first_redis_cpu_ms,
        "cpu_median_ms": statistics.median(cpu_times),
        "redis_ms": sum(steady_usec.values()) / 1000 / probes,
        "redis_cpu_ms": redis_cpu,
        "first_trips": first_trips,
        "scan_calls": scan_calls,
        "median_ms": statistics.median(times),
        "p95_ms": statistics.quantiles(times, n=20)[18] if len(times) >= 20 else max(times),
        "top": top,
        "inner": inner,
        "trips": trips.count / probes,
        "script_ms": script_usec / 1000,
        **churn,
    }


async def changed_probes(
    collector: BullMQCollector, admin: aioredis.Redis, queues: int, probes: int
) -> dict[str, float]:
    """Steady probes where every queue changed since the last: wall, client CPU and Redis CPU medians."""
    walls: list[float] = []
    cpus: list[float] = []
    redis_cpus: list[float] = []
    for n in range(probes):
        async with admin.pipeline(transaction=False) as pipe:
            for q in range(queues):
                pipe.lpush(f"bull:queue-{q:04d}:wait", f"pushed-{n}")  # not the head: no job hash needed
            await pipe.execute()
        redis_cpu_0 = await redis_cpu_ms(admin)
        cpu_started = time.process_time()
        started = time.perf_counter()
        observation = await collector.collect()
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - cpu_started) * 1000)
        redis_cpus.append(await redis_cpu_ms(admin) - redis_cpu_0)  # one INFO included: ~0.05 ms
        assert observation.measurements["backlog"].value == WAITING + PRIORITIZED + n + 1
    return {
        "changed_median_ms": statistics.median(walls),
        "changed_cpu_ms": statistics.median(cpus),
        "changed_redis_cpu_ms": statistics.median(redis_cpus),
    }


async def main(sizes: list[int], probes: int) -> None:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        admin = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            async with asyncio.timeout(10):
                while True:
                    try:
                        await admin.ping()
                        break
                    except OSError:
                        await asyncio.sleep(0.05)
                    except aioredis.ConnectionError:
                        await asyncio.sleep(0.05)
            version = (await admin.info("server"))["redis_version"]
            await fill(admin, 1, int(time.time() * 1000))
            await cross_check(url)
            print(f"redis-server {version} on 127.0.0.1:{port}; script is {len(BULLMQ_QUEUE_LUA)} bytes; "
                  f"{probes} steady-state probes per size")  # fmt: skip
            print(f"per queue: {WAITING} waiting, {PRIORITIZED} prioritized, {DELAYED} delayed ({OVERDUE} overdue), "
                  f"{ACTIVE} active, {COMPLETED} completed, {FAILED} failed")  # fmt: skip
            print()
            header = (
                f"{'queues':>6} {'keys':>7} | {'first probe':>11} {'trips':>5} {'SCANs':>5} | "
                f"{'median':>8} {'p95':>8} {'trips':>5} {'commands/probe (top level)':<32} {'in scripts':>10} "
                f"{'Redis busy/script':>17}"
            )
            print(header)
            print("-" * len(header))
            results: list[dict[str, Any]] = []
            for size in sizes:
                r = await bench_size(url, admin, size, probes)
                top = ", ".join(f"{name} {n:g}" for name, n in sorted(r["top"].items()))
                print(
                    f"{r['queues']:>6} {r['keys']:>7} | {r['first_ms']:>9.1f}ms {r['first_trips']:>5} "
                    f"{r['scan_calls']:>5} | {r['median_ms']:>6.1f}ms {r['p95_ms']:>6.1f}ms {r['trips']:>5g} "
                    f"{top:<32} {r['inner']:>10g} {r['script_ms']:>15.2f}ms"
                )
                results.append(r)
            print()
            print("CPU time (robust to machine load; wall time above is not) and Redis-side time:")
            for r in results:
                by_command = ", ".join(
                    f"{name} {ms:.1f}ms" for name, ms in sorted(r["first_redis_by_command"].items())
                )
                first_met = (
                    "met" if r["first_cpu_ms"] + r["first_redis_cpu_ms"] < FIRST_GOAL_MS else "NOT met"
                )
                steady_met = "met" if r["cpu_median_ms"] + r["redis_cpu_ms"] < STEADY_GOAL_MS else "NOT met"
                print(
                    f"{r['queues']:>6} queues | first probe: client CPU {r['first_cpu_ms']:.1f}ms, Redis CPU "
                    f"{r['first_redis_cpu_ms']:.1f}ms, Redis commandstats {r['first_redis_ms']:.1f}ms ({by_command}); "
                    f"goal < {FIRST_GOAL_MS}ms: {first_met}"
                )
                print(
                    f"{'':>6}        | steady probe: client CPU median {r['cpu_median_ms']:.1f}ms, Redis CPU "
                    f"{r['redis_cpu_ms']:.1f}ms, Redis commandstats {r['redis_ms']:.1f}ms; "
                    f"goal < {STEADY_GOAL_MS}ms: {steady_met}"
                )
                changed_met = (
                    "met" if r["changed_cpu_ms"] + r["changed_redis_cpu_ms"] < STEADY_GOAL_MS else "NOT met"
                )
                print(
                    f"{'':>6}        | steady probe, every queue changed: wall median "
                    f"{r['changed_median_ms']:.1f}ms, client CPU median {r['changed_cpu_ms']:.1f}ms, Redis CPU "
                    f"{r['changed_redis_cpu_ms']:.1f}ms; goal < {STEADY_GOAL_MS}ms: {changed_met}"
                )
        finally:
            await admin.aclose()
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--sizes", default="1,100,1000")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.probes))
