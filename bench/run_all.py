"""Every benchmark in bench/, one after the other, and one table of where the project stands.

Each benchmark runs as its own process (as documented in its docstring) and prints its own report;
this script keeps that output (``--log-dir``) and reads the figures that matter out of it, each next
to its anchor (nginx, mtail, redis_exporter, an aiohttp hello world, client_python, ...) and the goal
issue 17 sets for it:

    figure | value | anchor | ratio | goal | met

A benchmark that prints its own table rows (lines ``| figure | value | anchor | ratio | goal | met |``,
as bench/scrape_stall.py does) is taken as is; for the others an extractor below reads their report.
A benchmark that fails, or whose report no longer has a figure, shows up as such in the table (``?``)
rather than disappearing; a new bench/*.py without an entry here is listed as not wired in.

    .venv/bin/python bench/run_all.py [--quick] [--only gateway,logs] [--log-dir DIR]

``--quick`` runs each benchmark briefly (fewer rounds, shorter runs, a smaller log file, no callgrind):
enough to see where things stand, too noisy to close an issue with. Wall-clock figures swing with the
machine's load (printed at the end); callgrind counts, where a benchmark gives them, do not.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HELPERS = {
    "__init__.py",
    "_common.py",
    "run_all.py",
    "hello_aiohttp.py",
    "rollout_manifest.py",
}  # not benchmarks
# benchmarks without an anchor to compare with (a failure count, not a ratio): run them on their own
UNANCHORED = {"rollout.py": "rolling update replay (issue 21): failed requests, run it on its own"}


@dataclass
class Row:
    bench: str
    figure: str
    value: str
    anchor: str
    ratio: float | None
    goal: str
    met: bool | None


Extractor = Callable[[str, str], list[Row]]


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _search(pattern: str, out: str) -> re.Match[str]:
    match = re.search(pattern, out, re.MULTILINE)
    if match is None:
        raise LookupError(f"no match for {pattern!r}")
    return match


def own_rows(bench: str, out: str) -> list[Row]:
    """Rows a benchmark printed itself: ``| figure | value | anchor | ratio | goal | met |``."""
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 6 or cells[0] == "figure":
            continue
        figure, value, anchor, ratio, goal, met = cells
        rows.append(
            Row(
                bench,
                figure,
                value,
                anchor,
                float(ratio) if ratio not in ("", "-") else None,
                goal,
                {"yes": True, "NO": False}.get(met),
            )
        )
    return rows


def gateway_rows(bench: str, out: str) -> list[Row]:
    """bench/gateway.py: throughput and CPU per request against nginx, added latency at 1 connection."""

    def line(name: str) -> re.Match[str]:
        return _search(
            rf"^{re.escape(name)}\s+(\d+)\s+([\d.]+)ms\s+([\d.]+)ms\s+(\d+)\s+(?:([\d.]+) us|-)", out
        )

    nginx, logged, sidecar = line("nginx proxy"), line("nginx + log"), line("sidecar gateway")
    rows = []
    ratio = _num(sidecar[1]) / _num(nginx[1])
    rows.append(
        Row(
            bench,
            "gateway req/s @32 vs nginx",
            sidecar[1],
            nginx[1],
            ratio,
            ">= 0.80 (CPU-bound)",
            ratio >= 0.8,
        )
    )
    like_for_like = _num(sidecar[1]) / _num(logged[1])
    rows.append(
        Row(
            bench,
            "gateway req/s @32 vs nginx + log (info)",
            sidecar[1],
            logged[1],
            like_for_like,
            "",
            None,
        )
    )
    if sidecar[5] and logged[5]:
        cost = _num(sidecar[5]) / _num(logged[5])
        rows.append(
            Row(
                bench,
                "gateway CPU us/request vs nginx + log",
                sidecar[5],
                logged[5],
                cost,
                "<= 2.0",
                cost <= 2.0,
            )
        )
    added = _search(r"added latency @1 connection: sidecar p50 \+([\d.]+) ms.*?nginx p50 \+([\d.]+) ms", out)
    rows.append(
        Row(
            bench,
            "gateway added p50 @1 (ms; anchor: nginx's)",
            added[1],
            added[2],
            None,
            "< 0.15",
            _num(added[1]) < 0.15,
        )
    )
    one_cpu = _search(r"no cross-CPU wake-ups\): sidecar p50 \+([\d.]+) ms, nginx p50 \+([\d.]+) ms", out)
    rows.append(Row(bench, "same, every process on one CPU (info)", one_cpu[1], one_cpu[2], None, "", None))
    return rows


def health_rows(bench: str, out: str) -> list[Row]:
    """bench/health.py: /readyz against an aiohttp hello world, resident memory."""
    ceiling = _search(r"^ceiling\s*:\s*([\d.]+) req/s", out)
    sidecar = _search(r"^sidecar\s*:\s*([\d.]+) req/s", out)
    cpu = _search(r"CPU per request \(best round\): ceiling ([\d.]+) us, sidecar ([\d.]+) us", out)
    rss = _search(r"RSS idle ([\d.]+) MB, after load ([\d.]+) MB \(target < ([\d.]+) MB\)", out)
    rps_ratio = _num(sidecar[1]) / _num(ceiling[1])
    cpu_ratio = _num(cpu[1]) / _num(cpu[2])
    worst = max(_num(rss[1]), _num(rss[2]))
    return [
        Row(
            bench,
            "/readyz req/s vs aiohttp hello",
            sidecar[1],
            ceiling[1],
            rps_ratio,
            ">= 0.90",
            rps_ratio >= 0.9,
        ),
        Row(
            bench,
            "/readyz CPU/request: hello / sidecar",
            cpu[2] + " us",
            cpu[1] + " us",
            cpu_ratio,
            ">= 0.90",
            cpu_ratio >= 0.9,
        ),
        Row(
            bench,
            "RSS with six checks (MB)",
            f"{worst:.1f}",
            rss[3],
            worst / _num(rss[3]),
            "< 1",
            worst < _num(rss[3]),
        ),
    ]


def logs_rows(bench: str, out: str) -> list[Row]:
    """bench/logs.py: lines/s of the file source against mtail, correlation off and on."""
    mtail = _search(r"^mtail --one_shot \(regex program\)\s+([\d,]+)", out)
    rows = []
    for name, figure, goal in (
        ("sidecar file source, metrics only", "log lines/s, correlation off, vs mtail", 3.0),
        ("sidecar file source, metrics \\+ correlation", "log lines/s, correlation on, vs mtail", 2.0),
    ):
        match = _search(rf"^{name}\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)", out)
        ratio = _num(match[3])
        rows.append(Row(bench, figure, match[1], mtail[1], ratio, f">= {goal:.1f}", ratio >= goal))
    counted = re.search(r"instructions per line: ([\d,]+) metrics only, ([\d,]+) with correlation", out)
    theirs = re.search(r"^callgrind, mtail --one_shot, instructions per line: ([\d,]+) program", out, re.M)
    if counted:  # (--quick runs no callgrind)
        for value, figure, goal in ((counted[1], "off", 3.0), (counted[2], "on", 2.0)):
            name = f"log instructions/line, correlation {figure}, vs mtail"
            if theirs is None:  # mtail under callgrind failed: the sidecar's figure alone, unjudged
                rows.append(Row(bench, name, value, "?", None, f">= {goal:.1f}x fewer", None))
                continue
            ratio = _num(theirs[1]) / _num(value)
            rows.append(Row(bench, name, value, theirs[1], ratio, f">= {goal:.1f}x fewer", ratio >= goal))
    return rows


def bullmq_rows(bench: str, out: str) -> list[Row]:
    """bench/bullmq_probe.py: the 1,000-queue probe, first (discovery), steady, and steady with every
    queue changed since the last probe (no kept samples)."""
    match = _search(r"^\s*1000\s+\d+ \|\s+([\d.]+)ms\s+\d+\s+\d+ \|\s+([\d.]+)ms\s+([\d.]+)ms", out)
    first, median = _num(match[1]), _num(match[2])
    # printed under each size's CPU lines; the last one printed is 1,000 queues
    changed = re.findall(r"steady probe, every queue changed: wall median ([\d.]+)ms", out)
    if not changed:
        raise LookupError("no 'steady probe, every queue changed' line")
    changed_ms = _num(changed[-1])
    return [
        Row(
            bench,
            "BullMQ first probe, 1,000 queues (ms)",
            match[1],
            "100",
            first / 100,
            "< 100 ms",
            first < 100,
        ),
        Row(
            bench,
            "BullMQ steady probe median, 1,000 queues",
            match[2],
            "50",
            median / 50,
            "< 50 ms",
            median < 50,
        ),
        Row(
            bench,
            "BullMQ steady probe, 1,000 queues all changed",
            changed[-1],
            "50",
            changed_ms / 50,
            "< 50 ms",
            changed_ms < 50,
        ),
    ]


def ratelimit_rows(bench: str, out: str) -> list[Row]:
    """bench/gateway_ratelimit.py: what a local and a Redis rule cost (no goal in issue 17)."""
    rows = []
    for match in re.finditer(r"^(.+?): \+([\d.]+) us of gateway CPU per request", out, re.MULTILINE):
        rows.append(
            Row(bench, f"rate limit '{match[1]}' CPU us/request", f"+{match[2]}", "no rule", None, "-", None)
        )
    if not rows:
        raise LookupError("no rule cost line")
    return rows


def tracing_rows(bench: str, out: str) -> list[Row]:
    """bench/gateway_tracing.py: the cost of tracing every request (no goal in issue 17)."""
    match = _search(r"cost of tracing per request: ([\d.]+) us CPU .*throughput ([\d.]+) x tracing off", out)
    return [
        Row(bench, "tracing on: CPU us/request added", match[1], "tracing off", _num(match[2]), "-", None)
    ]


def gateway_instructions_rows(bench: str, out: str) -> list[Row]:
    """bench/gateway_instructions.py: callgrind instructions per proxied request against nginx with a log."""
    sidecar = _search(r"^\s+sidecar\s+([\d.]+)k", out)
    logged = _search(r"^\s+nginx-log\s+([\d.]+)k", out)
    ratio = _num(sidecar[1]) / _num(logged[1])
    return [
        Row(
            bench,
            "gateway instructions/request vs nginx + log",
            sidecar[1] + "k",
            logged[1] + "k",
            ratio,
            "<= 2.0",
            ratio <= 2.0,
        ),
        *_flatness_rows(bench, out),
    ]


def _flatness_rows(bench: str, out: str) -> list[Row]:
    """The sidecar's cost at many distinct paths against one path, when the run measured both."""
    rows = []
    for match in re.finditer(r"^\s+sidecar at (\d+) paths / at (\d+): ([\d.]+)x", out, re.MULTILINE):
        ratio = _num(match[3])
        figure = f"gateway instructions/request at {match[1]} paths"
        rows.append(Row(bench, figure, f"{ratio:.3f}x", f"{match[2]} path", ratio, "<= 1.05", ratio <= 1.05))
    return rows


def health_instructions_rows(bench: str, out: str) -> list[Row]:
    """bench/health_instructions.py: callgrind instructions per /readyz against an aiohttp hello world."""
    sidecar = _search(r"^\s+sidecar\s+([\d.]+)k", out)
    hello = _search(r"^\s+hello\s+([\d.]+)k", out)
    ratio = _num(hello[1]) / _num(sidecar[1])
    return [
        Row(bench, "/readyz instructions/request (hello / sidecar)", sidecar[1] + "k", hello[1] + "k",
            ratio, ">= 0.9", ratio >= 0.9)
    ]  # fmt: skip


def memory_rows(bench: str, out: str) -> list[Row]:
    """bench/memory.py: resident growth after proxied requests and after log lines, against idle."""
    rows = []
    for match in re.finditer(
        r"^(\w+)\s+RSS idle\s+([\d.]+) MB, after ([\d,]+) ([a-z ]+?)\s+([\d.]+) MB: \+\s*([\d.]+) MB",
        out,
        re.M,
    ):
        grown = _num(match[6])
        rows.append(
            Row(bench, f"RSS growth after {match[3]} {match[4]}", f"+{grown:.1f} MB", f"idle {match[2]} MB",
                None, "<= +15 MB", grown <= 15.0)
        )  # fmt: skip
    return rows


def probe_cost_rows(bench: str, out: str) -> list[Row]:
    """bench/probe_cost.py: the longest event-loop step of a probe, per kind, against the loop's 2 ms."""
    rows = []
    pattern = r"^(\w+)\s+cpu median\s+([\d.]+) ms.*longest loop step median\s+([\d.]+) ms\s+p95\s+([\d.]+) ms"
    for match in re.finditer(pattern, out, re.MULTILINE):
        p95 = _num(match[4])
        rows.append(
            Row(
                bench,
                f"probe {match[1]}: longest loop step p95 (ms)",
                match[4],
                "2",
                p95 / 2,
                "<= 2 ms",
                p95 <= 2,
            )
        )
    if not rows:
        raise LookupError("no probe lines")
    return rows


def logs_memory_rows(bench: str, out: str) -> list[Row]:
    """bench/logs_memory.py: what its docstring asks, a flat resident set however long it runs.

    Judged from the first step to the last: the first step holds the one-time rise (the OTLP export
    queue filling to its bound while the bench feeds lines as fast as it can, and the receiver running
    in the same process), shown on its own row without a goal. Issue 17's idle + 15 MB is
    bench/memory.py's figure (the sidecar's defaults, no OTLP export).
    """
    before = _search(r"before any line: RSS ([\d.]+) MiB", out)
    steps = re.findall(r"^\s*([\d,]+) lines\s+RSS\s+([\d.]+) MiB", out, re.MULTILINE)
    if len(steps) < 2:
        raise LookupError("fewer than two RSS lines")
    (first_lines, first), (lines, last) = steps[0], steps[-1]
    growth = _num(last) - _num(first)
    return [
        Row(
            bench, f"OTLP + 10 rules: RSS after {first_lines} lines (MiB)", first, before[1], None, "-", None
        ),
        Row(
            bench,
            f"OTLP + 10 rules: RSS growth {first_lines} -> {lines} lines",
            f"{growth:+.1f} MiB",
            f"{first} MiB",
            None,
            "flat: <= +15 MiB",
            growth <= 15,
        ),
    ]


def redis_client_rows(bench: str, out: str) -> list[Row]:
    """bench/ratelimit_redis_client.py: the gateway's RESP client against redis-py (no goal in issue 17)."""
    redis_py = _search(r"^redis\.asyncio.*client CPU\s+([\d.]+) us/decision", out)
    ours = _search(r"^pipelined RESP client.*client CPU\s+([\d.]+) us/decision", out)
    return [
        Row(
            bench,
            "rate-limit decision CPU us (own client)",
            ours[1],
            redis_py[1] + " (redis-py)",
            _num(ours[1]) / _num(redis_py[1]),
            "-",
            None,
        ),
    ]


@dataclass
class Bench:
    script: str
    full: list[str]
    quick: list[str]
    extract: Extractor
    timeout: int = 3600
    slow: bool = False  # left out of --quick unless named with --only (valgrind runs take many minutes)


BENCHES = [
    Bench("scrape_stall.py", [], ["--quick"], own_rows),
    Bench("gateway.py", [], ["--seconds", "3", "--repeat", "1"], gateway_rows),
    Bench(
        "gateway_instructions.py",
        ["--paths", "1,100000"],
        ["--requests", "1000"],
        gateway_instructions_rows,
        7200,
        slow=True,
    ),
    Bench("health.py", [], ["--seconds", "3", "--idle-seconds", "5", "--rounds", "1"], health_rows),
    # logs: best of 3 runs of mtail and of each sidecar configuration (one run swings by a fifth)
    Bench("logs.py", ["--callgrind", "--repeat", "3"], ["--lines", "200000"], logs_rows),
    Bench("bullmq_probe.py", [], ["--probes", "5"], bullmq_rows),
    Bench("gateway_ratelimit.py", [], ["--seconds", "3", "--repeat", "1"], ratelimit_rows),
    Bench("gateway_tracing.py", [], ["--seconds", "3", "--repeat", "1"], tracing_rows),
    Bench("ratelimit_redis_client.py", [], ["--decisions", "5000"], redis_client_rows),
    Bench("probe_cost.py", [], ["--probes", "10"], probe_cost_rows),
    Bench("health_instructions.py", [], ["--requests", "1000"], health_instructions_rows, 7200, slow=True),
    Bench("memory.py", [], ["--requests", "200000", "--lines", "600000"], memory_rows, 3600),
    Bench("logs_memory.py", [], ["--lines", "500000", "--step", "250000"], logs_memory_rows),
]


def run(bench: Bench, quick: bool, log_dir: Path | None) -> list[Row]:
    name = bench.script.removesuffix(".py")
    args = bench.quick if quick else bench.full
    started = time.monotonic()
    print(f"-- {name} {' '.join(args)}", flush=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        done = subprocess.run(
            [sys.executable, str(BENCH / bench.script), *args],
            capture_output=True,
            text=True,
            timeout=bench.timeout,
            check=False,
            cwd=ROOT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return [Row(name, f"did not finish within {bench.timeout} s", "-", "-", None, "-", None)]
    out = done.stdout
    if log_dir is not None:
        (log_dir / f"{name}.txt").write_text(out + ("\n--- stderr\n" + done.stderr if done.stderr else ""))
    print(f"   {time.monotonic() - started:.0f} s, exit status {done.returncode}", flush=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1][:80]
        return [Row(name, f"failed: {last}", "-", "-", None, "-", None)]
    try:
        rows = own_rows(name, out) or bench.extract(name, out)
    except LookupError as exc:
        return [Row(name, f"report not understood ({exc})"[:80], "-", "-", None, "-", None)]
    return rows


def table(rows: list[Row]) -> None:
    print()
    print(f"{'bench':<22} {'figure':<44} {'value':>14} {'anchor':>18} {'ratio':>7}  {'goal':<20} met")
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        met = (
            "?" if r.met is None and r.goal != "-" else ("-" if r.met is None else ("yes" if r.met else "NO"))
        )
        if r.value == "-" and r.anchor == "-":
            met = "?"
        print(f"{r.bench:<22} {r.figure:<44} {r.value:>14} {r.anchor:>18} {ratio:>7}  {r.goal:<20} {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs: where things stand, not proof")
    parser.add_argument("--only", default="", help="comma-separated benchmark names, e.g. gateway,logs")
    parser.add_argument("--log-dir", type=Path, help="keep each benchmark's full report here")
    args = parser.parse_args()
    only = {n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()}
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    known = {b.script for b in BENCHES}
    rows: list[Row] = []
    for bench in BENCHES:
        name = bench.script.removesuffix(".py")
        if only and name not in only:
            continue
        if bench.slow and args.quick and not only:
            rows.append(
                Row(name, "skipped in --quick (callgrind): --only " + name, "-", "-", None, "-", None)
            )
            continue
        rows += run(bench, args.quick, args.log_dir)
    for script in sorted(p.name for p in BENCH.glob("*.py")):
        if script in known or script in HELPERS or only:
            continue
        why = UNANCHORED.get(script, "not wired into run_all.py")
        rows.append(Row(script.removesuffix(".py"), why, "-", "-", None, "-", None))
    table(rows)
    print(f"\nmachine load average now: {psutil.getloadavg()[0]:.2f} (wall-clock figures swing with it)")


if __name__ == "__main__":
    main()
