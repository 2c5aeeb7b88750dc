"""``sidecar_gateway_ratelimit_*``: decisions by rule and outcome, Redis latency and errors, evictions.

Registered with the gateway whether or not rules are configured (metric names are public API);
label children exist for every configured rule, so a rule that never refused shows 0, not nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

OUTCOMES = ("allowed", "rejected", "error_open", "error_closed")
REDIS_ERRORS = ("timeout", "connect", "closed", "reply", "unavailable")
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "sidecar_gateway_ratelimit_decisions",
            "Rate-limit decisions by rule and outcome (allowed, rejected, error_open, error_closed).",
            ["rule", "outcome"],
            registry=registry,
        )
        self.redis_duration = Histogram(
            "sidecar_gateway_ratelimit_redis_duration_seconds",
            "Time from sending a rate-limit decision to Redis to its reply.",
            buckets=REDIS_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            "sidecar_gateway_ratelimit_redis_errors",
            "Rate-limit Redis calls that failed, by reason (timeout, connect, closed, reply, unavailable).",
            ["reason"],
            registry=registry,
        )
        self.evictions = Counter(
            "sidecar_gateway_ratelimit_local_evictions",
            "Keys dropped from a rule's local rate-limit state because it reached max_keys (LRU).",
            ["rule"],
            registry=registry,
        )
        for reason in REDIS_ERRORS:
            self.redis_errors.labels(reason)
