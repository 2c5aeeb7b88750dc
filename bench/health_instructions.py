"""Instructions per ``/readyz`` request, counted by callgrind: the sidecar against an aiohttp hello world.

Wall-clock throughput on a shared 2-core machine swings with whatever else runs; instruction counts
do not. Each server runs under ``valgrind --tool=callgrind``; after a warm-up its counters are
zeroed, ``--requests`` keep-alive ``GET /readyz`` are served over 32 connections and counted, and an
idle window as long is counted and subtracted (the method of ``bench/gateway_instructions.py``:
start-up and shutdown fall outside, timers that tick per wall-clock second cancel out). The sidecar
runs without checks (they would probe on their own timers, a cost that grows with the run's length, not with the
requests), so its ``/readyz`` answers 200 "ok" as the hello world does.

    .venv/bin/python bench/health_instructions.py [--requests 2000] [--keep DIR]

Goal (issue 17): the sidecar at least 0.9x the hello world, i.e. at most 1/0.9 of its instructions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import PYTHON, ROOT, free_port
from bench.gateway_instructions import per_request

GOAL_VS_HELLO = 0.9  # issue: /readyz at least 0.9x the hello world (its instructions over ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--only", choices=["sidecar", "hello"], action="append")
    parser.add_argument("--keep", type=Path, help="copy the callgrind out files here (callgrind_annotate)")
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian package valgrind)")
    wanted = args.only or ["hello", "sidecar"]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="health-instr-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        for name in wanted:
            port = free_port()
            if name == "hello":
                cmd = [PYTHON, str(ROOT / "bench" / "hello_aiohttp.py"), str(port)]
                run_env = env
            else:
                cmd = [PYTHON, "-m", "sidecar", "run"]
                run_env = {
                    **env,
                    "SIDECAR_LISTEN": f"127.0.0.1:{port}",
                    "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
                    "SIDECAR_DEFAULT_CHECKS": "false",
                    "SIDECAR_LOG_LEVEL": "warning",
                }
            results[name] = per_request(
                name, cmd, port, args.requests, 1, tmp, run_env, path="/readyz", expect=(200,)
            )
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for out in tmp.glob("*.callgrind"):
                shutil.copy(out, args.keep / out.name)
    print(
        f"instructions per GET /readyz (callgrind; {args.requests} requests, 32 connections, less an idle window)"
    )
    for name, value in results.items():
        print(f"  {name:<8} {value / 1000:8.1f}k")
    if "sidecar" in results and "hello" in results:
        ratio = results["hello"] / results["sidecar"]
        met = "met" if ratio >= GOAL_VS_HELLO else "NOT met"
        print(f"  hello / sidecar: {ratio:.2f}x (goal >= {GOAL_VS_HELLO}x: {met})")


if __name__ == "__main__":
    main()
