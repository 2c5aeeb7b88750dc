"""The IETF rate-limit header fields, as draft-ietf-httpapi-ratelimit-headers-11 (May 2026) defines them.

Both are Structured Field lists whose items are policy names (sf-strings) with parameters:

    RateLimit-Policy: "api";q=100;w=60          quota q per window w seconds
    RateLimit: "api";r=42;t=17                  r left, t seconds of the effective window

(Drafts before -08 used ``RateLimit-Limit``/``-Remaining``/``-Reset``; they are not sent.) Rule names
are restricted to characters that need no escaping in an sf-string. ``Retry-After`` on a 429 is never
earlier than the end of the effective window it reports, as the draft asks.
"""

from __future__ import annotations

import math


def seconds(ms: float) -> int:
    """Milliseconds as the whole seconds the fields carry (rounded up: never too early)."""
    return max(0, math.ceil(ms / 1000.0))


def policy_item(name: str, limit: int, window_seconds: float) -> bytes:
    return b'"%s";q=%d;w=%d' % (name.encode("ascii"), limit, max(1, round(window_seconds)))


def limit_head(name: str) -> bytes:
    """The constant start of a policy's ``RateLimit`` item: the name and ``r=``."""
    return b'"%s";r=' % name.encode("ascii")


def limit_item(name: str, remaining: int, reset_ms: float) -> bytes:
    return limit_head(name) + b"%d;t=%d" % (remaining, seconds(reset_ms))


def fields(policies: list[bytes], limits: list[bytes]) -> bytes:
    """``RateLimit-Policy`` and ``RateLimit`` lines (CRLF-terminated), or nothing."""
    if not policies:
        return b""
    if len(policies) == 1:
        return b"RateLimit-Policy: " + policies[0] + b"\r\nRateLimit: " + limits[0] + b"\r\n"
    return b"RateLimit-Policy: " + b", ".join(policies) + b"\r\nRateLimit: " + b", ".join(limits) + b"\r\n"
