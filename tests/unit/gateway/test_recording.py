"""Access records (masking, time format, sampling, off-loop writing) and RED aggregation into HttpMetrics."""

from __future__ import annotations

import asyncio
import json
from bisect import bisect_left
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.utils import floatToGoString

from sidecar.core.http_metrics import DURATION_BUCKETS, SIZE_BUCKETS, HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex, pack_at
from sidecar.gateway.access_log import AccessLineEncoder, AccessLog, UtcClock, json_string, line_of
from sidecar.gateway.metrics import RedRecorder, _bucket, _size_bucket, method_label
from sidecar.gateway.query_mask import mask_query, path_of
from sidecar.gateway.settings import AccessLogSettings


def test_query_values_are_masked_keys_kept() -> None:
    assert mask_query(b"/a/b") == "/a/b"
    assert mask_query(b"/s?q=secret&page=2&flag") == "/s?q=***&page=***&flag"
    assert mask_query(b"/s?token=abc#frag") == "/s?token=***"
    assert mask_query(b"/p\xff?x=1") == "/p\ufffd?x=***"


def test_path_of_origin_and_absolute_form() -> None:
    assert path_of(b"/users/1?x=2") == b"/users/1"
    assert path_of(b"http://example.com/users/1?x") == b"/users/1"
    assert path_of(b"http://example.com") == b"/"
    assert path_of(b"*") == b"*"


def test_utc_clock_formats_milliseconds() -> None:
    clock = UtcClock()
    assert clock.iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert clock.iso(1_700_000_000.5) == "2023-11-14T22:13:20.500Z"
    assert clock.iso(1_700_000_000.999) == "2023-11-14T22:13:20.999Z"
    assert clock.iso_bytes(1_700_000_000.999) == b"2023-11-14T22:13:20.999Z"
    assert clock.iso_bytes(1_700_000_001.0) == b"2023-11-14T22:13:21.000Z"


def encode_line(**overrides: object) -> dict[str, object]:
    """One access line from the encoder, parsed back: what a log shipper reads."""
    fields: dict[str, object] = {
        "at": 1_795_471_200.123,
        "time_iso": b"2026-11-23T22:00:00.123Z",
        "request_id": "3f2c1a9e-7b4d-4e2a-9c1f-0a1b2c3d4e5f",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "method": b"GET",
        "route": json_string("/users/{id}"),
        "path": json_string(mask_query(b"/users/7?token=abc")),
        "status": 200,
        "duration": 0.0012344,
        "upstream": 0.001,
        "bytes_in": 12,
        "bytes_out": 3456,
        "client": "192.0.2.10",
        "user_agent": b"curl/8.5.0",
        "error": "",
    }
    fields.update(overrides)
    entry = AccessLineEncoder().encode(**fields)  # type: ignore[arg-type]
    assert entry.startswith(pack_at(fields["at"]))  # type: ignore[arg-type]  # the time the index sorts by
    line = line_of(entry)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_access_line_fields_and_units() -> None:
    assert encode_line() == {
        "time": "2026-11-23T22:00:00.123Z",
        "request_id": "3f2c1a9e-7b4d-4e2a-9c1f-0a1b2c3d4e5f",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "method": "GET",
        "route": "/users/{id}",
        "path": "/users/7?token=***",
        "status": 200,
        "duration_ms": 1.234,  # milliseconds, three decimals
        "upstream_ms": 1.0,
        "bytes_in": 12,
        "bytes_out": 3456,
        "client": "192.0.2.10",
        "user_agent": "curl/8.5.0",
    }


def test_access_line_numbers_either_side_of_the_small_number_table() -> None:
    """Integers below 1,000 come from a table, larger ones are formatted: the text is the same."""
    for n in (0, 7, 999, 1000, 1001, 123_456_789):
        line = encode_line(status=n, bytes_in=n, bytes_out=n, duration=n / 1000 + 0.000_25, upstream=n / 1000)
        assert (line["status"], line["bytes_in"], line["bytes_out"]) == (n, n, n)
        assert (line["duration_ms"], line["upstream_ms"]) == (n + 0.25, float(n))
    assert encode_line(duration=-1.0)["duration_ms"] == 0.0  # a clock step never writes a negative time


def test_access_line_escapes_what_clients_control() -> None:
    hostile = encode_line(
        request_id='a"b\\c',  # printable ASCII, so a valid X-Request-ID, but JSON-special
        method=b"PURGE",
        user_agent=b'Mozilla "quoted" \\ \xff\x01 end',
        error="upstream_refused",
    )
    assert hostile["request_id"] == 'a"b\\c'
    assert hostile["user_agent"] == 'Mozilla "quoted" \\ \xff\x01 end'  # latin-1, control escaped
    assert hostile["method"] == "PURGE"
    assert hostile["error"] == "upstream_refused"


def test_access_line_nulls_for_requests_refused_before_routing() -> None:
    refused = encode_line(
        trace_id=None, method=b"", route=b"null", path=b"null", duration=None, upstream=None, user_agent=None
    )
    for key in ("trace_id", "method", "route", "path", "duration_ms", "upstream_ms", "user_agent"):
        assert refused[key] is None, key
    assert "error" not in encode_line()


def test_access_line_values_repeated_or_alternating_keep_their_own_json() -> None:
    """The previous line's method, client and agent are reused only when they are the same value."""
    encoder = AccessLineEncoder()
    values = [
        (b"GET", "10.0.0.1", b"curl"),
        (b"GET", "10.0.0.1", b"curl"),
        (b"POST", "10.0.0.2", b'a "b"'),
        (b"", "", b""),
        (b"GET", "10.0.0.1", None),
        (b"POST", "10.0.0.2", b"curl"),
    ]
    for method, client, agent in values:
        line = json.loads(
            line_of(
                encoder.encode(
                    1.0, b"t", "r", "t", method, b"null", b"null", 200, 0.0, 0.0, 0, 0, client, agent, ""
                )
            )
        )
        assert line["method"] == (method.decode() or None)
        assert (line["client"], line["user_agent"]) == (client, None if agent is None else agent.decode())


def test_access_line_caches_stay_bounded() -> None:
    encoder = AccessLineEncoder()
    for i in range(5000):
        line = encoder.encode(
            1.0,
            b"t",
            "r",
            "t",
            b"GET",
            b"null",
            b"null",
            200,
            0.0,
            0.0,
            0,
            0,
            f"10.0.{i // 256}.{i % 256}",
            f"agent {i}".encode(),
            "",
        )
        assert f"agent {i}".encode() in line
    assert all(len(cache) <= 1024 for cache in (encoder._clients, encoder._agents, encoder._methods))


def test_bucket_scan_agrees_with_bisect() -> None:
    durations = [0.0, 1e-6, *DURATION_BUCKETS, *(b * 1.0001 for b in DURATION_BUCKETS), 3600.0]
    for value in durations:
        assert _bucket(DURATION_BUCKETS, value) == bisect_left(DURATION_BUCKETS, value), value
    for size in [0, 1, *SIZE_BUCKETS, *(b + 1 for b in SIZE_BUCKETS), 10**12]:
        assert _bucket(SIZE_BUCKETS, size) == bisect_left(SIZE_BUCKETS, size), size
        assert _size_bucket(size) == bisect_left(SIZE_BUCKETS, size), size


def test_unknown_methods_are_other() -> None:
    assert method_label(b"GET") == "GET"
    assert method_label(b"get") == "_OTHER"  # methods are case-sensitive
    assert method_label(b"PROPFIND") == "_OTHER"


async def test_access_log_samples_successes_indexes_everything(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    correlation = CorrelationIndex()
    log = AccessLog(AccessLogSettings(path=str(path), sample_success=0.0), correlation, CollectorRegistry())
    log.open()
    for i, (status, failed) in enumerate(
        [(200, False), (302, False), (404, False), (502, True), (200, True)]
    ):
        line = json.dumps({"request_id": f"r{i}", "trace_id": "t", "status": status}).encode() + b"\n"
        log.emit(f"r{i}", pack_at(1.0) + line, status, failed, 1.0)
    await log.close()
    written = [json.loads(line)["request_id"] for line in path.read_text().splitlines()]
    assert written == ["r2", "r3", "r4"]  # 4xx, 5xx and proxy failures are never sampled out
    assert all(correlation.get(f"r{i}") is not None for i in range(5))


async def test_access_log_writes_off_the_loop_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(AccessLogSettings(path=str(path)), CorrelationIndex(), CollectorRegistry())
    log.open()
    for i in range(1000):
        line = json.dumps({"request_id": f"r{i}", "trace_id": None, "status": 200}).encode() + b"\n"
        log.emit(f"r{i}", pack_at(1.0) + line, 200, False, 1.0)
    assert path.read_text() == ""  # nothing written synchronously
    await asyncio.sleep(0.5)
    assert len(path.read_text().splitlines()) == 1000
    await log.close()


def series_value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_red_recorder_folds_counts_into_the_shared_histograms() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry, RouteNormaliser())
    red = RedRecorder(http)
    red.started(b"GET")
    assert series_value(registry, "http_server_active_requests", http_request_method="GET") == 1
    red.ended(b"GET")
    for seconds in (0.001, 0.02, 3.0):
        red.observe(b"GET", "/a", 200, "", seconds, 10, 2000, "0af7651916cd43dd8448eb211c80319c")
    red.observe(b"POST", "/a", 502, "upstream_refused", 0.001, 0, 50, "1" * 32)
    labels = {
        "http_request_method": "GET",
        "http_route": "/a",
        "http_response_status_code": "200",
        "error_type": "",
    }
    assert registry.get_sample_value("http_server_request_duration_seconds_count", labels) == 0  # not yet
    await asyncio.sleep(0.25)  # the flush timer
    assert registry.get_sample_value("http_server_request_duration_seconds_count", labels) == 3
    assert registry.get_sample_value("http_server_request_duration_seconds_sum", labels) == 3.021
    assert (
        registry.get_sample_value("http_server_request_duration_seconds_bucket", {**labels, "le": "0.005"})
        == 1
    )
    assert (
        registry.get_sample_value("http_server_request_duration_seconds_bucket", {**labels, "le": "2.5"}) == 2
    )
    assert (
        registry.get_sample_value(
            "http_server_request_duration_seconds_count",
            {
                "http_request_method": "POST",
                "http_route": "/a",
                "http_response_status_code": "502",
                "error_type": "upstream_refused",
            },
        )
        == 1
    )
    assert (
        series_value(
            registry, "http_server_response_body_size_bytes_sum", http_request_method="GET", http_route="/a"
        )
        == 6000
    )
    text = generate_openmetrics(registry).decode()
    assert '# {trace_id="0af7651916cd43dd8448eb211c80319c"} 0.001' in text
    assert "error_type" in generate_latest(registry).decode()


async def test_red_recorder_counts_each_label_set_apart_when_they_alternate() -> None:
    """The previous request's series is reused only for the same four labels; each differing one counts."""
    registry = CollectorRegistry()
    red = RedRecorder(HttpMetrics(registry, RouteNormaliser()))
    label_sets = [
        (b"GET", "/a", 200, ""),
        (b"GET", "/a", 200, ""),
        (b"POST", "/a", 200, ""),
        (b"GET", "/b", 200, ""),
        (b"GET", "/a", 404, ""),
        (b"GET", "/a", 200, "client_disconnect"),
        (b"GET", "/a", 200, ""),
    ]
    for method, route, status, error in label_sets:
        red.observe(method, route, status, error, 0.001, 0, 0, "a" * 32)
    red.flush()
    for method, route, status, error in set(label_sets):
        labels = {
            "http_request_method": method.decode(),
            "http_route": route,
            "http_response_status_code": str(status),
            "error_type": error,
        }
        count = registry.get_sample_value("http_server_request_duration_seconds_count", labels)
        assert count == label_sets.count((method, route, status, error)), labels


async def test_red_recorder_throttles_exemplars_per_bucket() -> None:
    registry = CollectorRegistry()
    red = RedRecorder(HttpMetrics(registry, RouteNormaliser()))
    red.observe(b"GET", "/", 200, "", 0.001, 0, 0, "a" * 32)
    red.flush()
    red.observe(b"GET", "/", 200, "", 0.001, 0, 0, "b" * 32)
    red.flush()
    text = generate_openmetrics(registry).decode()
    assert 'trace_id="' + "a" * 32 in text  # the second one came within the same second
    assert "b" * 32 not in text


async def test_red_recorder_buckets_durations_and_sizes_at_their_bounds() -> None:
    """The first duration bound is compared as a literal, the sizes as ints: both agree with bisect."""
    registry = CollectorRegistry()
    red = RedRecorder(HttpMetrics(registry, RouteNormaliser()))
    cases = [(0.005, 0), (0.0050001, 100), (0.0, 101), (DURATION_BUCKETS[-1] * 2, 10**9 + 1)]
    for seconds, size in cases:
        red.observe(b"GET", "/", 200, "", seconds, size, size, "c" * 32)
    red.flush()

    def le(name: str, bound: float) -> float:
        value = registry.get_sample_value(
            name + "_bucket",
            {
                "http_request_method": "GET",
                "http_route": "/",
                "le": floatToGoString(bound),
                **({"http_response_status_code": "200", "error_type": ""} if "duration" in name else {}),
            },
        )
        return float(value or 0.0)

    for bound in DURATION_BUCKETS:
        expected = sum(1 for seconds, _ in cases if seconds <= bound)
        assert le("http_server_request_duration_seconds", bound) == expected, bound
    for bound in SIZE_BUCKETS:
        expected = sum(1 for _, size in cases if size <= bound)
        assert le("http_server_request_body_size_bytes", bound) == expected, bound
