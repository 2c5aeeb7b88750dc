"""The native access-line maker (``access_line.c``) against its Python twin, byte for byte.

Every proxied request's access line comes from it where it is built; where it is not, from
``access_log._python_proxied_line``. A log shipper must not be able to tell which one wrote a line, so
both are fed the same arguments (typical, edge and random) and must give the same bytes; arguments
of the wrong kind raise an error, never a crash. (The interpreted pass of tests/run.sh, a copy without any compiled module, leaves this file
out: there the Python twin writes every line, and test_recording.py tests it.)
"""

from __future__ import annotations

import json
import random
import sys

import pytest

from sidecar.correlation.index import AT_SIZE, pack_at, unpack
from sidecar.gateway import access_log
from sidecar.gateway.access_log import (
    ProxiedLine,
    _python_lines_of,
    _python_proxied_line,
    json_string,
    lines_of,
)

try:
    from sidecar.gateway.access_line import proxied_line as native_line
except ImportError:  # the assertion below reports it
    native_line = None

LongArgs = tuple[float, bytes, bytes, str, bytes, bytes, bytes, int, int, int, int, int, bytes, bytes, bytes]

TYPICAL: LongArgs = (
    1_796_400_000.123456,
    b"2026-12-04T16:00:00.123Z",
    b"3f2c1a9e-7b4d-4e2a-9c1f-0a1b2c3d4e5f",
    "0af7651916cd43dd8448eb211c80319c",
    b'"GET"',
    b'"/users/{id}"',
    b'"/users/7"',
    200,
    1_234,
    1_000,
    0,
    3_456,
    b'"127.0.0.1"',
    b'"wrk"',
    b"",
)


def _native() -> ProxiedLine:
    assert native_line is not None, "sidecar/gateway/access_line.c did not compile: see pip's output"
    return native_line


def test_the_line_maker_was_built_and_is_the_one_used() -> None:
    """A C compiler error leaves the optional extension out without failing the install: it fails here."""
    assert access_log.proxied_line is _native()


def test_a_typical_entry_is_the_same_and_the_index_reads_it() -> None:
    entry = _native()(*TYPICAL)
    assert entry == _python_proxied_line(*TYPICAL)
    assert entry[:AT_SIZE] == pack_at(TYPICAL[0])  # the time, exactly, in front
    line = entry[AT_SIZE:]
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    parsed = json.loads(line)
    assert parsed["duration_ms"] == 1.234 and parsed["upstream_ms"] == 1.0
    assert parsed["status"] == 200 and parsed["bytes_out"] == 3456 and parsed["trace_id"] == TYPICAL[3]
    at, kind, trace_id, record = unpack(entry)  # what the correlation index makes of it
    assert (at, kind, trace_id, record) == (TYPICAL[0], "access", TYPICAL[3], parsed)


@pytest.mark.parametrize(
    "number",
    [0, 1, 9, 10, 999, 1_000, 1_001, 9_999, 123_456_789, 2**31, 2**53 + 1, sys.maxsize],
)
def test_numbers_across_digit_counts_and_the_small_table(number: int) -> None:
    args = list(TYPICAL)
    for position in (7, 8, 9, 10, 11):
        args[position] = number
    assert _native()(*args) == _python_proxied_line(*args)  # type: ignore[arg-type]


def test_a_negative_status_or_size_is_written_as_python_does() -> None:
    """Never sent by the gateway, but the two makers must still agree on any int they accept."""
    args = list(TYPICAL)
    args[7], args[10], args[11] = -5, -1_000, -(2**62)
    assert _native()(*args) == _python_proxied_line(*args)  # type: ignore[arg-type]


def test_random_fragments_give_the_same_bytes() -> None:
    """Fragments of any size and content (including empty ones, quotes and bytes above 0x7f)."""
    rng = random.Random(20261204)
    for _ in range(2_000):
        pieces = [rng.randbytes(rng.choice((0, 1, 7, 40, 300))) for _ in range(8)]
        args = (
            rng.choice((0.0, -1.5, 1e300, float("inf"), rng.uniform(0, 2e9))),
            pieces[0],
            pieces[1],
            "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((0, 32)))),
            pieces[2],
            pieces[3],
            pieces[4],
            rng.randrange(100, 600),
            rng.randrange(0, 10 ** rng.randrange(1, 13)),
            rng.randrange(0, 10 ** rng.randrange(1, 13)),
            rng.randrange(0, 10 ** rng.randrange(1, 13)),
            rng.randrange(0, 10 ** rng.randrange(1, 13)),
            pieces[5],
            pieces[6],
            b"" if rng.random() < 0.8 else b',"error":' + json_string("upstream_timeout"),
        )
        assert _native()(*args) == _python_proxied_line(*args), args


def test_an_error_field_goes_last() -> None:
    args = list(TYPICAL)
    args[14] = b',"error":"upstream_refused"'
    entry = _native()(*args)  # type: ignore[arg-type]
    assert entry == _python_proxied_line(*args)  # type: ignore[arg-type]
    assert json.loads(entry[AT_SIZE:])["error"] == "upstream_refused"


@pytest.mark.parametrize(
    ("position", "value", "error"),
    [
        (0, 1, TypeError),  # the time is a float
        (1, "not bytes", TypeError),  # a str where bytes belong
        (4, None, TypeError),
        (14, bytearray(b"x"), TypeError),
        (3, b"0af7651916cd43dd8448eb211c80319c", TypeError),  # the trace ID is a str
        (3, "trace-\u00e9", TypeError),  # and ASCII
        (7, 200.0, TypeError),
        (8, -1, ValueError),  # a time is never negative (the encoder clamps it)
        (9, -1, ValueError),
        (10, 2**64, OverflowError),
    ],
)
def test_bad_arguments_raise_not_crash(position: int, value: object, error: type[Exception]) -> None:
    args: list[object] = list(TYPICAL)
    args[position] = value
    with pytest.raises(error):
        _native()(*args)  # type: ignore[arg-type]


def test_the_wrong_number_of_arguments_raises() -> None:
    with pytest.raises(TypeError):
        _native()(*TYPICAL[:-1])  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _native()(*TYPICAL, b"")  # type: ignore[call-arg]


def test_the_lines_of_entries_are_joined_without_their_times() -> None:
    """The access log's writer joins its buffered entries' lines with one call per flush."""
    assert access_log.lines_of is lines_of
    entries = [_native()(*TYPICAL), pack_at(2.0) + b"{}\n", pack_at(3.0), _python_proxied_line(*TYPICAL)]
    joined = lines_of(entries)
    assert joined == _python_lines_of(entries)
    assert joined == b"".join(entry[AT_SIZE:] for entry in entries)
    assert lines_of([]) == b""


@pytest.mark.parametrize("entries", [[b"short"], [pack_at(1.0), "text"], (pack_at(1.0),)])
def test_lines_of_refuses_what_is_not_a_list_of_entries(entries: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        lines_of(entries)  # type: ignore[arg-type]
