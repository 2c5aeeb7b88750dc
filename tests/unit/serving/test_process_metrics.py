"""The process families: what client_python's ProcessCollector writes, read in pieces a render can pause at."""

from __future__ import annotations

import os

import pytest
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Metric

from sidecar.serving.process_metrics import ProcessMetrics
from sidecar.serving.text_exposition import ExpositionEncoder, FamilyRows, negotiate


def families(collector: ProcessCollector | ProcessMetrics) -> dict[str, Metric]:
    return {metric.name: metric for metric in collector.collect()}


def test_same_families_and_values_as_client_python() -> None:
    theirs = families(ProcessCollector(registry=None))
    ours = families(ProcessMetrics())
    assert list(ours) == list(theirs)  # same families, same order
    for name, metric in theirs.items():
        mine = ours[name]
        assert (mine.type, mine.documentation, mine.unit) == (metric.type, metric.documentation, metric.unit)
        assert [(s.name, s.labels) for s in mine.samples] == [(s.name, s.labels) for s in metric.samples]
    value = {name: metric.samples[0].value for name, metric in ours.items()}
    expected = {name: metric.samples[0].value for name, metric in theirs.items()}
    assert value["process_start_time_seconds"] == expected["process_start_time_seconds"]
    assert value["process_max_fds"] == expected["process_max_fds"]
    assert abs(value["process_open_fds"] - expected["process_open_fds"]) <= 1  # one read apart
    assert value["process_virtual_memory_bytes"] == pytest.approx(
        expected["process_virtual_memory_bytes"], 0.05
    )
    assert value["process_resident_memory_bytes"] == pytest.approx(
        expected["process_resident_memory_bytes"], 0.05
    )
    assert 0 <= value["process_cpu_seconds"] - expected["process_cpu_seconds"] < 0.5  # ticks, read later


def test_open_descriptors_are_counted_in_pieces() -> None:
    opened = [os.open(os.devnull, os.O_RDONLY) for _ in range(100)]
    try:
        rows = list(ProcessMetrics().exposition_rows())
        pauses = sum(1 for family in rows if family is None)
        counted = next(f for f in rows if isinstance(f, FamilyRows) and f.name == "process_open_fds")
        assert counted.rows[0][1] >= 100
        assert pauses >= 1 + 100 // 32  # after the memory read, then every 32 descriptors
    finally:
        for fd in opened:
            os.close(fd)


def test_the_registry_refuses_a_second_process_collector() -> None:
    """Registered like client_python's collector: its names are known, so a clash is refused."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ProcessCollector(registry=registry)


def test_rendered_like_client_python() -> None:
    registry = CollectorRegistry(auto_describe=True)
    ProcessMetrics(registry=registry)
    body = ExpositionEncoder(registry).render_sync(negotiate("")).decode()
    assert "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total " in body
    assert "# TYPE process_open_fds gauge\nprocess_open_fds " in body
