"""The log pipeline's sinks: line and rejection counts, access lines into the shared request histogram
(without double counting the gateway's requests), the correlation index, re-emit; and the line splitter,
checkpoint store and settings the sources rely on."""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.redaction import mask_url, redact_text
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.endpoint import CorrelationMetrics
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.access import FLUSH_INTERVAL, Tally, path_of
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import LogParser, LogRecord
from sidecar.logs.pipeline import MAX_INDEXED_TEXT, LogPipeline
from sidecar.logs.reemit import Reemitter, scrub
from sidecar.logs.settings import LogSettings
from sidecar.logs.sources.channel import Batch
from sidecar.logs.sources.checkpoint import CheckpointStore, FileOffset, fingerprint
from sidecar.logs.sources.lines import LineSplitter

pytestmark = pytest.mark.timeout(10)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def pino_access(request_id: str, url: str = "/users/42", status: int = 200, ms: float = 12) -> bytes:
    return orjson.dumps(
        {
            "level": 30,
            "time": 1_700_000_000_000,
            "reqId": request_id,
            "req": {"id": request_id, "method": "GET", "url": url, "headers": {}},
            "res": {"statusCode": status},
            "responseTime": ms,
            "msg": "request completed",
        }
    )


# The request histogram's labels of a successful GET /users/{id} (what pino_access writes by default).
USERS_OK = {
    "http_request_method": "GET",
    "http_route": "/users/{id}",
    "http_response_status_code": "200",
    "error_type": "",
}


@pytest.fixture
def setup() -> tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline]:
    registry = CollectorRegistry()
    http = HttpMetrics(registry, RouteNormaliser(["/users/{id}"], max_routes=50))
    index = CorrelationIndex(max_requests=100)
    pipeline = LogPipeline(LogParser(), LogMetrics(registry), http, index)
    return registry, http, index, pipeline


def test_lines_counted_by_source_and_level(
    setup: tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline],
) -> None:
    registry, _, _, pipeline = setup
    result = pipeline.feed(
        "api",
        [
            b'{"level":30,"msg":"a"}',
            b'{"level":50,"msg":"b"}',
            b"",
            b"   ",
            b"WARN plain",
            b'{"broken',
            b"\xff\xfe",
        ],
    )
    assert result.accepted == 3
    assert result.rejected == {"invalid_json": 1, "invalid_utf8": 1}
    assert sample(registry, "sidecar_log_lines_total", source="api", level="info") == 1
    assert sample(registry, "sidecar_log_lines_total", source="api", level="error") == 1
    assert sample(registry, "sidecar_log_lines_total", source="api", level="warn") == 1
    assert sample(registry, "sidecar_log_lines_rejected_total", source="api", reason="invalid_json") == 1
    pipeline.consume("api", Batch([], too_long=2))
    assert sample(registry, "sidecar_log_lines_rejected_total", source="api", reason="too_long") == 2


def test_access_lines_feed_the_shared_histogram_once_per_request(
    setup: tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline],
) -> None:
    registry, http, _, pipeline = setup
    labels = USERS_OK
    assert http.first_sighting("seen-by-gateway", "gateway")  # the gateway counted this one already
    pipeline.feed(
        "api", [pino_access("r1"), pino_access("r2", "/users/7?x=1"), pino_access("seen-by-gateway")]
    )
    pipeline.feed("api", [pino_access("r1")])  # the same line read again (e.g. after a crash)
    assert sample(registry, "http_server_request_duration_seconds_count", **labels) == 2
    assert sample(registry, "http_server_request_duration_seconds_sum", **labels) == pytest.approx(0.024)
    assert sample(registry, "sidecar_http_duplicate_observations_total", source="logs") == 2
    pipeline.feed("api", [pino_access("r5", "/orders/9/items", 503, 1500)])
    assert (
        sample(
            registry,
            "http_server_request_duration_seconds_bucket",
            http_request_method="GET",
            http_route="/orders/{id}/items",
            http_response_status_code="503",
            error_type="503",
            le="2.5",
        )
        == 1
    )


async def test_on_the_loop_access_lines_are_folded_in_once_per_interval(
    setup: tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline],
) -> None:
    """Fed on a running loop, batches share one timer: the histogram has every line at most
    ``FLUSH_INTERVAL`` after the first batch, and never before that timer fires."""
    registry, _, _, pipeline = setup
    labels = USERS_OK
    started = time.monotonic()
    pipeline.feed("api", [pino_access("a1"), pino_access("a2")])
    pipeline.feed("api", [pino_access("a3")])
    assert sample(registry, "http_server_request_duration_seconds_count", **labels) == 0
    while sample(registry, "http_server_request_duration_seconds_count", **labels) == 0:
        assert time.monotonic() - started < FLUSH_INTERVAL + 1.0, "never folded in"
        await asyncio.sleep(0.01)
    assert time.monotonic() - started >= FLUSH_INTERVAL * 0.9  # the timer's, not a flush per batch
    assert sample(registry, "http_server_request_duration_seconds_count", **labels) == 3
    assert sample(registry, "http_server_request_duration_seconds_sum", **labels) == pytest.approx(0.036)
    pipeline.feed("api", [pino_access("a4")])  # a new interval, a new timer
    assert pipeline.access is not None
    pipeline.access.flush()  # what the log runtime does when it stops: nothing is left on a timer
    assert sample(registry, "http_server_request_duration_seconds_count", **labels) == 4
    await asyncio.sleep(FLUSH_INTERVAL * 1.5)  # the cancelled timer adds nothing twice
    assert sample(registry, "http_server_request_duration_seconds_count", **labels) == 4


def test_route_cap_applies_to_log_routes() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry, RouteNormaliser(max_routes=3))
    pipeline = LogPipeline(LogParser(), LogMetrics(registry), http)
    pipeline.feed("api", [pino_access(f"r{i}", f"/page{chr(97 + i)}") for i in range(10)])
    assert http.routes.distinct_routes == 3
    assert sample(registry, "sidecar_http_route_overflow_total") == 7


def test_lines_with_request_ids_go_to_the_correlation_index(
    setup: tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline],
) -> None:
    _, _, index, pipeline = setup
    pipeline.feed(
        "api",
        [
            b'{"level":30,"time":1700000001000,"reqId":"abc","msg":"second"}',
            b'{"level":30,"time":1700000000000,"reqId":"abc","msg":"first password=hunter22",'
            b'"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}',
            b'{"level":50,"time":1700000002000,"reqId":"abc","msg":"failed","err":{"type":"TypeError",'
            b'"message":"x is undefined","stack":"TypeError: x\\n at y"}}',
            b'{"level":30,"msg":"no id"}',
        ],
    )
    timeline = index.get("abc")
    assert timeline is not None
    assert timeline["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    messages = [e["record"]["message"] for e in timeline["timeline"]]
    assert messages[1:] == ["second", "failed"]
    assert "hunter22" not in messages[0]
    last = timeline["timeline"][-1]["record"]
    assert (last["error_type"], last["error_value"], last["source"]) == ("TypeError", "x is undefined", "api")
    assert "stack" not in last
    assert len(index) == 1


def _entry_as_dict(record: LogRecord) -> bytes:
    """The index entry's record: the dict the pipeline once built and ``orjson.dumps`` encoded."""
    entry: dict[str, object] = {
        "level": record.level,
        "message": redact_text(record.message[:MAX_INDEXED_TEXT]),
        "time": record.time,
        "source": record.source,
    }
    if record.error is not None:
        value = record.error.value
        entry["error_type"] = record.error.type
        entry["error_value"] = redact_text(value[:MAX_INDEXED_TEXT]) if value else None
    if record.access is not None:
        url = record.access.url
        entry["http"] = {
            "method": record.access.method,
            "url": mask_url(url[:MAX_INDEXED_TEXT]) if url and "?" in url else url,
            "status_code": record.access.status,
            "duration_seconds": record.access.duration_seconds,
        }
    return orjson.dumps(entry)


@pytest.mark.parametrize(
    "line",
    [
        pino_access("r1"),
        pino_access("r2", url="/login?token=s3cret&next=%2F", status=503, ms=0.25),
        b'{"level":30,"time":1700000000123,"reqId":"a","msg":"caf\\u00e9 \\"quoted\\" password=x1y2z3"}',
        b'{"level":"warn","time":"2024-01-02T03:04:05.678Z","reqId":"b","message":"iso time"}',
        b'{"level":30,"time":1700000000.5,"reqId":"c","msg":"seconds"}',
        b'{"level":30,"time":1700000000000000,"reqId":"d","msg":"microseconds"}',
        b'{"level":30,"reqId":"e","msg":"no time","trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736"}',
        b'{"level":50,"time":1700000000000,"reqId":"f","msg":"failed","err":{"type":"TypeError",'
        b'"message":"token=abc123 leaked","stack":"TypeError: x\\n at y"}}',
        b'{"level":50,"time":true,"reqId":"g","msg":"bad time","error":"plain text"}',
        b'{"level":30,"time":1700000000000,"reqId":"h","method":"POST","url":"http://u:pw@h/x?a=1",'
        b'"status":201,"duration":"12ms","msg":"flat access"}',
        b'{"level":30,"time":1700000000000,"reqId":"i","method":"GET","path":"/x","status":200}',
        b'{"level":50,"time":1700000000000,"reqId":"j","req":{"method":"GET","url":"/y?token=s3cret"},'
        b'"res":{"statusCode":500},"responseTime":3,"err":{"type":"E","message":"boom"},"msg":"request errored"}',
    ],
)
def test_index_entries_hold_the_entry_dict(line: bytes) -> None:
    """The pipeline hands the index each line's values, not a dict: it reads back as the dict."""
    record = LogParser().from_mapping(orjson.loads(line), "api")
    index = CorrelationIndex()
    pipeline = LogPipeline(LogParser(), LogMetrics(CollectorRegistry()), None, index)
    pipeline.feed("api", [line, line])  # the second time from the cache of redacted messages
    assert record.request_id is not None
    timeline = index.get(record.request_id)
    assert timeline is not None
    assert timeline["trace_id"] == record.trace_id
    expected = orjson.loads(_entry_as_dict(record))
    assert [e["record"] for e in timeline["timeline"]] == [expected, expected]
    if record.time is not None:
        assert [e["at"] for e in timeline["timeline"]] == [record.time, record.time]
    else:  # the time of the batch that carried it
        assert all(abs(e["at"] - time.time()) < 60 for e in timeline["timeline"])


def test_a_batch_holds_its_index_entries_at_their_own_size() -> None:
    """``orjson.dumps`` returns its whole 4 KiB encoder buffer: a batch that kept those until the index
    packed them spread over 4 MB (a thousand lines), which cost more CPU than the index itself."""
    lines = [pino_access(f"r{i}") for i in range(1000)]
    index = CorrelationIndex()
    pipeline = LogPipeline(LogParser(), LogMetrics(CollectorRegistry()), None, index)
    pipeline.feed("api", lines[:10])  # caches and first allocations out of the way
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pipeline.feed("api", lines)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(index) == 1000
    assert (peak - before) / len(lines) < 1024


def test_an_access_line_with_an_error_keeps_both_in_its_index_entry() -> None:
    """The entry's values are written out per case (error, access, both): both read back."""
    line = (
        b'{"level":50,"time":1700000000000,"reqId":"j","req":{"method":"GET","url":"/y?token=s3cret"},'
        b'"res":{"statusCode":500},"responseTime":3,"err":{"type":"E","message":"boom"},"msg":"request errored"}'
    )
    index = CorrelationIndex()
    LogPipeline(LogParser(), LogMetrics(CollectorRegistry()), None, index).feed("api", [line])
    timeline = index.get("j")
    assert timeline is not None
    record = timeline["timeline"][0]["record"]
    assert (record["error_type"], record["error_value"]) == ("E", "boom")
    assert record["http"]["status_code"] == 500 and "s3cret" not in record["http"]["url"]


def test_error_sinks_see_the_line_in_its_timeline(
    setup: tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline],
) -> None:
    """Entries go to the index once per batch, but before an error sink (Sentry) reads the timeline."""
    _, _, index, pipeline = setup
    seen: list[list[str]] = []

    def sink(record: LogRecord) -> None:
        timeline = index.get(record.request_id or "")
        seen.append([e["record"]["message"] for e in timeline["timeline"]] if timeline else [])

    pipeline.error_sinks.append(sink)
    pipeline.feed(
        "api",
        [
            b'{"level":30,"time":1700000000000,"reqId":"abc","msg":"started"}',
            b'{"level":50,"time":1700000001000,"reqId":"abc","msg":"failed"}',
            b'{"level":30,"time":1700000002000,"reqId":"abc","msg":"after"}',
        ],
    )
    assert seen == [["started", "failed"]]
    timeline = index.get("abc")
    assert timeline is not None
    assert [e["record"]["message"] for e in timeline["timeline"]] == ["started", "failed", "after"]


def test_correlation_metrics() -> None:
    registry = CollectorRegistry()
    index = CorrelationIndex(max_requests=2)
    registry.register(CorrelationMetrics(index))
    for rid in ("a", "b", "c"):
        index.add(rid, "log", {"message": "x"})
    assert sample(registry, "sidecar_correlation_requests") == 2
    assert sample(registry, "sidecar_correlation_bytes") > 0
    assert sample(registry, "sidecar_correlation_evictions_total") == 1


def test_error_sinks_get_error_lines_only(
    setup: tuple[CollectorRegistry, HttpMetrics, CorrelationIndex, LogPipeline],
) -> None:
    _, _, _, pipeline = setup
    seen: list[str] = []
    pipeline.error_sinks.append(lambda record: seen.append(record.message))
    pipeline.feed("api", [b'{"level":30,"msg":"fine"}', b'{"level":50,"msg":"bad"}', b"FATAL worse"])
    assert seen == ["bad", "FATAL worse"]


def test_reemit_writes_normalised_scrubbed_json(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = LogMetrics(registry)
    out = tmp_path / "out.ndjson"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT)
    reemit = Reemitter(metrics.drop, fd=fd, max_buffer_bytes=10_000)
    reemit.start()
    pipeline = LogPipeline(LogParser(), metrics, reemit=reemit)
    pipeline.feed(
        "api", [pino_access("r1"), b'{"level":40,"msg":"hi","headers":{"authorization":"Bearer abc"}}']
    )
    pipeline.feed("api", [b'{"level":30,"msg":"' + b"x" * 20_000 + b'"}'])  # does not fit the buffer
    reemit.close()
    os.close(fd)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["level"] for line in lines] == ["info", "warn"]
    assert lines[0]["request_id"] == "r1" and lines[0]["http"]["status_code"] == 200
    assert lines[0]["time"].startswith("2023-11-14T22:13:20")
    assert lines[1]["attributes"]["headers"]["authorization"] == "***"
    assert sample(registry, "sidecar_log_lines_dropped_total", source="api", reason="reemit_overflow") == 1


def test_scrub_masks_credentials_recursively() -> None:
    scrubbed = scrub(
        {"req": {"headers": {"cookie": "s=1", "accept": "*/*"}}, "password": "x", "list": [{"token": 1}]}
    )
    assert scrubbed == {
        "req": {"headers": {"cookie": "***", "accept": "*/*"}},
        "password": "***",
        "list": [{"token": "***"}],
    }


def test_tally_without_library_internals_observes_one_by_one() -> None:
    observed: list[float] = []

    class Plain:
        def observe(self, value: float) -> None:
            observed.append(value)

    tally = Tally(Plain(), (0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        tally.add(value)
    assert observed == []
    tally.flush()
    assert observed == [0.05, 0.5, 5.0] and not tally.dirty


def test_tally_adds_bucket_counts_like_observe() -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct_seconds", "d", buckets=(0.1, 1.0), registry=registry)
    tallied = Histogram("tallied_seconds", "t", buckets=(0.1, 1.0), registry=registry)
    tally = Tally(tallied, (0.1, 1.0))
    for value in (0.0, 0.1, 0.10001, 1.0, 7.0, 0.5):
        direct.observe(value)
        tally.add(value)
    tally.flush()
    for le in ("0.1", "1.0", "+Inf"):
        assert sample(registry, "tallied_seconds_bucket", le=le) == sample(
            registry, "direct_seconds_bucket", le=le
        )
    assert sample(registry, "tallied_seconds_sum") == pytest.approx(sample(registry, "direct_seconds_sum"))


def test_path_of() -> None:
    assert path_of("/a?b") == "/a?b"
    assert path_of("https://h.example/v1/x?y=1") == "/v1/x?y=1"
    assert path_of("http://h.example") == "/"


# --- line splitter -------------------------------------------------------------------------------------


def test_splitter_keeps_partial_lines_and_counts_pending() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"one\ntw") == [b"one"]
    assert splitter.pending == 2
    assert splitter.feed(b"o\nthree\n") == [b"two", b"three"]
    assert splitter.pending == 0
    assert splitter.feed(b"tail") == []
    assert splitter.flush() == [b"tail"]


def test_splitter_skips_over_long_lines_without_buffering_them() -> None:
    splitter = LineSplitter(1024)
    assert splitter.feed(b"ok\n" + b"x" * 600) == [b"ok"]
    for _ in range(10_000):  # 10 MB of one line, fed in 1 KiB pieces
        assert splitter.feed(b"x" * 1024) == []
        assert len(splitter._partial) <= 1024
    assert splitter.pending > 10_000_000  # still counted as not consumed, for checkpoints
    assert splitter.feed(b"x\nafter\n") == [b"after"]
    assert splitter.too_long == 1
    assert splitter.pending == 0
    # A long line complete inside one chunk is dropped too.
    assert splitter.feed(b"a\n" + b"y" * 2000 + b"\nb\n") == [b"a", b"b"]
    assert splitter.too_long == 2


# --- checkpoints -------------------------------------------------------------------------------------


def test_checkpoint_round_trip_and_atomic_write(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state")
    store.load()
    assert not store.started_before("/var/log/*.log")
    entry = FileOffset(1, 2, 300, fingerprint(b"head"), 4, "/var/log/a.log", "/var/log/*.log")
    store.set(entry)
    store.mark_started("/var/log/*.log")
    assert store.save()
    assert not list((tmp_path / "state").glob(".*tmp"))
    again = CheckpointStore(tmp_path / "state")
    again.load()
    assert again.get((1, 2)) == entry
    assert again.started_before("/var/log/*.log")
    saved = again.get((1, 2))
    assert saved is not None and saved.same_file(b"head and more") and not saved.same_file(b"heap")
    again.forget((1, 2))
    assert again.save() and again.snapshot() is None


def test_an_older_snapshot_never_replaces_a_newer_one(tmp_path: Path) -> None:
    """A write abandoned by a cancelled task may finish after the final save; it must not win."""
    store = CheckpointStore(tmp_path)
    store.set(FileOffset(1, 2, 100, "f", 0, "/p"))
    older = store.snapshot()
    store.set(FileOffset(1, 2, 200, "f", 0, "/p"))
    newer = store.snapshot()
    assert older is not None and newer is not None
    assert store.write(newer) and store.write(older)
    again = CheckpointStore(tmp_path)
    again.load()
    saved = again.get((1, 2))
    assert saved is not None and saved.offset == 200


def test_checkpoint_broken_state_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "log-offsets.json").write_text("{not json")
    store = CheckpointStore(tmp_path)
    store.load()
    assert store.entries() == [] and store.errors == 1


def test_checkpoint_write_failure_is_counted(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = CheckpointStore(blocker / "sub")  # a directory under a regular file cannot exist
    store.set(FileOffset(1, 2, 3, "f", 0, "/p"))
    assert not store.save()
    assert store.errors == 1


# --- settings ------------------------------------------------------------------------------------------


def test_settings_defaults_and_validation() -> None:
    settings = LogSettings()
    assert settings.files == [] and not settings.stdin and settings.http.enabled
    with pytest.raises(ValueError, match="unknown setting"):
        LogSettings.model_validate({"filez": []})
    with pytest.raises(ValueError, match="source name"):
        LogSettings.model_validate({"files": [{"path": "/x", "source": "bad label!"}]})
    with pytest.raises(ValueError, match="use one of"):
        LogSettings.model_validate({"fields": {"levels": {"W": "warning"}}})
    parsed = LogSettings.model_validate(
        {"files": [{"path": "/x/*.log", "start": "beginning"}], "poll_interval": "100ms"}
    )
    assert parsed.files[0].start == "beginning" and parsed.poll_interval == 0.1
