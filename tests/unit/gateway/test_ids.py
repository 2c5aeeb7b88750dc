"""X-Request-ID validation and W3C Trace Context level 1 parsing, case by case from the recommendation."""

from __future__ import annotations

import os
import re

import pytest

from sidecar.gateway import correlation_ids
from sidecar.gateway.correlation_ids import (
    fresh_fields,
    fresh_ids,
    new_request_id,
    request_id_of,
    valid_request_id,
)
from sidecar.gateway.traceparent import next_hop, parse_traceparent, valid_tracestate

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    "value", [b"a", b"req-1", b"x" * 128, b"!~#$%&'*+.^_`|", b"550e8400-e29b-41d4-a716-446655440000"]
)
def test_valid_request_ids(value: bytes) -> None:
    assert valid_request_id(value)
    assert request_id_of([value]) == (value.decode(), True)


@pytest.mark.parametrize(
    "value", [b"", b"x" * 129, b"a b", b"a\tb", b"a\r\nb", b"a\x00", b"a\x7f", b"\xc3\xa9t\xc3\xa9", b"\x80"]
)
def test_invalid_request_ids_are_replaced(value: bytes) -> None:
    assert not valid_request_id(value)
    generated, kept = request_id_of([value])
    assert not kept
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", generated)


def test_two_request_id_headers_are_not_trusted() -> None:
    assert request_id_of([b"a", b"b"])[1] is False


def test_generated_ids_are_unique() -> None:
    assert len({new_request_id() for _ in range(10_000)}) == 10_000


UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_fresh_ids_are_well_formed_and_distinct_across_random_draws() -> None:
    """fresh_ids hands out 64 requests' worth of one random draw at a time: cross several draws."""
    ids = [fresh_ids() for _ in range(64 * 5 + 7)]
    for request_id, trace_id, span_id in ids:
        assert UUID4.fullmatch(request_id), request_id
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id) and trace_id != "0" * 32
        assert re.fullmatch(r"[0-9a-f]{16}", span_id) and span_id != "0" * 16
    for column in zip(*ids, strict=True):
        assert len(set(column)) == len(ids)


def test_version_00_traceparent() -> None:
    parsed = parse_traceparent(VALID)
    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.flags, parsed.sampled) == (TRACE, SPAN, "01", True)
    assert parse_traceparent(f"00-{TRACE}-{SPAN}-00").sampled is False  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{TRACE}-{SPAN}-0A",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"0g-{TRACE}-{SPAN}-01",  # version not hex
        f"00-{TRACE}-{SPAN}-01-",  # version 00 is exactly 55 characters
        f"00-{TRACE}-{SPAN}-01-00",
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
        f"00-{TRACE}-{SPAN}01",  # missing dash
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-1",
        f" 00-{TRACE}-{SPAN}-01",
        f"cc-{TRACE}-{SPAN}-01x",  # a future version still needs a dash after the flags
        "",
    ],
)
def test_invalid_traceparents(value: str) -> None:
    assert parse_traceparent(value) is None


@pytest.mark.parametrize(
    "value", [f"cc-{TRACE}-{SPAN}-01", f"cc-{TRACE}-{SPAN}-01-future-stuff", f"01-{TRACE}-{SPAN}-03-x"]
)
def test_future_versions_are_parsed_by_their_first_fields(value: str) -> None:
    parsed = parse_traceparent(value)
    assert parsed is not None
    assert parsed.trace_id == TRACE


def test_next_hop_continues_the_trace_with_a_new_span_and_the_same_flags() -> None:
    trace_id, header, state = next_hop([VALID.encode()], [b"rojo=00f067aa0ba902b7", b"congo=t61rcWkgMzE"])
    assert trace_id == TRACE
    version, trace, span, flags = header.decode().split("-")
    assert (version, trace, flags) == ("00", TRACE, "01")
    assert span != SPAN
    assert re.fullmatch(r"[0-9a-f]{16}", span)
    assert state == b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    _, unsampled, _ = next_hop([f"00-{TRACE}-{SPAN}-00".encode()], [])
    assert unsampled.endswith(b"-00")


def test_next_hop_starts_a_trace_when_missing_repeated_or_invalid() -> None:
    for traceparents in ([], [VALID.encode(), VALID.encode()], [b"00-bad"], [b"\xff" * 55]):
        trace_id, header, state = next_hop(traceparents, [b"congo=t61rcWkgMzE"])
        assert trace_id != TRACE
        parsed = parse_traceparent(header.decode())
        assert parsed is not None
        assert parsed.trace_id == trace_id
        assert parsed.flags == "01"
        assert state is None  # tracestate belongs to the trace that was dropped
    _, header, _ = next_hop([], [], sampled=False)
    assert header.endswith(b"-00")


@pytest.mark.parametrize(
    "value",
    [
        "rojo=00f067aa0ba902b7",
        "congo=t61rcWkgMzE, rojo=x",
        "a@b=1",
        "t0-_*/@sys=v a l",
        ",  ,a=1,",
        "k=" + "v" * 256,
    ],
)
def test_valid_tracestate(value: str) -> None:
    assert valid_tracestate(value)


@pytest.mark.parametrize(
    "value",
    [
        "Rojo=1",  # keys are lower case
        "a=1,a=2",  # duplicate keys
        "novalue",
        "a=",  # a value needs at least one non-blank character
        "a=b=c",  # '=' is not allowed in values
        "a=b,c",
        ",".join(f"k{i}=v" for i in range(33)),  # more than 32 members
    ],
)
def test_invalid_tracestate_is_dropped(value: str) -> None:
    assert not valid_tracestate(value)
    assert next_hop([VALID.encode()], [value.encode()])[2] is None


def test_fresh_fields_bytes_are_the_same_ids_as_the_strings() -> None:
    """The bytes the request head carries hold the request and trace IDs returned as strings."""
    seen = set()
    for _ in range(128 * 3 + 7):
        request_id, trace_id, request_id_bytes, trace_span = fresh_fields()
        assert UUID4.fullmatch(request_id) and request_id_bytes.decode() == request_id
        match = re.fullmatch(rb"([0-9a-f]{32})-([0-9a-f]{16})", trace_span)
        assert match is not None, trace_span
        assert match[1].decode() == trace_id and match[2] != b"0" * 16
        seen.add(request_id)
    assert len(seen) == 128 * 3 + 7


def test_a_draw_with_an_all_zero_trace_or_span_id_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """W3C forbids all-zero IDs: a random block that would hold one is replaced, not handed out."""
    real = os.urandom
    draws: list[int] = []

    def zeros_first(size: int) -> bytes:
        draws.append(size)
        return bytes(size) if len(draws) == 1 else real(size)

    monkeypatch.setattr(os, "urandom", zeros_first)
    monkeypatch.setattr(correlation_ids._BLOCK, "at", len(correlation_ids._BLOCK.fields))  # next take draws
    ids = [fresh_ids() for _ in range(3)]
    assert len(draws) == 2
    for _, trace_id, span_id in ids:
        assert trace_id != "0" * 32 and span_id != "0" * 16


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """The rest of a draw belongs to the process that drew it; a forked child draws anew."""
    fresh_ids()  # the parent holds a draw with IDs left in it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next request ID, then leave without pytest's teardown
        try:
            os.write(write_end, fresh_ids()[0].encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_id = pipe.read().decode()
    os.waitpid(pid, 0)
    assert UUID4.fullmatch(child_id)
    assert child_id != fresh_ids()[0]  # the parent's next one, from the same draw
