"""The cost of recording one finished request (``GatewayContext.record``), for callgrind.

``record`` runs once per proxied request: RED metrics, passive app health, access line, correlation.
Run it twice under callgrind, with N requests and with none, and divide the difference in instructions
by N: that is the cost per request, free of start-up noise. Compare builds (compiled or not, before
and after a change) with the same N.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/record_cost.py 20000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/record_cost.py 0

Without valgrind it prints the wall-clock time per call (noisy on a shared machine).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway import compiled
from sidecar.gateway.context import GatewayContext
from sidecar.gateway.exchange import Exchange
from sidecar.gateway.proxy import ClientConnection
from sidecar.gateway.settings import GatewaySettings
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore


async def run(count: int) -> float:
    registry = CollectorRegistry()
    settings = GatewaySettings(upstream="http://127.0.0.1:9", access_log={"enabled": False})
    http = HttpMetrics(registry, RouteNormaliser(["/users/{id}"], 200))
    ctx = GatewayContext(settings, http, registry, CorrelationIndex(), HealthModel(ResultStore()))
    conn = ClientConnection(ctx)
    exchanges = []
    for i in range(64):
        ex = Exchange(conn, b"GET", f"/users/{i}".encode(), 1.0)
        ex.status = 500 if i % 16 == 0 else 200  # some 5xx: the failure path is counted too
        ex.request_id = f"{i:032x}"
        ex.trace_id = f"{i:032x}"
        ex.upstream_started, ex.upstream_ended = 1.0, 1.001
        exchanges.append(ex)
    gc.collect()
    gc.freeze()  # as the server does once started: start-up objects are not rescanned per collection
    started = time.perf_counter()
    for i in range(count):
        ctx.record(exchanges[i & 63], 1.002)
    elapsed = time.perf_counter() - started
    ctx.red.flush()
    return elapsed


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    elapsed = asyncio.run(run(count))
    if count:
        per_call = elapsed / count * 1e9
        print(f"record(): {per_call:.0f} ns per call ({'compiled' if compiled() else 'pure Python'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
