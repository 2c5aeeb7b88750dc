"""The correlation index: compact gateway access lines, full timelines, and both bounds."""

from __future__ import annotations

import time

import orjson

from sidecar.correlation.index import (
    LOG_ERROR_FIELDS,
    LOG_FIELDS,
    LOG_HTTP_FIELDS,
    CorrelationIndex,
    pack_log,
)


def line(request_id: str, **fields: object) -> bytes:
    record = {"request_id": request_id, "trace_id": "t" * 32, "status": 200, **fields}
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def test_access_line_reads_back_as_a_one_entry_timeline() -> None:
    index = CorrelationIndex()
    index.add_access_line("r1", line("r1", path="/a"), 1000.25)
    timeline = index.get("r1")
    assert timeline == {
        "request_id": "r1",
        "trace_id": "t" * 32,
        "dropped_entries": 0,
        "timeline": [
            {
                "at": 1000.25,
                "kind": "access",
                "record": {"request_id": "r1", "trace_id": "t" * 32, "status": 200, "path": "/a"},
            }
        ],
    }


def test_log_line_after_the_access_line_joins_the_same_timeline_in_time_order() -> None:
    index = CorrelationIndex()
    index.add_access_line("r1", line("r1"), 1000.5)
    index.add("r1", "log", {"msg": "handled"}, at=1000.2)
    timeline = index.get("r1")
    assert timeline is not None
    assert [e["kind"] for e in timeline["timeline"]] == ["log", "access"]
    assert timeline["trace_id"] == "t" * 32


def test_access_line_after_a_log_line_is_added_to_its_timeline() -> None:
    index = CorrelationIndex()
    index.add("r1", "log", {"msg": "started"}, at=999.0, trace_id="x" * 32)
    index.add_access_line("r1", line("r1"), 1000.0)
    timeline = index.get("r1")
    assert timeline is not None
    assert [e["kind"] for e in timeline["timeline"]] == ["log", "access"]
    assert timeline["trace_id"] == "x" * 32  # the first trace ID seen stays


def test_bounds_hold_and_byte_accounting_returns_to_zero() -> None:
    index = CorrelationIndex(max_requests=50)
    for i in range(500):
        index.add_access_line(f"r{i}", line(f"r{i}"), float(i))
        if i % 7 == 0:
            index.add(f"r{i}", "log", {"n": i})
    assert len(index) == 50
    assert index.get("r0") is None and index.get("r499") is not None
    assert index.evicted == 450
    small = CorrelationIndex(max_requests=10, max_bytes=1)
    small.add_access_line("a", line("a"), 1.0)
    small.add("b", "log", {"x": 1})
    assert len(small) == 0 and small.bytes == 0  # every entry alone is over the byte bound


def test_byte_bound_evicts_oldest_compact_lines() -> None:
    one = len(line("r00")) + 8 + 64
    index = CorrelationIndex(max_bytes=one * 3)
    for i in range(10):
        index.add_access_line(f"r{i:02d}", line(f"r{i:02d}"), float(i))
    assert len(index) == 3
    assert index.bytes == one * 3
    assert [index.get(f"r{i:02d}") is not None for i in (6, 7, 8, 9)] == [False, True, True, True]


def test_a_batch_of_log_entries_is_held_as_adding_them_one_by_one() -> None:
    """``add_logs`` (the log flow's batch, each record as its values) keeps what ``add`` keeps."""
    http = {"method": "GET", "url": "/a", "status_code": 200, "duration_seconds": 0.25}
    records: list[tuple[str, float | None, str | None, dict[str, object]]] = [
        ("r1", 1000.5, None, {"level": "info", "message": "first", "time": 1000.5, "source": "api"}),
        ("r2", None, "a" * 32, {"level": "info", "message": "second", "time": None, "source": "api"}),
        (
            "r1",
            1000.75,
            "b" * 32,
            {"level": "info", "message": "third", "time": 1000.75, "source": "api", "http": http},
        ),
        ("", 1001.0, None, {"level": "info", "message": "no request ID", "time": 1001.0, "source": "api"}),
        (
            "r3",
            1001.0,
            "c" * 300,
            {
                "level": "error",
                "message": "long trace ID",
                "time": 1001.0,
                "source": "api",
                "error_type": "E",
                "error_value": None,
            },
        ),
        (
            "r4",
            1002.0,
            None,
            {
                "level": "error",
                "message": "evicts r2",
                "time": 1002.0,
                "source": "api",
                "error_type": None,
                "error_value": "x",
                "http": http,
            },
        ),
    ]
    one_by_one, batched = CorrelationIndex(max_requests=3), CorrelationIndex(max_requests=3)
    for request_id, at, trace_id, record in records:
        one_by_one.add(request_id, "log", record, trace_id=trace_id, at=at)
    batched.add_logs(
        [
            (rid, trace, pack_log(time.time() if at is None else at, trace, orjson.dumps(_values(record))))
            for rid, at, trace, record in records
        ]
    )
    assert (len(batched), batched.evicted) == (3, 1)
    assert batched.bytes < one_by_one.bytes  # no key names held per entry
    assert batched.newest(10) == one_by_one.newest(10) == ["r4", "r3", "r1"]
    for request_id in ("r1", "r3", "r4"):
        assert batched.get(request_id) == one_by_one.get(request_id)
    r1 = batched.get("r1")
    assert r1 is not None
    assert (r1["trace_id"], [e["record"]["message"] for e in r1["timeline"]]) == (
        "b" * 32,
        ["first", "third"],
    )
    assert batched.get("r2") is None
    r4 = batched.newest_entries(1)[0][1]
    assert isinstance(r4, bytes)
    assert batched.access_of(r4) is None and not batched.carries_trace(r4, "a" * 32)
    traced = CorrelationIndex()
    traced.add_logs([("r9", "d" * 32, pack_log(1.0, "d" * 32, orjson.dumps(("info", "m", 1.0, "api"))))])
    held = traced.newest_entries(1)[0][1]
    assert isinstance(held, bytes)
    assert traced.carries_trace(held, "d" * 32) and not traced.carries_trace(held, "e" * 32)
    assert traced.get("r9") == {
        "request_id": "r9",
        "trace_id": "d" * 32,
        "dropped_entries": 0,
        "timeline": [
            {
                "at": 1.0,
                "kind": "log",
                "record": {"level": "info", "message": "m", "time": 1.0, "source": "api"},
            }
        ],
    }


def _values(record: dict[str, object]) -> tuple[object, ...]:
    """A log record as the log flow hands it to ``add_logs``: its values in the index's order."""
    names = [*LOG_FIELDS]
    if "error_type" in record:
        names += LOG_ERROR_FIELDS
    values = tuple(record[name] for name in names)
    http = record.get("http")
    if isinstance(http, dict):
        values += tuple(http[name] for name in LOG_HTTP_FIELDS)
    return values


def test_large_bounds_evict_in_batches_oldest_first() -> None:
    """Past a large bound, the oldest go until the index is under it by a 64th: never over the bound,
    never more than a batch under it, and a touched request counts as new."""
    index = CorrelationIndex(max_requests=6_400)
    for i in range(6_400):
        index.add_access_line(f"r{i}", line(f"r{i}"), float(i))
    assert (len(index), index.evicted) == (6_400, 0)
    index.add("r0", "log", {"n": 0})  # touched: now the newest, evicted last
    index.add_access_line("r6400", line("r6400"), 6_400.0)
    assert (len(index), index.evicted) == (6_300, 101)  # 6,401 down to 6,400 - 6,400 // 64
    assert index.get("r0") is not None and index.get("r1") is None and index.get("r101") is None
    assert index.get("r102") is not None and index.newest(2) == ["r6400", "r0"]
    for i in range(6_401, 20_000):
        index.add_access_line(f"r{i}", line(f"r{i}"), float(i))
        assert 6_300 <= len(index) <= 6_400
    assert index.evicted == 20_000 - len(index)
    assert index.bytes == sum(len(line(f"r{i}")) + 8 + 64 for i in range(20_000 - len(index), 20_000))


def test_a_large_byte_bound_evicts_in_batches_too() -> None:
    one = len(line("r00000")) + 8 + 64
    index = CorrelationIndex(max_requests=1_000_000, max_bytes=1 << 20)
    for i in range(20_000):
        index.add_access_line(f"r{i:05d}", line(f"r{i:05d}"), float(i))
        assert index.bytes <= 1 << 20
    assert (1 << 20) - (1 << 20) // 64 - one < index.bytes
    assert index.evicted == 20_000 - len(index)
