"""Each kind declares what it measures; what it reports stays within that (``warn:``/``fail:`` rely on it)."""

from __future__ import annotations

import pytest

from collectors import KNOWN_KINDS, load_collector
from collectors.base import CheckTarget
from collectors.bullmq import QUEUE_MEASUREMENTS, QueueStats, queue_observation
from collectors.host import HostCollector, HostOptions
from collectors.process import ProcessCollector, ProcessOptions
from collectors.redis import RedisCollector
from collectors.redis import observe as redis_observe


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_every_kind_declares_measurements_with_health_names(kind: str) -> None:
    declared = load_collector(kind).measurements
    assert declared and len(declared) == len(set(declared))
    for name in declared:
        assert name[0].islower() and name.isalnum(), f"{kind}: {name} is not a camelCase /health name"


async def test_host_and_process_report_only_what_they_declare() -> None:
    target = CheckTarget(name="x", target=None, timeout=2.0)
    for collector in (HostCollector(target, HostOptions()), ProcessCollector(target, ProcessOptions())):
        await collector.open()
        try:
            observed = (await collector.collect()).measurements
        finally:
            await collector.close()
        assert observed and set(observed) <= set(collector.measurements), type(collector).__name__


def test_queue_and_redis_observations_report_only_what_they_declare() -> None:
    stats = QueueStats(
        name="mail",
        counts={"wait": 3, "failed": 1},
        backlog=3,
        oldest_waiting_age=2.0,
        overdue_delayed=0,
        stalled=0,
        paused=False,
        workers=2,
    )
    observed = queue_observation([stats], missing=["gone"]).measurements
    assert set(observed) == set(QUEUE_MEASUREMENTS), "every queue measurement is produced when known"
    info = {"connected_clients": 5, "maxclients": 100, "used_memory": 10, "maxmemory": 100}
    assert set(redis_observe(0.001, info).measurements) == set(RedisCollector.measurements)
