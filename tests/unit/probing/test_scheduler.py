"""Scheduler semantics with in-memory collectors: timeouts, stuck drivers, backoff, reason mapping, redaction."""

from __future__ import annotations

import asyncio

import pytest

from collectors.base import Collector, CollectorOptions, Measurement, Observation, ProbeError, Reason, Status
from sidecar.probing.probe import Probe
from sidecar.probing.results import ResultStore
from sidecar.probing.scheduler import CheckRunner, Scheduler
from sidecar.probing.settings import CheckConfig


class Scripted(Collector[CollectorOptions]):
    """Does what the test tells it; counts how many probes are in flight at once."""

    kind = "scripted"

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def collect(self) -> Observation:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.behaviour == "hang":
                await asyncio.sleep(3600)
            if self.behaviour == "stubborn":
                for _ in range(40):  # swallows cancellation, like a driver stuck in C
                    try:
                        await asyncio.sleep(0.05)
                    except asyncio.CancelledError:
                        continue
            if self.behaviour == "refused":
                raise ConnectionRefusedError("connect to postgres://u:hunter22@db failed")
            if self.behaviour == "auth":
                raise ProbeError(Reason.AUTH, "password authentication failed")
            if self.behaviour == "boom":
                raise RuntimeError("bug")
            return Observation(measurements={"responseTime": Measurement(0.5, "s")})
        finally:
            self.in_flight -= 1


def probe_with(behaviour: str, **config: object) -> tuple[Probe, Scripted]:
    settings = {
        "name": "dep",
        "kind": "tcp",
        "target": "127.0.0.1:9",
        "interval": 0.2,
        "timeout": 0.1,
    } | config
    probe = Probe(CheckConfig(**settings))  # type: ignore[arg-type]
    scripted = Scripted(behaviour)
    probe.collector = scripted
    probe._secrets.append("hunter22")
    return probe, scripted


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("hang", Reason.TIMEOUT),
        ("refused", Reason.CONNECT),
        ("auth", Reason.AUTH),
        ("boom", Reason.UNEXPECTED),
    ],
)
async def test_every_failure_becomes_a_result_with_a_reason(behaviour: str, reason: Reason) -> None:
    probe, _ = probe_with(behaviour)
    result = await probe.run()
    assert result.status is Status.FAIL and result.reason is reason
    assert "hunter22" not in result.output


async def test_thresholds_make_a_pass_warn_or_fail() -> None:
    probe, _ = probe_with("ok", warn={"responseTime": 0.2})
    result = await probe.run()
    assert result.status is Status.WARN and "responseTime 0.5 >0.2" in result.output
    probe, _ = probe_with("ok", warn={"responseTime": 0.2}, fail={"responseTime": "<1"})
    result = await probe.run()
    assert result.status is Status.FAIL and result.reason is Reason.UNHEALTHY


async def test_a_hung_dependency_holds_at_most_one_probe() -> None:
    probe, scripted = probe_with("stubborn", interval=0.1, timeout=0.05)
    runner = CheckRunner(probe, ResultStore())
    results = [await runner.run_once() for _ in range(4)]
    assert all(r.reason is Reason.TIMEOUT for r in results)
    assert scripted.max_in_flight == 1
    assert "still stuck" in results[1].output
    await runner.stop()


async def test_runner_probes_on_interval_and_backs_off_while_failing() -> None:
    store = ResultStore()
    scheduler = Scheduler(store)
    config = CheckConfig(
        name="dep", kind="tcp", target="127.0.0.1:9", interval=0.1, timeout=0.05, max_backoff=0.4
    )
    await scheduler.apply([config])
    runner = scheduler.runners["dep"]
    scripted = Scripted("refused")
    runner.probe.collector = scripted
    await asyncio.sleep(1.2)
    failing_calls = scripted.calls
    # without backoff ~12 probes; with doubling capped at 0.4s far fewer
    assert 3 <= failing_calls <= 7, failing_calls
    assert runner.consecutive_failures >= 3
    assert 0.36 <= runner.next_delay() <= 0.4
    scripted.behaviour = "ok"
    await asyncio.sleep(0.6)
    latest = store.latest("dep")
    assert latest is not None and latest.status is Status.PASS
    assert runner.consecutive_failures == 0
    assert store.failures("dep")["connect"] == failing_calls
    await scheduler.stop()


async def test_apply_removes_and_forgets_checks() -> None:
    store = ResultStore()
    scheduler = Scheduler(store)
    a = CheckConfig(name="a", kind="tcp", target="127.0.0.1:9", interval=1, timeout=0.1)
    b = CheckConfig(name="b", kind="tcp", target="127.0.0.1:9", interval=1, timeout=0.1)
    await scheduler.apply([a, b])
    assert [n for n, _ in store.checks()] == ["a", "b"]
    await scheduler.apply([a])
    assert [n for n, _ in store.checks()] == ["a"]
    assert set(scheduler.runners) == {"a"}
    await scheduler.stop()
