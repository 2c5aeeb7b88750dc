"""RQ (Redis Queue): queue lengths, job registries, abandoned jobs, overdue scheduled jobs, live workers.

Reads RQ's Redis key layout (``rq/queue.py``, ``rq/registry.py``, ``rq/worker_registration.py``),
all under ``RQ_KEY_PREFIX`` (default ``rq``, option ``key_prefix``):

- ``rq:queues`` is the set of queue keys ``rq:queue:<name>``; each is a list of job ids, pushed on
  the right and taken from the left, so the oldest waiting job is at index 0, and its hash
  ``rq:job:<id>`` holds ``enqueued_at`` (``%Y-%m-%dT%H:%M:%S.%fZ``, UTC).
- Registries are sorted sets: ``rq:wip:<name>`` (started; scored by the execution's lease expiry,
  which the worker's heartbeat pushes forward, so an entry past its score was abandoned by a dead
  worker: this collector's ``stalled``), ``rq:failed:`` and ``rq:finished:`` (scored by expiry, so
  entries past their score are leftovers not counted), ``rq:deferred:``, ``rq:scheduled:`` (scored
  by the time to enqueue: past it plus the grace is overdue, nothing runs a scheduler) and
  ``rq:canceled:``.
- ``rq:workers:<name>`` is the set of worker keys serving a queue; a worker's hash ``rq:worker:<n>``
  expires unless its heartbeat renews it, so only members whose key exists are alive.
- ``rq:suspended`` exists while ``rq suspend`` holds every worker: every queue is then paused.

RQ's state names are mapped onto the shared vocabulary (``queued`` -> ``wait``, ``started`` ->
``active``, ``scheduled`` -> ``delayed``, ``finished`` -> ``completed``); ``deferred`` and
``canceled`` keep their names. One probe is two pipelined round trips (queue list, then one script
per queue).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, cast

from collectors.base import CollectorOptions, Observation
from collectors.bullmq import QueueOptions, QueueStats, RedisQueueCollector, cap_queues, queue_observation
from sidecar.core.settings_model import Meta, field_validator

RQ_STATES = ("wait", "active", "failed", "completed", "deferred", "delayed", "canceled")
# Per-queue KEYS of the script, in order.
RQ_KEY_TEMPLATES = (
    "{p}:queue:{q}",
    "{p}:wip:{q}",
    "{p}:failed:{q}",
    "{p}:finished:{q}",
    "{p}:deferred:{q}",
    "{p}:scheduled:{q}",
    "{p}:canceled:{q}",
    "{p}:workers:{q}",
    "{p}:queues",
    "{p}:suspended",
)
ENQUEUED_AT_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ")  # rq.utils.utcformat / legacy

# Read-only. ARGV: queue key, job key prefix, now, overdue cut-off, most worker keys to check.
# Returns {exists, queued, started, abandoned, failed, finished, deferred, scheduled, canceled,
# overdue, earliest overdue score or "", enqueued_at of the oldest queued job or "", live workers,
# suspended}.
RQ_QUEUE_LUA = """
local rcall = redis.call
local now = ARGV[3]
local first = rcall("LINDEX", KEYS[1], 0)
local enqueuedAt = ""
if first then enqueuedAt = rcall("HGET", ARGV[2] .. first, "enqueued_at") or "" end
local earliest = ""
local due = rcall("ZRANGEBYSCORE", KEYS[6], "-inf", "(" .. ARGV[4], "WITHSCORES", "LIMIT", 0, 1)
if due[2] then earliest = due[2] end
local alive = 0
local workers = rcall("SRANDMEMBER", KEYS[8], tonumber(ARGV[5]))
for _, key in ipairs(workers) do
  if rcall("EXISTS", key) == 1 then alive = alive + 1 end
end
return {
  rcall("SISMEMBER", KEYS[9], ARGV[1]),
  rcall("LLEN", KEYS[1]),
  rcall("ZCOUNT", KEYS[2], "(" .. now, "+inf"),
  rcall("ZCOUNT", KEYS[2], "-inf", now),
  rcall("ZCOUNT", KEYS[3], "(" .. now, "+inf"),
  rcall("ZCOUNT", KEYS[4], "(" .. now, "+inf"),
  rcall("ZCARD", KEYS[5]),
  rcall("ZCARD", KEYS[6]),
  rcall("ZCARD", KEYS[7]),
  rcall("ZCOUNT", KEYS[6], "-inf", "(" .. ARGV[4]),
  earliest,
  enqueuedAt,
  alive,
  rcall("EXISTS", KEYS[10]),
}
"""


class RQOptions(QueueOptions, frozen=True):
    """Where RQ keeps its keys, and what counts as overdue."""

    key_prefix: Annotated[str, Meta(min_length=1, description="RQ_KEY_PREFIX of the app")] = "rq"
    overdue_grace_seconds: Annotated[
        float, Meta(ge=0, le=86_400, description="a scheduled job due longer ago than this is overdue")
    ] = 5.0
    max_workers_checked: Annotated[
        int, Meta(ge=1, le=100_000, description="most worker keys checked per queue")
    ] = 1000

    @field_validator("key_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if not all(c.isalnum() or c in "_.:-{}" for c in value):
            raise ValueError("key_prefix is letters, digits and _ . : - { } only (as RQ_KEY_PREFIX)")
        return value


def rq_keys(prefix: str, queue: str) -> list[str]:
    """The script's KEYS for one queue."""
    return [template.format(p=prefix, q=queue) for template in RQ_KEY_TEMPLATES]


def rq_args(prefix: str, queue: str, now: float, grace: float, max_workers: int) -> list[str]:
    """The script's ARGV for one queue."""
    return [f"{prefix}:queue:{queue}", f"{prefix}:job:", repr(now), repr(now - grace), str(max_workers)]


def parse_enqueued_at(text: str) -> float | None:
    """RQ's ``enqueued_at`` -> Unix time; ``None`` when missing or not in RQ's format."""
    for fmt in ENQUEUED_AT_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def rq_stats(queue: str, reply: Sequence[Any], now: float) -> QueueStats | None:
    """One script reply -> ``QueueStats``; ``None`` when RQ does not know the queue."""
    exists, *numbers = reply[:10]
    earliest, enqueued_at, alive, suspended = reply[10:14]
    if int(exists) == 0:
        return None
    queued, started, abandoned, failed, finished, deferred, scheduled, canceled, overdue = (
        int(n) for n in numbers
    )
    counts = dict(
        zip(RQ_STATES, (queued, started, failed, finished, deferred, scheduled, canceled), strict=True)
    )
    enqueued = parse_enqueued_at(str(enqueued_at)) if enqueued_at else None
    return QueueStats(
        name=queue,
        counts=counts,
        backlog=queued,
        oldest_waiting_age=max(0.0, now - enqueued) if enqueued is not None else 0.0,
        overdue_delayed=overdue,
        overdue_seconds=max(0.0, now - float(earliest)) if earliest else 0.0,
        stalled=abandoned,
        paused=bool(int(suspended)),
        workers=int(alive),
    )


def queue_from_key(prefix: str, key: str) -> str | None:
    """``rq:queue:default`` -> ``default``; ``None`` for anything else."""
    head = f"{prefix}:queue:"
    return key[len(head) :] if key.startswith(head) and len(key) > len(head) else None


class RQCollector(RedisQueueCollector):
    """Measures every RQ queue on one Redis (or the configured ones)."""

    kind: ClassVar[str] = "rq"
    options_model: ClassVar[type[CollectorOptions]] = RQOptions
    options: RQOptions

    async def collect(self) -> Observation:
        opts = self.options
        if opts.queues:
            wanted: list[str] = list(opts.queues)
        else:
            members = await cast("Awaitable[set[Any]]", self.client.smembers(f"{opts.key_prefix}:queues"))
            wanted = [n for key in members if (n := queue_from_key(opts.key_prefix, str(key)))]
        names, left_out = cap_queues(wanted, opts.max_queues)
        now = time.time()
        calls = [
            (
                rq_keys(opts.key_prefix, q),
                rq_args(opts.key_prefix, q, now, opts.overdue_grace_seconds, opts.max_workers_checked),
            )
            for q in names
        ]
        replies, _ = await self.run_scripts(RQ_QUEUE_LUA, calls)
        stats: list[QueueStats] = []
        missing: list[str] = []
        for queue, reply in zip(names, replies, strict=True):
            queue_stats = rq_stats(queue, reply, now)
            if queue_stats is None:
                missing.append(queue)
            else:
                stats.append(queue_stats)
        notes = [f"{left_out} queues over max_queues not measured"] if left_out else []
        return queue_observation(stats, missing=missing if opts.queues else (), notes=notes)
