"""A long differential framing campaign against the real sidecar process (see tests/framing_fuzz).

    python -m bench.fuzz_gateway --cases 1000000 --seconds 3600 --seed 7

Starts ``python -m sidecar run`` with the gateway in front of the fuzzer's strict recording upstream,
its access log in a temporary file, then sends seeded mutated request streams through it over
loopback, checking after every batch that the app received exactly what the gateway read and that
every request the app completed is in the access log. Stops at ``--cases`` or ``--seconds``,
whichever comes first; prints progress (cases/s, desyncs) and exits 1 if any desync was found.
A desync names its case; ``--first N --cases 1`` replays it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bench._common import PYTHON, free_port, start, stop
from tests.framing_fuzz.harness import AccessLogReader, Findings, Recorder, campaign, check_logged


async def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"the gateway did not listen on {port} within {timeout}s")


async def main(args: argparse.Namespace) -> int:
    findings = Findings()
    recorder = Recorder(findings)
    await recorder.start()
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-gateway-"))
    access = tmp / "access.log"
    gw_port = free_port()
    sidecar = start(
        [PYTHON, "-m", "sidecar", "run"],
        env={
            "SIDECAR_UPSTREAM": f"http://127.0.0.1:{recorder.port}",
            "SIDECAR_GATEWAY_LISTEN": f"127.0.0.1:{gw_port}",
            "SIDECAR_LISTEN": f"127.0.0.1:{free_port()}",
            "SIDECAR_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
            "SIDECAR_DEFAULT_CHECKS": "false",
            "SIDECAR_LOG_LEVEL": "warning",
            "SIDECAR_GATEWAY__DRAIN_PERIOD": "0",
            "SIDECAR_GATEWAY__GRACE_PERIOD": "1",
            "SIDECAR_GATEWAY__HEADER_TIMEOUT": "2s",
            "SIDECAR_GATEWAY__BODY_TIMEOUT": "2s",
            "SIDECAR_GATEWAY__ACCESS_LOG__PATH": str(access),
        },
    )
    log = AccessLogReader(access)
    started = time.monotonic()

    shown = 0

    def progress(f: Findings, elapsed: float) -> None:
        nonlocal shown
        for line in f.desyncs[shown:50]:
            print("DESYNC", line, flush=True)
        shown = max(shown, min(len(f.desyncs), 50))
        print(
            f"{f.cases} cases in {elapsed:.0f}s ({f.cases / max(elapsed, 1e-9):.0f} cases/s): "
            f"desyncs={len(f.desyncs)} forwarded={f.forwarded} refused={f.refused} "
            f"unanswered={f.unanswered} stalls={f.stalls}",
            flush=True,
        )

    try:
        await _wait_port(gw_port)
        await campaign(
            gw_port,
            recorder,
            findings,
            log,
            seed=args.seed,
            cases=args.cases,
            seconds=args.seconds,
            concurrency=args.concurrency,
            first=args.first,
            progress=progress,
        )
    finally:
        stop(sidecar)  # SIGTERM: the access log is flushed on the way out
        await recorder.close()
    check_logged(recorder, log, findings)
    elapsed = time.monotonic() - started
    progress(findings, elapsed)
    print(
        f"seed={args.seed} cases={findings.cases} rate={findings.cases / elapsed:.0f}/s desyncs={len(findings.desyncs)}"
    )
    return 1 if findings.desyncs else 0


def cli() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100_000, help="stop after this many cases")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--first", type=int, default=0, help="index of the first case (replay one with --cases 1)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="client connections at once")
    args = parser.parse_args()
    if args.cases < 1 or args.seconds <= 0:
        parser.error("--cases and --seconds must be positive")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main(args))
    return uvloop.run(main(args))


if __name__ == "__main__":
    sys.exit(cli())
