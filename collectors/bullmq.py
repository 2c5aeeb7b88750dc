"""BullMQ queues (Node and Python apps): backlog, job age, overdue delayed jobs, stalled jobs, workers.

Reads BullMQ's own Redis key layout (BullMQ v4-v6, ``src/classes/queue-keys.ts`` and the Lua scripts
in ``src/commands``), never its API, so the sidecar needs no Node runtime:

- ``<prefix>:<queue>:wait`` / ``paused`` (legacy) / ``active`` lists; ``prioritized``, ``delayed``,
  ``waiting-children``, ``completed``, ``failed`` sorted sets; ``meta`` hash whose ``paused`` field is
  the pause flag since v5; ``<prefix>:<queue>:<jobId>`` job hashes with ``timestamp`` and ``delay``;
  ``<jobId>:lock`` keys held by the worker that runs a job; ``metrics:completed`` /
  ``metrics:failed`` hashes whose ``count`` field BullMQ increments when the app enabled metrics.
- A delayed job's score is ``due_ms * 0x1000 + (counter & 0xfff)`` (``getDelayedScore.lua``).
- A worker names its connection ``<prefix>:<base64(queue)>`` (Node) or ``<prefix>:<queue>``
  (Python), optionally followed by ``:w:<worker name>`` (``getWorkers``), so one ``CLIENT LIST``
  counts the workers of every queue.

One probe is one round trip per batch of queues: a pipeline of ``EVALSHA`` calls of one read-only
script, each over ``queues_per_script`` queues (so Redis is never busy with us for more than a few
milliseconds, and other clients interleave between calls), plus one ``CLIENT LIST``. A script call per
chunk rather than per queue, and one MessagePack blob of 16 integers per queue as its reply (Redis's
``cmsgpack``, which BullMQ's own scripts need too), because packing and parsing ~17 RESP values per
queue cost more than Redis's work at 1,000 queues, and formatting numbers as text was a tenth of the
script's time (``bench/bullmq_probe.py``). The script reads only what a queue's state needs (no job
hash or score of an empty list, one ``EXISTS`` for all the locks of the active jobs). A queue whose
row is the same as at the last probe keeps its samples; only its ages and worker count are redone.
Queues are discovered with a bounded ``SCAN`` for ``<prefix>:*:meta``, refreshed every
``discovery_interval_seconds``.

This module also holds what the four queue collectors (bullmq, celery, rq, rabbitmq) share: the
metric families, the option base class and the summary that turns per-queue figures into samples
and health measurements, so one dashboard and one set of thresholds serve every broker.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import msgspec
import redis.asyncio as aioredis
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    Observation,
    Reason,
    Sample,
    Status,
)
from collectors.redis import classify_redis_error, probe_client, url_passwords, validate_redis_target
from sidecar.core.settings_model import Meta, ValidationError, check_each, field_validator

# --------------------------------------------------------------------------------------------------
# Shared by the queue collectors (bullmq, celery, rq, rabbitmq)

QUEUE_JOBS = MetricSpec(
    "sidecar_queue_jobs",
    "Jobs (messages) in the queue by state, as the broker holds them at the last probe.",
    labels=("queue", "state"),
)
QUEUE_OLDEST_WAITING_AGE = MetricSpec(
    "sidecar_queue_oldest_waiting_job_age_seconds",
    "Age of the oldest job waiting to be picked up (the one next in line), in seconds; 0 when none waits.",
    labels=("queue",),
)
QUEUE_OVERDUE_DELAYED = MetricSpec(
    "sidecar_queue_overdue_delayed_jobs",
    "Delayed or scheduled jobs due longer ago than the grace period but still not moved to waiting: "
    "nothing (no worker, no scheduler) is promoting them.",
    labels=("queue",),
)
QUEUE_OVERDUE_SECONDS = MetricSpec(
    "sidecar_queue_overdue_delayed_seconds",
    "How long ago the most overdue delayed job fell due, in seconds; 0 when none is overdue.",
    labels=("queue",),
)
QUEUE_STALLED = MetricSpec(
    "sidecar_queue_stalled_jobs",
    "Jobs recorded as running whose worker is gone (its lock or execution lease expired).",
    labels=("queue",),
)
QUEUE_PAUSED = MetricSpec(
    "sidecar_queue_paused",
    "1 when the queue is paused (workers take no new jobs), else 0.",
    labels=("queue",),
)
QUEUE_WORKERS = MetricSpec(
    "sidecar_queue_workers",
    "Workers attached to the queue: BullMQ worker connections, live RQ workers, AMQP consumers.",
    labels=("queue",),
)
QUEUE_COMPLETED_TOTAL = MetricSpec(
    "sidecar_queue_jobs_completed_total",
    "Jobs completed, as counted by the queue library itself (BullMQ metrics, when the app enables them).",
    type="counter",
    labels=("queue",),
)
QUEUE_FAILED_TOTAL = MetricSpec(
    "sidecar_queue_jobs_failed_total",
    "Jobs failed, as counted by the queue library itself (BullMQ metrics, when the app enables them).",
    type="counter",
    labels=("queue",),
)
QUEUE_METRICS: tuple[MetricSpec, ...] = (
    QUEUE_JOBS,
    QUEUE_OLDEST_WAITING_AGE,
    QUEUE_OVERDUE_DELAYED,
    QUEUE_OVERDUE_SECONDS,
    QUEUE_STALLED,
    QUEUE_PAUSED,
    QUEUE_WORKERS,
    QUEUE_COMPLETED_TOTAL,
    QUEUE_FAILED_TOTAL,
)

UNIT_JOBS = "jobs"
UNIT_SECONDS = "s"
UNIT_QUEUES = "queues"
UNIT_WORKERS = "workers"

MAX_QUEUE_NAME = 255
REDIS_MAX_CONNECTIONS = 2


def _queue_name(name: str) -> str:
    if not name or len(name) > MAX_QUEUE_NAME or not name.isprintable():
        raise ValueError(f"queue name {name!r} must be 1-{MAX_QUEUE_NAME} printable characters")
    return name


class QueueOptions(CollectorOptions, frozen=True):
    """Options every queue check has: which queues, and how many at most."""

    queues: Annotated[list[str], Meta(description="queue names to measure; empty means discover them")] = []
    max_queues: Annotated[
        int, Meta(ge=1, le=100_000, description="most queues measured (bounds label cardinality)")
    ] = 1000

    @field_validator("queues")
    @classmethod
    def _valid_names(cls, value: list[str]) -> list[str]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        try:
            check_each(enumerate(value), _queue_name)  # every bad name, each at [i]
        except ValidationError as exc:
            problems += exc.problems
        if len(set(value)) != len(value):
            problems.append(((), "queue names must be unique: remove the repeated name"))
        if problems:
            raise ValidationError(problems)
        return value


class DiscoveringQueueOptions(QueueOptions, frozen=True):
    """Queue options for brokers whose queues are found with ``SCAN`` when none are configured."""

    discovery_interval_seconds: Annotated[
        float, Meta(ge=0, le=86_400, description="how long a discovered queue list is reused")
    ] = 60.0
    # 10 calls of COUNT 10,000 rather than 100 of 1,000: the same keys per probe, a tenth of the
    # round trips (the first probe of 1,000 BullMQ queues, 54,000 keys, spent most of its time in
    # 54 SCAN round trips); one call still keeps Redis busy for only a millisecond or two.
    scan_count: Annotated[int, Meta(ge=10, le=100_000, description="COUNT hint of each SCAN call")] = 10_000
    max_scan_calls: Annotated[
        int, Meta(ge=1, le=100_000, description="SCAN calls per probe; discovery resumes next probe")
    ] = 10

    def key_scan(self, pattern: str) -> KeyScan:
        """A discovery for ``pattern`` bounded by these options."""
        return KeyScan(
            pattern,
            count=self.scan_count,
            max_calls=self.max_scan_calls,
            interval=self.discovery_interval_seconds,
        )


@dataclass(slots=True)
class QueueStats:
    """What one probe saw of one queue; ``None`` means the broker does not keep that figure."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    backlog: int = 0
    oldest_waiting_age: float | None = None
    overdue_delayed: int | None = None
    overdue_seconds: float | None = None
    stalled: int | None = None
    paused: bool | None = None
    workers: int | None = None
    completed_total: int | None = None
    failed_total: int | None = None


def queue_samples(stats: QueueStats) -> list[Sample]:
    """The samples of one queue; figures the broker does not keep produce no series."""
    name = stats.name
    samples = [Sample(QUEUE_JOBS, float(n), (name, state)) for state, n in stats.counts.items()]
    optional: tuple[tuple[MetricSpec, float | None], ...] = (
        (QUEUE_OLDEST_WAITING_AGE, stats.oldest_waiting_age),
        (QUEUE_OVERDUE_DELAYED, stats.overdue_delayed),
        (QUEUE_OVERDUE_SECONDS, stats.overdue_seconds),
        (QUEUE_STALLED, stats.stalled),
        (QUEUE_PAUSED, None if stats.paused is None else float(stats.paused)),
        (QUEUE_WORKERS, stats.workers),
        (QUEUE_COMPLETED_TOTAL, stats.completed_total),
        (QUEUE_FAILED_TOTAL, stats.failed_total),
    )
    samples += [Sample(spec, float(value), (name,)) for spec, value in optional if value is not None]
    return samples


QUEUE_MEASUREMENTS: tuple[str, ...] = (
    "queues",
    "backlog",
    "missingQueues",
    "oldestJobAge",
    "overdueDelayed",
    "stalled",
    "failed",
    "paused",
    "minWorkers",
)
"""What ``queue_observation`` measures, for every queue kind (``warn:``/``fail:`` keys)."""


def queue_observation(
    stats: Sequence[QueueStats],
    *,
    missing: Sequence[str] = (),
    notes: Iterable[str] = (),
    samples: list[Sample] | None = None,
) -> Observation:
    """Per-queue figures -> samples, and the broker-wide measurements that thresholds judge.

    ``samples``: ``queue_samples`` of each of ``stats`` in order, when the caller keeps them between
    probes (the BullMQ collector, for queues whose figures did not change); built here otherwise.

    Measurements (``/health`` and ``warn:``/``fail:``): ``backlog`` (largest waiting count of any
    queue), ``oldestJobAge``, ``overdueDelayed``, ``stalled``, ``failed``, ``paused``, ``minWorkers``,
    ``queues``, ``missingQueues``. A figure no queue reports is left out rather than shown as 0.
    The collector's own verdict is only about configuration: a configured queue that does not exist
    is a warning; everything else is judged by the configured thresholds.
    """
    if samples is None:
        samples = [sample for queue in stats for sample in queue_samples(queue)]
    measurements = {
        "queues": Measurement(len(stats), UNIT_QUEUES),
        "backlog": Measurement(max((q.backlog for q in stats), default=0), UNIT_JOBS),
        "missingQueues": Measurement(len(missing), UNIT_QUEUES),
    }
    _put_max(measurements, "oldestJobAge", [q.oldest_waiting_age for q in stats], UNIT_SECONDS)
    _put_sum(measurements, "overdueDelayed", [q.overdue_delayed for q in stats], UNIT_JOBS)
    _put_sum(measurements, "stalled", [q.stalled for q in stats], UNIT_JOBS)
    _put_sum(measurements, "failed", [q.counts.get("failed") for q in stats], UNIT_JOBS)
    _put_sum(
        measurements, "paused", [None if q.paused is None else int(q.paused) for q in stats], UNIT_QUEUES
    )
    workers = [q.workers for q in stats if q.workers is not None]
    if workers:
        measurements["minWorkers"] = Measurement(min(workers), UNIT_WORKERS)
    text = list(notes)
    if missing:
        shown = ", ".join(repr(name) for name in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        text.insert(0, f"configured queue not found: {shown}{more}")
    return Observation(
        measurements=measurements,
        samples=samples,
        status=Status.WARN if missing else Status.PASS,
        output="; ".join(text),
    )


def _put_max(into: dict[str, Measurement], key: str, values: Sequence[float | None], unit: str) -> None:
    known = [v for v in values if v is not None]
    if known:
        into[key] = Measurement(max(known), unit)


def _put_sum(into: dict[str, Measurement], key: str, values: Sequence[int | None], unit: str) -> None:
    known = [v for v in values if v is not None]
    if known:
        into[key] = Measurement(sum(known), unit)


def cap_queues(names: Iterable[str], limit: int) -> tuple[list[str], int]:
    """Sorted queue names cut at ``limit`` (label cardinality), and how many were left out."""
    ordered = sorted(set(names))
    return ordered[:limit], max(0, len(ordered) - limit)


class RedisQueueCollector(Collector[Any]):
    """Plumbing shared by the Redis-based queue collectors: pool, target checks, error mapping."""

    measurements: ClassVar[tuple[str, ...]] = QUEUE_MEASUREMENTS

    component_type: ClassVar[str] = "component"
    critical_by_default: ClassVar[bool] = False  # a shared backlog must not take every instance out

    def __init__(self, check: CheckTarget, options: Any) -> None:
        super().__init__(check, options)
        self._client: aioredis.Redis | None = None
        self._shas: dict[str, str] = {}

    async def open(self) -> None:
        """Build the client and its small pool; redis-py connects on the first command."""
        if self._client is not None:
            return
        self._client = probe_client(self.check, REDIS_MAX_CONNECTIONS)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.collect() called before open()")
        return self._client

    def classify_error(self, exc: BaseException) -> Reason | None:
        return classify_redis_error(exc)

    def secrets(self) -> Sequence[str]:
        return url_passwords(self.check.target)

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        return validate_redis_target(target)

    async def run_scripts(
        self,
        script: str,
        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        tail: Sequence[Sequence[str]] = (),
        *,
        raw: bool = False,
    ) -> tuple[list[Any], list[Any]]:
        """``EVALSHA`` ``script`` once per (keys, args), then the ``tail`` commands, in one pipeline.

        One round trip per batch. redis-py's own pipeline scripts cost a ``SCRIPT EXISTS`` round
        trip per execute, so the SHA is cached here: loaded before its first use, and again when
        the server answers ``NOSCRIPT`` (restart, ``SCRIPT FLUSH``). Script errors raise; the tail's
        replies come back as they are, errors included, for the caller to judge. ``raw``: the
        script replies as bytes (a binary reply), not decoded. A tail command is its words
        (``("CLIENT", "LIST")``); redis-py applies its reply callback only to a command given as
        one string, so words come back as the server sent them.
        """
        if not calls and not tail:
            return [], []
        sha = self._shas.get(script)
        if sha is None:  # first use: load it first rather than send a whole batch to get NOSCRIPT back
            sha = self._shas[script] = str(await self.client.script_load(script))
        results = await self._pipeline(sha, calls, tail, raw)
        if not any(isinstance(r, NoScriptError) for r in results[: len(calls)]):
            return self._split(results, len(calls))
        sha = str(await self.client.script_load(script))  # Redis restarted or SCRIPT FLUSH
        self._shas[script] = sha
        return self._split(await self._pipeline(sha, calls, tail, raw), len(calls))

    async def _pipeline(
        self,
        sha: str,
        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        tail: Sequence[Sequence[str]],
        raw: bool,
    ) -> list[Any]:
        options = {NEVER_DECODE: True} if raw else {}
        async with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args, **options)
            for command in tail:
                pipe.execute_command(*command)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    @staticmethod
    def _split(results: list[Any], n: int) -> tuple[list[Any], list[Any]]:
        for result in results[:n]:
            if isinstance(result, Exception):
                raise result
        return results[:n], results[n:]


class KeyScan:
    """Bounded, resumable ``SCAN MATCH`` discovery whose result is cached between refreshes.

    A keyspace with millions of job keys takes many ``SCAN`` calls; at most ``max_calls`` run per
    probe, and an unfinished pass continues at the next probe from the saved cursor. Until the first
    pass completes, what was found so far is used.
    """

    def __init__(self, pattern: str, *, count: int, max_calls: int, interval: float) -> None:
        self.pattern = pattern
        self.count = count
        self.max_calls = max_calls
        self.interval = interval
        self.found: set[str] = set()
        self._partial: set[str] = set()
        self._cursor = 0
        self._refreshed_at: float | None = None
        self.calls = 0  # SCAN calls made by the last ``keys()``

    @property
    def complete(self) -> bool:
        return self._refreshed_at is not None

    async def keys(self, client: aioredis.Redis) -> set[str]:
        """Matching keys: the cached set, refreshed when older than ``interval``."""
        self.calls = 0
        now = time.monotonic()
        if self._refreshed_at is not None and now - self._refreshed_at < self.interval and self._cursor == 0:
            return self.found
        for _ in range(self.max_calls):
            self._cursor, batch = await client.scan(self._cursor, match=self.pattern, count=self.count)
            self.calls += 1
            self._partial.update(str(key) for key in batch)
            if self._cursor == 0:
                self.found, self._partial = self._partial, set()
                self._refreshed_at = time.monotonic()
                return self.found
        return self.found | self._partial


# --------------------------------------------------------------------------------------------------
# BullMQ

BULLMQ_STATES = (
    "wait",
    "paused",
    "active",
    "prioritized",
    "delayed",
    "waiting-children",
    "completed",
    "failed",
)
# Key suffixes the script reads under each queue's ``<prefix>:<queue>:``.
BULLMQ_KEYS = (*BULLMQ_STATES, "meta", "id", "metrics:completed", "metrics:failed")
BULLMQ_FIELDS = 16  # numbers per queue in the script's reply
DELAYED_SCORE_FACTOR = 0x1000  # getDelayedScore.lua: due_ms * 0x1000 + (counter & 0xfff)

# Read-only. KEYS: one "<prefix>:<queue>:" per queue of the chunk (BullMQ's own scripts take the
# queue's key prefix the same way). ARGV: overdue cut-off score (exclusive), active jobs to check.
# Returns a MessagePack array with one array of 16 integers per queue: exists (0 when neither meta
# nor id is there), wait, paused, active, prioritized, delayed, waiting-children, completed, failed,
# paused flag, oldest ready ms, overdue, earliest due ms (-1 when none is overdue: only then is it
# read), stalled, completed total, failed total; -1 where there is nothing. "0:..." entries are
# BullMQ <5 markers in the wait/paused/active lists.
# Why it is written this way (each redis.call costs about a microsecond of Redis's time, and Redis
# formats a Lua number as text with printf's float code): a job hash or a head is read only when its
# list is not empty, the overdue count only when the delayed set is not empty and its score only when
# something is overdue, the locks of the active jobs in one EXISTS (it counts each key that exists,
# so missing = keys - count), numeric arguments are strings, and the rows are packed as integers.
BULLMQ_QUEUE_LUA = """
local rcall = redis.call
local cutoff = "(" .. ARGV[1]
local scan = tonumber(ARGV[2])
local scanFrom = tostring(-scan)
local sub = string.sub
local function isMarker(id) return sub(id, 1, 2) == "0:" end
local function readyAt(base, id)
  local f = rcall("HMGET", base .. id, "timestamp", "delay")
  local ts = tonumber(f[1])
  if not ts then return -1 end
  return ts + (tonumber(f[2]) or 0)
end
-- a wait/paused list: its length less a trailing marker, and when its head became ready (-1: none)
local function listState(base, key)
  local n = rcall("LLEN", key)
  if n == 0 then return 0, -1 end
  local ids = rcall("LRANGE", key, "-2", "-1")
  if isMarker(ids[#ids]) then n = n - 1 end
  for i = #ids, 1, -1 do
    if not isMarker(ids[i]) then return n, readyAt(base, ids[i]) end
  end
  return n, -1
end
local missing = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0, -1, 0, -1, -1}
local rows = {}
for q = 1, #KEYS do
  local base = KEYS[q]
  local exists = rcall("EXISTS", base .. "meta")
  if exists == 0 then exists = rcall("EXISTS", base .. "id") end
  if exists == 0 then
    rows[q] = missing
  else
    local waiting, oldest = listState(base, base .. "wait")
    local paused, pausedAt = listState(base, base .. "paused")
    if pausedAt >= 0 and (oldest < 0 or pausedAt < oldest) then oldest = pausedAt end
    local prioritized = rcall("ZCARD", base .. "prioritized")
    if prioritized > 0 then
      local at = readyAt(base, rcall("ZRANGE", base .. "prioritized", "0", "0")[1])
      if at >= 0 and (oldest < 0 or at < oldest) then oldest = at end
    end
    local overdue, earliestDue = 0, -1
    local delayed = rcall("ZCARD", base .. "delayed")
    if delayed > 0 then
      overdue = rcall("ZCOUNT", base .. "delayed", "-inf", cutoff)
      if overdue > 0 then
        local first = rcall("ZRANGE", base .. "delayed", "0", "0", "WITHSCORES")
        earliestDue = math.floor(tonumber(first[2]) / 0x1000)
      end
    end
    local active, stalled = 0, 0
    if scan > 0 then
      local ids = rcall("LRANGE", base .. "active", scanFrom, "-1")
      active = #ids
      if active == scan then active = rcall("LLEN", base .. "active") end
      local locks = {}
      for _, id in ipairs(ids) do
        if not isMarker(id) then locks[#locks + 1] = base .. id .. ":lock" end
      end
      for i = 1, #locks, 1000 do
        local last = math.min(i + 999, #locks)
        stalled = stalled + (last - i + 1) - rcall("EXISTS", unpack(locks, i, last))
      end
    else
      active = rcall("LLEN", base .. "active")
    end
    rows[q] = {
      exists, waiting, paused, active, prioritized, delayed,
      rcall("ZCARD", base .. "waiting-children"), rcall("ZCARD", base .. "completed"),
      rcall("ZCARD", base .. "failed"),
      rcall("HEXISTS", base .. "meta", "paused"),
      oldest, overdue, earliestDue, stalled,
      tonumber(rcall("HGET", base .. "metrics:completed", "count")) or -1,
      tonumber(rcall("HGET", base .. "metrics:failed", "count")) or -1,
    }
  end
end
return cmsgpack.pack(rows)
"""


class BullMQOptions(DiscoveringQueueOptions, frozen=True):
    """Where BullMQ keeps its queues, and how much work one probe may do."""

    prefix: Annotated[str, Meta(min_length=1, description="BullMQ's key prefix (the prefix option)")] = "bull"
    overdue_grace_seconds: Annotated[
        float, Meta(ge=0, le=86_400, description="a delayed job due longer ago than this is overdue")
    ] = 5.0
    batch_size: Annotated[int, Meta(ge=1, le=10_000, description="queues per pipelined round trip")] = 1000
    queues_per_script: Annotated[
        int, Meta(ge=1, le=1000, description="queues per script call (bounds how long Redis is busy)")
    ] = 100
    max_active_scan: Annotated[
        int, Meta(ge=0, le=100_000, description="active jobs per queue checked for a lost lock")
    ] = 200
    count_workers: Annotated[bool, Meta(description="count worker connections with CLIENT LIST")] = True

    @field_validator("prefix")
    @classmethod
    def _no_glob(cls, value: str) -> str:
        if any(c in value for c in "*?[]\\") or not value.isprintable():
            raise ValueError("prefix must be printable and contain no SCAN pattern characters (* ? [ ] \\)")
        return value


def bullmq_key_prefix(prefix: str, queue: str) -> str:
    """The script's KEY for one queue: the prefix of all its keys, ``bull:emails:``."""
    return f"{prefix}:{queue}:"


def bullmq_args(now_ms: int, grace_ms: int, max_active_scan: int) -> list[str]:
    """The script's ARGV: overdue cut-off score (delayed jobs due before it), active jobs to check."""
    cutoff = (now_ms - grace_ms) * DELAYED_SCORE_FACTOR
    return [str(cutoff), str(max_active_scan)]


def decode_rows(reply: bytes) -> list[list[int]]:
    """One script reply (MessagePack) -> one row of numbers per queue, in KEYS order."""
    rows = msgspec.msgpack.decode(reply)
    if not isinstance(rows, list):
        raise ValueError(f"expected an array of rows from the BullMQ script, got {type(rows).__name__}")
    return rows


_CLIENT_NAME = re.compile(r" name=([^ \n]*)")


def client_names(client_list: str | bytes) -> list[str]:
    """The connection names in a ``CLIENT LIST`` reply, one per client.

    ``name=`` always follows ``id=`` and friends, and a name cannot hold a space; one regular
    expression over the text costs a twentieth of redis-py's parse of every field of every client
    (0.4 ms against 10.7 ms for 2,000 connections).
    """
    text = client_list.decode() if isinstance(client_list, bytes) else client_list
    return _CLIENT_NAME.findall(text)


def queue_from_meta_key(prefix: str, key: str) -> str | None:
    """``bull:emails:meta`` -> ``emails`` (queue names may contain ``:``); ``None`` if not a meta key."""
    head, tail = f"{prefix}:", ":meta"
    if not key.startswith(head) or not key.endswith(tail) or len(key) <= len(head) + len(tail):
        return None
    return key[len(head) : -len(tail)]


def worker_client_names(prefix: str, queue: str) -> tuple[str, ...]:
    """Connection names BullMQ workers of ``queue`` use: Node (base64 name) and Python (plain name)."""
    encoded = base64.b64encode(queue.encode()).decode()
    return tuple(dict.fromkeys((f"{prefix}:{encoded}", f"{prefix}:{queue}")))


def worker_owners(prefix: str, queues: Iterable[str]) -> dict[str, str]:
    """Worker connection name -> its queue, for every queue of ``queues``."""
    return {name: queue for queue in queues for name in worker_client_names(prefix, queue)}


def count_workers(
    client_names: Iterable[str], prefix: str, queues: Iterable[str], owners: dict[str, str] | None = None
) -> dict[str, int]:
    """Workers per queue from ``CLIENT LIST`` names: ``<base>`` or ``<base>:w:<worker name>``.

    ``owners``: ``worker_owners(prefix, queues)`` when the caller keeps it between probes.
    """
    owner = worker_owners(prefix, queues) if owners is None else owners
    counts = dict.fromkeys(owner.values(), 0)
    for name in client_names:
        queue = owner.get(name)
        start = name.find(":w:")
        while queue is None and start > 0:
            queue = owner.get(name[:start])
            start = name.find(":w:", start + 1)
        if queue is not None:
            counts[queue] += 1
    return counts


def bullmq_ages(values: Sequence[int], now_ms: int) -> tuple[float, float]:
    """The figures of a queue's row that change with the clock alone: the oldest waiting job's age
    and how long ago the most overdue delayed job fell due, in seconds."""
    oldest_ms, overdue, earliest_due_ms = values[10], values[11], values[12]
    oldest_age = max(0.0, (now_ms - oldest_ms) / 1000) if oldest_ms >= 0 else 0.0
    overdue_seconds = (
        max(0.0, (now_ms - earliest_due_ms) / 1000) if overdue > 0 and earliest_due_ms >= 0 else 0.0
    )
    return oldest_age, overdue_seconds


def bullmq_stats(queue: str, values: Sequence[int], now_ms: int) -> QueueStats | None:
    """One queue's row of the script's reply -> ``QueueStats``; ``None`` when the queue does not exist."""
    if len(values) != BULLMQ_FIELDS:
        raise ValueError(f"expected {BULLMQ_FIELDS} numbers for queue {queue!r}, got {len(values)}")
    if values[0] == 0:
        return None
    counts = dict(zip(BULLMQ_STATES, values[1:9], strict=True))
    paused_flag, overdue, stalled, completed_total, failed_total = (
        values[9], values[11], values[13], values[14], values[15]
    )  # fmt: skip
    oldest_age, overdue_seconds = bullmq_ages(values, now_ms)
    return QueueStats(
        name=queue,
        counts=counts,
        backlog=counts["wait"] + counts["paused"] + counts["prioritized"],
        oldest_waiting_age=oldest_age,
        overdue_delayed=overdue,
        overdue_seconds=overdue_seconds,
        stalled=stalled,
        paused=bool(paused_flag),
        completed_total=completed_total if completed_total >= 0 else None,
        failed_total=failed_total if failed_total >= 0 else None,
    )


# Where ``queue_samples`` puts the figures that change without the row changing: after the eight
# counts (every BullMQ state is counted), the age, the overdue count, the overdue seconds, stalled,
# paused, and the workers when they are counted. tests/unit/collectors hold these to queue_samples.
_AGE_SLOT = len(BULLMQ_STATES)
_OVERDUE_SECONDS_SLOT = _AGE_SLOT + 2
_WORKERS_SLOT = _AGE_SLOT + 5


@dataclass(slots=True)
class SeenQueue:
    """One queue as the last probe measured it: the script's row, its figures and their samples.

    At the next probe a queue whose row is unchanged (nothing was added, moved or finished) keeps
    its samples, and only the figures that move with the clock (ages) or come from elsewhere
    (workers) are redone; a changed row replaces only the samples whose value changed. Building 16
    samples per queue anew was three quarters of the probe's client CPU at 1,000 queues.
    """

    row: list[int]
    stats: QueueStats
    samples: list[Sample]

    @classmethod
    def measure(cls, queue: str, row: list[int], now_ms: int, workers: int | None) -> SeenQueue | None:
        """A queue measured afresh; ``None`` when it does not exist."""
        stats = bullmq_stats(queue, row, now_ms)
        if stats is None:
            return None
        stats.workers = workers
        return cls(row, stats, queue_samples(stats))

    def update(self, row: list[int], now_ms: int, workers: int | None) -> bool:
        """The queue at a later probe; ``False`` when it no longer exists."""
        if row != self.row:
            return self._changed(row, now_ms, workers)
        stats, samples = self.stats, self.samples
        if (workers is None) != (stats.workers is None):  # the workers series comes or goes
            stats.oldest_waiting_age, stats.overdue_seconds = bullmq_ages(row, now_ms)
            stats.workers = workers
            self.samples = queue_samples(stats)
            return True
        age, overdue_seconds = bullmq_ages(row, now_ms)
        labels = samples[_AGE_SLOT].label_values
        if age != stats.oldest_waiting_age:
            stats.oldest_waiting_age = age
            samples[_AGE_SLOT] = Sample(QUEUE_OLDEST_WAITING_AGE, age, labels)
        if overdue_seconds != stats.overdue_seconds:
            stats.overdue_seconds = overdue_seconds
            samples[_OVERDUE_SECONDS_SLOT] = Sample(QUEUE_OVERDUE_SECONDS, overdue_seconds, labels)
        if workers is not None and workers != stats.workers:
            stats.workers = workers
            samples[_WORKERS_SLOT] = Sample(QUEUE_WORKERS, float(workers), labels)
        return True

    def _changed(self, row: list[int], now_ms: int, workers: int | None) -> bool:
        """A new row: new figures, and a new sample wherever a value differs from the last one."""
        stats = bullmq_stats(self.stats.name, row, now_ms)
        if stats is None:
            return False
        stats.workers = workers
        old, self.row, self.stats = self.stats, row, stats
        optional = (stats.workers is None, stats.completed_total is None, stats.failed_total is None)
        if optional != (old.workers is None, old.completed_total is None, old.failed_total is None):
            self.samples = queue_samples(stats)  # a series comes or goes: the slots move
            return True
        samples = self.samples
        for slot, value in enumerate(_sample_values(row, stats)):
            sample = samples[slot]
            if sample.value != value:
                samples[slot] = Sample(sample.spec, value, sample.label_values)
        return True


def _sample_values(row: Sequence[int], stats: QueueStats) -> list[float]:
    """The values of ``queue_samples(stats)`` in its order, for the queue whose row is ``row``."""
    values = [float(n) for n in row[1:9]]  # the counts, in BULLMQ_STATES order
    values += (
        stats.oldest_waiting_age or 0.0,
        float(row[11]),  # overdue
        stats.overdue_seconds or 0.0,
        float(row[13]),  # stalled
        float(bool(row[9])),  # paused
    )
    values += [float(v) for v in (stats.workers, stats.completed_total, stats.failed_total) if v is not None]
    return values


class BullMQCollector(RedisQueueCollector):
    """Measures every BullMQ queue under a prefix (or the configured ones) on one Redis."""

    kind: ClassVar[str] = "bullmq"
    options_model: ClassVar[type[CollectorOptions]] = BullMQOptions
    options: BullMQOptions

    def __init__(self, check: CheckTarget, options: BullMQOptions) -> None:
        super().__init__(check, options)
        self._scan = options.key_scan(f"{options.prefix}:*:meta")
        self._client_list_denied = False
        # Derived from the discovered key set, reused while discovery returns the same set object
        # (between refreshes): sorting 1,000 names and their worker connection names every probe
        # was a tenth of the probe's CPU.
        self._names_of: tuple[set[str] | None, list[str], int] = (None, [], 0)
        self._owners: tuple[Sequence[str] | None, dict[str, str]] = (None, {})
        self._seen: dict[str, SeenQueue] = {}  # by queue, as the last probe measured it

    async def collect(self) -> Observation:
        opts = self.options
        names, notes = await self._queue_names()
        now_ms = int(time.time() * 1000)
        stats: list[QueueStats] = []
        samples: list[Sample] = []
        missing: list[str] = []
        workers: dict[str, int] | None = None
        last, seen = self._seen, {}
        for start in range(0, len(names), opts.batch_size):
            batch = names[start : start + opts.batch_size]
            rows, batch_workers = await self._measure(batch, now_ms, count_for=names if start == 0 else ())
            if start == 0:  # CLIENT LIST comes with the first batch, for every queue
                workers = batch_workers
            for queue, row in zip(batch, rows, strict=True):
                queue_workers = None if workers is None else workers.get(queue, 0)
                known = last.get(queue)
                if known is None:
                    known = SeenQueue.measure(queue, row, now_ms, queue_workers)
                elif not known.update(row, now_ms, queue_workers):
                    known = None
                if known is None:
                    missing.append(queue)
                    continue
                seen[queue] = known
                stats.append(known.stats)
                samples += known.samples
        self._seen = seen
        # A discovered queue can vanish between SCAN and the probe (obliterated): not a finding.
        return queue_observation(stats, missing=missing if opts.queues else (), notes=notes, samples=samples)

    async def _queue_names(self) -> tuple[list[str], list[str]]:
        """The configured queues, else the discovered ones; capped, with notes on what was left out."""
        opts = self.options
        notes: list[str] = []
        if opts.queues:
            names, left_out = cap_queues(opts.queues, opts.max_queues)
        else:
            found = await self._scan.keys(self.client)
            known_for, names, left_out = self._names_of
            if found is not known_for:
                discovered = (queue_from_meta_key(opts.prefix, key) for key in found)
                names, left_out = cap_queues((n for n in discovered if n), opts.max_queues)
                self._names_of = (found, names, left_out)
            if not self._scan.complete:
                notes.append("queue discovery still scanning")
        if left_out:
            notes.append(f"{left_out} queues over max_queues not measured")
        return names, notes

    async def _measure(
        self, batch: Sequence[str], now_ms: int, *, count_for: Sequence[str]
    ) -> tuple[list[list[int]], dict[str, int] | None]:
        """The script for every queue of ``batch`` (and ``CLIENT LIST`` once) in one round trip."""
        opts = self.options
        args = bullmq_args(now_ms, int(opts.overdue_grace_seconds * 1000), opts.max_active_scan)
        step = opts.queues_per_script
        calls = [
            ([bullmq_key_prefix(opts.prefix, q) for q in batch[i : i + step]], args)
            for i in range(0, len(batch), step)
        ]
        want_workers = bool(count_for) and opts.count_workers and not self._client_list_denied
        tail_commands = (("CLIENT", "LIST"),) if want_workers else ()
        replies, tail = await self.run_scripts(BULLMQ_QUEUE_LUA, calls, tail_commands, raw=True)
        rows = [row for reply in replies for row in decode_rows(reply)]
        if len(rows) != len(batch):
            raise ValueError(f"the BullMQ script measured {len(rows)} of {len(batch)} queues")
        if not tail:
            return rows, None
        if isinstance(tail[0], Exception):
            self._client_list_denied = True  # NOPERM, or a provider without CLIENT LIST: stop asking
            return rows, None
        names = client_names(tail[0])
        owners_for, owners = self._owners
        if owners_for is not count_for:
            owners = worker_owners(opts.prefix, count_for)
            self._owners = (count_for, owners)
        return rows, count_workers(names, opts.prefix, count_for, owners)
