"""TCP reachability probe: resolve, connect, close cleanly (blackbox_exporter's ``tcp`` prober).

For dependencies with no richer collector (an SMTP relay, a license server, a port a service must
keep open). The probe opens and closes one connection each time on purpose: reachability of the
listening socket is what it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from collectors.base import (
    Collector,
    CollectorOptions,
    Measurement,
    MetricSpec,
    Observation,
    ProbeError,
    Reason,
    Sample,
)

# blackbox_exporter's families, shared with the http collector
PROBE_SUCCESS = MetricSpec(
    "probe_success",
    "1 when the last probe succeeded (tcp: it connected; http: an answer with an expected status and "
    "body, and a JSON health field not mapped to fail), else 0.",
    exporter="blackbox_exporter",
)
PROBE_DURATION = MetricSpec(
    "probe_duration_seconds",
    "How long the last probe took to complete, in seconds.",
    exporter="blackbox_exporter",
)
PROBE_DNS_LOOKUP_TIME = MetricSpec(
    "probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds."
)
PROBE_IP_PROTOCOL = MetricSpec(
    "probe_ip_protocol", "Specifies whether probe ip protocol is IP4 or IP6 (4 or 6)."
)
TCP_CONNECT_DURATION = MetricSpec(
    "sidecar_tcp_connect_duration_seconds", "Time to establish the TCP connection, after name resolution."
)

METRICS: tuple[MetricSpec, ...] = (
    PROBE_SUCCESS,
    PROBE_DURATION,
    PROBE_DNS_LOOKUP_TIME,
    PROBE_IP_PROTOCOL,
    TCP_CONNECT_DURATION,
)

UNIX_PREFIX = "unix:"
_EXAMPLE = "write host:port, e.g. db.internal:5432 or [::1]:5432"


def parse_host_port(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ``ValueError`` says how to write it."""
    text = target.strip()
    if not text or any(c.isspace() for c in text) or "/" in text:
        raise ValueError(f"{target!r} is not an address: {_EXAMPLE}")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{target!r}: an IPv6 address needs brackets and a port, e.g. [::1]:5432")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{target!r} has no port: {_EXAMPLE}")
        if ":" in host:
            raise ValueError(f"{target!r}: write an IPv6 address in brackets, e.g. [{host}]:{port_text}")
    if not host:
        raise ValueError(f"{target!r} has no host: {_EXAMPLE}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{target!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


class TCPOptions(CollectorOptions, frozen=True):
    """The ``tcp`` check has no options; the target says everything."""


class TCPCollector(Collector[TCPOptions]):
    """Connects to ``host:port`` and closes again, trying each resolved address in order."""

    kind: ClassVar[str] = "tcp"
    measurements: ClassVar[tuple[str, ...]] = ("responseTime",)
    options_model: ClassVar[type[CollectorOptions]] = TCPOptions
    component_type: ClassVar[str] = "component"
    critical_by_default: ClassVar[bool] = True
    up_metric: ClassVar[MetricSpec | None] = PROBE_SUCCESS
    up_follows_verdict: ClassVar[bool] = True
    duration_metric: ClassVar[MetricSpec | None] = PROBE_DURATION

    @classmethod
    def validate_target(cls, target: str | None) -> str | None:
        if not target:
            raise ValueError(f"a tcp check needs a target: {_EXAMPLE}")
        if target.startswith(UNIX_PREFIX):
            if not target.removeprefix(UNIX_PREFIX).startswith("/"):
                raise ValueError(f"{target!r}: a unix socket target is unix:/absolute/path.sock")
            return target
        parse_host_port(target)
        return target

    def classify_error(self, exc: BaseException) -> Reason | None:
        if isinstance(exc, TimeoutError):
            return Reason.TIMEOUT
        if isinstance(exc, OSError):  # refused, unreachable, reset, name not resolved
            return Reason.CONNECT
        return None

    def secrets(self) -> Sequence[str]:
        return ()

    async def collect(self) -> Observation:
        target = self.check.target or ""
        if target.startswith(UNIX_PREFIX):
            return await _connect_unix(target.removeprefix(UNIX_PREFIX))
        host, port = parse_host_port(target)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ProbeError(Reason.CONNECT, f"cannot resolve {host!r}: {exc.strerror or exc}") from exc
        resolved = time.perf_counter()
        family = await _connect_first(infos, host, port)
        connected = time.perf_counter()
        return Observation(
            measurements={"responseTime": Measurement(connected - started, "s")},
            samples=[
                Sample(PROBE_DNS_LOOKUP_TIME, resolved - started),
                Sample(PROBE_IP_PROTOCOL, 6.0 if family == socket.AF_INET6 else 4.0),
                Sample(TCP_CONNECT_DURATION, connected - resolved),
            ],
        )


AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


async def _connect_first(infos: Sequence[AddrInfo], host: str, port: int) -> int:
    """Connect to the first address that accepts, close cleanly, and return its address family."""
    last: OSError | None = None
    for family, _type, _proto, _name, sockaddr in infos:
        try:
            _reader, writer = await asyncio.open_connection(str(sockaddr[0]), port, family=family)
        except OSError as exc:
            last = exc
            continue
        writer.close()
        with contextlib.suppress(OSError):  # the peer closing first is fine: the port accepted us
            await writer.wait_closed()
        return family
    detail = last.strerror if last is not None and last.strerror else str(last)
    raise ProbeError(Reason.CONNECT, f"cannot connect to {host}:{port}: {detail}")


async def _connect_unix(path: str) -> Observation:
    """Connect to the unix socket at ``path`` and close again (an app behind a unix-socket upstream)."""
    started = time.perf_counter()
    try:
        _reader, writer = await asyncio.open_unix_connection(path)
    except OSError as exc:
        raise ProbeError(Reason.CONNECT, f"cannot connect to unix:{path}: {exc.strerror or exc}") from exc
    connected = time.perf_counter()
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Observation(
        measurements={"responseTime": Measurement(connected - started, "s")},
        samples=[Sample(TCP_CONNECT_DURATION, connected - started)],
    )
