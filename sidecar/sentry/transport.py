"""Delivery: one background task sends spooled envelopes to Sentry, oldest first, never blocking anyone.

Per answer: 2xx removes the envelope from the spool (only then); 429 or ``X-Sentry-Rate-Limits`` holds
the limited categories until the limit ends while other categories keep flowing; 400/413/415/422 mean
Sentry will never take this envelope (counted as ``rejected`` and removed); 401/403/404 mean the DSN is
wrong, which is a configuration problem, so envelopes are kept and retried; 5xx, timeouts and refused
connections back off exponentially with jitter up to ``backoff_max``, probing with one envelope at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from sidecar.sentry.dsn import SENTRY_CLIENT, Dsn
from sidecar.sentry.metrics import SentryStats
from sidecar.sentry.ratelimits import RateLimiter
from sidecar.sentry.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

PERMANENT_REJECTIONS = frozenset({400, 413, 415, 422})
COMPRESS_ABOVE = 1024
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(slots=True, frozen=True)
class Answer:
    """How one attempt ended: ``sent``, ``limited``, ``rejected`` or ``failed`` (with a reason)."""

    outcome: str
    status: int | None = None
    reason: str | None = None


def backoff_delay(
    failures: int, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential, capped, with jitter in its upper half so a fleet does not retry in lockstep."""
    delay: float = min(cap, initial * 2 ** max(failures - 1, 0))
    return delay / 2 + rand() * delay / 2


class Sender:
    """Drains the spool to the app's Sentry project."""

    def __init__(
        self,
        spool: Spool,
        dsn: Dsn,
        limiter: RateLimiter,
        stats: SentryStats,
        *,
        max_in_flight: int,
        timeout: float,
        backoff_initial: float,
        backoff_max: float,
    ) -> None:
        self.spool = spool
        self.dsn = dsn
        self.limiter = limiter
        self.stats = stats
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.failures = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_in_flight, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": SENTRY_CLIENT},
            auto_decompress=True,
        )
        self._task = asyncio.create_task(self._run(), name="sentry-sender")

    async def stop(self) -> None:
        """Stop now: envelopes in flight stay spooled and are re-sent (same event ID) after a restart."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        """Never dies: an unexpected error is logged, in-flight entries are released, and it goes on."""
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sentry sender: unexpected error; retrying")
                self.spool.release_all()
                await asyncio.sleep(self.backoff_max)

    async def _step(self) -> None:
        batch = self.spool.take_ready(1 if self.failures else self.max_in_flight)
        if not batch:
            self.spool.changed.clear()
            wait = self.limiter.next_expiry()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait + 0.01 if wait is not None else None):
                    await self.spool.changed.wait()
            return
        answers = await asyncio.gather(*(self._attempt(entry) for entry in batch))
        failed = limited = False
        for entry, answer in zip(batch, answers, strict=True):
            if answer.outcome in ("sent", "rejected", "gone"):
                if answer.outcome != "gone":
                    self.stats.count(answer.outcome)
                    await self.spool.remove(entry)
                if answer.outcome == "rejected":
                    log.warning(
                        "sentry rejected an envelope for good; dropped",
                        extra={"status": answer.status, "reason": answer.reason},
                    )
                continue
            self.spool.release(entry)
            if answer.outcome == "limited":
                limited = True
                if not entry.held:
                    entry.held = True
                    self.stats.count("rate_limited")
            else:
                failed = True
                self.stats.send_failures[answer.reason or "http_other"] += 1
        if limited:
            self.spool.hold_limited()
        if failed:
            self.failures += 1
            delay = backoff_delay(self.failures, self.backoff_initial, self.backoff_max)
            log.warning(
                "sentry unreachable, retrying later",
                extra={
                    "failures": self.failures,
                    "retry_in_seconds": round(delay, 3),
                    "waiting": len(self.spool),
                },
            )
            await asyncio.sleep(delay)
        elif self.failures:
            log.info("sentry reachable again", extra={"waiting": len(self.spool)})
            self.failures = 0

    async def _attempt(self, entry: SpoolEntry) -> Answer:
        data = await self.spool.read(entry)
        if data is None:
            return Answer("gone")
        return await self.post(data)

    async def post(self, data: bytes) -> Answer:
        """POST one envelope; classify the answer and record any rate limits it announces."""
        assert self._session is not None, "start() first"
        headers = {
            "Content-Type": "application/x-sentry-envelope",
            "X-Sentry-Auth": self.dsn.auth_header(),
        }
        body = data
        if len(data) > 256 * 1024:
            body = await asyncio.to_thread(gzip.compress, data, 6)
        elif len(data) > COMPRESS_ABOVE:
            body = gzip.compress(data, 6)
        if body is not data:
            headers["Content-Encoding"] = "gzip"
        try:
            async with self._session.post(self.dsn.envelope_url, data=body, headers=headers) as response:
                text = (await response.content.read(MAX_RESPONSE_BYTES)).decode("utf-8", "replace")
                status = response.status
                limits = self.limiter.update(status, response.headers)
        except TimeoutError:
            return Answer("failed", reason="timeout")
        except aiohttp.ClientError:
            return Answer("failed", reason="connect")
        if limits:
            log.warning("sentry rate limit", extra={"limits": [f"{c or 'all'}:{s:g}s" for c, s in limits]})
        answer = classify(status, text)
        if answer.reason == "http_auth":
            log.error(
                "sentry refused the app DSN; check sentry.app_dsn (events are kept)",
                extra={"status": status, "dsn": str(self.dsn)},
            )
        return answer


def classify(status: int, text: str = "") -> Answer:
    """What an HTTP status from the ingestion endpoint means for the envelope that got it."""
    if 200 <= status < 300:
        return Answer("sent", status)
    if status == 429:
        return Answer("limited", status)
    if status in PERMANENT_REJECTIONS:
        return Answer("rejected", status, reason=text[:200])
    if status in (401, 403, 404):
        return Answer("failed", status, reason="http_auth")
    return Answer("failed", status, reason="http_5xx" if status >= 500 else "http_other")
