"""The Queues page's data: per-queue figures from the latest probe results, and BullMQ's failed jobs.

Counts, oldest waiting age and overdue delayed jobs come from the samples the queue collectors already
measured (the ``sidecar_queue_*`` families), so a page view does no broker I/O. The one exception is
BullMQ's most recent failed jobs, which no probe reads: they are read on demand, read-only, with hard
bounds: at most ``MAX_FAILED_JOBS`` jobs in one round trip (one Lua script that reads the ``failed``
sorted set and each job's hash), at most once per ``MIN_INTERVAL`` per queue (a view within it gets
the previous answer), one connection per check.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from collectors.base import CheckTarget
from sidecar.core.redaction import redact_text
from sidecar.probing.results import ResultStore
from sidecar.probing.settings import CheckConfig

QUEUE_KINDS = frozenset({"bullmq", "celery", "rq", "rabbitmq"})
MAX_FAILED_JOBS = 50
MIN_INTERVAL = 1.0
MAX_TEXT = 500
MAX_CACHED = 1000
# KEYS[1]: the queue's key prefix (``bull:emails:``); ARGV[1]: how many; ARGV[2]: longest text kept.
# Read-only: ZREVRANGE, HMGET. Attempts are ``atm`` since BullMQ 5, ``attemptsMade`` before.
FAILED_JOBS_SCRIPT = """
local ids = redis.call('ZREVRANGE', KEYS[1] .. 'failed', 0, tonumber(ARGV[1]) - 1)
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', KEYS[1] .. id,
    'name', 'failedReason', 'atm', 'attemptsMade', 'finishedOn', 'timestamp')
  local attempts = h[3] or h[4]
  local fields = {h[1], h[2], attempts, h[5], h[6]}
  out[#out + 1] = id
  for j = 1, 5 do
    local v = fields[j]
    if not v then v = '' end
    out[#out + 1] = string.sub(v, 1, tonumber(ARGV[2]))
  end
end
return out
"""


@dataclass(slots=True)
class QueueView:
    """One queue as its check's latest probe saw it."""

    check: str
    kind: str
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)  # sample name (without prefix) -> value


def queue_views(store: ResultStore) -> tuple[list[QueueView], list[tuple[str, str, str]]]:
    """Every queue of every queue check; and (check, kind, status) of queue checks without samples."""
    views: list[QueueView] = []
    empty: list[tuple[str, str, str]] = []
    for check, kind in store.checks():
        if kind not in QUEUE_KINDS:
            continue
        result = store.latest(check)
        by_queue: dict[str, QueueView] = {}
        for sample in result.samples if result is not None else ():
            labels = dict(zip(sample.spec.labels, sample.label_values, strict=False))
            queue = labels.get("queue")
            if queue is None:
                continue
            view = by_queue.get(queue)
            if view is None:
                view = by_queue[queue] = QueueView(check, kind, queue)
            name = sample.spec.name.removeprefix("sidecar_queue_")
            if name == "jobs" and "state" in labels:
                view.counts[labels["state"]] = int(sample.value)
            else:
                view.figures[name] = sample.value
        if not by_queue:
            empty.append((check, kind, result.status.value if result is not None else "starting"))
        views.extend(sorted(by_queue.values(), key=lambda v: v.name))
    return views, empty


@dataclass(frozen=True, slots=True)
class FailedJob:
    job_id: str
    name: str
    failed_reason: str
    attempts: int | None
    finished_at: float | None  # seconds since the epoch
    created_at: float | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_failed_jobs(reply: list[Any]) -> list[FailedJob]:
    """The script's flat reply (id, name, reason, attempts, finishedOn ms, timestamp ms per job)."""
    jobs = []
    for i in range(0, len(reply) - 5, 6):
        job_id, name, reason, attempts, finished, created = (str(v) for v in reply[i : i + 6])
        finished_ms, created_ms, attempts_n = _number(finished), _number(created), _number(attempts)
        jobs.append(
            FailedJob(
                job_id=job_id,
                name=redact_text(name),
                failed_reason=redact_text(reason),
                attempts=int(attempts_n) if attempts_n is not None else None,
                finished_at=finished_ms / 1000 if finished_ms is not None else None,
                created_at=created_ms / 1000 if created_ms is not None else None,
            )
        )
    return jobs


class FailedJobsReader:
    """On-demand, rate-limited reads of BullMQ's failed jobs; one small client per check."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._answers: dict[tuple[str, str], tuple[float, list[FailedJob]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def read(self, check: CheckConfig, queue: str, limit: int = MAX_FAILED_JOBS) -> list[FailedJob]:
        """The queue's newest failed jobs (at most ``MAX_FAILED_JOBS``), at most once a second."""
        key = (check.name, queue)
        lock = self._locks.get(key)
        if lock is None:
            if len(self._locks) >= MAX_CACHED:
                self._locks.clear()
                self._answers.clear()
            lock = self._locks[key] = asyncio.Lock()
        async with lock:  # one read in flight per queue; views meanwhile wait for its answer
            cached = self._answers.get(key)
            if cached is not None and time.monotonic() - cached[0] < MIN_INTERVAL:
                return cached[1]
            prefix = str(getattr(check.typed_options, "prefix", "bull"))
            client = self._client(check)
            try:
                reply = await client.eval(
                    FAILED_JOBS_SCRIPT, 1, f"{prefix}:{queue}:", min(limit, MAX_FAILED_JOBS), MAX_TEXT
                )
            finally:
                self._answers[key] = (time.monotonic(), self._answers.get(key, (0.0, []))[1])
            jobs = parse_failed_jobs(list(reply or []))
            self._answers[key] = (time.monotonic(), jobs)
            return jobs

    def _client(self, check: CheckConfig) -> Any:
        client = self._clients.get(check.name)
        if client is None:
            from collectors.redis import probe_client  # noqa: PLC0415 (only when someone asks)

            target = CheckTarget(f"{check.name}-console", check.target, check.timeout)
            client = self._clients[check.name] = probe_client(target, 1)
        return client

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose(close_connection_pool=True)
