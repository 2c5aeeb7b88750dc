"""The console's recorders on their own: traffic windows, check history, log tail, Sentry events, auth."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from collectors.base import Status
from sidecar.console.auth import Sessions
from sidecar.console.errors import RecentEvents
from sidecar.console.history import CheckHistory
from sidecar.console.queues import parse_failed_jobs
from sidecar.console.tail import MAX_LINES, LogTail
from sidecar.console.traffic import TrafficWindows, _read_collected, quantile, read_histogram
from sidecar.core.http_metrics import DURATION_BUCKETS, HttpMetrics
from sidecar.core.routes import RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.logs.metrics import LogMetrics
from sidecar.logs.parse import LogParser
from sidecar.logs.pipeline import LogPipeline
from sidecar.probing.health import HealthModel
from sidecar.probing.results import CheckResult, ResultStore
from sidecar.probing.settings import CheckConfig
from sidecar.serving.exposition import new_registry


def test_quantile_interpolates_within_buckets_like_histogram_quantile() -> None:
    bounds = len(DURATION_BUCKETS) + 1
    # 100 requests: 50 at or below 5 ms, 100 at or below 10 ms
    buckets = [50.0] + [100.0] * (bounds - 1)
    assert quantile(0.5, buckets, 100) == pytest.approx(0.005)
    assert quantile(0.75, buckets, 100) == pytest.approx(0.0075)
    assert quantile(0.99, buckets, 100) == pytest.approx(0.0099)
    assert quantile(0.5, [0.0] * bounds, 0) is None
    beyond = [0.0] * (bounds - 1) + [10.0]  # all past the largest bound: the largest bound, as Prometheus
    assert quantile(0.5, beyond, 10) == DURATION_BUCKETS[-1]


async def test_traffic_windows_difference_snapshots_per_route() -> None:
    http = HttpMetrics(new_registry(), RouteNormaliser([], 100))
    traffic = TrafficWindows(http, CorrelationIndex())
    for _ in range(10):
        http.observe(method="GET", route="/old", status=200, duration_seconds=0.003)
    now = time.time()
    traffic.sample(now - 120)  # two minutes ago: /old had 10 requests
    for _ in range(30):
        http.observe(method="GET", route="/old", status=200, duration_seconds=0.003)
    for i in range(20):
        http.observe(method="POST", route="/pay", status=500 if i < 5 else 200, duration_seconds=0.2)
    traffic.sample(now - 60)
    span, rows = await traffic.window(60, now)
    assert span == pytest.approx(60, abs=1) and rows == []  # nothing happened in the last minute
    span, rows = await traffic.window(300, now)
    by_route = {r.route: r for r in rows}
    assert by_route["/old"].requests == 30  # the 10 before the first snapshot are not in the window
    assert by_route["/pay"].requests == 20
    assert by_route["/pay"].error_ratio == pytest.approx(0.25)
    assert by_route["/pay"].rate == pytest.approx(20 / 120, rel=0.05)
    assert 0.1 < (by_route["/pay"].p50 or 0) <= 0.25
    assert (by_route["/old"].p99 or 1) <= 0.005
    assert {k: list(v) for k, v in read_histogram(http).items()} == {
        k: list(v) for k, v in _read_collected(http).items()
    }  # the direct read of the children and the public collect() agree


async def test_recent_requests_come_from_the_correlation_index() -> None:
    index = CorrelationIndex()
    http = HttpMetrics(new_registry(), RouteNormaliser([], 100))
    for i in range(30):
        status = 503 if i % 10 == 0 else 200
        line = (
            b'{"request_id":"r%d","method":"GET","route":"/x","path":"/x","status":%d,"duration_ms":%d}'
            % (
                i,
                status,
                i,
            )
        )
        index.add_access_line(f"r{i}", line, 1_700_000_000.0 + i)
    index.add("log-only", "log", {"message": "no access record"})
    index.add("r5", "log", {"message": "a log line of r5 turns it into a timeline"})
    slowest, failed = await TrafficWindows(http, index).slowest_and_failed()
    assert [r.request_id for r in slowest[:3]] == ["r29", "r28", "r27"]
    held = dict(index.newest_entries(50))
    assert index.access_of(held["log-only"]) is None
    found = index.access_of(held["r5"])  # a timeline now: its access line is found among its entries
    assert found is not None and isinstance(found[1], bytes) and b'"request_id":"r5"' in found[1]
    assert [r.request_id for r in failed] == ["r20", "r10", "r0"]
    assert index.newest(2) == ["r5", "log-only"]


def test_trace_ids_are_found_in_compact_lines_and_timelines() -> None:
    index = CorrelationIndex()
    trace = "0af7651916cd43dd8448eb211c80319c"
    index.add_access_line("a", b'{"request_id":"a","trace_id":"%b"}' % trace.encode(), 1.0)
    index.add_access_line("b", b'{"request_id":"b","trace_id":null}', 2.0)
    index.add("c", "log", {"message": "x"}, trace_id=trace)
    held = dict(index.newest_entries(10))
    assert [rid for rid in held if index.carries_trace(held[rid], trace)] == ["c", "a"]
    assert not any(index.carries_trace(h, "f" * 32) for h in held.values())


def _check(name: str) -> CheckConfig:
    return CheckConfig.model_validate({"name": name, "kind": "tcp", "target": "127.0.0.1:1", "fall": 1})


def test_history_keeps_a_bounded_ring_and_readiness_changes() -> None:
    store = ResultStore()
    health = HealthModel(store)
    health.configure([_check("db")])
    store.register("db", "tcp")
    history = CheckHistory(store, health, points=10)
    for i in range(25):
        status = Status.FAIL if i >= 20 else Status.PASS
        store.record(CheckResult("db", "tcp", status, 0.001 * i, 1000.0 + i))
    track = history.track("db")
    assert track is not None and len(track.points) == 10
    assert track.points[-1].status is Status.FAIL and track.ready is False and track.since == 1020.0
    assert [t.reason for t in history.transitions][-2:] == ["ok", "failing"]
    assert history.version == 2  # the event stream is told of the two changes, not of 25 results
    health.drain()
    assert history.readiness().reason == "draining"
    assert history.transitions[-1].reason == "draining"


def test_the_log_tail_sinks_records_only_while_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = LogPipeline(LogParser(), LogMetrics(new_registry()))
    tail = LogTail(pipeline)
    pipeline.feed("app", [b'{"level":"info","msg":"before anyone looked"}'])
    assert pipeline.record_sinks == [] and tail.poll(0) == []
    assert pipeline.record_sinks == [tail._sink]
    pipeline.feed("app", [b'{"level":"error","msg":"password=hunter2 failed","request_id":"r1"}'])
    lines = tail.poll(0)
    assert [(line.level, line.request_id) for line in lines] == [("error", "r1")]
    assert "hunter2" not in lines[0].message
    pipeline.feed("app", [b'{"level":"info","msg":"x"}'] * (MAX_LINES + 10))
    assert len(tail.poll(0)) == MAX_LINES and tail.poll(tail.seq) == []
    monkeypatch.setattr("sidecar.console.tail.IDLE_AFTER", -1.0)  # nobody polled for too long
    pipeline.feed("app", [b'{"level":"info","msg":"y"}'])
    assert pipeline.record_sinks == [] and not tail.lines


def test_recent_events_keep_titles_and_request_ids_not_events() -> None:
    events = RecentEvents()
    events.observe(
        "relayed",
        {
            "event_id": "e1",
            "level": "error",
            "exception": {"values": [{"type": "KeyError", "value": "'sku'"}]},
            "tags": [["request_id", "r-9"]],
        },
    )
    events.observe("relayed", {"type": "transaction", "event_id": "t1"})
    events.observe("forwarded", {"event_id": "e2", "message": {"formatted": "disk full"}})
    assert [(e.title, e.request_id) for e in events.events] == [
        ("KeyError: 'sku'", "r-9"),
        ("disk full", None),
    ]


def test_failed_jobs_are_parsed_and_redacted() -> None:
    reply = ["7", "mail", "connect redis://:s3cret@db:6379 refused", "3", "1700000000000", "1699999999000"]
    (job,) = parse_failed_jobs([*reply, "8", "", "", "", "", ""][:6])
    assert job.job_id == "7" and job.attempts == 3 and job.finished_at == 1_700_000_000.0
    assert "s3cret" not in job.failed_reason
    jobs = parse_failed_jobs([*reply, "8", "", "", "", "", ""])
    assert jobs[1].attempts is None and jobs[1].finished_at is None


def test_sessions_sign_cookies_and_csrf_tokens() -> None:
    sessions = Sessions("t" * 20, lifetime=60)
    session, cookie = sessions.new(logged_in=True)
    assert sessions.read(cookie) == session
    assert sessions.read(cookie[:-1] + ("A" if cookie[-1] != "A" else "B")) is None
    assert sessions.read(cookie.replace(".1.", ".0.", 1)) is None  # the flag is signed too
    other = Sessions("t" * 20, lifetime=60)
    assert other.read(cookie) is None  # another process's key
    assert sessions.csrf_ok(session, sessions.csrf_token(session))
    assert not sessions.csrf_ok(sessions.new(True)[0], sessions.csrf_token(session))
    expired = Sessions("t" * 20, lifetime=-10)
    assert expired.read(expired.new(True)[1]) is None


def _modules_after_start(console: str) -> list[str]:
    script = textwrap.dedent(
        f"""
        import os, sys
        for name in list(os.environ):
            if name.startswith(("OTEL_", "SIDECAR_", "SENTRY_")):
                del os.environ[name]
        os.environ["SIDECAR_CONSOLE__ENABLED"] = "{console}"
        from sidecar.config import load_settings
        from sidecar.server import Server
        Server(load_settings(environ={{}}))
        print(sorted(m for m in sys.modules if m.startswith("sidecar.console")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return [name.strip("' ") for name in out.stdout.strip().strip("[]").split(",") if name.strip()]


def test_the_pages_load_only_when_served_and_nothing_loads_when_off() -> None:
    on = _modules_after_start("true")
    assert "sidecar.console.wiring" in on
    assert not {"sidecar.console.handlers", "sidecar.console.views", "sidecar.console.render"} & set(on)
    assert _modules_after_start("false") == ["sidecar.console", "sidecar.console.settings"]
