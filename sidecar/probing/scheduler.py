"""Runs every check on its own jittered interval, one probe in flight per check, backing off while it fails.

A hung dependency holds at most one probe: the probe is cut off at its timeout, and if a driver
ignores the cancellation the check reports ``timeout`` on schedule without starting another one
until the stuck probe has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable

from collectors.base import Reason, Status
from sidecar.probing.probe import Probe
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.probing.settings import CheckConfig

log = logging.getLogger(__name__)

STUCK_GRACE_SECONDS = 1.0
FIRST_PROBE_SPREAD_SECONDS = 0.25


class CheckRunner:
    """The loop of one check."""

    def __init__(self, probe: Probe, store: ResultStore) -> None:
        self.probe = probe
        self._store = store
        self._task: asyncio.Task[None] | None = None
        self._stuck: asyncio.Task[CheckResult] | None = None
        self.consecutive_failures = 0

    @property
    def config(self) -> CheckConfig:
        return self.probe.config

    @property
    def crashed(self) -> bool:
        """The check loop ended without being stopped: a bug, reported by /livez."""
        return self._task is not None and self._task.done() and not self._task.cancelled()

    async def start(self) -> None:
        await self.probe.collector.open()
        self._task = asyncio.create_task(self._loop(), name=f"check:{self.probe.name}")

    async def stop(self) -> None:
        for task in (self._task, self._stuck):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, STUCK_GRACE_SECONDS)
        try:
            await asyncio.wait_for(self.probe.collector.close(), STUCK_GRACE_SECONDS * 2)
        except Exception:
            log.warning("closing check %s did not finish cleanly", self.probe.name, exc_info=True)

    async def _loop(self) -> None:
        await asyncio.sleep(random.uniform(0, min(FIRST_PROBE_SPREAD_SECONDS, self.config.interval)))
        while True:
            result = await self.run_once()
            self._store.record(result)
            if result.status is Status.FAIL:
                self.consecutive_failures += 1
                log.info(
                    "check failed",
                    extra={"check": result.check, "reason": str(result.reason), "error": result.output},
                )
            else:
                self.consecutive_failures = 0
            await asyncio.sleep(self.next_delay())

    def next_delay(self) -> float:
        """The interval, jittered downwards only (so failure is seen within interval + timeout),
        doubled per consecutive failure beyond the first, up to the check's backoff cap."""
        base = self.config.interval
        if self.consecutive_failures > 1:
            base = min(base * 2 ** (self.consecutive_failures - 1), self.config.backoff_cap)
        return base * random.uniform(0.9, 1.0)

    async def run_once(self) -> CheckResult:
        """Run one probe, unless the previous one is still stuck in its driver."""
        started = time.perf_counter()
        if self._stuck is not None:
            if not self._stuck.done():
                return self.probe.failed(
                    Reason.TIMEOUT,
                    "previous probe is still stuck in the driver; not starting another",
                    started,
                )
            self._stuck = None
        task = asyncio.create_task(self.probe.run(), name=f"probe:{self.probe.name}")
        try:
            done, _ = await asyncio.wait({task}, timeout=self.config.timeout + STUCK_GRACE_SECONDS)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        self._stuck = task
        return self.probe.failed(Reason.TIMEOUT, "probe ignored its timeout and was cancelled", started)


class Scheduler:
    """All check runners; reconciles them with a new list of checks on reload."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store
        self._runners: dict[str, CheckRunner] = {}

    @property
    def runners(self) -> dict[str, CheckRunner]:
        return self._runners

    async def apply(self, configs: Iterable[CheckConfig]) -> None:
        """Start new checks, stop removed ones, restart changed ones; unchanged ones keep running."""
        wanted = {c.name: c for c in configs}
        for name in [n for n, r in self._runners.items() if wanted.get(n) != r.config]:
            runner = self._runners.pop(name)
            self._store.forget(name)
            await runner.stop()
        for name, config in wanted.items():
            if name in self._runners:
                continue
            runner = CheckRunner(Probe(config), self._store)
            self._store.register(name, config.kind)
            await runner.start()
            self._runners[name] = runner

    async def stop(self) -> None:
        runners = list(self._runners.values())
        self._runners.clear()
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
