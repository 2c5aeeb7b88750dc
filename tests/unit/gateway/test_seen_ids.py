"""The RED dedupe memory (``HttpMetrics.first_sighting``): a request counted once across sources,
two generations of hashes remembered, the oldest forgotten whole, in bounded memory."""

from __future__ import annotations

import os
import tracemalloc

import psutil
from prometheus_client import CollectorRegistry

from sidecar.core import http_metrics
from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser


def metrics() -> HttpMetrics:
    return HttpMetrics(CollectorRegistry(), RouteNormaliser())


def test_an_id_is_counted_once_whoever_sees_it_first() -> None:
    http = metrics()
    assert http.first_sighting("a", "gateway")
    assert not http.first_sighting("a", "logs")
    assert not http.first_sighting("a", "gateway")
    assert http.first_sighting("b", "logs")
    assert http.first_sighting(None, "logs") and http.first_sighting("", "logs")  # no ID: always counted
    assert http.duplicates.labels("logs")._value.get() == 1
    assert http.reused_ids._value.get() == 1  # the gateway counts it anyway; the reuse is noted


def test_ids_the_gateway_made_up_are_remembered_without_being_counted_as_reused() -> None:
    http = metrics()
    http.remember("made-1")
    assert not http.first_sighting("made-1", "logs")  # the app's line for it: a duplicate
    assert http.duplicates.labels("logs")._value.get() == 1
    assert http.reused_ids._value.get() == 0


def test_remembered_ids_fill_generations_like_sighted_ones() -> None:
    http = metrics()
    generation = http_metrics._SEEN_GENERATION
    for n in range(generation):
        http.remember(f"made-{n}")
    assert http._seen_before is not None  # a full generation became the previous one
    assert not http.first_sighting("made-0", "logs")  # still remembered there
    for n in range(generation):
        http.remember(f"later-{n}")
    assert http.first_sighting("made-0", "logs")  # two generations later: forgotten


def test_two_generations_are_remembered_and_the_third_back_is_forgotten() -> None:
    http = metrics()
    generation = http_metrics._SEEN_GENERATION
    ids = [f"req-{n}" for n in range(3 * generation)]
    for request_id in ids[: generation + generation // 2]:
        assert http.first_sighting(request_id, "gateway")
    assert not http.first_sighting(ids[0], "logs")  # the previous generation is still known
    assert not http.first_sighting(ids[generation + 10], "logs")  # and the current one
    for request_id in ids[generation + generation // 2 :]:
        assert http.first_sighting(request_id, "gateway")
    assert http.first_sighting(ids[0], "logs")  # two generations later: forgotten


def test_hashes_that_collide_in_the_table_are_told_apart() -> None:
    table = http_metrics._Hashes()
    base = 12345
    keys = [base + n * http_metrics._SLOTS for n in range(50)]  # same slot, different hashes
    assert all(table.add(k) for k in keys)
    assert all(k in table for k in keys)
    assert not table.add(keys[17])
    assert (base + 50 * http_metrics._SLOTS) not in table
    assert -base in table or table.add(-base)  # negative hashes index the table too


def test_the_memory_of_100000_ids_stays_near_two_tables() -> None:
    tracemalloc.start()
    try:
        http = metrics()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(100_000):
            http.first_sighting(f"0000-{n:08x}", "gateway")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2.5 * 8 * http_metrics._SLOTS  # two tables of 64-bit words, little else


def test_a_table_takes_resident_memory_only_where_hashes_landed() -> None:
    """Every sidecar has the table, most never see a request ID: it must not carry 1 MB from the start."""
    process = psutil.Process()
    before = process.memory_info().rss
    tables = [http_metrics._Hashes() for _ in range(16)]  # 16 MB if they were resident
    grown = process.memory_info().rss - before
    assert grown < 2 * 8 * http_metrics._SLOTS, f"{grown} bytes resident for 16 empty tables"
    assert all(table.add(7) and 7 in table for table in tables)


def test_a_forked_child_does_not_write_into_the_parents_table() -> None:
    table = http_metrics._Hashes()
    assert table.add(11)
    pid = os.fork()
    if pid == 0:  # the child remembers an ID of its own and exits at once
        os._exit(0 if table.add(22) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert 22 not in table and 11 in table  # a private mapping: the child's write stayed in the child
