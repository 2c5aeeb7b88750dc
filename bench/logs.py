"""Log-derived metrics throughput: the sidecar's file source against mtail on the same pino log.

Generates a 1,000,000-line pino log (60% pino-http access lines, the rest the app's own events:
business events, finished jobs, failed logins, cache lookups), then in one run measures:

* ``mtail --one_shot`` with an equivalent program (regexes: a counter by level and a histogram of
  ``responseTime`` by method and status; mtail has no JSON parser), alone and with ten more metrics
  equivalent to the ten ``logs.rules`` below (``MTAIL_RULES``);
* the sidecar reading the same file with its real file source (``logs.files`` with
  ``start: beginning``: thread reads, per-source queue, parser, metrics): metrics only (what the base
  mtail program does), metrics plus the ten rules, and the default sinks (metrics plus the correlation
  index).

Both read the file from the page cache (it is read once before timing). Figures are lines per second
of wall-clock time, and of CPU time (user + system) to show how much of a difference is load on the
machine. The counts both tools produced are compared, so the programs are known to be equivalent.

``--rule-cost`` adds the cost of rules on the pipeline alone (0, 1, 5 and 10 rules, CPU time per line),
and ``--callgrind`` instructions per line of the file source (reads, line splitting, the pipeline and
its timers: what the lines/s figures time) under ``valgrind --tool=callgrind`` (metrics only, with
correlation, with 10 rules; the difference between two line counts, both past the correlation
index's default 10,000 requests, so start-up and filling the index cancel out), next to mtail's
own instructions per line over the same two line counts (its program alone and with the ten metrics).
mtail is a Go program: callgrind counts it only with Go's signal-based preemption off
(``GODEBUG=asyncpreemptoff=1``; otherwise callgrind aborts on the runtime's preemption signals), and
with ``GOMAXPROCS=1``: valgrind runs one thread at a time, so with more Ps the runtime's idle threads
spin for work while another holds the CPU, and that spinning (billed per slowed-down second) swung
the count per line from 92k to 345k between runs; with one P the same run repeats within 0.2 %. Both
settings change when goroutines run, not the work per line, and take out only overhead, so the
anchor errs in mtail's favour. The count covers all its threads (the garbage collector's included),
as CPU time does. The load average is printed before and after, since wall-clock figures on a shared
machine depend on it.

    .venv/bin/python bench/logs.py [--lines 1000000] [--repeat 1] [--rule-cost] [--callgrind]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import LogParser
from sidecar.logs.pipeline import LogPipeline
from sidecar.logs.rule_metrics import RuleMetrics
from sidecar.logs.rules import RuleSet
from sidecar.logs.runtime import LogRuntime
from sidecar.logs.settings import LogSettings

TARGET_RATIO = 2.0  # the 10 rules against mtail with the same metrics
TARGET_OFF = 3.0  # correlation off (metrics only) against mtail's program
TARGET_ON = 2.0  # correlation on (the default) against mtail's program
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
JOB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
# The ten metrics of ``RULES`` as an mtail program: one regex per kind of line, as an mtail user would
# write it (fewer regexes than rules, which favours mtail).
MTAIL_RULES = r"""
counter app_business_events_total by type
counter app_order_amount_total
counter app_jobs_total by queue
histogram app_job_duration_seconds by queue buckets 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
gauge app_job_last_duration_seconds by queue
counter app_login_failures_total by reason
counter app_cache_lookups_total by result
counter app_warnings_total
counter app_http_requests_total by method, status_class
counter app_http_server_errors_total by method

/"event":"(?P<type>[^"]+)","amount":(?P<amount>[0-9.]+),"msg":"business event"/ {
  app_business_events_total[$type]++
  $type == "order.created" {
    app_order_amount_total += $amount
  }
}
/"queue":"(?P<queue>[^"]+)".*"durationMs":(?P<ms>\d+),"msg":"job completed"/ {
  app_jobs_total[$queue]++
  app_job_duration_seconds[$queue] = $ms / 1000.0
  app_job_last_duration_seconds[$queue] = $ms / 1000.0
}
/"reason":"(?P<reason>[^"]+)".*"msg":"login failed"/ {
  app_login_failures_total[$reason]++
}
/"cache":"(?P<result>hit|miss)".*"msg":"cache lookup"/ {
  app_cache_lookups_total[$result]++
}
/"level":(40|50|60),/ {
  app_warnings_total++
}
/"method":"(?P<method>[A-Z]+)".*"statusCode":(?P<sc>\d)\d\d\}.*"msg":"request completed"/ {
  app_http_requests_total[$method][$sc + "xx"]++
  $sc == 5 {
    app_http_server_errors_total[$method]++
  }
}
"""


def _on(message: str) -> dict[str, object]:
    return {"all": [{"field": "msg", "equals": message}]}


# The ten rules: the seeds' cases (business events, job durations by queue, login failures, cache
# lookups) and two views of the access lines.
RULES: list[dict[str, object]] = [
    {
        "name": "app_business_events_total",
        "type": "counter",
        "help": "Business events by type.",
        "match": _on("business event"),
        "labels": {"type": {"field": "event", "max_values": 50}},
    },
    {
        "name": "app_order_amount_total",
        "type": "counter",
        "help": "Sum of order amounts.",
        "match": {
            "all": [
                {"field": "msg", "equals": "business event"},
                {"field": "event", "equals": "order.created"},
            ]
        },
        "value": "amount",
    },
    {
        "name": "app_jobs_total",
        "type": "counter",
        "help": "Finished jobs by queue.",
        "match": _on("job completed"),
        "labels": {"queue": {"field": "queue", "max_values": 20}},
    },
    {
        "name": "app_job_duration_seconds",
        "type": "histogram",
        "help": "Job durations by queue.",
        "match": _on("job completed"),
        "value": "durationMs",
        "unit": "ms",
        "buckets": JOB_BUCKETS,
        "labels": {"queue": {"field": "queue", "max_values": 20}},
    },
    {
        "name": "app_job_last_duration_seconds",
        "type": "gauge",
        "help": "Duration of the last finished job by queue.",
        "match": _on("job completed"),
        "value": "durationMs",
        "unit": "ms",
        "labels": {"queue": {"field": "queue", "max_values": 20}},
    },
    {
        "name": "app_login_failures_total",
        "type": "counter",
        "help": "Failed logins by reason.",
        "match": _on("login failed"),
        "labels": {"reason": {"field": "reason", "max_values": 20}},
    },
    {
        "name": "app_cache_lookups_total",
        "type": "counter",
        "help": "Cache lookups by result.",
        "match": _on("cache lookup"),
        "labels": {"result": {"field": "cache", "allow": ["hit", "miss"]}},
    },
    {
        "name": "app_warnings_total",
        "type": "counter",
        "help": "Lines at warn or above.",
        "match": {"level": "warn"},
    },
    {
        "name": "app_http_requests_total",
        "type": "counter",
        "help": "Requests by method and status class, from access lines.",
        "match": _on("request completed"),
        "labels": {
            "method": {"field": "req.method", "max_values": 10},
            "status_class": {"field": "@status", "normalise": "status_class"},
        },
    },
    {
        "name": "app_http_server_errors_total",
        "type": "counter",
        "help": "Requests answered with 5xx, by method.",
        "match": {
            "all": [{"field": "msg", "equals": "request completed"}, {"field": "@status", "regex": "^5"}]
        },
        "labels": {"method": {"field": "req.method", "max_values": 10}},
    },
]
# Samples compared between mtail and the sidecar: (metric, labels) -> value.
COMPARED = [
    ("app_business_events_total", {"type": "order.created"}),
    ("app_order_amount_total", {}),
    ("app_jobs_total", {"queue": "email"}),
    ("app_job_duration_seconds_count", {"queue": "email"}),
    ("app_job_duration_seconds_bucket", {"queue": "email", "le": "0.25"}),
    ("app_login_failures_total", {"reason": "bad_password"}),
    ("app_cache_lookups_total", {"result": "miss"}),
    ("app_warnings_total", {}),
    ("app_http_requests_total", {"method": "GET", "status_class": "2xx"}),
    ("app_http_server_errors_total", {"method": "GET"}),
]
EVENTS = ["order.created", "order.paid", "user.signup", "cart.abandoned"]
QUEUES = ["email", "images", "reports"]
REASONS = ["bad_password", "unknown_user", "locked"]
METHODS = ["GET"] * 7 + ["POST"] * 2 + ["DELETE"]
PATHS = ["/users/{}", "/users/{}/orders", "/orders/{}/items", "/health", "/api/v1/products/{}"]
STATUSES = [200] * 20 + [201, 204, 304, 400, 404, 500]


def _event(rng: random.Random, i: int, request_id: str, started: int) -> bytes:
    """One of the app's own lines, as pino writes them (its base fields first, ``msg`` last)."""
    head = {"level": 30, "time": started + i, "pid": 4242, "hostname": "web-1", "reqId": request_id}
    pick = rng.random()
    if pick < 0.25:
        body: dict[str, object] = {"event": rng.choice(EVENTS), "amount": rng.randint(100, 99_999) / 100}
        message = "business event"
    elif pick < 0.5:
        body = {"queue": rng.choice(QUEUES), "jobId": f"job-{i}", "durationMs": rng.randint(1, 3000)}
        message = "job completed"
    elif pick < 0.625:
        head["level"] = 40
        body = {"reason": rng.choice(REASONS), "userId": rng.randint(1, 5000)}
        message = "login failed"
    else:
        head["level"] = 20
        body = {"cache": "hit" if rng.random() < 0.8 else "miss", "key": f"user:{rng.randint(1, 5000)}"}
        message = "cache lookup"
    return orjson.dumps({**head, **body, "msg": message})


def generate(path: Path, lines: int) -> None:
    """60% pino-http access lines (``{"level":30,"time":..,"reqId":..,"req":{..},"res":{..},...}``),
    40% the app's own events."""
    rng = random.Random(1)
    started = 1_700_000_000_000
    with path.open("wb") as out:
        batch: list[bytes] = []
        for i in range(lines):
            request_id = f"{i:08x}-{rng.getrandbits(32):08x}"
            if rng.random() < 0.4:
                batch.append(_event(rng, i, request_id, started))
                if len(batch) == 10_000:
                    out.write(b"\n".join(batch) + b"\n")
                    batch.clear()
                continue
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


Run = tuple[float, float, dict[str, float], float, dict[str, float]]


def _sample_key(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def _mtail_samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, labels in COMPARED:
        for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
            got = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
            got.pop("prog", None)
            if name.endswith("_bucket"):  # mtail writes 0.25; Prometheus clients 0.25 too, 1 as 1.0
                got["le"] = got.get("le", "")
            if got == labels:
                found[_sample_key(name, labels)] = float(m[2])
    return found


def _mtail_progs(work: Path, *, rules: bool) -> Path:
    """mtail's program folder: the base program, and with ``rules`` the ten metrics' program beside it."""
    progs = work / f"progs-{rules}"
    progs.mkdir(exist_ok=True)
    (progs / "pino.mtail").write_text(MTAIL_PROGRAM)
    if rules:
        (progs / "rules.mtail").write_text(MTAIL_RULES)
    return progs


def run_mtail(mtail: str, log: Path, work: Path, *, rules: bool) -> Run:
    """Wall seconds, CPU seconds, line counts by level, the histogram's total count, compared samples."""
    progs = _mtail_progs(work, rules=rules)
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
    return wall, cpu, levels, observed, _mtail_samples(done.stdout)


def run_sidecar(
    log: Path,
    work: Path,
    *,
    correlate: bool,
    rules: bool = False,
    poll: float = 0.005,
    checkpoints: float = 1.0,
) -> Run:
    """The real file source from the first byte to the last line counted (polled every ``poll`` s;
    offsets saved every ``checkpoints`` s, the default interval)."""
    state = work / f"state-{correlate}-{time.monotonic_ns()}"
    settings = LogSettings.model_validate(
        {
            "files": [{"path": str(log), "start": "beginning", "source": "bench"}],
            "state_dir": str(state),
            "correlate": correlate,
            "poll_interval": 0.01,
            "checkpoint_interval": checkpoints,
            "rules": RULES if rules else [],
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
            await asyncio.sleep(poll)
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
    samples = {
        _sample_key(name, labels): value
        for name, labels in COMPARED
        if (value := registry.get_sample_value(name, labels)) is not None
    }
    return wall, cpu, levels, observed, samples


def rule_pipeline(count: int, *, correlate: bool = False) -> LogPipeline:
    """The pipeline as the file source feeds it (metrics and access lines, the correlation index at its
    default size when ``correlate``) with the first ``count`` of ``RULES``."""
    registry = CollectorRegistry()
    pipeline = LogPipeline(
        LogParser(),
        LogMetrics(registry),
        HttpMetrics(registry, RouteNormaliser()),
        CorrelationIndex() if correlate else None,
    )
    rules = LogSettings.model_validate({"rules": RULES[:count]}).rules
    pipeline.rules = RuleSet.compile(rules, RuleMetrics()) if rules else None
    return pipeline


def feed_all(pipeline: LogPipeline, lines: list[bytes]) -> None:
    for start in range(0, len(lines), 1000):  # batches as the file source hands them over
        pipeline.feed("bench", lines[start : start + 1000])


def rule_cost(log: Path, lines: int) -> dict[int, float]:
    """CPU microseconds per line of the pipeline alone with 0, 1, 5 and 10 rules (best of three)."""
    sample = log.read_bytes().split(b"\n")[: min(lines, 200_000)]
    costs: dict[int, float] = {}
    for count in (0, 1, 5, 10):
        best = float("inf")
        for _ in range(3):
            pipeline = rule_pipeline(count)
            started = time.process_time()
            feed_all(pipeline, sample)
            best = min(best, time.process_time() - started)
        costs[count] = best / len(sample) * 1e6
    return costs


# What ``--callgrind`` measures: (rules, correlation) of the file source.
CALLGRIND_CASES = {"metrics": (0, False), "correlation": (0, True), "rules": (10, False)}


def _callgrind_instructions(log: Path, lines: int, case: str, work: Path) -> int:
    out = work / f"callgrind.{lines}.{case}"
    rules, correlate = CALLGRIND_CASES[case]
    subprocess.run(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
            "--feed-only", str(log), "--lines", str(lines), "--rules", str(rules),
            *(["--correlate"] if correlate else []),
        ],
        check=True, capture_output=True, timeout=1800,
    )  # fmt: skip
    return _callgrind_total(out)


def _callgrind_total(out: Path) -> int:
    summary = next(line for line in out.read_text().splitlines() if line.startswith(("summary:", "totals:")))
    return int(summary.split()[1])


# The two line counts whose difference gives instructions per line: both past the correlation index's
# default 10,000 requests, so start-up and filling the index cancel out.
CALLGRIND_LINES = (12_000, 32_000)


def callgrind_per_line(log: Path, work: Path) -> dict[str, float]:
    """Instructions per line of each ``CALLGRIND_CASES`` pipeline: (I(n2) - I(n1)) / (n2 - n1)."""
    small, large = CALLGRIND_LINES
    return {
        case: (
            _callgrind_instructions(log, large, case, work) - _callgrind_instructions(log, small, case, work)
        )
        / (large - small)
        for case in CALLGRIND_CASES
    }


def _first_lines(log: Path, lines: int, part: Path) -> None:
    with log.open("rb") as source, part.open("wb") as out:
        for _ in range(lines):
            out.write(next(source))


# Go's signal preemption aborts callgrind; more than one P spins idle threads under valgrind's
# one-thread-at-a-time scheduling (see the module's docstring).
MTAIL_UNDER_CALLGRIND = {"GODEBUG": "asyncpreemptoff=1", "GOMAXPROCS": "1"}


def _mtail_callgrind_instructions(mtail: str, part: Path, work: Path, *, rules: bool) -> int:
    progs = _mtail_progs(work, rules=rules)
    out = work / f"callgrind.mtail.{part.stem}.{rules}"
    done = subprocess.run(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            mtail, "--one_shot", "--one_shot_format", "prometheus", "--logs", str(part), "--progs", str(progs),
            "--address", "127.0.0.1", "--port", str(free_port()), "--logtostderr",
        ],
        check=False, capture_output=True, text=True, timeout=1800,
        env={**os.environ, **MTAIL_UNDER_CALLGRIND},
    )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"mtail under callgrind failed ({done.returncode}): {done.stderr[-2000:]}")
    return _callgrind_total(out)


def mtail_callgrind_per_line(mtail: str, log: Path, work: Path) -> dict[str, float]:
    """mtail's instructions per line over the same two line counts: its program, and with 10 metrics."""
    parts = []
    for lines in CALLGRIND_LINES:
        part = work / f"part-{lines}.log"
        _first_lines(log, lines, part)
        parts.append(part)
    small, large = CALLGRIND_LINES
    per_line = {
        name: (
            _mtail_callgrind_instructions(mtail, parts[1], work, rules=rules)
            - _mtail_callgrind_instructions(mtail, parts[0], work, rules=rules)
        )
        / (large - small)
        for name, rules in (("mtail", False), ("mtail_rules", True))
    }
    for part in parts:
        part.unlink()
    return per_line


def feed_only(log: Path, lines: int, rules: int, *, correlate: bool) -> None:
    """What ``--callgrind`` runs under valgrind: the file source over the first ``lines`` lines."""
    with tempfile.TemporaryDirectory(prefix="bench-logs-callgrind-") as tmp:
        part = Path(tmp) / "part.log"
        _first_lines(log, lines, part)
        # Valgrind runs the process about 50 times slower: work done per second of wall-clock time (this
        # benchmark's polling, the periodic offset save) would be billed 50 times over to each line.
        run_sidecar(part, Path(tmp), correlate=correlate, rules=bool(rules), poll=0.25, checkpoints=50.0)


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
    parser.add_argument("--rule-cost", action="store_true", help="CPU per line with 0/1/5/10 rules")
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per line: metrics, correlation, 10 rules"
    )
    parser.add_argument("--feed-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rules", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--correlate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed_only is not None:
        feed_only(args.feed_only, args.lines, args.rules, correlate=args.correlate)
        return
    mtail = shutil.which("mtail") or "/usr/bin/mtail"
    if not Path(mtail).exists():
        raise SystemExit("mtail is not installed (Debian package mtail)")

    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        work = Path(tmp)
        log = work / "app.log"
        started = time.perf_counter()
        generate(log, args.lines)
        size = log.stat().st_size
        log.read_bytes()  # into the page cache for both readers
        print(
            f"generated {args.lines:,} pino lines, {size / 1e6:.1f} MB, in {time.perf_counter() - started:.1f}s"
        )
        print(f"load average before: {_load()}")

        results: dict[str, list[Run]] = {
            name: [] for name in ("mtail", "mtail_rules", "metrics", "rules", "full")
        }
        for _ in range(args.repeat):
            results["mtail"].append(run_mtail(mtail, log, work, rules=False))
            results["metrics"].append(run_sidecar(log, work, correlate=False))
            results["mtail_rules"].append(run_mtail(mtail, log, work, rules=True))
            results["rules"].append(run_sidecar(log, work, correlate=False, rules=True))
            results["full"].append(run_sidecar(log, work, correlate=True))
        costs = rule_cost(log, args.lines) if args.rule_cost else None
        print(f"load average after the timed runs: {_load()}")
        instructions = callgrind_per_line(log, work) if args.callgrind else None
        mtail_instructions = None
        if args.callgrind:
            try:
                mtail_instructions = mtail_callgrind_per_line(mtail, log, work)
            except (RuntimeError, subprocess.TimeoutExpired) as failed:  # the sidecar's counts still stand
                print(f"mtail under callgrind: no count ({failed})")

    best = {name: min(runs, key=lambda r: r[0]) for name, runs in results.items()}
    names = {
        "mtail": "mtail --one_shot (regex program)",
        "metrics": "sidecar file source, metrics only",
        "mtail_rules": "mtail --one_shot, program + 10 metrics",
        "rules": "sidecar file source, metrics + 10 rules",
        "full": "sidecar file source, metrics + correlation",
    }
    print(
        f"{'':44} {'lines/s (wall)':>15} {'lines/s (CPU)':>15} {'x mtail (wall)':>15} {'x mtail (CPU)':>15}"
    )
    for name, run in best.items():
        against = best["mtail_rules"] if name in {"rules", "mtail_rules"} else best["mtail"]
        print(
            f"{names[name]:44} {args.lines / run[0]:15,.0f} {args.lines / run[1]:15,.0f} "
            f"{against[0] / run[0]:15.2f} {against[1] / run[1]:15.2f}"
        )

    mtail_levels, mtail_observed = best["mtail"][2], best["mtail"][3]
    for name in ("metrics", "full"):
        levels, observed = best[name][2], best[name][3]
        same = levels == {k: mtail_levels.get(k, 0.0) for k in levels} and observed == mtail_observed
        print(
            f"counts {name}: lines by level {levels} (mtail {mtail_levels}), histogram count {observed:,.0f} "
            f"(mtail {mtail_observed:,.0f}) -> {'same' if same else 'DIFFERENT'}"
        )
    ours, theirs = best["rules"][4], best["mtail_rules"][4]
    differing = {
        k: (v, theirs.get(k))
        for k, v in ours.items()
        if k not in theirs or _nine_digits(theirs[k]) != _nine_digits(v)
    }
    print(
        f"counts rules: {len(ours)} samples compared with mtail's -> "
        + ("same" if len(ours) == len(COMPARED) and not differing else f"DIFFERENT {differing}")
    )
    for name, what, goal in (
        ("metrics", "correlation off", TARGET_OFF),
        ("full", "correlation on", TARGET_ON),
    ):
        ratio = best["mtail"][0] / best[name][0]
        cpu_ratio = best["mtail"][1] / best[name][1]
        print(
            f"target: {what} at least {goal:.1f} x mtail -> {ratio:.2f} x wall ({_verdict(ratio, goal)}), "
            f"{cpu_ratio:.2f} x CPU ({_verdict(cpu_ratio, goal)})"
        )
    ratio = best["mtail_rules"][0] / best["rules"][0]
    cpu_ratio = best["mtail_rules"][1] / best["rules"][1]
    print(
        f"target: 10 rules at least {TARGET_RATIO:.1f} x mtail with the same 10 metrics -> {ratio:.2f} x wall "
        f"({_verdict(ratio, TARGET_RATIO)}), {cpu_ratio:.2f} x CPU ({_verdict(cpu_ratio, TARGET_RATIO)})"
    )
    per_line = {name: best[name][1] / args.lines * 1e6 for name in ("metrics", "rules")}
    print(
        f"file source CPU per line: {per_line['metrics']:.2f} us without rules, {per_line['rules']:.2f} us with 10 "
        f"-> {(per_line['rules'] - per_line['metrics']) / 10:.3f} us per rule"
    )
    if costs is not None:
        print(
            "pipeline alone, CPU us per line by rule count: "
            + ", ".join(f"{n}: {c:.2f}" for n, c in costs.items())
            + f" -> {(costs[10] - costs[0]) / 10:.3f} us per rule"
        )
    if instructions is not None:
        print(
            f"callgrind, file source, instructions per line: {instructions['metrics']:,.0f} metrics only, "
            f"{instructions['correlation']:,.0f} with correlation, {instructions['rules']:,.0f} with 10 rules "
            f"-> {(instructions['rules'] - instructions['metrics']) / 10:,.0f} per rule"
        )
    if instructions is not None and mtail_instructions is not None:
        mtail_per_line, mtail_rules_per_line = mtail_instructions["mtail"], mtail_instructions["mtail_rules"]
        print(
            f"callgrind, mtail --one_shot, instructions per line: {mtail_per_line:,.0f} program, "
            f"{mtail_rules_per_line:,.0f} program + 10 metrics"
        )
        for name, what, goal, anchor in (
            ("metrics", "correlation off", TARGET_OFF, mtail_per_line),
            ("correlation", "correlation on", TARGET_ON, mtail_per_line),
            ("rules", "10 rules (same 10 metrics)", TARGET_RATIO, mtail_rules_per_line),
        ):
            ratio = anchor / instructions[name]
            print(
                f"target: {what} at least {goal:.1f} x fewer instructions per line than mtail -> "
                f"{ratio:.2f} x ({_verdict(ratio, goal)})"
            )


def _nine_digits(value: float) -> float:
    """Sums of decimal amounts differ in the last bits between Go and Python: compare to 9 digits."""
    return float(f"{value:.9g}")


def _verdict(ratio: float, goal: float) -> str:
    return "met" if ratio >= goal else "MISSED"


def _load() -> str:
    return " ".join(f"{figure:.2f}" for figure in os.getloadavg())


if __name__ == "__main__":
    main()
