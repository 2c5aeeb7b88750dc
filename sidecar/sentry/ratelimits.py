"""Sentry's rate limits, per data category, as the ingestion endpoint announces them.

``X-Sentry-Rate-Limits: retry_after:categories:scope:reason_code:namespaces, ...`` where categories are
``;``-separated and an empty list means every category (e.g. ``60:error;transaction:key``). A 429
without that header falls back to ``Retry-After`` (seconds, or an HTTP date) for every category. The
header can come with any status, 200 included (a partial limit), so every response is inspected.
A limit means *do not send yet*, never *drop*: limited events stay in the spool.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Iterable, Mapping

ALL = ""
DEFAULT_RETRY_AFTER = 60.0
MAX_RETRY_AFTER = 24 * 3600.0
NEVER_LIMITED = frozenset({"internal"})  # client reports always flow, as in the SDKs


def parse_rate_limits(header: str) -> list[tuple[str, float]]:
    """``[(category or "" for all, seconds)]``; malformed entries are skipped, like the SDKs do."""
    limits: list[tuple[str, float]] = []
    for entry in header.split(","):
        fields = entry.strip().split(":")
        if len(fields) < 2:
            continue
        try:
            seconds = float(fields[0])
        except ValueError:
            continue
        if math.isnan(seconds) or seconds < 0:
            continue
        seconds = min(seconds, MAX_RETRY_AFTER)
        categories = [c.strip() for c in fields[1].split(";") if c.strip()]
        limits += [(c, seconds) for c in categories] if categories else [(ALL, seconds)]
    return limits


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds from ``Retry-After``: delta-seconds or an HTTP date; 60 when missing or unreadable."""
    if not value:
        return DEFAULT_RETRY_AFTER
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        seconds = when - (time.time() if now is None else now)
    if math.isnan(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RateLimiter:
    """Until when each category (or all of them) must not be sent; monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def update(self, status: int, headers: Mapping[str, str]) -> list[tuple[str, float]]:
        """Record the limits a response announces; returns them (for logging)."""
        header = headers.get("X-Sentry-Rate-Limits")
        if header:
            limits = parse_rate_limits(header)
        elif status == 429:
            limits = [(ALL, parse_retry_after(headers.get("Retry-After")))]
        else:
            limits = []
        now = self._clock()
        for category, seconds in limits:
            self._until[category] = max(self._until.get(category, 0.0), now + seconds)
        return limits

    def limited(self, category: str) -> bool:
        if category in NEVER_LIMITED:
            return False
        now = self._clock()
        return self._until.get(category, 0.0) > now or self._until.get(ALL, 0.0) > now

    def any_limited(self, categories: Iterable[str]) -> bool:
        return any(self.limited(c) for c in categories)

    def next_expiry(self) -> float | None:
        """Seconds until the soonest active limit ends, or ``None`` when nothing is limited."""
        now = self._clock()
        active = [until - now for until in self._until.values() if until > now]
        return min(active) if active else None

    def active(self) -> dict[str, float]:
        """Category -> seconds left, for the debug view and metrics."""
        now = self._clock()
        return {c or "all": round(u - now, 3) for c, u in self._until.items() if u > now}
