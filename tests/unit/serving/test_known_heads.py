"""The guard's shortcut for request heads it accepted before: same verdicts as the full check, bounded.

These drive ``HeaderGuard`` directly with an in-memory transport (the limits logic has no I/O of its
own); ``tests/integration/serving/test_listeners.py`` runs the same guard on real sockets.
"""

from __future__ import annotations

import asyncio

from sidecar.serving.guard import _KNOWN_HEADS, HeaderGuard, KnownHeads, ListenerLimits

HEAD = b"GET /readyz HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.30\r\n\r\n"


class Recorder(asyncio.Protocol):
    """The wrapped protocol: what the guard let through."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def guard(known: KnownHeads) -> tuple[HeaderGuard, Recorder, Transport]:
    inner, transport = Recorder(), Transport()
    g = HeaderGuard(inner, ListenerLimits(header_timeout=5.0), 1024, known=known)
    g.connection_made(transport)  # type: ignore[arg-type]
    return g, inner, transport


async def test_an_accepted_head_is_learnt_and_passes_again_on_another_connection() -> None:
    known = KnownHeads()
    first, inner, _ = guard(known)
    first.data_received(HEAD)
    assert HEAD in known.heads and bytes(inner.received) == HEAD
    second, inner2, transport2 = guard(known)
    assert second._timer is not None  # armed at connection_made
    second.data_received(HEAD)
    second.data_received(HEAD)
    assert bytes(inner2.received) == HEAD * 2 and not transport2.closed
    assert second._timer is None  # the head arrived in time: the header timer is off


async def test_a_known_head_after_a_partial_line_is_judged_with_it() -> None:
    known = KnownHeads()
    guard(known)[0].data_received(HEAD)
    g, inner, transport = guard(known)
    g.data_received(b"GET /a HTTP/1.1\r\n")  # an unfinished head ...
    g.data_received(HEAD)  # ... then a request line where a header belongs: malformed
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 400")
    assert HEAD not in inner.received


async def test_a_known_head_inside_a_request_body_is_body() -> None:
    known = KnownHeads()
    guard(known)[0].data_received(HEAD)
    g, inner, transport = guard(known)
    g.data_received(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (len(HEAD) + 3))
    g.data_received(HEAD)  # body bytes that happen to look like a head
    assert g._body_left == 3
    g.data_received(b"abc")
    g.data_received(b"GET / HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n")  # the next head is checked
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 400")
    assert inner.received.count(HEAD) == 1


async def test_heads_with_a_body_or_over_the_size_are_not_learnt_and_the_set_is_bounded() -> None:
    known = KnownHeads()
    g, _, _ = guard(known)
    g.data_received(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    g.data_received(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert not known.heads
    for n in range(_KNOWN_HEADS + 10):
        g.data_received(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % n)
    assert 0 < len(known.heads) <= _KNOWN_HEADS


async def test_a_known_head_sent_with_more_bytes_takes_the_full_check() -> None:
    known = KnownHeads()
    guard(known)[0].data_received(HEAD)
    g, _, transport = guard(known)
    g.data_received(HEAD + b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")  # pipelined, the second malformed
    assert transport.closed and transport.written.startswith(b"HTTP/1.1 400")
