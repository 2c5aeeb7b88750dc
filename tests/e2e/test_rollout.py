"""Zero-error rollouts: a rolling update of the shipped Deployment, replayed with real processes, fails no
request; the old two-container layout does (so this test can tell them apart); and the sidecar on its own
stops at once when the app is gone first (``exit_on_zero_active``).

The rollout is ``bench/rollout.py`` with fewer pods and a shorter steady phase; the timings come from
``deploy/kubernetes`` scaled by 0.1 (a 10 s preStop becomes 1 s).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import aiohttp
import pytest

from bench.rollout import APP_JS, run_rollout
from bench.rollout_manifest import NATIVE, PRE_129, load_plan
from tests.e2e.sidecar_process import SidecarProcess
from tests.servers import HOST, free_port, skip_or_fail, wait_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PODS = 3
RATE = 60.0
DRAIN_PERIOD = 4.0


def node() -> str:
    path = shutil.which("node")
    if path is None:
        skip_or_fail("node is not installed: the pods' app is a Node server")
    return path


async def test_rolling_update_of_the_shipped_manifest_fails_no_request() -> None:
    node()
    result = await run_rollout(load_plan(NATIVE), layout="native", pods=PODS, rate=RATE, steady_seconds=2.0)
    assert result.sent > RATE * 5, result
    assert result.failed == 0, result.failures
    for name, app_exited, sidecar_exited, killed in result.stops:
        assert killed == [], f"{name}: SIGKILL needed for {killed}"
        # native order: the sidecar is stopped after the app, and exits at once since the app is gone
        assert app_exited < sidecar_exited < app_exited + 1.0, (name, app_exited, sidecar_exited)
    assert result.rollout_p99_ms < 1000, result


async def test_old_two_container_layout_fails_requests_during_the_same_rollout() -> None:
    node()
    plan = load_plan(PRE_129).without_hooks()  # two pods are enough to see it fail, and quicker
    result = await run_rollout(plan, layout="old", pods=2, rate=RATE, steady_seconds=2.0)
    assert result.failures["HTTP 502"] > 0, result.failures
    for name, app_exited, sidecar_exited, _ in result.stops:
        assert app_exited < 0.5 < sidecar_exited, (name, app_exited, sidecar_exited)  # both SIGTERMed


# -- the sidecar alone: the app gone first ------------------------------------------------------------


@contextmanager
def node_app() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen([node(), str(APP_JS), str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_port(HOST, port)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


@asynccontextmanager
async def sidecar_for(app_port: int, exit_on_zero_active: bool) -> AsyncIterator[tuple[SidecarProcess, str]]:
    gateway_port = free_port()
    config = (
        "default_checks: false\n"
        "log_level: info\n"
        "gateway:\n"
        f"  listen: {HOST}:{gateway_port}\n"
        f"  drain_period: {DRAIN_PERIOD}\n"
        "  grace_period: 5\n"
        f"  exit_on_zero_active: {str(exit_on_zero_active).lower()}\n"
        "  access_log: {enabled: false}\n"
    )
    process = SidecarProcess(config, env={"SIDECAR_UPSTREAM": f"http://{HOST}:{app_port}"})
    await asyncio.to_thread(process.start)
    try:
        yield process, f"http://{HOST}:{gateway_port}"
    finally:
        await asyncio.to_thread(process.__exit__, None, None, None)


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Connection", "").lower()


@pytest.mark.parametrize("exit_on_zero_active", [True, False])
async def test_sigterm_after_the_app_exited(exit_on_zero_active: bool) -> None:
    """The native-sidecar order: the app exits, then the sidecar gets SIGTERM."""
    with node_app() as (app, app_port):
        async with (
            sidecar_for(app_port, exit_on_zero_active) as (sidecar, gateway),
            aiohttp.ClientSession() as s,
        ):
            assert sidecar.proc is not None
            assert await get(s, gateway + "/") == (200, "")
            app.send_signal(signal.SIGTERM)  # a default Node app: gone at once
            app.wait(5)
            sigterm_at = time.monotonic()
            sidecar.signal(signal.SIGTERM)
            if exit_on_zero_active:
                code = await asyncio.to_thread(sidecar.proc.wait, DRAIN_PERIOD)
                assert time.monotonic() - sigterm_at < 1.5, "it should not have waited for drain_period"
                assert code == 0
                with pytest.raises(aiohttp.ClientConnectionError):
                    await get(s, gateway + "/")  # refused, not a 502
            else:
                await asyncio.sleep(0.3)
                assert await get(s, gateway + "/") == (502, "close")  # the old behaviour, for contrast
                code = await asyncio.to_thread(sidecar.proc.wait, DRAIN_PERIOD + 6)
                assert time.monotonic() - sigterm_at >= DRAIN_PERIOD
                assert code == 0


async def test_app_exiting_during_the_drain_stops_the_gateway_at_once() -> None:
    """The two-container order: SIGTERM to the sidecar while the app serves, then the app exits."""
    with node_app() as (app, app_port):
        async with sidecar_for(app_port, True) as (sidecar, gateway), aiohttp.ClientSession() as s:
            assert sidecar.proc is not None
            sidecar.signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert await get(s, gateway + "/") == (200, "close")  # draining: serving, Connection: close
            slow = asyncio.create_task(get(s, gateway + "/work?ms=300"))  # in flight when the app exits
            await asyncio.sleep(0.1)
            gone_at = time.monotonic()
            app.send_signal(signal.SIGTERM)
            with suppress(aiohttp.ClientError):
                await slow  # cut with the app: the one request that cannot be saved
            code = await asyncio.to_thread(sidecar.proc.wait, DRAIN_PERIOD)
            assert time.monotonic() - gone_at < 1.5, "it should have stopped when the app went away"
            assert code == 0
