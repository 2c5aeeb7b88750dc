"""RabbitMQ over AMQP 0-9-1: messages ready and consumers of each configured queue, and the connection.

Each probe does a passive ``queue.declare`` per configured queue: the broker answers with the queue's
ready message count and consumer count without creating or changing anything. AMQP offers no way to
list queues, so queues must be configured (the management HTTP API could list them, but needs the
plugin and other credentials).

A passive declare of a queue that does not exist is answered with ``404 NOT_FOUND``, which closes the
channel (not the connection): the queue is reported missing, a new channel is opened for the next
queue, and the connection stays up for the next probe. The connection is kept between probes (one
TCP and AMQP handshake, not one per probe) and reopened when the broker or the network closed it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Annotated, ClassVar
from urllib.parse import unquote, urlsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import (
    AMQPConnectionError,
    AMQPError,
    AuthenticationError,
    ChannelAccessRefused,
    ChannelClosed,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ConnectionNotAllowed,
    IncompatibleProtocolError,
    ProbableAuthenticationError,
)

from collectors.base import (
    CheckTarget,
    Collector,
    CollectorOptions,
    Observation,
    Reason,
    Status,
)
from collectors.bullmq import QUEUE_MEASUREMENTS, QueueOptions, QueueStats, cap_queues, queue_observation
from sidecar.core.settings_model import Meta

SCHEMES = ("amqp", "amqps")
EXAMPLE_TARGET = "amqp://user:password@rabbitmq.internal:5672/vhost"

# aiormq exception -> reason, first match wins, so subclasses come before their bases
ERROR_REASONS: tuple[tuple[tuple[type[BaseException], ...], Reason], ...] = (
    (
        (AuthenticationError, ProbableAuthenticationError, ConnectionNotAllowed, ChannelAccessRefused),
        Reason.AUTH,
    ),
    ((IncompatibleProtocolError,), Reason.PROTOCOL),
    ((AMQPConnectionError, ConnectionError, OSError), Reason.CONNECT),
    ((AMQPError,), Reason.PROTOCOL),
)


class RabbitMQOptions(QueueOptions, frozen=True):
    """The queues to measure; AMQP cannot list them, so at least one is required."""

    queues: Annotated[list[str], Meta(min_length=1, description="queue names to measure (passive declare)")]


class RabbitMQCollector(Collector[RabbitMQOptions]):
    """Keeps one AMQP connection and measures the configured queues through it."""

    kind: ClassVar[str] = "rabbitmq"
    measurements: ClassVar[tuple[str, ...]] = QUEUE_MEASUREMENTS
    options_model: ClassVar[type[CollectorOptions]] = RabbitMQOptions
    component_type: ClassVar[str] = "component"
    critical_by_default: ClassVar[bool] = False  # a shared backlog must not take every instance out

    def __init__(self, check: CheckTarget, options: RabbitMQOptions) -> None:
        super().__init__(check, options)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Nothing to prepare: the connection is made by the first probe, so a broker that is down at
        start-up is a failed probe, not a failed start."""

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def collect(self) -> Observation:
        names, left_out = cap_queues(self.options.queues, self.options.max_queues)
        connection = await self._connect()
        stats: list[QueueStats] = []
        missing: list[str] = []
        refused: list[str] = []
        for queue in names:
            channel = await self._open_channel(connection)
            try:
                declared = await channel.queue_declare(queue, passive=True)
            except ChannelNotFoundEntity:
                missing.append(queue)
                continue
            except (ChannelAccessRefused, ChannelLockedResource) as exc:  # 403, or exclusive elsewhere
                refused.append(f"queue {queue!r} cannot be inspected: {exc_reply_text(exc)}")
                continue
            ready = int(declared.message_count or 0) if declared is not None else 0
            consumers = int(declared.consumer_count or 0) if declared is not None else 0
            stats.append(QueueStats(name=queue, counts={"wait": ready}, backlog=ready, workers=consumers))
        notes = [*refused, *([f"{left_out} queues over max_queues not measured"] if left_out else [])]
        observation = queue_observation(stats, missing=missing, notes=notes)
        if refused:
            observation.status = Status.worst([observation.status, Status.WARN])
        observation.info.update(server_identity(connection))
        return observation

    async def _connect(self) -> AbstractConnection:
        """The open connection, or a new one when there is none or the broker closed it."""
        connection = self._connection
        if connection is not None and not connection.is_closed:
            return connection
        self._connection = self._channel = None
        connection = aiormq.Connection(self.check.target or "")
        try:
            await connection.connect()
        except BaseException:
            self._close_later(connection)  # a timeout cancels us mid-handshake: never leak the socket
            raise
        self._connection = connection
        return connection

    async def _open_channel(self, connection: AbstractConnection) -> AbstractChannel:
        """The probe's channel, reopened after a ``404`` closed the previous one."""
        channel = self._channel
        if channel is None or channel.is_closed:
            channel = await connection.channel(publisher_confirms=False)
            self._channel = channel
        return channel

    def _close_later(self, connection: AbstractConnection) -> None:
        task = asyncio.get_running_loop().create_task(_quiet_close(connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def classify_error(self, exc: BaseException) -> Reason | None:
        for types, reason in ERROR_REASONS:
            if isinstance(exc, types):
                return reason
        return None

    def secrets(self) -> Sequence[str]:
        return amqp_passwords(self.check.target)

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        return validate_amqp_target(target)


async def _quiet_close(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), timeout=5)


def exc_reply_text(exc: ChannelClosed) -> str:
    """The broker's reply text of a channel close (``NOT_FOUND - no queue 'x' in vhost '/'``)."""
    args = [str(a) for a in exc.args if isinstance(a, str | int)]
    return " ".join(args) or type(exc).__name__


def server_identity(connection: AbstractConnection) -> dict[str, str]:
    """Product and version the broker announced in ``connection.start``."""
    properties = getattr(connection, "server_properties", None) or {}
    identity = {}
    for key in ("product", "version"):
        value = properties.get(key)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if value:
            identity[key] = str(value)
    return identity


def amqp_passwords(url: str | None) -> tuple[str, ...]:
    """The password in an AMQP URL, decoded and as written."""
    if not url:
        return ()
    password = urlsplit(url).password
    return tuple(dict.fromkeys(p for p in (password, unquote(password or "")) if p))


def validate_amqp_target(target: str | None) -> str:
    """Accept ``amqp://`` and ``amqps://`` URLs with a host; say how to fix anything else."""
    if not target:
        raise ValueError(f"a rabbitmq check needs a target URL, e.g. {EXAMPLE_TARGET}")
    parts = urlsplit(target)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"rabbitmq target must start with amqp:// or amqps://, not {parts.scheme or 'nothing'}://; "
            f"e.g. {EXAMPLE_TARGET}"
        )
    if not parts.hostname:
        raise ValueError(f"rabbitmq target needs a host, e.g. {EXAMPLE_TARGET}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ValueError(f"rabbitmq target has an invalid port; use 1-65535, e.g. {EXAMPLE_TARGET}") from None
    return target
