"""Rate limits per category from X-Sentry-Rate-Limits and Retry-After; backoff with jitter."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from sidecar.sentry.ratelimits import RateLimiter, parse_rate_limits, parse_retry_after
from sidecar.sentry.transport import backoff_delay, classify

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_header() -> None:
    assert parse_rate_limits("60:error;transaction:key") == [("error", 60.0), ("transaction", 60.0)]
    assert parse_rate_limits("2700::organization:quota_exceeded") == [("", 2700.0)]
    assert parse_rate_limits("60:error:key, 2:transaction:project:reason:ns") == [
        ("error", 60.0),
        ("transaction", 2.0),
    ]
    assert parse_rate_limits("garbage, x:error:key, 5") == []
    assert parse_rate_limits("99999999:error:key") == [("error", 86400.0)]


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("17") == 17.0
    assert parse_retry_after(None) == 60.0
    assert parse_retry_after("soon") == 60.0
    assert 28 <= parse_retry_after(formatdate(1030, usegmt=True), now=1000) <= 30


def test_limits_per_category_and_for_all() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.update(200, {"X-Sentry-Rate-Limits": "60:error:key"})  # limits can come with a 200
    assert limiter.limited("error") and not limiter.limited("transaction")
    assert limiter.any_limited({"error", "attachment"})
    assert limiter.next_expiry() == 60.0
    clock.now += 61
    assert not limiter.limited("error") and limiter.next_expiry() is None
    limiter.update(429, {"Retry-After": "5"})  # no header: everything waits
    assert limiter.limited("transaction") and limiter.limited("error")
    assert not limiter.limited("internal"), "client reports always flow"
    clock.now += 6
    limiter.update(429, {"X-Sentry-Rate-Limits": "10::organization"})
    assert limiter.limited("session")
    assert limiter.active() == {"all": 10.0}


def test_backoff_grows_is_capped_and_jittered() -> None:
    assert backoff_delay(1, 1.0, 60.0, rand=lambda: 0.0) == 0.5
    assert backoff_delay(1, 1.0, 60.0, rand=lambda: 1.0) == 1.0
    assert backoff_delay(4, 1.0, 60.0, rand=lambda: 1.0) == 8.0
    assert backoff_delay(30, 1.0, 60.0, rand=lambda: 1.0) == 60.0
    assert 30.0 <= backoff_delay(30, 1.0, 60.0) <= 60.0


def test_classify_answers() -> None:
    assert classify(200).outcome == "sent"
    assert classify(429).outcome == "limited"
    assert classify(400).outcome == classify(413).outcome == "rejected"
    assert (classify(403).outcome, classify(403).reason) == ("failed", "http_auth")
    assert (classify(503).outcome, classify(503).reason) == ("failed", "http_5xx")
    assert classify(408).reason == "http_other"
