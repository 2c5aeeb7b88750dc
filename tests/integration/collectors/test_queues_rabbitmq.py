"""RabbitMQ collector against the broker on 127.0.0.1:5672 (guest/guest), driven by a real AMQP client.

Every test uses queues with unique names and deletes them afterwards. Without a broker the tests
skip (they fail under ``CI=true``); ``RABBITMQ_URL`` points them at another broker.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiormq
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage

from collectors.base import CheckTarget, Observation, Reason, Status
from collectors.rabbitmq import RabbitMQCollector, RabbitMQOptions
from sidecar.probing.probe import Probe
from sidecar.probing.settings import CheckConfig
from tests.servers import free_port, port_open, skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
async def channel() -> AsyncIterator[AbstractChannel]:
    host_port = URL.rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    if not port_open(host, int(port or 5672)):
        skip_or_fail(f"no RabbitMQ broker answers at {host_port}")
    conn = aiormq.Connection(URL)
    await conn.connect()
    try:
        yield await conn.channel()
    finally:
        await conn.close()


@pytest.fixture
async def queue_names(channel: AbstractChannel) -> AsyncIterator[list[str]]:
    """Unique queue names; every one is deleted afterwards."""
    names = [f"sidecar-test-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    yield names
    for name in names:
        await channel.queue_delete(name)


def collector(queues: list[str], url: str = URL) -> RabbitMQCollector:
    return RabbitMQCollector(CheckTarget("mq", url, 5.0), RabbitMQOptions(queues=queues))


def series(obs: Observation, name: str) -> dict[tuple[str, ...], float]:
    return {s.label_values: s.value for s in obs.samples if s.spec.name == name}


async def publish(channel: AbstractChannel, queue: str, count: int) -> None:
    for i in range(count):
        await channel.basic_publish(f"message {i}".encode(), routing_key=queue)


async def test_ready_messages_and_consumers(channel: AbstractChannel, queue_names: list[str]) -> None:
    jobs, _ = queue_names
    await channel.queue_declare(jobs, durable=False)
    await publish(channel, jobs, 4)
    mq = collector([jobs])
    await mq.open()
    try:
        idle = await mq.collect()
        assert series(idle, "sidecar_queue_jobs") == {(jobs, "wait"): 4}
        assert series(idle, "sidecar_queue_workers") == {(jobs,): 0}
        assert idle.measurements["minWorkers"].value == 0
        assert idle.info["product"] == "RabbitMQ"

        delivered: list[DeliveredMessage] = []
        await channel.basic_qos(prefetch_count=1)
        consumer = await channel.basic_consume(jobs, delivered.append, no_ack=False)
        async with asyncio.timeout(10):
            while not delivered:
                await asyncio.sleep(0.05)
        busy = await mq.collect()
        # one message is with the consumer, unacknowledged: three are ready
        assert series(busy, "sidecar_queue_jobs") == {(jobs, "wait"): 3}
        assert series(busy, "sidecar_queue_workers") == {(jobs,): 1}
        assert busy.measurements["backlog"].value == 3

        await channel.basic_cancel(consumer.consumer_tag)
        assert delivered[0].delivery_tag is not None
        await channel.basic_ack(delivered[0].delivery_tag)
    finally:
        await mq.close()


async def test_missing_queue_is_reported_and_connection_survives(
    channel: AbstractChannel, queue_names: list[str]
) -> None:
    jobs, ghost = queue_names
    await channel.queue_declare(jobs)
    await publish(channel, jobs, 2)
    mq = collector([ghost, jobs])  # the 404 on the first closes the channel: the second still works
    await mq.open()
    try:
        first = await mq.collect()
        connection = mq._connection
        assert first.status is Status.WARN
        assert first.output == f"configured queue not found: {ghost!r}"
        assert first.measurements["missingQueues"].value == 1
        assert series(first, "sidecar_queue_jobs") == {(jobs, "wait"): 2}
        second = await mq.collect()
        assert mq._connection is connection and connection is not None and not connection.is_closed
        assert series(second, "sidecar_queue_jobs") == {(jobs, "wait"): 2}

        await connection.close()  # the broker or the network dropped us: the next probe reconnects
        third = await mq.collect()
        assert mq._connection is not connection
        assert series(third, "sidecar_queue_jobs") == {(jobs, "wait"): 2}
    finally:
        await mq.close()


async def probe_once(config: CheckConfig) -> Any:
    probe = Probe(config)
    await probe.collector.open()
    try:
        return await probe.run()
    finally:
        await probe.collector.close()


async def test_probe_fails_when_broker_unreachable_or_refuses(
    channel: AbstractChannel, queue_names: list[str]
) -> None:
    jobs, _ = queue_names
    await channel.queue_declare(jobs)
    await publish(channel, jobs, 3)
    ok = await probe_once(
        CheckConfig(name="mq", kind="rabbitmq", target=URL, options={"queues": [jobs]}, warn={"backlog": 2})
    )
    assert (ok.status, ok.output) == (Status.WARN, "backlog 3 >2")

    down_url = f"amqp://guest:hunter22@127.0.0.1:{free_port()}/"
    down = await probe_once(
        CheckConfig(name="mq", kind="rabbitmq", target=down_url, options={"queues": [jobs]})
    )
    assert (down.status, down.reason) == (Status.FAIL, Reason.CONNECT)
    assert "hunter22" not in down.output

    wrong = URL.replace("guest:guest@", "guest:not-the-password@")
    refused = await probe_once(
        CheckConfig(name="mq", kind="rabbitmq", target=wrong, options={"queues": [jobs]})
    )
    assert (refused.status, refused.reason) == (Status.FAIL, Reason.AUTH)
    assert "not-the-password" not in refused.output
