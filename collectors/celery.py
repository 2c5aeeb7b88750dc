"""Celery on a Redis broker: queue lengths (priority sub-queues included) and unacknowledged messages.

Reads kombu's Redis transport layout (``kombu/transport/redis.py``), never Celery's API:

- A queue is a list named after it; a message with a priority goes to the sub-queue
  ``<queue>\\x06\\x16<step>`` for the steps 3, 6 and 9 (``PRIORITY_STEPS``, ``sep``, ``_q_for_pri``),
  so ``LLEN <queue>`` alone misses every prioritised task.
- Declared queues are members ``<routing key>\\x06\\x16<pattern>\\x06\\x16<queue>`` of the set
  ``_kombu.binding.<exchange>``; that is how queues are discovered when none are configured
  (Celery's own ``*.pidbox`` control queues and ``celeryev`` event queues are left out).
- Messages a worker has fetched but not acknowledged sit in the hash ``unacked`` and the sorted set
  ``unacked_index`` scored by delivery time, for the whole broker database. One older than the
  transport's ``visibility_timeout`` is held by a worker that is gone and waits to be redelivered:
  that is this collector's ``stalled``.
- Every key carries the transport's ``global_keyprefix`` (option ``key_prefix``).

Celery messages carry no enqueue time (protocol 2 headers have none), so there is no job age here,
and ETA/countdown tasks wait inside workers, not in Redis, so there are no overdue delayed jobs.
One probe is one pipelined round trip (two while discovering queues).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

from collectors.base import CheckTarget, CollectorOptions, Measurement, MetricSpec, Observation, Sample
from collectors.bullmq import (
    QUEUE_MEASUREMENTS,
    UNIT_JOBS,
    UNIT_SECONDS,
    DiscoveringQueueOptions,
    QueueStats,
    RedisQueueCollector,
    cap_queues,
    queue_observation,
)
from sidecar.core.settings_model import Meta, field, field_validator

SEP = "\x06\x16"  # kombu.transport.redis.Channel.sep
PRIORITY_STEPS = (0, 3, 6, 9)  # kombu.transport.redis.PRIORITY_STEPS
BINDING_PREFIX = "_kombu.binding."  # Channel.keyprefix_queue without its %s
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
EVENT_EXCHANGE = "celeryev"
CONTROL_SUFFIX = ".pidbox"

CELERY_PRIORITY_JOBS = MetricSpec(
    "sidecar_celery_queue_priority_jobs",
    "Celery tasks waiting in a queue's priority sub-queue (kombu priority step; 0 is the plain list).",
    labels=("queue", "priority"),
)
CELERY_UNACKED = MetricSpec(
    "sidecar_celery_unacked_messages",
    "Celery messages fetched by workers and not yet acknowledged, across the broker database.",
)
CELERY_OLDEST_UNACKED_AGE = MetricSpec(
    "sidecar_celery_oldest_unacked_message_age_seconds",
    "Age of the oldest unacknowledged Celery message, in seconds; 0 when there is none.",
)
METRICS: tuple[MetricSpec, ...] = (CELERY_PRIORITY_JOBS, CELERY_UNACKED, CELERY_OLDEST_UNACKED_AGE)


class CeleryOptions(DiscoveringQueueOptions, frozen=True):
    """How kombu's Redis transport is configured (``broker_transport_options``)."""

    key_prefix: Annotated[str, Meta(description="the transport's global_keyprefix")] = ""
    priority_steps: Annotated[list[int], Meta(description="the transport's priority_steps")] = field(
        default_factory=lambda: list(PRIORITY_STEPS)
    )
    visibility_timeout_seconds: Annotated[
        float, Meta(le=31_536_000, gt=0, description="the transport's visibility_timeout")
    ] = 3600.0

    @field_validator("priority_steps")
    @classmethod
    def _valid_steps(cls, value: list[int]) -> list[int]:
        if not value or any(step < 0 or step > 255 for step in value) or len(set(value)) != len(value):
            raise ValueError("priority_steps are distinct numbers from 0 to 255, e.g. [0, 3, 6, 9]")
        return sorted(value)

    @field_validator("key_prefix")
    @classmethod
    def _no_glob(cls, value: str) -> str:
        if any(c in value for c in "*?[]\\"):
            raise ValueError("key_prefix must contain no SCAN pattern characters (* ? [ ] \\)")
        return value


def priority_key(prefix: str, queue: str, step: int) -> str:
    """The list holding ``queue``'s messages of priority ``step`` (kombu's ``_q_for_pri``)."""
    return f"{prefix}{queue}{SEP}{step}" if step else f"{prefix}{queue}"


def queues_in_binding(exchange: str, members: Sequence[str]) -> list[str]:
    """Queue names bound in ``_kombu.binding.<exchange>``, without Celery's control/event queues."""
    if exchange == EVENT_EXCHANGE or exchange.endswith(CONTROL_SUFFIX):
        return []
    names = []
    for member in members:
        parts = member.split(SEP)
        if len(parts) != 3:
            continue
        queue = parts[2]
        if queue and not queue.endswith(CONTROL_SUFFIX) and not queue.startswith(EVENT_EXCHANGE + "."):
            names.append(queue)
    return names


class CeleryCollector(RedisQueueCollector):
    """Measures Celery queues on one Redis broker database."""

    kind: ClassVar[str] = "celery"
    measurements: ClassVar[tuple[str, ...]] = (*QUEUE_MEASUREMENTS, "unacked", "oldestUnackedAge")
    options_model: ClassVar[type[CollectorOptions]] = CeleryOptions
    options: CeleryOptions

    def __init__(self, check: CheckTarget, options: CeleryOptions) -> None:
        super().__init__(check, options)
        self._scan = options.key_scan(f"{options.key_prefix}{BINDING_PREFIX}*")

    async def collect(self) -> Observation:
        opts = self.options
        notes: list[str] = []
        if opts.queues:
            names, left_out = cap_queues(opts.queues, opts.max_queues)
        else:
            names, left_out = cap_queues(await self._discover(), opts.max_queues)
            if not self._scan.complete:
                notes.append("queue discovery still scanning")
        if left_out:
            notes.append(f"{left_out} queues over max_queues not measured")
        now = time.time()
        steps = opts.priority_steps
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in names:
                for step in steps:
                    pipe.llen(priority_key(opts.key_prefix, queue, step))
            pipe.hlen(opts.key_prefix + UNACKED)
            pipe.zrange(opts.key_prefix + UNACKED_INDEX, 0, 0, withscores=True)
            pipe.zcount(opts.key_prefix + UNACKED_INDEX, "-inf", now - opts.visibility_timeout_seconds)
            replies: list[Any] = await pipe.execute()
        lengths, (unacked, first_unacked, stalled) = replies[:-3], replies[-3:]
        stats, samples = [], []
        for index, queue in enumerate(names):
            per_step = [int(n) for n in lengths[index * len(steps) : (index + 1) * len(steps)]]
            total = sum(per_step)
            stats.append(QueueStats(name=queue, counts={"wait": total}, backlog=total))
            samples += [
                Sample(CELERY_PRIORITY_JOBS, float(n), (queue, str(step)))
                for step, n in zip(steps, per_step, strict=True)
            ]
        observation = queue_observation(stats, notes=notes)
        oldest = max(0.0, now - float(first_unacked[0][1])) if first_unacked else 0.0
        observation.samples += [
            *samples,
            Sample(CELERY_UNACKED, float(unacked)),
            Sample(CELERY_OLDEST_UNACKED_AGE, oldest),
        ]
        observation.measurements["unacked"] = Measurement(int(unacked), UNIT_JOBS)
        observation.measurements["oldestUnackedAge"] = Measurement(oldest, UNIT_SECONDS)
        observation.measurements["stalled"] = Measurement(int(stalled), UNIT_JOBS)
        return observation

    async def _discover(self) -> list[str]:
        """Queues declared on the broker, from kombu's binding sets (one extra round trip)."""
        prefix = self.options.key_prefix + BINDING_PREFIX
        keys = sorted(await self._scan.keys(self.client))
        if not keys:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(key)
            members: list[Any] = await pipe.execute()
        names: set[str] = set()
        for key, bound in zip(keys, members, strict=True):
            names.update(queues_in_binding(key[len(prefix) :], sorted(str(m) for m in bound)))
        return sorted(names)
