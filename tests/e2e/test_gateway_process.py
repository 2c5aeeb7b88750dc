"""The real ``python -m sidecar run`` process as a gateway: a SIGTERM drain under steady load loses no
request, and 1 GB bodies stream through without the sidecar's memory growing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import psutil
import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.integration.gateway_support import HOST, Upstream, run_upstream
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DRAIN_PERIOD = 2.0
GRACE_PERIOD = 6.0
GIB = 1024**3


def gateway_config(upstream: Upstream, port: int, **extra: object) -> str:
    lines = [
        "default_checks: false",
        "log_level: info",
        "gateway:",
        f"  listen: {HOST}:{port}",
        f"  drain_period: {DRAIN_PERIOD}",
        f"  grace_period: {GRACE_PERIOD}",
        "  access_log: {enabled: false}",
    ]
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@contextlib.asynccontextmanager
async def sidecar_process(upstream: Upstream, **extra: object) -> AsyncIterator[tuple[SidecarProcess, str]]:
    port = free_port()
    process = SidecarProcess(gateway_config(upstream, port, **extra), env={"SIDECAR_UPSTREAM": upstream.url})
    await asyncio.to_thread(process.start)
    try:
        yield process, f"http://{HOST}:{port}"
    finally:
        await asyncio.to_thread(process.__exit__, None, None, None)


@dataclass
class Load:
    ok: int = 0
    ok_after_sigterm: int = 0
    closes: int = 0
    failures: list[str] = field(default_factory=list)
    sigterm_at: float | None = None


async def client_loop(url: str, load: Load, stop: asyncio.Event) -> None:
    """One client sending requests back to back, as a load balancer would forward them."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            try:
                async with session.get(url + "/echo") as resp:
                    await resp.read()
                    if resp.status != 200:
                        load.failures.append(f"status {resp.status}")
                        continue
                    load.ok += 1
                    if load.sigterm_at is not None:
                        load.ok_after_sigterm += 1
                    if resp.headers.get("Connection", "").lower() == "close":
                        load.closes += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.failures.append(f"{type(exc).__name__}: {exc}")


async def readyz(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(base + "/readyz") as resp:
        return resp.status


async def test_sigterm_drains_under_steady_load_without_failed_requests() -> None:
    async with run_upstream() as upstream, sidecar_process(upstream) as (sidecar, gateway_url):
        assert sidecar.proc is not None
        load = Load()
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as probe:
            # ready once the app check's first probe passed (a starting app is "starting")
            await asyncio.to_thread(sidecar.wait_for, "/readyz", 200, 5)
            workers = [asyncio.create_task(client_loop(gateway_url, load, stop)) for _ in range(8)]
            await asyncio.sleep(1.0)
            assert load.ok > 50, f"load did not get going: {load}"

            sidecar.signal(__import__("signal").SIGTERM)
            load.sigterm_at = time.monotonic()
            # the load balancer: polls /readyz and stops sending after two failed polls in a row
            failed_polls = 0
            while failed_polls < 2:
                status = await readyz(probe, sidecar.base)
                failed_polls = failed_polls + 1 if status == 503 else 0
                await asyncio.sleep(0.1)
            noticed_after = time.monotonic() - load.sigterm_at
            assert noticed_after < 0.6, f"/readyz took {noticed_after:.2f}s to fail"
            # one long request already in flight when the listener closes
            slow = asyncio.create_task(fetch_slow(gateway_url, delay=DRAIN_PERIOD + 0.5))
            await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*workers)

            # after the drain period the gateway stops accepting; the health listener still says 503
            await asyncio.sleep(max(0.0, load.sigterm_at + DRAIN_PERIOD + 0.4 - time.monotonic()))
            with pytest.raises((aiohttp.ClientConnectionError, OSError)):
                async with aiohttp.ClientSession() as late, late.get(gateway_url + "/echo") as resp:
                    await resp.read()
            assert await readyz(probe, sidecar.base) == 503

            slow_status, slow_connection = await slow
        exit_code = await asyncio.to_thread(sidecar.proc.wait, 15)
        elapsed = time.monotonic() - load.sigterm_at

    assert load.failures == [], load.failures[:5]
    assert load.ok_after_sigterm > 0, "nothing was served during the drain period"
    assert load.closes > 0, "no response during the drain said Connection: close"
    assert (slow_status, slow_connection) == (200, "close")
    assert exit_code == 0
    assert DRAIN_PERIOD + 0.4 < elapsed < DRAIN_PERIOD + GRACE_PERIOD, elapsed


async def fetch_slow(url: str, delay: float) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/slow?delay={delay}") as resp:
        await resp.read()
        return resp.status, resp.headers.get("Connection", "").lower()


async def test_admin_drain_takes_the_gateway_out_of_rotation_and_undrain_puts_it_back() -> None:
    async with (
        run_upstream() as upstream,
        sidecar_process(upstream) as (sidecar, gateway_url),
        aiohttp.ClientSession() as session,
    ):
        await asyncio.to_thread(sidecar.wait_for, "/readyz", 200, 5)  # the app check's first pass
        async with session.post(sidecar.admin + "/drain") as resp:
            assert resp.status == 200
        assert await readyz(session, sidecar.base) == 503
        async with session.get(gateway_url + "/echo") as resp:
            assert resp.status == 200  # still serving
            assert resp.headers["Connection"] == "close"
        async with session.post(sidecar.admin + "/undrain") as resp:
            assert resp.status == 200
        assert await readyz(session, sidecar.base) == 200
        async with session.get(gateway_url + "/echo") as resp:
            assert resp.status == 200
            assert "Connection" not in resp.headers


class RssWatch:
    """Samples the sidecar's resident memory while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            await asyncio.sleep(0.05)

    def __enter__(self) -> RssWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024**2


async def test_one_gibibyte_up_and_down_streams_with_bounded_memory() -> None:
    async with run_upstream() as upstream, sidecar_process(upstream) as (sidecar, gateway_url):
        assert sidecar.proc is not None
        block = b"u" * (256 * 1024)

        async def body() -> AsyncIterator[bytes]:
            for _ in range(GIB // len(block)):
                yield block

        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(gateway_url + "/echo") as resp:  # warm up: pool, metrics children
                await resp.read()
            with RssWatch(sidecar.proc.pid) as upload_watch:
                async with session.post(gateway_url + "/upload", data=body()) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["received"] == GIB
            with RssWatch(sidecar.proc.pid) as download_watch:
                received = 0
                async with session.get(f"{gateway_url}/download?size={GIB}") as resp:
                    assert resp.status == 200
                    async for chunk in resp.content.iter_chunked(1024 * 1024):
                        received += len(chunk)
                        if received < 128 * 1024**2:  # a slow reader first: the app must be held back
                            await asyncio.sleep(0.01)
                assert received == GIB
    print(
        f"RSS growth: upload {upload_watch.growth_mib:.1f} MiB, download {download_watch.growth_mib:.1f} MiB"
    )
    assert upload_watch.growth_mib < 48, f"RSS grew {upload_watch.growth_mib:.1f} MiB during a 1 GiB upload"
    assert download_watch.growth_mib < 48, (
        f"RSS grew {download_watch.growth_mib:.1f} MiB during a 1 GiB download"
    )
