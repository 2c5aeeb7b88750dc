"""Configured rules compiled for the hot path: which requests a rule covers and whose budget they spend.

Matching by path (route templates, prefixes) is cached per path, so a request usually pays one dict
lookup plus a method check per rule. Keys are bytes: the client address (the real client, behind
``trusted_proxies``), a header's value, or the route. In Redis a key is stored as a BLAKE2b digest, so
API keys and user IDs never appear in key names (``MONITOR``, ``SCAN``, exporters).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sidecar.core.routes import RouteNormaliser, RouteTemplate
from sidecar.gateway.ratelimit.headers import limit_head, policy_item
from sidecar.gateway.ratelimit.local import OP_CHECK, OP_PEEK, OP_SPEND, LocalLimiter
from sidecar.gateway.ratelimit.redis_backend import bulk, script_args
from sidecar.gateway.ratelimit.settings import RateLimitRule

if TYPE_CHECKING:
    from sidecar.gateway.exchange import Exchange
    from sidecar.gateway.ratelimit.metrics import RateLimitMetrics

KEY_CLIENT = 0
KEY_HEADER = 1
KEY_ROUTE = 2
ANONYMOUS = b"anonymous"
_KEY_CACHE = 4096


class CompiledRule:
    """One rule ready for the hot path: matchers, key, backend, counters and its policy item."""

    __slots__ = (
        "_keys",
        "algorithm_tag",
        "allowed",
        "count_failed",
        "error_closed",
        "error_open",
        "fail_closed",
        "failed_statuses",
        "header",
        "headers",
        "key_kind",
        "limit",
        "limit_head",
        "local",
        "methods",
        "missing",
        "name",
        "policy",
        "prefixes",
        "redis",
        "redis_args",
        "redis_prefix",
        "rejected",
        "templates",
        "window",
    )

    def __init__(
        self,
        rule: RateLimitRule,
        redis: bool,
        key_prefix: str,
        metrics: RateLimitMetrics,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = rule.name
        self.limit = rule.limit
        self.window = rule.window
        self.redis = redis
        self.fail_closed = rule.on_redis_error == "closed"
        self.headers = rule.headers
        self.count_failed = rule.count == "failed"
        self.failed_statuses = frozenset(rule.failed_statuses) or None
        self.methods = frozenset(m.encode("ascii") for m in rule.match.methods) or None
        self.prefixes = tuple(p.encode("ascii") for p in rule.match.path_prefixes)
        self.templates = [RouteTemplate(t) for t in rule.match.routes]
        if rule.key == "client_ip":
            self.key_kind, self.header = KEY_CLIENT, b""
        elif rule.key == "route":
            self.key_kind, self.header = KEY_ROUTE, b""
        else:
            self.key_kind, self.header = KEY_HEADER, rule.key.removeprefix("header:").encode("ascii")
        self.missing = rule.on_missing_key
        sliding = rule.algorithm == "sliding_window"
        burst = rule.burst or rule.limit
        self.algorithm_tag = b"s" if sliding else b"t"
        self.policy = policy_item(rule.name, rule.limit, rule.window)
        self.limit_head = limit_head(rule.name)
        counter = metrics.decisions
        self.allowed = counter.labels(rule.name, "allowed")
        self.rejected = counter.labels(rule.name, "rejected")
        self.error_open = counter.labels(rule.name, "error_open")
        self.error_closed = counter.labels(rule.name, "error_closed")
        self.redis_prefix = (key_prefix + rule.name + ":").encode("ascii") + self.algorithm_tag + b":"
        window_ms = round(rule.window * 1000)
        self.redis_args = tuple(script_args(op, sliding, rule.limit, window_ms, burst) for op in range(3))
        self._keys: dict[bytes, bytes] = {}  # key -> its Redis key as a bulk string (hot keys hash once)
        self.local: LocalLimiter | None = None
        if not redis:
            evicted = metrics.evictions.labels(rule.name)
            extra: dict[str, Any] = {} if clock is None else {"clock": clock}
            self.local = LocalLimiter(
                rule.limit, rule.window, burst, sliding, rule.max_keys, evicted.inc, **extra
            )
            metrics.evictions.labels(rule.name)

    def path_match(self, path: bytes) -> tuple[bool, str | None]:
        """(covers the path, the template that matched when the rule lists routes)."""
        if not self.templates and not self.prefixes:
            return True, None
        if self.prefixes and path.startswith(self.prefixes):
            return True, None
        if self.templates:
            text = path.decode("utf-8", "surrogateescape")
            for template in self.templates:
                if template.matches(text):
                    return True, template.template
        return False, None

    def key_of(
        self,
        ex: Exchange,
        headers: list[tuple[bytes, bytes]],
        template: str | None,
        path: bytes,
        routes: RouteNormaliser,
    ) -> bytes | None:
        """Whose budget ``ex`` spends; ``None`` to skip the rule for this request.

        A ``route`` key is the rule's template that matched, else the route label of the path (route
        labels are capped, so the number of keys is too).
        """
        kind = self.key_kind
        if kind == KEY_CLIENT:
            return ex.client.encode("ascii", "replace")
        if kind == KEY_ROUTE:
            route = template if template is not None else routes.route(path.decode("latin-1"))
            return route.encode("utf-8", "replace")
        wanted = self.header
        size = len(wanted)
        for name, raw in headers:
            if len(name) == size and name.lower() == wanted:
                value = raw.strip()
                if value:
                    return b"h:" + value  # never equal to an address or "anonymous"
                break
        if self.missing == "client_ip":
            return ex.client.encode("ascii", "replace")
        if self.missing == "anonymous":
            return ANONYMOUS
        return None

    def redis_body(self, key: bytes, op: int) -> bytes:
        """The key and arguments of this rule's script call (after ``EVALSHA <sha> 1``)."""
        known = self._keys.get(key)
        if known is None:
            digest = hashlib.blake2b(key, digest_size=16).hexdigest().encode("ascii")
            known = bulk(self.redis_prefix + digest)
            if len(self._keys) >= _KEY_CACHE:
                self._keys.clear()
            self._keys[key] = known
        return known + self.redis_args[op]

    def counts(self, status: int) -> bool:
        """With ``count: failed``: does a response with ``status`` spend the budget?"""
        statuses = self.failed_statuses
        if statuses is not None:
            return status in statuses
        return status >= 400 and status != 499


__all__ = ["OP_CHECK", "OP_PEEK", "OP_SPEND", "CompiledRule"]
