"""The request-ID memory shared by the gateway and access lines from logs: what each source counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from sidecar.core.http_metrics import HttpMetrics
from sidecar.core.routes import RouteNormaliser


def test_a_reused_client_id_is_noted_not_counted_as_skipped_and_log_duplicates_are() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry, RouteNormaliser())
    assert http.first_sighting("req-1", "gateway") is True
    assert http.first_sighting("req-1", "gateway") is False  # a client sent the same X-Request-ID again
    assert registry.get_sample_value("sidecar_http_reused_request_ids_total") == 1
    assert (
        registry.get_sample_value("sidecar_http_duplicate_observations_total", {"source": "gateway"}) is None
    )
    assert http.first_sighting("req-1", "logs") is False  # the app's access line for it: skipped
    assert registry.get_sample_value("sidecar_http_duplicate_observations_total", {"source": "logs"}) == 1
    assert http.first_sighting(None, "gateway") is True
    assert registry.get_sample_value("sidecar_http_reused_request_ids_total") == 1
