"""Log-derived metrics throughput: the sidecar's file source against mtail on the same pino access log.

Generates a 1,000,000-line pino-http access log, then in one run measures:

* ``mtail --one_shot`` with an equivalent program (regexes: a counter by level and a histogram of
  ``responseTime`` by method and status; mtail has no JSON parser);
* the sidecar reading the same file with its real file source (``logs.files`` with
  ``start: beginning``: thread reads, per-source queue, parser, metrics), once with metrics only (what
  the mtail program does) and once with the default sinks (metrics plus the correlation index).

Both read the file from the page cache (it is read once before timing). Figures are lines per second
of wall-clock time, and of CPU time (user + system) to show how much of a difference is load on the
machine. The counts both tools produced are compared, so the programs are known to be equivalent.

    .venv/bin/python bench/logs.py [--lines 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.settings import LogSettings

TARGET_RATIO = 2.0
MTAIL_PROGRAM = r"""
counter log_lines_total by level
histogram http_response_time_ms by method, status buckets 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000

/"level":(?P<level>\d+),/ {
  log_lines_total[$level]++
}
/"method":"(?P<method>[A-Z]+)".*"statusCode":(?P<status>\d+)\}.*"responseTime":(?P<rt>\d+(\.\d+)?),/ {
  http_response_time_ms[$method][$status] = $rt
}
"""
METHODS = ["GET"] * 7 + ["POST"] * 2 + ["DELETE"]
PATHS = ["/users/{}", "/users/{}/orders", "/orders/{}/items", "/health", "/api/v1/products/{}"]
STATUSES = [200] * 20 + [201, 204, 304, 400, 404, 500]


def generate(path: Path, lines: int) -> None:
    """pino-http access lines: ``{"level":30,"time":..,"pid":..,"hostname":..,"reqId":..,"req":{..},...}``."""
    rng = random.Random(1)
    started = 1_700_000_000_000
    with path.open("wb") as out:
        batch: list[bytes] = []
        for i in range(lines):
            request_id = f"{i:08x}-{rng.getrandbits(32):08x}"
            status = rng.choice(STATUSES)
            batch.append(
                orjson.dumps(
                    {
                        "level": 50 if status >= 500 else 30,
                        "time": started + i,
                        "pid": 4242,
                        "hostname": "web-1",
                        "reqId": request_id,
                        "req": {
                            "id": request_id,
                            "method": rng.choice(METHODS),
                            "url": rng.choice(PATHS).format(rng.randint(1, 100_000)),
                            "headers": {
                                "host": "localhost:3000",
                                "user-agent": "curl/8.4.0",
                                "accept": "*/*",
                            },
                        },
                        "res": {"statusCode": status},
                        "responseTime": rng.randint(1, 400),
                        "msg": "request completed",
                    }
                )
            )
            if len(batch) == 10_000:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_mtail(mtail: str, log: Path, work: Path) -> tuple[float, float, dict[str, float], float]:
    """Wall seconds, CPU seconds, line counts by level and the histogram's total count."""
    progs = work / "progs"
    progs.mkdir(exist_ok=True)
    (progs / "pino.mtail").write_text(MTAIL_PROGRAM)
    cmd = [
        mtail, "--one_shot", "--one_shot_format", "prometheus", "--logs", str(log), "--progs", str(progs),
        "--address", "127.0.0.1", "--port", str(free_port()), "--logtostderr",
    ]  # fmt: skip
    cpu_before = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    levels = {
        m[1]: float(m[2])
        for m in re.finditer(r'^log_lines_total\{level="(\d+)"[^}]*\} (\S+)$', done.stdout, re.M)
    }
    observed = sum(
        float(m[1]) for m in re.finditer(r"^http_response_time_ms_count\{[^}]*\} (\S+)$", done.stdout, re.M)
    )
    return wall, cpu, levels, observed


def run_sidecar(log: Path, work: Path, *, correlate: bool) -> tuple[float, float, dict[str, float], float]:
    """The real file source from the first byte to the last line counted."""
    state = work / f"state-{correlate}-{time.monotonic_ns()}"
    settings = LogSettings.model_validate(
        {
            "files": [{"path": str(log), "start": "beginning", "source": "bench"}],
            "state_dir": str(state),
            "correlate": correlate,
            "poll_interval": 0.01,
        }
    )
    registry = CollectorRegistry()
    runtime = LogRuntime(settings, registry, HttpMetrics(registry, RouteNormaliser()), CorrelationIndex())

    size = log.stat().st_size

    def consumed() -> int:  # cheap to poll: offsets advance only after lines are processed
        return sum(entry.offset for entry in runtime.checkpoints.entries())

    async def one_shot() -> tuple[float, float]:
        cpu_before = own_cpu()
        started = time.perf_counter()
        await runtime.start()
        while consumed() < size:
            await asyncio.sleep(0.005)
        wall = time.perf_counter() - started
        cpu = own_cpu() - cpu_before
        await runtime.stop()
        return wall, cpu

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        wall, cpu = runner.run(one_shot())
    shutil.rmtree(state, ignore_errors=True)
    levels = {  # keyed like mtail's (pino's numeric levels)
        number: registry.get_sample_value("sidecar_log_lines_total", {"source": "bench", "level": name})
        or 0.0
        for number, name in (("30", "info"), ("50", "error"))
    }
    observed = sum(
        s.value
        for metric in registry.collect()
        if metric.name == "http_server_request_duration_seconds"
        for s in metric.samples
        if s.name.endswith("_count")
    )
    return wall, cpu, levels, observed


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop

        return uvloop.new_event_loop  # the sidecar runs on uvloop when it is installed
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    args = parser.parse_args()
    mtail = shutil.which("mtail") or "/usr/bin/mtail"
    if not Path(mtail).exists():
        raise SystemExit("mtail is not installed (Debian package mtail)")

    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        work = Path(tmp)
        log = work / "access.log"
        started = time.perf_counter()
        generate(log, args.lines)
        size = log.stat().st_size
        log.read_bytes()  # into the page cache for both readers
        print(
            f"generated {args.lines:,} pino-http lines, {size / 1e6:.1f} MB, in {time.perf_counter() - started:.1f}s"
        )

        results: dict[str, list[tuple[float, float, dict[str, float], float]]] = {
            "mtail": [],
            "metrics": [],
            "full": [],
        }
        for _ in range(args.repeat):
            results["mtail"].append(run_mtail(mtail, log, work))
            results["metrics"].append(run_sidecar(log, work, correlate=False))
            results["full"].append(run_sidecar(log, work, correlate=True))

    best = {name: min(runs, key=lambda r: r[0]) for name, runs in results.items()}
    names = {
        "mtail": "mtail --one_shot (regex program)",
        "metrics": "sidecar file source, metrics only",
        "full": "sidecar file source, metrics + correlation",
    }
    print(f"{'':44} {'lines/s (wall)':>15} {'lines/s (CPU)':>15} {'x mtail (wall)':>15}")
    mtail_rate = args.lines / best["mtail"][0]
    for name, (wall, cpu, _, _) in best.items():
        rate = args.lines / wall
        print(f"{names[name]:44} {rate:15,.0f} {args.lines / cpu:15,.0f} {rate / mtail_rate:15.2f}")

    mtail_levels, mtail_observed = best["mtail"][2], best["mtail"][3]
    for name in ("metrics", "full"):
        levels, observed = best[name][2], best[name][3]
        same = levels == {k: mtail_levels.get(k, 0.0) for k in levels} and observed == mtail_observed
        print(
            f"counts {name}: lines by level {levels} (mtail {mtail_levels}), histogram count {observed:,.0f} "
            f"(mtail {mtail_observed:,.0f}) -> {'same' if same else 'DIFFERENT'}"
        )
    ratio = (args.lines / best["metrics"][0]) / mtail_rate
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"target: metrics-only at least {TARGET_RATIO:.1f} x mtail -> {ratio:.2f} x, {verdict}")


if __name__ == "__main__":
    main()
