"""One JSON line per request, written off the event loop, sampled for successes, never for errors.

Lines are collected in memory and handed to a worker thread a few times a second, so a slow disk or
a full stdout pipe never stalls a request. The buffer is bounded: past it lines are dropped and
counted (``sidecar_gateway_access_log_dropped_total``). Successful responses (status below 400) are
kept with probability ``sample_success``; client errors (4xx), server errors and proxy failures are
always written: they are rarer and they are what someone will search for. Every record, sampled or
not, also goes to the correlation index under its request ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable
from typing import IO, Any, Final

import orjson
from prometheus_client import CollectorRegistry, Counter

from sidecar.correlation.index import AT_SIZE, CorrelationIndex, pack_at
from sidecar.gateway.settings import AccessLogSettings

FLUSH_INTERVAL: Final = 0.2
FLUSH_BYTES: Final = 256 * 1024
MAX_BUFFER_BYTES: Final = 16 * 1024 * 1024


class UtcClock:
    """ISO-8601 UTC timestamps with milliseconds, formatting the seconds part once per second.

    Built as bytes (what the access line needs) from the cached seconds prefix and a table of the
    1,000 millisecond suffixes: one small copy when the millisecond changes, which is every request
    when requests are slow (under callgrind it was 3,600 instructions per request as an f-string
    and an encode).
    """

    __slots__ = ("_last_bytes", "_millisecond", "_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._millisecond = -1
        self._prefix = b""
        self._last_bytes = b""

    def iso(self, now: float) -> str:
        return self.iso_bytes(now).decode("ascii")

    def iso_bytes(self, now: float) -> bytes:
        """``iso`` as ASCII bytes, for the access line."""
        millisecond = int(now * 1000)
        if millisecond != self._millisecond:
            self._advance(millisecond)
        return self._last_bytes

    def _advance(self, millisecond: int) -> None:
        second = millisecond // 1000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)).encode("ascii")
        self._millisecond = millisecond
        self._last_bytes = b"%b%bZ" % (self._prefix, _THOUSANDTHS[millisecond % 1000])


_NULL: Final = b"null"
_THOUSANDTHS: Final = tuple(b"%03d" % n for n in range(1000))
_DECIMALS: Final = tuple(b"%d" % n for n in range(1000))
_CACHE_LIMIT: Final = 1024


def json_string(text: str) -> bytes:
    """``text`` as a JSON string, quotes included (orjson does the escaping)."""
    return orjson.dumps(text)


class AccessLineEncoder:
    """Encodes access records as JSON lines from already-escaped fragments.

    Why not a dict through ``orjson.dumps``: building that dict, rounding two floats and encoding it
    cost a fifth of the gateway's CPU per request. Here the values that repeat across requests
    (method, route and path, client, user agent) are escaped once and cached (bounded); the rest are
    numbers, or IDs that only need escaping when a client sent an unusual one.
    """

    __slots__ = (
        "_agents",
        "_clients",
        "_last_agent",
        "_last_agent_json",
        "_last_client",
        "_last_client_json",
        "_last_method",
        "_last_method_json",
        "_methods",
    )

    def __init__(self) -> None:
        self._methods: dict[bytes, bytes] = {}
        self._clients: dict[str, bytes] = {}
        self._agents: dict[bytes, bytes] = {}
        # The previous line's method, client and user agent with their JSON: consecutive requests
        # (a keep-alive connection, most traffic) usually repeat them, and each value is a fresh
        # object, so a comparison costs a fifth of a dict lookup (which hashes it first).
        # (start values: the empty ones, with the JSON they have)
        self._last_method = b""
        self._last_method_json = _NULL
        self._last_client = ""
        self._last_client_json = b'""'
        self._last_agent = b""
        self._last_agent_json = b'""'

    def encode(
        self,
        at: float,
        time_iso: bytes,
        request_id: str,
        trace_id: str | None,
        method: bytes,
        route: bytes,
        path: bytes,
        status: int,
        duration: float | None,
        upstream: float | None,
        bytes_in: int,
        bytes_out: int,
        client: str,
        user_agent: bytes | None,
        error: str,
        request_id_bytes: bytes | None = None,
    ) -> bytes:
        """One access entry: ``at`` packed in front of the JSON line (``pack_at``), as the correlation
        index holds it and the writer takes it (``line_of`` gives the line).

        ``route``/``path`` are already JSON (``GatewayContext._describe``), times in seconds.

        ``request_id_bytes``: the ID as ASCII when nothing in it needs escaping (one the gateway made
        up: hex digits and dashes); else the ID is checked and escaped here.
        """
        if method == self._last_method:
            method_json = self._last_method_json
        else:
            method_json = self._methods.get(method) or self._cached(
                self._methods, method, json_string(method.decode("latin-1")) if method else _NULL
            )
            self._last_method = method
            self._last_method_json = method_json
        if client == self._last_client:
            client_json = self._last_client_json
        else:
            client_json = self._clients.get(client) or self._cached(
                self._clients, client, json_string(client)
            )
            self._last_client = client
            self._last_client_json = client_json
        if user_agent is None:
            agent_json = _NULL
        elif user_agent == self._last_agent:
            agent_json = self._last_agent_json
        else:
            agent_json = self._agents.get(user_agent) or self._cached(
                self._agents, user_agent, json_string(user_agent.decode("latin-1"))
            )
            self._last_agent = user_agent
            self._last_agent_json = agent_json
        error_json = b',"error":' + json_string(error) if error else b""
        if trace_id is not None and duration is not None and upstream is not None:
            # A proxied request (the usual line): one native call where built (access_line.c); the
            # same text as the general format below.
            return proxied_line(
                at,
                time_iso,
                _id_inner(request_id) if request_id_bytes is None else request_id_bytes,
                trace_id,
                method_json,
                route,
                path,
                status,
                _micros(duration),
                _micros(upstream),
                bytes_in,
                bytes_out,
                client_json,
                agent_json,
                error_json,
            )
        return (
            b'%b{"time":"%b","request_id":"%b","trace_id":%b,"method":%b,"route":%b,"path":%b,"status":%d,'
            b'"duration_ms":%b,"upstream_ms":%b,"bytes_in":%d,"bytes_out":%d,"client":%b,"user_agent":%b%b}\n'
            % (
                pack_at(at),
                time_iso,
                _id_inner(request_id),
                _NULL if trace_id is None else b'"%b"' % trace_id.encode("ascii"),
                method_json,
                route,
                path,
                status,
                _milliseconds(duration),
                _milliseconds(upstream),
                bytes_in,
                bytes_out,
                client_json,
                agent_json,
                error_json,
            )
        )

    @staticmethod
    def _cached(cache: dict[Any, bytes], key: Any, value: bytes) -> bytes:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
        return value


def _python_proxied_line(
    at: float,
    time_iso: bytes,
    request_id: bytes,
    trace_id: str,
    method: bytes,
    route: bytes,
    path: bytes,
    status: int,
    total_us: int,
    waited_us: int,
    bytes_in: int,
    bytes_out: int,
    client: bytes,
    user_agent: bytes,
    error: bytes,
) -> bytes:
    """A proxied request's access entry: ``at`` packed in front of its line (``access_line.c`` makes
    the same where it is built).

    The bytes arguments are JSON already (``time_iso`` and ``request_id``: the inside of a JSON string),
    ``trace_id`` is 32 hex digits, both times are whole microseconds. A literal format of %b only:
    compiled, one size sum and one copy per piece; the native call skips the copies of the literal parts
    through the C library, about 1,100 instructions fewer per request.
    """
    if total_us < 0 or waited_us < 0:
        raise ValueError("proxied_line: a time must not be negative")
    return (
        b'%b{"time":"%b","request_id":"%b","trace_id":"%b","method":%b,"route":%b,"path":%b,'
        b'"status":%b,"duration_ms":%b.%b,"upstream_ms":%b.%b,"bytes_in":%b,"bytes_out":%b,'
        b'"client":%b,"user_agent":%b%b}\n'
        % (
            pack_at(at),
            time_iso,
            request_id,
            trace_id.encode("ascii"),
            method,
            route,
            path,
            _decimal(status),
            _decimal(total_us // 1000),
            _THOUSANDTHS[total_us % 1000],
            _decimal(waited_us // 1000),
            _THOUSANDTHS[waited_us % 1000],
            _decimal(bytes_in),
            _decimal(bytes_out),
            client,
            user_agent,
            error,
        )
    )


# The maker's signature: (time as a float and as ISO bytes, request ID, trace ID, method, route, path,
# status, total and upstream microseconds, bytes in and out, client, user agent, error).
ProxiedLine = Callable[
    [float, bytes, bytes, str, bytes, bytes, bytes, int, int, int, int, int, bytes, bytes, bytes], bytes
]


def _native_proxied_line() -> ProxiedLine | None:
    try:
        from sidecar.gateway.access_line import proxied_line as native  # noqa: PLC0415 (optional, C)
    except ImportError:
        return None
    return native


# The usual access entry's maker: the native one where it was built.
proxied_line: Final[ProxiedLine] = _native_proxied_line() or _python_proxied_line


def line_of(entry: bytes) -> bytes:
    """The JSON line of an access entry (without the time packed in front of it)."""
    return entry[AT_SIZE:]


def _python_lines_of(entries: list[bytes]) -> bytes:
    """The lines of access entries, joined (``access_line.c`` does it without a slice per entry)."""
    return b"".join([entry[AT_SIZE:] for entry in entries])


def _native_lines_of() -> Callable[[list[bytes]], bytes] | None:
    try:
        from sidecar.gateway.access_line import lines_of as native  # noqa: PLC0415 (optional, C)
    except ImportError:
        return None
    return native


lines_of: Final = _native_lines_of() or _python_lines_of


def _decimal(n: int) -> bytes:
    """``b"%d" % n``; below 1,000 (statuses, most times in milliseconds, small bodies) from a table:
    compiled, a %d formats through a str object (about 150 instructions), a table entry is a copy."""
    return _DECIMALS[n] if 0 <= n < 1000 else b"%d" % n


def _micros(seconds: float) -> int:
    """Seconds as whole microseconds, rounded half up, never negative (the access line's resolution)."""
    return max(0, int(seconds * 1_000_000.0 + 0.5))


def _milliseconds(seconds: float | None) -> bytes:
    """Seconds as a JSON number of milliseconds with three decimals; ``null`` when not measured."""
    if seconds is None:
        return _NULL
    micros = _micros(seconds)
    return b"%d.%b" % (micros // 1000, _THOUSANDTHS[micros % 1000])


def _id_inner(value: str) -> bytes:
    """A request ID as the inside of a JSON string: IDs are printable ASCII (``valid_request_id``), so
    only a quote or backslash needs orjson's escaping."""
    if '"' in value or "\\" in value:
        return json_string(value)[1:-1]
    return value.encode("ascii")


class LineWriter:
    """Buffers access entries and writes their lines from a worker thread; bounded, drops counted.

    It holds the entries as the correlation index does (time in front, ``AccessLineEncoder.encode``):
    the same objects, no copy per line; their lines are joined out of them once per flush (``lines_of``).
    """

    def __init__(self, path: str, dropped: Counter) -> None:
        self._path = path
        self._dropped = dropped
        self._lines: list[bytes] = []  # access entries: each line with its time in front
        self._bytes = 0
        self._file: IO[bytes] | None = None
        self._fd = -1
        self._flushing: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        if self._path in ("-", "stdout", ""):
            self._fd = sys.stdout.fileno()
        else:
            self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115 (closed in close())
            self._fd = self._file.fileno()

    def write(self, entry: bytes) -> None:
        """Buffer an access entry's line (the entry itself, time and all: see the class doc)."""
        if self._bytes > MAX_BUFFER_BYTES:
            self._dropped.inc()
            return
        self._lines.append(entry)
        self._bytes += len(entry)
        if self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_soon)
        elif self._bytes >= FLUSH_BYTES and self._flushing is None:
            self._flush_soon()

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None or not self._lines:
            return
        data = lines_of(self._lines)
        self._lines, self._bytes = [], 0
        loop = asyncio.get_running_loop()
        self._flushing = loop.run_in_executor(None, self._write_all, data)
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, future: asyncio.Future[None]) -> None:
        self._flushing = None
        if future.exception() is not None:
            self._dropped.inc()
        if self._lines:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_soon)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is not None:
            with contextlib.suppress(OSError):
                await self._flushing
        if self._lines:
            data = lines_of(self._lines)
            self._lines, self._bytes = [], 0
            with contextlib.suppress(OSError):
                self._write_all(data)
        if self._file is not None:
            self._file.close()
            self._file = None


class AccessLog:
    """Builds access records, adds them to the correlation index, writes the ones that are kept."""

    def __init__(
        self, settings: AccessLogSettings, correlation: CorrelationIndex, registry: CollectorRegistry
    ) -> None:
        self.enabled = settings.enabled
        self.sample_success = settings.sample_success
        self._correlation = correlation
        self.dropped = Counter(
            "sidecar_gateway_access_log_dropped",
            "Access log lines dropped because the writer fell behind or failed.",
            registry=registry,
        )
        self._writer = LineWriter(settings.path, self.dropped)
        self.sink: Callable[[bytes, float], None] | None = None  # e.g. OTLP log export: every record
        self.clock = UtcClock()
        self.encoder = AccessLineEncoder()

    def open(self) -> None:
        if self.enabled:
            self._writer.open()

    def emit(self, request_id: str, entry: bytes, status: int, failed: bool, at: float) -> None:
        """Index the entry (``encoder.encode``: time and line) under ``request_id``; write its line
        unless it is a success sampling leaves out."""
        self._correlation.add_access_entry(request_id, entry)
        sink = self.sink
        if sink is not None:
            sink(line_of(entry), at)
        if not self.enabled:
            return
        sample = self.sample_success
        if not failed and status < 400 and sample < 1.0 and random.random() >= sample:
            return
        self._writer.write(entry)

    async def close(self) -> None:
        await self._writer.close()
