"""``_created`` series are left out by default, per registry, and one setting brings them back."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from sidecar.serving.exposition import new_registry, render


async def body(created_series: bool, accept: str = "") -> str:
    registry = new_registry(created_series)
    Counter("demo_requests", "Requests.", ["code"], registry=registry).labels("200").inc()
    Histogram("demo_seconds", "Durations.", registry=registry).observe(0.1)
    text, _headers = await render(registry, accept, "")  # /metrics renders in steps, on the loop
    return text.decode()


async def test_created_series_are_off_by_default_in_both_formats() -> None:
    for accept in ("", "application/openmetrics-text; version=1.0.0"):
        text = await body(False, accept)
        assert "demo_requests_total" in text and "demo_seconds_count" in text
        assert "_created" not in text, accept


async def test_the_setting_brings_them_back_without_touching_other_registries() -> None:
    assert 'demo_requests_created{code="200"}' in await body(True)
    assert "demo_seconds_created" in await body(True)
    assert "_created" not in await body(False), "the switch is per registry, not process-wide"
