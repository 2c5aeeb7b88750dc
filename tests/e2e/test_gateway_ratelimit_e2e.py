"""Two real sidecar processes (``python -m sidecar run``, gateway on) share one throwaway Redis: their
gateways enforce one combined limit, and both report their share of the decisions on ``/metrics``.
Then Redis is stopped: the fail-closed rule refuses with 503 on both, the fail-open rule lets through."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yaml

from tests.e2e.sidecar_process import SidecarProcess, metric_value
from tests.integration.gateway_support import HOST, Upstream, run_upstream
from tests.servers import RedisServer, free_port, require_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RULES = [
    {"name": "shared", "limit": 10, "window": "1h", "match": {"path_prefixes": ["/echo"]}},
    {
        "name": "strict",
        "limit": 1000,
        "window": "1h",
        "match": {"path_prefixes": ["/users/"]},
        "on_redis_error": "closed",
    },
]


def config(port: int, redis_url: str) -> str:
    return yaml.safe_dump(
        {
            "default_checks": False,
            "gateway": {
                "listen": f"{HOST}:{port}",
                "drain_period": 0,
                "grace_period": 2,
                "access_log": {"enabled": False},
                "rate_limits": RULES,
                "rate_limit_redis": redis_url,
            },
        }
    )


@contextlib.asynccontextmanager
async def sidecar(upstream: Upstream, redis_url: str) -> AsyncIterator[tuple[SidecarProcess, str]]:
    port = free_port()
    process = SidecarProcess(config(port, redis_url), env={"SIDECAR_UPSTREAM": upstream.url})
    await asyncio.to_thread(process.start)
    try:
        yield process, f"http://{HOST}:{port}"
    finally:
        await asyncio.to_thread(process.__exit__, None, None, None)


async def burst(url: str, count: int) -> list[int]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def one() -> int:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*[one() for _ in range(count)]))


def decided(text: str, rule: str, outcome: str) -> float:
    return metric_value(text, "sidecar_gateway_ratelimit_decisions_total", rule=rule, outcome=outcome) or 0.0


async def metrics(process: SidecarProcess) -> str:
    status, body = await asyncio.to_thread(process.get, "/metrics")
    assert status == 200
    return body.decode()


async def test_two_sidecars_sharing_one_redis_enforce_one_combined_limit() -> None:
    require_binary("redis-server")
    with RedisServer() as cache:
        async with (
            run_upstream() as upstream,
            sidecar(upstream, cache.url) as (one, one_url),
            sidecar(upstream, cache.url) as (two, two_url),
        ):
            first, second = await asyncio.gather(burst(one_url + "/echo", 15), burst(two_url + "/echo", 15))
            statuses = first + second
            assert statuses.count(200) == 10 and statuses.count(429) == 20, (first, second)
            assert len([s for s in upstream.seen if s["path"] == "/echo"]) == 10

            allowed = rejected = 0.0
            for process in (one, two):
                text = await metrics(process)
                allowed += decided(text, "shared", "allowed")
                rejected += decided(text, "shared", "rejected")
                latencies = metric_value(text, "sidecar_gateway_ratelimit_redis_duration_seconds_count")
                assert (latencies or 0) >= 15
            assert (allowed, rejected) == (10, 20)

            # Redis gone: the fail-closed rule answers 503 on both replicas, the fail-open one passes.
            await asyncio.to_thread(cache.stop)
            assert set(await burst(one_url + "/users/1", 5) + await burst(two_url + "/users/2", 5)) == {503}
            assert set(await burst(one_url + "/echo", 3)) == {200}
            for process in (one, two):
                text = await metrics(process)
                assert decided(text, "strict", "error_closed") == 5
            assert decided(await metrics(one), "shared", "error_open") == 3
