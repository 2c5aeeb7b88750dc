"""The real process: a killed app behind the gateway is out of readiness within a second, from live traffic.

The active probe runs every 5 s here, so only passive detection can explain a sub-second 503 (its way
back is covered in tests/integration/probing/test_app_check.py; bench/app_outage.py measures both).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.integration.gateway_support import HOST, run_upstream
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_killed_app_fails_readiness_within_a_second() -> None:
    gateway_port = free_port()
    async with run_upstream() as upstream:
        config = (
            "default_checks: false\n"
            f"gateway: {{listen: '{HOST}:{gateway_port}', access_log: {{enabled: false}}}}\n"
            "app_check: {interval: 5s, rise: 1, outlier: {base_ejection_time: 1s}}\n"
        )
        sidecar = SidecarProcess(config, env={"SIDECAR_UPSTREAM": upstream.url})
        await asyncio.to_thread(sidecar.start)
        try:
            await asyncio.to_thread(sidecar.wait_for, "/readyz", 200, 10)
            stop = asyncio.Event()

            async def traffic() -> None:
                async with aiohttp.ClientSession() as client:
                    while not stop.is_set():
                        try:
                            async with client.get(f"http://{HOST}:{gateway_port}/echo") as response:
                                await response.read()
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.01)

            load = asyncio.create_task(traffic())
            await asyncio.sleep(0.5)
            killed = time.monotonic()
            await upstream.runner.cleanup()
            await asyncio.to_thread(sidecar.wait_for, "/readyz", 503, 5, 0.01)
            took = time.monotonic() - killed
            assert took < 1.0, f"/readyz took {took:.2f}s to fail"
            status, body = sidecar.get("/readyz")
            assert (status, body) == (503, b"failing: app (outlier: 3 consecutive connect failures)")
            stop.set()
            await load
        finally:
            await asyncio.to_thread(sidecar.stop)
