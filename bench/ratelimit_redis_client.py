"""Why the gateway talks to Redis with its own small RESP client: the cost of one rate-limit decision
with redis-py's asyncio client (a task per decision, as a callback-based proxy would need) against the
pipelined protocol client the gateway uses (``sidecar.gateway.ratelimit.redis_backend``).

Both send the same ``EVALSHA`` of the rate-limit script to a throwaway ``redis-server``, 32 decisions
in flight; reported is this process's CPU time and the wall time per decision (uvloop).

    .venv/bin/python bench/ratelimit_redis_client.py [--decisions 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import free_port, start, stop
from sidecar.gateway.ratelimit.redis_backend import SCRIPT, RedisLimiterClient, bulk, script_args
from sidecar.gateway.ratelimit.settings import RateLimitRedis
from sidecar.gateway.write_batch import WriteBatch

IN_FLIGHT = 32
ARGS = (0, "s", 1_000_000_000, 3_600_000, 1_000_000_000)


async def with_redis_py(url: str, count: int) -> tuple[float, float]:
    client = aioredis.Redis.from_url(url, max_connections=IN_FLIGHT)
    sha = await client.script_load(SCRIPT)
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with gate:
            await client.evalsha(sha, 1, "bench:py", *ARGS)

    await asyncio.gather(*[one() for _ in range(200)])  # warm-up: the pool's connections
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[asyncio.ensure_future(one()) for _ in range(count)])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await client.aclose()
    return cpu / count * 1e6, wall / count * 1e6


async def with_pipeline(url: str, count: int) -> tuple[float, float]:
    client = RedisLimiterClient(RateLimitRedis(url=url), WriteBatch(), lambda _: None, lambda _: None)
    body = bulk(b"bench:pipe") + script_args(0, True, *ARGS[2:])
    done = asyncio.get_running_loop().create_future()
    left = [count]
    in_flight = [0]

    class Target:
        def redis_reply(self, index: int, reply: Any, error: str | None) -> None:
            assert error is None, error
            in_flight[0] -= 1
            if left[0]:
                left[0] -= 1
                in_flight[0] += 1
                client.call(body, self, 0)
            elif not in_flight[0]:
                done.set_result(None)

    client.start()
    await asyncio.sleep(0.2)
    target = Target()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(IN_FLIGHT):
        left[0] -= 1
        in_flight[0] += 1
        client.call(body, target, 0)
    await done
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await client.close()
    return cpu / count * 1e6, wall / count * 1e6


async def run(url: str, count: int) -> None:
    for name, measure in (
        ("redis.asyncio, a task per decision", with_redis_py),
        ("pipelined RESP client, callbacks", with_pipeline),
    ):
        cpu, wall = await measure(url, count)
        print(
            f"{name:36} client CPU {cpu:5.1f} us/decision, wall {wall:5.1f} us/decision ({IN_FLIGHT} in flight)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=40_000)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp]
        server = start([binary, "--port", str(port), *options], cpu=1)
        try:
            time.sleep(0.5)
            uvloop.run(run(f"redis://127.0.0.1:{port}/0", args.decisions))
        finally:
            stop(server)


if __name__ == "__main__":
    main()
