"""The per-target cache behind ``GatewayContext.record``: same answers as the uncached path, bounded,
overflow counted per request, and a busy target never forgotten when the cache turns over."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import OVERFLOW_ROUTE, RouteNormaliser
from sidecar.correlation.index import CorrelationIndex
from sidecar.gateway.access_log import json_string
from sidecar.gateway.context import GatewayContext
from sidecar.gateway.exchange import Exchange
from sidecar.gateway.proxy import ClientConnection
from sidecar.gateway.query_mask import mask_query
from sidecar.gateway.settings import GatewaySettings
from sidecar.probing.health import HealthModel
from sidecar.probing.results import ResultStore


def context(max_routes: int = 200) -> tuple[GatewayContext, CorrelationIndex, HttpMetrics]:
    registry = CollectorRegistry()
    settings = GatewaySettings(upstream="http://127.0.0.1:3000", access_log={"enabled": False})  # type: ignore[arg-type]
    metrics = HttpMetrics(registry, RouteNormaliser(max_routes=max_routes))
    index = CorrelationIndex()
    return GatewayContext(settings, metrics, registry, index, HealthModel(ResultStore())), index, metrics


def record(ctx: GatewayContext, target: bytes, request_id: str) -> dict[str, object]:
    """Record a finished GET of ``target``; the access record the correlation index kept for it."""
    ex = Exchange(ClientConnection(ctx), b"GET", target, 100.0)
    ex.request_id = request_id
    ex.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    ex.client = "192.0.2.1"
    ex.status = 200
    ctx.record(ex, 100.002, time.time())
    entry = ctx.access._correlation.get(request_id)
    assert entry is not None
    record = entry["timeline"][0]["record"]
    assert isinstance(record, dict)
    return record


@pytest.mark.parametrize(
    "target",
    [
        b"/",
        b"/users/42",
        b"/a/b?token=secret&page=2",
        b"/say/%22hi%22",
        b'/odd/"quote"',
        b"/back\\slash",
        b"/frag#part",
        b"/caf\xc3\xa9/1",
        b"/bad\xff\xfe",
        b"http://example.test/abs/7?x=1",
        b"*",
    ],
)
async def test_access_path_is_the_masked_target_for_any_target(target: bytes) -> None:
    ctx, _, _ = context()
    for n in range(2):  # described, then served from the cache
        got = record(ctx, target, f"rid-{n}")
        assert got["path"] == orjson.loads(json_string(mask_query(target)))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_fast_path_json_agrees_with_mask_and_escape(target: bytes) -> None:
    ctx, _, _ = context()
    _, _, path_json, _ = ctx._describe(target)
    assert path_json == json_string(mask_query(target))


async def test_many_distinct_targets_stay_bounded_and_a_busy_one_stays_cached() -> None:
    ctx, _, _ = context()
    hot = b"/health/deep"
    record(ctx, hot, "hot-0")
    for n in range(20_000):
        record(ctx, b"/items/%d" % n, f"rid-{n}")
        if n % 500 == 0:
            record(ctx, hot, f"hot-{n + 1}")
            assert hot in ctx._targets or hot in ctx._targets_before
    assert len(ctx._targets) + len(ctx._targets_before) <= 2 * 2048
    got = record(ctx, b"/items/19999", "last")
    assert (got["route"], got["path"]) == ("/items/{id}", "/items/19999")


async def test_overflowed_routes_are_counted_per_request_even_when_cached() -> None:
    ctx, _, metrics = context(max_routes=1)
    assert record(ctx, b"/first", "a")["route"] == "/first"
    for n in range(5):
        assert record(ctx, b"/second", f"b{n}")["route"] == OVERFLOW_ROUTE
    assert metrics.routes.overflowed == 5
    assert metrics.route_overflow._value.get() == 5
    assert record(ctx, b"/first", "c")["route"] == "/first"
    assert metrics.routes.overflowed == 5


async def test_targets_of_one_shape_share_its_route_and_keep_their_own_path() -> None:
    ctx, _, _ = context()
    for n in range(3000):
        got = record(ctx, b"/items/%d" % n, f"rid-{n}")
        assert (got["route"], got["path"]) == ("/items/{id}", f"/items/{n}")
    assert len(ctx._shapes) <= 6  # one per digit count
    assert len(ctx._targets) + len(ctx._targets_before) <= 6  # only the first target of each shape


async def test_segments_kept_by_their_digits_are_not_merged_by_shape() -> None:
    ctx, _, _ = context()
    assert record(ctx, b"/api/v1/users", "a")["route"] == "/api/v1/users"
    assert record(ctx, b"/api/v2/users", "b")["route"] == "/api/v2/users"
    assert record(ctx, b"/api/v3/users/7", "c")["route"] == "/api/v3/users/{id}"
    assert record(ctx, b"/api/v4/users/8", "d")["route"] == "/api/v4/users/{id}"


async def test_overflow_by_shape_is_counted_per_request() -> None:
    ctx, _, metrics = context(max_routes=1)
    assert record(ctx, b"/first", "a")["route"] == "/first"
    for n in range(5):
        got = record(ctx, b"/orders/%d" % (n + 10), f"o{n}")
        assert (got["route"], got["path"]) == (OVERFLOW_ROUTE, f"/orders/{n + 10}")
    assert metrics.routes.overflowed == metrics.route_overflow._value.get() == 5
