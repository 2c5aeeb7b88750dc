"""Resident memory of the log pipeline with the ten rules of ``bench/logs.py`` and OTLP log export on,
over a long run of lines whose label fields never repeat.

Every business event has a new type, every job a new queue, every failed login a new reason, every
access line a new path: the worst case for label cardinality. The rules' bounds (``max_values``, the
label caches, ``max_series``) and the export queue's bound must keep the resident set flat however
long it runs. The export goes to a local OTLP/HTTP receiver in the same process that reads and discards
each request (its own memory is counted too, so the figure is an upper bound).

Prints RSS (VmRSS from /proc) after every ``--step`` lines, the series each family holds, and what
the exporter sent or dropped.

    .venv/bin/python bench/logs_memory.py [--lines 2000000] [--step 250000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
from pathlib import Path

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from bench.logs import RULES, _loop_factory
from sidecar.config import Settings
from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.otlp_export import LogExporter, plan_log_export
from sidecar.logs.parse import LogParser
from sidecar.logs.pipeline import LogPipeline
from sidecar.logs.rule_metrics import RuleMetrics
from sidecar.logs.rules import RuleSet
from sidecar.logs.settings import LogSettings


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def batch(rng: random.Random, start: int, size: int) -> list[bytes]:
    """Lines whose label values are all new: the cardinality the bounds are there for."""
    out = []
    for i in range(start, start + size):
        pick = rng.random()
        head = {"level": 30, "time": 1_700_000_000_000 + i, "pid": 1, "hostname": "web-1", "reqId": f"r{i}"}
        if pick < 0.1:
            line = {**head, "event": f"type-{i}", "amount": 1.5, "msg": "business event"}
        elif pick < 0.2:
            line = {**head, "queue": f"queue-{i}", "durationMs": i % 5000, "msg": "job completed"}
        elif pick < 0.3:
            line = {**head, "level": 40, "reason": f"reason-{i}", "msg": "login failed"}
        elif pick < 0.4:
            line = {**head, "cache": f"result-{i}", "key": f"k{i}", "msg": "cache lookup"}
        else:
            line = {
                **head,
                "req": {"id": f"r{i}", "method": f"M{i % 97}", "url": f"/a{i}/b{i}"},
                "res": {"statusCode": 200 + i % 400},
                "responseTime": i % 900,
                "msg": "request completed",
            }
        out.append(orjson.dumps(line))
    return out


async def receiver() -> tuple[web.AppRunner, int, list[int]]:
    received = [0, 0]  # requests, bytes

    async def logs(request: web.Request) -> web.Response:
        body = await request.read()
        received[0] += 1
        received[1] += len(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/logs", logs)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1], received  # type: ignore[attr-defined]


async def run(lines: int, step: int) -> None:
    runner, port, received = await receiver()
    settings = Settings(
        default_checks=False, logs={"otlp": {"endpoint": f"http://127.0.0.1:{port}", "flush_interval": 0.2}}
    )
    plan = plan_log_export(settings, {})
    assert plan is not None
    registry = CollectorRegistry()
    exporter = LogExporter(plan, registry, env={})
    pipeline = LogPipeline(LogParser(), LogMetrics(registry), HttpMetrics(registry, RouteNormaliser()))
    metrics = RuleMetrics()
    pipeline.rules = RuleSet.compile(LogSettings.model_validate({"rules": RULES}).rules, metrics)
    pipeline.record_sinks.append(exporter.add_record)
    await exporter.start()
    rng = random.Random(3)
    gc.collect()
    print(f"before any line: RSS {rss_mib():.1f} MiB")
    started = time.perf_counter()
    done = 0
    while done < lines:
        for _ in range(step // 250):
            pipeline.feed("app", batch(rng, done, 250))  # about one read chunk of the file source
            done += 250
            await asyncio.sleep(0)  # the exporter's tasks and the receiver get their turn, as in the sidecar
        series = sum(len(f.series) for f in metrics.families.values())
        dropped = sum(
            registry.get_sample_value("sidecar_otlp_log_records_dropped_total", {"reason": r}) or 0
            for r in ("queue_full", "export_failed", "rejected", "encode_error")
        )
        print(
            f"{done:>9,} lines  RSS {rss_mib():7.1f} MiB  series {series:6,}  "
            f"export queue {len(exporter.queue):6,}  exported "
            f"{registry.get_sample_value('sidecar_otlp_log_records_exported_total') or 0:>10,.0f}  "
            f"dropped {dropped:>10,.0f}  ({time.perf_counter() - started:.0f}s)"
        )
    await exporter.stop()
    await runner.cleanup()
    print(f"receiver: {received[0]:,} requests, {received[1] / 1e6:,.1f} MB")
    per_family = {name: len(f.series) for name, f in metrics.families.items()}
    print(f"series per family: {per_family}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--step", type=int, default=250_000)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run(args.lines, args.step))


if __name__ == "__main__":
    main()
