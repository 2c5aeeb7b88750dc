"""The step-wise exposition encoder against client_python's, byte for byte, on a real sidecar registry.

The registry is the one a sidecar with the gateway builds (``Server``), filled through the real
recording paths: routes, statuses and exemplars through ``HttpMetrics``, check results with collector
samples through the result store, plus families of every kind client_python offers. Label values
carry backslashes, quotes and newlines; gauges hold NaN and both infinities.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import re
import subprocess
import time
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import metrics as client_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collectors.base import MetricSpec, Reason, Sample, Status
from sidecar.app_keys import HEALTH, HTTP_METRICS, REGISTRY, STORE
from sidecar.config import load_settings
from sidecar.probing.results import CheckResult
from sidecar.probing.settings import CheckConfig
from sidecar.server import Server
from sidecar.serving.exposition import new_registry
from sidecar.serving.text_exposition import (
    LOOP_SHARE,
    MAX_STEP_SECONDS,
    STEP_SECONDS,
    ExpositionEncoder,
    FamilyRows,
    _Render,
    encoder_for,
    go_float,
    negotiate,
)
from tests.servers import require_binary

ACCEPTS = (
    "",
    "text/plain;version=0.0.4",
    "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=underscores",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    # what Prometheus 3 sends by default
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
)
WEIRD = 'back\\slash "quoted"\nnewline'
# The process and GC collectors read live counters: their values change between two renders.
_VOLATILE = re.compile(rb"(?m)^((?:U__)?(?:process_|python_+gc_)\S*) .*$")


def mask(body: bytes) -> bytes:
    return _VOLATILE.sub(rb"\1 <live>", body)


SPEC = MetricSpec("fake_items", "Items by queue, with odd label values.", "gauge", ("queue",))
SPEC_TOTAL = MetricSpec("fake_events_total", "Events seen.", "counter", ())
SPEC_UNTYPED = MetricSpec("fake_xact_commit", "An exporter's counter without _total.", "untyped", ("db",))


class Timestamped(Collector):
    """A custom collector with explicit timestamps, as some exporters write them."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("fake_timestamped", "A gauge with a timestamp.", labels=["k"])
        family.add_metric([WEIRD], 1.5, timestamp=1_700_000_000.25)
        yield family


def sidecar_registry(routes: int = 60) -> tuple[Server, CollectorRegistry]:
    """A sidecar with the gateway, its registry filled through the real recording paths."""
    settings = load_settings(
        None,
        {
            "SIDECAR_UPSTREAM": "http://127.0.0.1:9",
            "SIDECAR_DEFAULT_CHECKS": "false",
            "SIDECAR_ROUTES__MAX_ROUTES": str(routes + 10),
        },
    )
    server = Server(settings)
    app = server.app
    registry = app[REGISTRY]
    http = app[HTTP_METRICS]
    for i in range(routes):
        http.observe(
            method="GET",
            route=f"/items/{i}/{{id}}",
            status=200 + i % 3,
            duration_seconds=0.0007 * i,
            trace_id=f"{i:032x}",
            request_bytes=17 * i,
            response_bytes=2_000_000 * i,  # large counts: Go's exponent notation in _sum
        )
    http.observe(method="POST", route=WEIRD, status=500, duration_seconds=math.inf, request_bytes=1)
    http.observe(method="BREW", route="/", status=0, duration_seconds=-0.0, error_type=WEIRD)
    http.active.labels("GET").set(math.nan)
    http.active.labels("PUT").set(-math.inf)
    http.active.labels("POST").set(math.inf)
    http.active.labels("PATCH").set(1e22)
    http.active.labels("DELETE").set(-1234567.5)
    checks = [
        CheckConfig(name="cache", kind="redis", target="redis://127.0.0.1:6379"),
        CheckConfig(name="edge.case-1", kind="tcp", target="127.0.0.1:9", critical=False),
    ]
    for check in checks:
        app[STORE].register(check.name, check.kind)
    app[HEALTH].configure(checks)
    app[STORE].record(
        CheckResult(
            check="cache",
            kind="redis",
            status=Status.PASS,
            duration_seconds=0.0012,
            finished_at=1_700_000_000.123,
            samples=(
                Sample(SPEC, 3.0, (WEIRD,)),
                Sample(SPEC, math.nan, ("b",)),
                Sample(SPEC_TOTAL, 7.0),
                Sample(SPEC_UNTYPED, 12.0, ("db0",)),
            ),
        )
    )
    app[STORE].record(
        CheckResult(
            check="edge.case-1",
            kind="tcp",
            status=Status.FAIL,
            duration_seconds=1.0,
            finished_at=1_700_000_001.0,
            reason=Reason.CONNECT,
        )
    )
    summary = Summary("fake_latency_seconds", "A summary.", ["op"], registry=registry)
    summary.labels(WEIRD).observe(0.25)
    summary.labels("read").observe(12_345_678.0)
    Info("fake_build", "Build facts.", registry=registry).info({"version": WEIRD, "commit": "abc"})
    Enum("fake_state", "A state.", states=["up", "down"], registry=registry).state("down")
    Counter("fake_unit_bytes", "A counter with a unit.", unit="bytes", registry=registry).inc(2**60)
    traced = Counter("fake_traced", "A counter with exemplars.", ["route"], registry=registry)
    traced.labels(WEIRD).inc(2, {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "note": WEIRD})
    traced.labels("/").inc()
    Histogram(
        "fake_negative", "Buckets below zero: no _sum.", buckets=(-1.0, 0.0), registry=registry
    ).observe(-3)
    Gauge("fake_empty", "A labelled gauge without children.", ["x"], registry=registry)
    registry.register(Timestamped())
    return server, registry


@pytest.fixture
def registry() -> CollectorRegistry:
    return sidecar_registry()[1]


@pytest.mark.parametrize("accept", ACCEPTS)
def test_output_is_client_pythons_byte_for_byte(registry: CollectorRegistry, accept: str) -> None:
    encoder, content_type = choose_encoder(accept)
    fmt = negotiate(accept)
    assert fmt.content_type == content_type
    ours = ExpositionEncoder(registry)
    for _ in range(3):  # first render fills the caches, later ones read them
        assert mask(ours.render_sync(fmt)) == mask(encoder(registry))
        registry_http_observe(registry)  # the caches must follow new series and values


def registry_http_observe(registry: CollectorRegistry) -> None:
    """A new series and new values between renders, through the gateway's histogram family."""
    for collector in list(registry._collector_to_names):
        if isinstance(collector, Histogram) and collector._name == "http_server_request_duration_seconds":
            collector.labels("GET", f"/new/{time.perf_counter_ns()}", "200", "").observe(
                0.3, {"trace_id": "ab"}
            )
            collector.labels("GET", "/items/1/{id}", "201", "").observe(0.01)


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text"])
def test_without_created_series_and_with_target_info(
    registry: CollectorRegistry, accept: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_created`` follows client_python's switch (another change makes it a setting); target_info too."""
    monkeypatch.setattr(client_metrics, "_use_created", False)
    registry.set_target_info({"service": WEIRD})
    body = ExpositionEncoder(registry).render_sync(negotiate(accept))
    assert b"_created" not in body and b"target_info" in body
    assert mask(body) == mask(choose_encoder(accept)[0](registry))


def test_removed_and_cleared_children_leave_the_output(registry: CollectorRegistry) -> None:
    fmt = negotiate("")
    gauge = Gauge("fake_churn", "Children come and go.", ["k"], registry=registry)
    encoder = ExpositionEncoder(registry)
    for i in range(5):
        gauge.labels(str(i)).set(i)
    assert b'fake_churn{k="3"} 3.0' in encoder.render_sync(fmt)
    gauge.remove("3")
    body = encoder.render_sync(fmt)
    assert b'fake_churn{k="3"}' not in body and b'fake_churn{k="4"} 4.0' in body
    gauge.clear()
    assert b"fake_churn{" not in encoder.render_sync(fmt)
    assert mask(encoder.render_sync(fmt)) == mask(choose_encoder("")[0](registry))


def test_gzip_body_is_the_same_exposition(registry: CollectorRegistry) -> None:
    fmt = negotiate("application/openmetrics-text")
    encoder = encoder_for(registry)
    assert mask(gzip.decompress(encoder.render_sync(fmt, gzip=True))) == mask(encoder.render_sync(fmt))


def drop_fakes(registry: CollectorRegistry) -> None:
    """Keep the sidecar's own families: the fake ones copy client_python's edge cases (a counter with a
    unit, a histogram without ``_sum``) that promtool's lint and the OpenMetrics parser reject."""
    names: dict[Collector, list[str]] = registry._collector_to_names
    for collector, families in list(names.items()):
        if any(name.startswith("fake_") for name in families):
            registry.unregister(collector)


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0"])
def test_parsers_accept_the_output(registry: CollectorRegistry, accept: str) -> None:
    drop_fakes(registry)
    fmt = negotiate(accept)
    text = encoder_for(registry).render_sync(fmt).decode()
    families = {f.name: f for f in (parse_openmetrics(text) if fmt.openmetrics else parse_text(text))}
    route = families["http_server_request_duration_seconds"]
    assert any(s.labels.get("http_route") == WEIRD for s in route.samples)
    active = {
        s.labels["http_request_method"]: s.value for s in families["http_server_active_requests"].samples
    }
    assert math.isnan(active["GET"]) and active["PUT"] == -math.inf and active["POST"] == math.inf


def test_promtool_finds_nothing_wrong() -> None:
    promtool = require_binary("promtool")
    _, registry = sidecar_registry()
    drop_fakes(registry)
    body = encoder_for(registry).render_sync(negotiate(""))
    assert WEIRD.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"').encode() in body
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0 and not result.stdout and not result.stderr, result.stdout + result.stderr


async def test_render_yields_to_the_loop_and_keeps_each_series_consistent() -> None:
    """Observations land between the steps of a render; every histogram series stays whole."""
    _, registry = sidecar_registry(routes=400)
    duration = next(
        c
        for c in registry._collector_to_names
        if isinstance(c, Histogram) and c._name == "http_server_request_duration_seconds"
    )
    children = [duration.labels("GET", f"/items/{i}/{{id}}", str(200 + i % 3), "") for i in range(400)]
    ticks: list[float] = []
    done = False

    async def traffic() -> None:
        n = 0
        while not done:
            for child in children[n % 400 :: 37]:
                child.observe(0.02 * (n % 7))
            n += 1
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    task = asyncio.create_task(traffic())
    await asyncio.sleep(0)
    started = time.perf_counter()
    body = (await encoder_for(registry).render(negotiate(""))).decode()
    elapsed = time.perf_counter() - started
    done = True
    await task
    inside = [t for t in ticks if started <= t <= started + elapsed]
    assert len(inside) >= 5, (
        f"the loop ran other work only {len(inside)} times during a {elapsed * 1e3:.1f} ms render"
    )
    series: dict[str, dict[str, float]] = {}
    for line in body.splitlines():
        match = re.match(
            r'http_server_request_duration_seconds_(bucket|count)\{(.*?)(?:,le="([^"]+)")?\} (\S+)$', line
        )
        if match and 'http_route="/items/' in match[2]:
            key = re.sub(r',le="[^"]+"', "", match[2])
            series.setdefault(key, {})[match[3] or "count"] = float(match[4])
    assert len(series) == 400
    for key, values in series.items():
        buckets = [values[le] for le in values if le != "count"]
        assert buckets == sorted(buckets), key
        assert values["count"] == values["+Inf"], key


@given(
    st.floats() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(min_value=1e5, max_value=1e17)
)
def test_values_are_written_as_client_python_writes_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


class Churning(Collector):
    """A collector built per scrape whose label values change every time, through both paths."""

    def __init__(self) -> None:
        self.scrape = 0

    def exposition_rows(self) -> Iterator[FamilyRows | None]:
        self.scrape += 1
        family = FamilyRows.new("fake_churn_total", "counter", "Label values that never repeat.", ["id"])
        family.rows.extend(((f"{self.scrape}-{n}",), float(n)) for n in range(50))
        yield family
        yield None

    def collect(self) -> Iterator[Metric]:
        self.scrape -= 1  # the same scrape's rows, for client_python's view of it
        for family in self.exposition_rows():
            if family is not None:
                yield family.to_metric()


def test_a_collector_with_churning_labels_keeps_its_cache_bounded() -> None:
    registry = CollectorRegistry()
    churn = Churning()
    registry.register(churn)
    encoder = ExpositionEncoder(registry)
    fmt = negotiate("")
    for _ in range(20):
        body = encoder.render_sync(fmt)
        assert body == choose_encoder("")[0](registry)
        assert f'fake_churn_total{{id="{churn.scrape}-49"}} 49.0'.encode() in body
    sizes = [len(cache.by_values) for cache in encoder._families.values()]
    assert sizes and max(sizes) <= 4 * 50 + 64


@pytest.mark.parametrize("created_series", [True, False])
@pytest.mark.parametrize("accept", ["", "application/openmetrics-text"])
def test_created_series_follow_the_app_registry(created_series: bool, accept: str) -> None:
    registry = new_registry(created_series)
    Counter("fake_requests", "Requests.", ["code"], registry=registry).labels("200").inc()
    Histogram("fake_seconds", "Durations.", registry=registry).observe(0.1)
    Summary("fake_sizes", "Sizes.", registry=registry).observe(3)
    registry.register(Churning())  # a rows collector
    body = ExpositionEncoder(registry).render_sync(negotiate(accept))
    assert (b"fake_requests_created" in body) == created_series
    assert mask(body) == mask(choose_encoder(accept)[0](registry))


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text"])
async def test_many_checks_with_many_samples_render_as_client_python(accept: str) -> None:
    """Checks whose samples interleave families and outnumber a pause point: encoded in groups, with
    pauses inside a check's samples, the output is still client_python's, sync and async alike."""
    server, registry = sidecar_registry(routes=2)
    store = server.app[STORE]
    for check in range(5):
        name = f"queues-{check}"
        store.register(name, "bullmq")
        samples = tuple(
            Sample(SPEC if n % 3 else SPEC_UNTYPED, float(n * check), (f"q-{n}",)) for n in range(70)
        )
        store.record(
            CheckResult(
                check=name,
                kind="bullmq",
                status=Status.PASS,
                duration_seconds=0.01,
                finished_at=1_700_000_000.5,
                samples=samples,
            )
        )
    fmt = negotiate(accept)
    encoder = ExpositionEncoder(registry)
    expected = mask(choose_encoder(accept)[0](registry))
    for _ in range(2):  # the second render reads the cached prefixes
        assert mask(encoder.render_sync(fmt)) == expected
        assert mask(await encoder.render(fmt)) == expected
    assert b'fake_items{check="queues-4",queue="q-68"} 272.0' in encoder.render_sync(fmt)


def test_a_busy_loop_gives_the_render_a_share_of_its_turns() -> None:
    """25 us steps while the loop comes straight back; a share of the wait when it is busy, capped."""
    render = _Render(compress=False)
    for waited, budget in ((0.0, STEP_SECONDS), (0.002, 0.002 * LOOP_SHARE), (1.0, MAX_STEP_SECONDS)):
        before = time.perf_counter()
        render.restart(waited)
        assert before + budget <= render.deadline <= time.perf_counter() + budget
