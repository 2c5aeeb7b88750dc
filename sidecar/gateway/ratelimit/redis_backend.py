"""Shared rate-limit state in Redis: one Lua script, one round trip per decision, no task per request.

Why a small RESP client on an ``asyncio.Protocol`` instead of ``redis.asyncio``: the gateway's hot
path is callbacks, not coroutines. With redis-py every decision would need a task and a future (and
its connection pool's locks); here a decision is one ``EVALSHA`` appended to the write batch of the
current loop iteration, and its reply (replies come in order) calls the waiting request back. All
decisions made in one loop iteration leave in one write, so under load they are pipelined for free.

The script does the whole decision atomically with the Redis server's clock (``TIME``), so every
replica sees the same windows whatever its own clock says; each key is one hash with a TTL (two
windows for the sliding window, the time to refill for the token bucket). ``EVALSHA`` falls back to
``EVAL`` once on ``NOSCRIPT`` (the script is also loaded when a connection opens).

Failures never stall requests: each decision has a deadline (``timeout``, 50 ms by default); past it,
or when the connection is lost or refused, every waiting decision is answered with an error (the
rule's ``on_redis_error`` decides open or closed), the connection is dropped and reconnecting waits
a back-off (0.1 s doubling to 2 s) during which decisions fail at once instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import ssl
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

from sidecar.core.redaction import mask_url
from sidecar.gateway.ratelimit.settings import RateLimitRedis, RedisAddress, parse_redis_url
from sidecar.gateway.write_batch import WriteBatch

log = logging.getLogger("sidecar.gateway.ratelimit")

# KEYS[1] the key's state hash; ARGV: op (0 check and spend, 1 check only, 2 spend only), algorithm
# ("s" sliding window, "t" token bucket), limit, window (ms), burst, and (tests only) the time in ms.
# Returns {allowed 1/0, remaining, reset ms, retry-after ms}. Same arithmetic as local.py.
SCRIPT = """
local key = KEYS[1]
local op = tonumber(ARGV[1])
local limit = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local now
if ARGV[6] then
  now = tonumber(ARGV[6])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local allowed = 1
local remaining, reset, retry
if ARGV[2] == 's' then
  local index = math.floor(now / window)
  local st = redis.call('HMGET', key, 'w', 'c', 'p')
  local w = tonumber(st[1])
  local c = tonumber(st[2]) or 0
  local p = tonumber(st[3]) or 0
  if w == index - 1 then
    p = c
    c = 0
  elseif w ~= index then
    p = 0
    c = 0
  end
  local elapsed = now - index * window
  local estimate = p * (1 - elapsed / window) + c
  if op ~= 2 and estimate + 1 > limit + 1e-9 then allowed = 0 end
  if allowed == 1 and op ~= 1 then
    c = c + 1
    estimate = estimate + 1
    redis.call('HSET', key, 'w', index, 'c', c, 'p', p)
    redis.call('PEXPIRE', key, math.ceil(2 * window - elapsed))
  end
  remaining = math.max(0, math.floor(limit - estimate))
  reset = math.ceil(window - elapsed)
  retry = 0
  if allowed == 0 then
    local wait
    if c + 1 <= limit then
      wait = window * (1 - (limit - c - 1) / p) - elapsed
    else
      wait = window - elapsed + math.max(0, window * (1 - (limit - 1) / c))
    end
    retry = math.ceil(math.max(wait, 0))
  end
else
  local burst = tonumber(ARGV[5])
  local rate = limit / window
  local st = redis.call('HMGET', key, 'k', 't')
  local tokens = tonumber(st[1])
  local last = tonumber(st[2])
  if tokens == nil or last == nil then
    tokens = burst
    last = now
  end
  if now > last then tokens = math.min(burst, tokens + (now - last) * rate) end
  if op ~= 2 and tokens < 1 - 1e-9 then allowed = 0 end
  if allowed == 1 and op ~= 1 then
    tokens = math.max(tokens - 1, -burst)
    redis.call('HSET', key, 'k', tokens, 't', now)
    redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate) + 1000)
  end
  remaining = math.max(0, math.floor(tokens))
  reset = math.ceil((burst - tokens) / rate)
  retry = 0
  if allowed == 0 then retry = math.ceil((1 - tokens) / rate) end
end
return {allowed, remaining, reset, retry}
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest().encode()
EVALSHA_HEAD = b"*9\r\n$7\r\nEVALSHA\r\n$40\r\n" + SCRIPT_SHA + b"\r\n$1\r\n1\r\n"
EVAL_HEAD = b"*9\r\n$4\r\nEVAL\r\n$%d\r\n%b\r\n$1\r\n1\r\n" % (len(SCRIPT.encode()), SCRIPT.encode())
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 2.0
_HANDSHAKE = -1  # index of the replies to AUTH, SELECT and SCRIPT LOAD


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def command(*args: bytes) -> bytes:
    """A RESP array of bulk strings: how a client sends every command."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def script_args(op: int, sliding: bool, limit: int, window_ms: int, burst: int) -> bytes:
    """The ARGV part of a decision's command (constant per rule and operation)."""
    return b"".join(
        bulk(v)
        for v in (b"%d" % op, b"s" if sliding else b"t", b"%d" % limit, b"%d" % window_ms, b"%d" % burst)
    )


# The reply to every decision: four integers. Matched by one regular expression (about 4 times faster
# than the general parser); anything else goes through ``parse_reply``.
_DECISION = re.compile(rb"\*4\r\n:(\d+)\r\n:(\d+)\r\n:(\d+)\r\n:(\d+)\r\n")


class ReplyError(bytes):
    """A ``-ERR ...`` reply."""


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def parse_reply(buf: bytes, pos: int) -> tuple[Any, int]:  # noqa: PLR0911 (one return per reply type)
    """One RESP2 reply at ``pos``: (value, position after it); raises ``_Incomplete``."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    if kind == 0x3A:  # ':' integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 0x2A:  # '*' array
        count = int(buf[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items = []
        at = end + 2
        for _ in range(count):
            item, at = parse_reply(buf, at)
            items.append(item)
        return items, at
    if kind == 0x24:  # '$' bulk string
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            raise _Incomplete
        return buf[end + 2 : stop], stop + 2
    if kind == 0x2B:  # '+' simple string
        return buf[pos + 1 : end], end + 2
    if kind == 0x2D:  # '-' error
        return ReplyError(buf[pos + 1 : end]), end + 2
    raise ValueError(f"unexpected RESP reply type {chr(kind)!r}")


Decision = tuple[bool, int, int, int]


class ReplyTarget(Protocol):
    def redis_reply(self, index: int, reply: Decision | None, error: str | None) -> None: ...


class _Ignore:
    """Target of fire-and-forget commands (spending after a failed response): errors are counted only."""

    __slots__ = ()

    def redis_reply(self, index: int, reply: Decision | None, error: str | None) -> None:
        return None


IGNORE = _Ignore()


class RedisLimiterClient:
    """One pipelined connection to Redis for every Redis-backed rule of a gateway."""

    def __init__(
        self,
        settings: RateLimitRedis,
        writes: WriteBatch,
        observe_latency: Callable[[float], None],
        count_error: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.address: RedisAddress = parse_redis_url(settings.url)
        self.shown_url = mask_url(settings.url)
        self.timeout = settings.timeout
        self.writes = writes
        self.observe_latency = observe_latency
        self.count_error = count_error
        self.transport: asyncio.Transport | None = None
        self.ready = False  # connected, handshake sent: commands go straight out
        self.closed = False
        self.pending: deque[list[Any]] = deque()  # sent, awaiting replies in order
        self.queued: list[list[Any]] = []  # waiting for the connection
        self.out: list[bytes] | None = None
        self.buffer = b""
        self.retry_at = 0.0
        self.backoff = BACKOFF_FIRST
        self._connect_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failures_logged = float("-inf")

    # -- the hot path ------------------------------------------------------------------------------

    def call(self, body: bytes, target: ReplyTarget, index: int) -> None:
        """Send ``EVALSHA`` with ``body`` (key and arguments); ``target.redis_reply(index, ...)`` answers."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + self.timeout
        entry = [deadline, perf_counter(), body, target, index]
        if self.ready:
            self.pending.append(entry)
            self._send(EVALSHA_HEAD + body)
        elif self.closed or (self._connect_task is None and now < self.retry_at):
            self.count_error("unavailable")  # down and backing off: answer at once, do not wait
            target.redis_reply(index, None, "unavailable")
            return
        else:
            self.queued.append(entry)
            if self._connect_task is None:
                self._connect_task = loop.create_task(self._connect())
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)

    def _send(self, data: bytes) -> None:
        out = self.out
        if out is not None:
            out.append(data)
        else:
            self.out = [data]
            self.writes.add(self)

    def flush(self) -> None:
        out = self.out
        self.out = None
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)

    # -- replies -------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos = 0
        size = len(buf)
        pending = self.pending
        decision = _DECISION.match
        transport = self.transport
        try:
            while pos < size:
                if not pending:
                    raise ValueError("a reply nobody asked for")
                found = decision(buf, pos)
                if found is not None:
                    pos = found.end()
                    allowed, remaining, reset, retry = found.groups()
                    reply: Any = (allowed == b"1", int(remaining), int(reset), int(retry))
                else:
                    reply, pos = parse_reply(buf, pos)
                entry = pending.popleft()
                self._dispatch(entry, reply)
                if self.transport is not transport:  # the reply made us drop the connection
                    return
        except _Incomplete:
            pass
        except (ValueError, IndexError):
            log.error("rate-limit Redis sent a reply that cannot be parsed; reconnecting")
            self.buffer = b""
            self._fail_all("reply")
            return
        self.buffer = buf[pos:] if pos < size else b""

    def _dispatch(self, entry: list[Any], reply: Any) -> None:
        target: ReplyTarget = entry[3]
        index: int = entry[4]
        if index == _HANDSHAKE:
            if isinstance(reply, ReplyError):
                self._log_failure("rate-limit Redis refused the connection set-up", reply)
                self._fail_all("connect")
            return
        if isinstance(reply, ReplyError):
            if reply.startswith(b"NOSCRIPT") and entry[2] is not None:
                body = entry[2]
                entry[2] = None  # once: EVAL also caches the script
                entry[0] = asyncio.get_running_loop().time() + self.timeout
                self.pending.append(entry)
                self._send(EVAL_HEAD + body)
                return
            self._log_failure("rate-limit Redis answered with an error", reply)
            self.count_error("reply")
            target.redis_reply(index, None, "reply")
            return
        if not isinstance(reply, tuple):  # not the usual four integers
            if not (isinstance(reply, list) and len(reply) == 4 and all(isinstance(v, int) for v in reply)):
                self.count_error("reply")
                target.redis_reply(index, None, "reply")
                return
            reply = (reply[0] == 1, reply[1], reply[2], reply[3])
        self.backoff = BACKOFF_FIRST
        self.observe_latency(perf_counter() - entry[1])
        target.redis_reply(index, reply, None)

    # -- deadlines and failures ------------------------------------------------------------------------

    def _expire(self) -> None:
        self._timer = None
        head = self.pending[0] if self.pending else self.queued[0] if self.queued else None
        if head is None:
            return
        loop = asyncio.get_running_loop()
        if head[0] <= loop.time():
            self._log_failure(
                "rate-limit Redis did not answer in time; failing waiting decisions",
                b"no reply within %.3fs" % self.timeout,
            )
            self._fail_all("timeout")
        else:
            self._timer = loop.call_at(head[0], self._expire)

    def _fail_all(self, reason: str, notify: bool = True) -> None:
        """Drop the connection and answer every waiting decision with ``reason``; back off."""
        entries = [*self.pending, *self.queued]
        self.pending.clear()
        self.queued = []
        self.out = None
        self.buffer = b""
        self.ready = False
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        task, self._connect_task = self._connect_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(RuntimeError):  # no running loop: closing
            self.retry_at = asyncio.get_running_loop().time() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        if not notify:  # closing: the requests waiting are being cut with their connections
            return
        for entry in entries:
            if entry[4] != _HANDSHAKE:
                self.count_error(reason)
                entry[3].redis_reply(entry[4], None, reason)

    def _log_failure(self, message: str, reply: bytes) -> None:
        now = perf_counter()
        if now - self._failures_logged >= 10.0:  # at most one line per 10 s
            self._failures_logged = now
            error = reply[:200].decode("utf-8", "replace")
            log.error(message, extra={"redis": self.shown_url, "error": error})

    # -- connection --------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        address = self.address
        context = ssl.create_default_context() if address.tls else None
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: _RedisProtocol(self), address.host, address.port, ssl=context
                )
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            if self._connect_task is asyncio.current_task():
                self._log_failure(
                    "rate-limit Redis unreachable", f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
                )
                self._fail_all("connect")
            return
        if self._connect_task is not asyncio.current_task() or self.closed:  # given up meanwhile
            transport.abort()
            return
        self._connect_task = None
        self.transport = transport
        setup: list[bytes] = []
        if address.password is not None:
            auth = [address.username.encode(), address.password.encode()] if address.username else []
            setup.append(command(b"AUTH", *(auth or [address.password.encode()])))
        if address.db:
            setup.append(command(b"SELECT", b"%d" % address.db))
        setup.append(command(b"SCRIPT", b"LOAD", SCRIPT.encode()))
        now = loop.time()
        for _ in setup:
            self.pending.append([now + self.timeout, perf_counter(), None, self, _HANDSHAKE])
        queued, self.queued = self.queued, []
        for entry in queued:
            self.pending.append(entry)
            setup.append(EVALSHA_HEAD + entry[2])
        self.ready = True
        transport.writelines(setup)
        if self._timer is None and self.pending:
            self._timer = loop.call_at(self.pending[0][0], self._expire)

    def redis_reply(self, index: int, reply: Decision | None, error: str | None) -> None:
        return None  # handshake replies are handled in _dispatch

    def connection_lost(self, protocol: _RedisProtocol) -> None:
        if protocol.client is not self or self.transport is not protocol.transport or self.closed:
            return
        if self.pending or self.queued:
            self._fail_all("closed")
        else:  # closed while idle (a server-side idle timeout, a restart): reconnect on the next call
            self.transport = None
            self.ready = False
            self.buffer = b""
            self.out = None

    def start(self) -> None:
        """Connect ahead of the first decision (failures are retried by later decisions)."""
        if self._connect_task is None and not self.ready and not self.closed:
            self._connect_task = asyncio.get_running_loop().create_task(self._connect())

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.flush()
        self._fail_all("closed", notify=False)


class _RedisProtocol(asyncio.Protocol):
    __slots__ = ("client", "transport")

    def __init__(self, client: RedisLimiterClient) -> None:
        self.client = client
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.client.transport is self.transport:
            self.client.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.connection_lost(self)
