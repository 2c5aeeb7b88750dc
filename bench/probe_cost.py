"""CPU, round trips and the longest event-loop step of one probe, per collector kind.

Throwaway Redis, PostgreSQL and MariaDB servers (the test suite's helpers), a local HTTP endpoint
and a TCP port; each collector is opened once and probed repeatedly, the way the scheduler does:

- CPU: ``time.process_time`` around ``collect()`` (every thread of this process, so the host
  collector's worker thread counts), median and p95 over the probes;
- round trips: writes to a socket during one probe (``transport.write``/``writelines``: one per
  request or pipelined batch), the first probe (which connects) apart;
- the longest synchronous step of the event loop during a probe (what delays every other task), in
  CPU time of the loop's thread, so a busy machine descheduling it does not inflate the figure.

    .venv/bin/python bench/probe_cost.py [--probes 50]

Run it from two checkouts to compare before/after (``PYTHONPATH`` decides which code is measured);
figures taken on a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.events
import asyncio.selector_events
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from collectors.base import CheckTarget  # noqa: E402
from collectors.registry import load_collector  # noqa: E402
from tests.servers import MariaDBServer, PostgresServer, RedisServer  # noqa: E402


class Meter:
    """Counts socket writes and times every event-loop callback while ``active``."""

    def __init__(self) -> None:
        self.writes = 0
        self.longest = 0.0
        self.active = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        transport = asyncio.selector_events._SelectorSocketTransport
        originals: dict[str, Callable[..., Any]] = {
            "write": transport.write,
            "writelines": transport.writelines,
        }
        handle_run = asyncio.events.Handle._run
        meter = self

        def counting(name: str) -> Callable[..., Any]:
            original = originals[name]

            def wrapper(self: Any, *args: Any) -> Any:
                if meter.active:
                    meter.writes += 1
                return original(self, *args)

            return wrapper

        def timed_run(self: Any) -> None:
            started = time.thread_time()  # CPU of the loop's thread: a busy machine does not inflate it
            handle_run(self)
            if meter.active:
                meter.longest = max(meter.longest, time.thread_time() - started)

        transport.write = counting("write")  # type: ignore[method-assign]
        transport.writelines = counting("writelines")  # type: ignore[method-assign]
        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        try:
            yield
        finally:
            transport.write = originals["write"]  # type: ignore[method-assign]
            transport.writelines = originals["writelines"]  # type: ignore[method-assign]
            asyncio.events.Handle._run = handle_run  # type: ignore[method-assign]


async def measure(kind: str, target: str | None, options: dict[str, Any], probes: int, meter: Meter) -> str:
    cls = load_collector(kind)
    collector = cls(CheckTarget(kind, target, 5.0), cls.options_model.model_validate(options))
    await collector.open()
    try:
        meter.writes, meter.active = 0, True
        await collector.collect()
        meter.active = False
        first_writes = meter.writes
        cpu: list[float] = []
        writes: list[int] = []
        longest: list[float] = []
        samples = 0
        for _ in range(probes):
            meter.writes, meter.longest, meter.active = 0, 0.0, True
            started = time.process_time()
            observation = await collector.collect()
            cpu.append(time.process_time() - started)
            meter.active = False
            writes.append(meter.writes)
            longest.append(meter.longest)
            samples = len(observation.samples)
            await asyncio.sleep(0.01)
    finally:
        await collector.close()
    cpu.sort()
    longest.sort()
    return (
        f"{kind:9} cpu median {statistics.median(cpu) * 1e3:6.2f} ms  p95 {cpu[int(len(cpu) * 0.95) - 1] * 1e3:6.2f} ms"
        f"  round trips {statistics.median(writes):3.0f} (first probe {first_writes})"
        f"  longest loop step median {statistics.median(longest) * 1e3:5.2f} ms"
        f"  p95 {longest[int(len(longest) * 0.95) - 1] * 1e3:5.2f} ms  samples {samples}"
    )


async def run(probes: int) -> None:
    app = web.Application()
    app.router.add_get("/healthz", lambda _r: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]
    meter = Meter()
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        postgres = stack.enter_context(PostgresServer())
        mariadb = stack.enter_context(MariaDBServer())
        stack.enter_context(meter.installed())
        cases: list[tuple[str, str | None, dict[str, Any]]] = [
            ("redis", redis.url, {}),
            ("postgres", postgres.url, {}),
            ("mysql", f"mysql://root@127.0.0.1:{mariadb.port}/", {}),
            ("http", f"http://127.0.0.1:{http_port}/healthz", {}),
            ("tcp", f"127.0.0.1:{redis.port}", {}),
            ("host", None, {"paths": ["/"]}),
        ]
        for kind, target, options in cases:
            print(await measure(kind, target, options, probes, meter), flush=True)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.probes))


if __name__ == "__main__":
    main()
