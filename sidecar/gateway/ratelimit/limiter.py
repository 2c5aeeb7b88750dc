"""Rate limiting for one gateway: rules matched per request, decisions local or in Redis, the verdict.

The proxy calls three things, all synchronous:

* ``RateLimiter.inspect(ex, headers)`` when a request head is complete: every matching rule decides
  (local rules at once; Redis rules send one pipelined ``EVALSHA`` each) and the request gets a
  ``LimitState`` (``ex.limits``), or nothing when no rule applies;
* ``LimitState.held(conn, ex)`` before the request goes to the app: ``True`` while a Redis reply is
  awaited (the reply calls ``conn.limits_decided(ex)``) or when the request was refused (429, or 503
  when Redis failed and the rule fails closed);
* ``LimitState.finished(status)`` when the response is complete: ``count: failed`` rules spend their
  budget now, if the status counts.

No task or future is created per request; a request waiting on Redis holds its body like one waiting
for an upstream connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.core.routes import RouteNormaliser
from sidecar.gateway.query_mask import path_of
from sidecar.gateway.ratelimit import headers as rl_headers
from sidecar.gateway.ratelimit.local import OP_CHECK, OP_PEEK, OP_SPEND, Decision
from sidecar.gateway.ratelimit.metrics import RateLimitMetrics
from sidecar.gateway.ratelimit.redis_backend import IGNORE, RedisLimiterClient
from sidecar.gateway.ratelimit.rules import CompiledRule
from sidecar.gateway.ratelimit.settings import RateLimitRedis, RateLimitRule
from sidecar.gateway.write_batch import WriteBatch

if TYPE_CHECKING:
    from sidecar.gateway.exchange import ClientSide, Exchange

_PATH_CACHE = 4096
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "rate_limit_unavailable"


class RateLimiter:
    """The compiled rules of a gateway and the Redis client they share (when any rule uses Redis)."""

    def __init__(
        self,
        rules: list[RateLimitRule],
        redis: RateLimitRedis | None,
        metrics: RateLimitMetrics,
        routes: RouteNormaliser,
        writes: WriteBatch,
        clock: Callable[[], float] | None = None,
    ) -> None:
        prefix = redis.key_prefix if redis is not None else ""
        default = "redis" if redis is not None else "local"
        self.rules = [
            CompiledRule(rule, (rule.backend or default) == "redis", prefix, metrics, clock) for rule in rules
        ]
        self.metrics = metrics
        self.routes = routes
        self.redis: RedisLimiterClient | None = None
        if redis is not None and any(rule.redis for rule in self.rules):
            self.redis = RedisLimiterClient(
                redis, writes, metrics.redis_duration.observe, lambda r: metrics.redis_errors.labels(r).inc()
            )
        self._paths: dict[bytes, tuple[tuple[CompiledRule, str | None], ...]] = {}

    def _covering(self, path: bytes) -> tuple[tuple[CompiledRule, str | None], ...]:
        found = self._paths.get(path)
        if found is None:
            matches = []
            for rule in self.rules:
                covered, template = rule.path_match(path)
                if covered:
                    matches.append((rule, template))
            found = tuple(matches)
            if len(self._paths) >= _PATH_CACHE:
                self._paths.clear()
            self._paths[path] = found
        return found

    def inspect(self, ex: Exchange, headers: list[tuple[bytes, bytes]]) -> None:
        """Decide (or start deciding) every rule covering ``ex``; sets ``ex.limits`` when any applies."""
        path = path_of(ex.target)
        covering = self._covering(path)
        if not covering:
            return
        state: LimitState | None = None
        method = ex.method
        for rule, template in covering:
            if rule.methods is not None and method not in rule.methods:
                continue
            key = rule.key_of(ex, headers, template, path, self.routes)
            if key is None:
                continue
            if state is None:
                state = ex.limits = LimitState(self, ex)
            index = len(state.rules)
            state.rules.append(rule)
            state.keys.append(key)
            op = OP_PEEK if rule.count_failed else OP_CHECK
            local = rule.local
            if local is not None:
                state.results.append(local.decide(key, op))
            else:
                state.results.append(None)
                state.pending += 1
                assert self.redis is not None
                self.redis.call(rule.redis_body(key, op), state, index)

    def spend(self, rule: CompiledRule, key: bytes) -> None:
        """``count: failed``: a failed response spends one unit of ``key``'s budget (no reply awaited)."""
        local = rule.local
        if local is not None:
            local.decide(key, OP_SPEND)
        elif self.redis is not None:
            self.redis.call(rule.redis_body(key, OP_SPEND), IGNORE, 0)

    def start(self) -> None:
        if self.redis is not None:
            self.redis.start()

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()


class LimitState:
    """The rate-limit decisions of one request, and what the client is told about them.

    It is the exchange's ``LimitsSide``: the client connection reaches it only through that interface.
    """

    __slots__ = (
        "deferred",
        "ex",
        "fields",
        "keys",
        "limiter",
        "pending",
        "reason",
        "results",
        "rules",
        "status",
        "waiting",
    )

    def __init__(self, limiter: RateLimiter, ex: Exchange) -> None:
        self.limiter = limiter
        self.ex: Exchange | None = ex
        self.rules: list[CompiledRule] = []
        self.keys: list[bytes] = []
        self.results: list[Decision | str | None] = []  # a decision, an error reason, or None (waiting)
        self.pending = 0
        self.waiting = False
        self.deferred = False
        self.status = -1  # -1 undecided, 0 allowed, 429/503 refused
        self.reason = ""
        self.fields = b""

    def redis_reply(self, index: int, reply: Decision | None, error: str | None) -> None:
        self.results[index] = reply if reply is not None else error or "reply"
        self.pending -= 1
        ex = self.ex
        if self.pending == 0 and self.waiting and ex is not None:
            self.waiting = False
            ex.conn.limits_decided(ex)

    def held(self, conn: ClientSide, ex: Exchange) -> bool:
        """True when ``ex`` must not go to the app now: still waiting on Redis, or refused here."""
        if self.pending:
            self.waiting = True
            return True
        if self.status < 0:
            self._decide()
        if not self.status:
            return False
        if not ex.request_complete and not self.deferred:
            # Refused while the parser is still in the request (its head callback): answer on the next
            # loop iteration, once what the client already sent (a small body) has been read, so the
            # connection can stay open. A body still arriving then closes it, as for other refusals.
            self.deferred = True
            asyncio.get_running_loop().call_soon(conn.limits_decided, ex)
        else:
            conn.refuse(ex, self.status, self.reason, self.fields)
        return True

    def _decide(self) -> None:
        """Count every rule's outcome once and work out the verdict and the fields that explain it."""
        status = 0
        retry_ms = 0
        for rule, result in zip(self.rules, self.results, strict=True):
            if isinstance(result, tuple):
                if result[0]:
                    rule.allowed.inc()
                else:
                    rule.rejected.inc()
                    status = 429
                    retry_ms = max(retry_ms, result[3])
            elif rule.fail_closed:
                rule.error_closed.inc()
                status = status or 503
            else:
                rule.error_open.inc()
        self.status = status
        if status == 429:
            self.reason = RATE_LIMITED
            retry = max(1, rl_headers.seconds(retry_ms))
            self.fields = b"Retry-After: %d\r\n" % retry + self._fields(refused=True)
        elif status == 503:
            self.reason = UNAVAILABLE
            self.fields = b"Retry-After: 1\r\n"

    def _fields(self, refused: bool) -> bytes:
        policies: list[bytes] = []
        limits: list[bytes] = []
        for rule, result in zip(self.rules, self.results, strict=True):
            if result.__class__ is not tuple:
                continue
            allowed, remaining, reset_ms, retry_ms = result
            if not allowed:
                limits.append(rule.limit_head + b"0;t=%d" % ((max(retry_ms, 1) + 999) // 1000))
            elif rule.headers or refused:
                limits.append(rule.limit_head + b"%d;t=%d" % (remaining, (reset_ms + 999) // 1000))
            else:
                continue
            policies.append(rule.policy)
        return rl_headers.fields(policies, limits)

    def response_fields(self) -> bytes:
        """``RateLimit-Policy``/``RateLimit`` for an allowed response (rules with ``headers: true``)."""
        if self.status != 0:
            return b""
        return self._fields(refused=False)

    def finished(self, status: int) -> None:
        """The response is complete: ``count: failed`` rules spend their budget if ``status`` counts.

        Also lets go of the exchange: ``ex.limits`` and ``self.ex`` would otherwise be a reference
        cycle, left for the cyclic garbage collector (whose pauses showed as a 30 ms p99).
        """
        self.ex = None
        if self.status != 0 or status < 100:
            return
        limiter = self.limiter
        for rule, key in zip(self.rules, self.keys, strict=True):
            if rule.count_failed and rule.counts(status):
                limiter.spend(rule, key)
