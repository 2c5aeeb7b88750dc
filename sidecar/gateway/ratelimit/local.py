"""The two algorithms, and the in-process state they keep per key (bounded, least recently used out).

Both are O(1) in memory and time per key; ``redis_backend.SCRIPT`` is the same arithmetic in Lua, so
a rule behaves the same on either backend (a test runs both on one sequence of operations).

**Sliding window counter** (Cloudflare's and NGINX's approximation): the count of the current fixed
window plus the previous window's count weighted by the share of it that still overlaps the sliding
window: ``estimate = previous * (1 - elapsed / window) + current``. A request is allowed while
``estimate + 1 <= limit``. It is exact when requests in the previous window were evenly spread, and
within a window's start it never allows more than ``limit``; its error is bounded by the unevenness
of the previous window (Cloudflare measured 0.003% of decisions wrong on real traffic). A log of
timestamps would be exact but costs memory per request allowed, which a shared Redis pays per key.

**Token bucket**: ``burst`` tokens (default ``limit``), refilled at ``limit / window`` per second; a
request takes one. It allows a burst then a steady rate.

Times are milliseconds (floats). Each decision returns ``(allowed, remaining, reset_ms, retry_ms)``:
the quota left after it, the time until the current window ends (sliding window) or the bucket is
full (token bucket), and when refused, the time until a request would be allowed.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from time import monotonic

OP_CHECK = 0  # decide and spend (count: all)
OP_PEEK = 1  # decide without spending (count: failed, before the request)
OP_SPEND = 2  # spend without deciding (count: failed, after a failed response)

Decision = tuple[bool, int, int, int]
EPSILON = 1e-9  # comparisons forgive float rounding, so a retry-after moment is really allowed


def sliding_window(state: list[float], now: float, limit: int, window: float, op: int) -> Decision:
    """One decision on ``state = [window index, current count, previous count]`` (updated in place)."""
    index = math.floor(now / window)
    w, current, previous = state
    if w == index - 1:
        previous, current = current, 0.0
    elif w != index:
        previous = current = 0.0
    elapsed = now - index * window
    estimate = previous * (1.0 - elapsed / window) + current
    allowed = op == OP_SPEND or estimate + 1.0 <= limit + EPSILON
    if allowed and op != OP_PEEK:
        current += 1.0
        estimate += 1.0
        state[0], state[1], state[2] = index, current, previous
    remaining = max(0, math.floor(limit - estimate))
    reset = math.ceil(window - elapsed)
    retry = 0
    if not allowed:
        if current + 1.0 <= limit:  # the previous window's weight has to fade (previous > 0 here)
            wait = window * (1.0 - (limit - current - 1.0) / previous) - elapsed
        else:  # only the next window helps, once this one's count has faded enough
            wait = window - elapsed + max(0.0, window * (1.0 - (limit - 1.0) / current))
        retry = math.ceil(max(wait, 0.0))
    return allowed, remaining, reset, retry


def token_bucket(state: list[float], now: float, limit: int, window: float, burst: int, op: int) -> Decision:
    """One decision on ``state = [tokens, last update]`` (updated in place)."""
    rate = limit / window  # tokens per millisecond
    tokens, last = state
    if now > last:
        tokens = min(float(burst), tokens + (now - last) * rate)
    allowed = op == OP_SPEND or tokens >= 1.0 - EPSILON
    if allowed and op != OP_PEEK:
        tokens = max(tokens - 1.0, -float(burst))
        state[0], state[1] = tokens, now
    remaining = max(0, math.floor(tokens))
    reset = math.ceil((burst - tokens) / rate)
    retry = 0 if allowed else math.ceil((1.0 - tokens) / rate)
    return allowed, remaining, reset, retry


class LocalLimiter:
    """One rule's state in this process: a key -> state map capped at ``max_keys`` (LRU eviction)."""

    __slots__ = ("_evicted", "_states", "burst", "clock", "limit", "max_keys", "sliding", "window")

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        burst: int | None,
        sliding: bool,
        max_keys: int,
        evicted: Callable[[], None],
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.limit = limit
        self.window = window_seconds * 1000.0
        self.burst = burst or limit
        self.sliding = sliding
        self.max_keys = max_keys
        self.clock = clock
        self._evicted = evicted
        self._states: OrderedDict[bytes, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def decide(self, key: bytes, op: int) -> Decision:
        now = self.clock() * 1000.0
        states = self._states
        state = states.get(key)
        if state is None:
            state = [-1.0, 0.0, 0.0] if self.sliding else [float(self.burst), now]
            if op != OP_PEEK:  # a peek at an unknown key changes nothing: keep no state for it
                states[key] = state
                if len(states) > self.max_keys:
                    states.popitem(last=False)
                    self._evicted()
        else:
            states.move_to_end(key)
        if self.sliding:
            return sliding_window(state, now, self.limit, self.window, op)
        return token_bucket(state, now, self.limit, self.window, self.burst, op)
