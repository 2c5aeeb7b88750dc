"""``X-Request-ID``: keep a well-formed one from the client, replace anything else with a fresh UUID.

A request ID ends up in log lines, JSON and other systems' headers, so only short, visible ASCII is
trusted: at most 128 characters of ``%x21-7E`` (no spaces, control characters, CR/LF or non-ASCII).
IDs (request, trace and span) come from ``os.urandom``: unpredictable, so nobody can guess the ID of
someone else's request to look it up, or forge a trace. Drawing and formatting them one request at
a time cost about 5,000 instructions; ``_IdBlock`` does it for 128 requests at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Final

MAX_REQUEST_ID: Final = 128
_VALID: Final = re.compile(rb"[\x21-\x7e]{1,128}")


def valid_request_id(value: bytes) -> bool:
    """True when ``value`` may be passed on unchanged."""
    return _VALID.fullmatch(value) is not None


# One request's IDs: ``h`` a random hex digit, ``v`` the UUID variant digit (8, 9, a or b), anything
# else copied as it stands. The request ID, then the trace and span IDs as the traceparent has them.
_LAYOUT: Final = b"hhhhhhhh-hhhh-4hhh-vhhh-hhhhhhhhhhhh" + b"h" * 32 + b"-" + b"h" * 16
RECORD: Final = len(_LAYOUT)
TRACE_ID_AT: Final = 36  # 32 characters, then "-" and the span ID
SPAN_ID_AT: Final = TRACE_ID_AT + 33  # 16 characters, the record's end
_IDS_PER_DRAW: Final = 128
_VARIANT_AT: Final = _LAYOUT.index(b"v")
# hex digit -> the variant digit with the same two low bits: uniform over 8, 9, a, b
_VARIANT_DIGITS: Final = bytes(
    b"89ab"[b"0123456789abcdef".index(c) & 3] if c in b"0123456789abcdef" else 0 for c in range(256)
)
# (column, that character repeated once per record): written over the random digits of a draw
_CONSTANT_COLUMNS: Final = [
    (at, bytes([c]) * _IDS_PER_DRAW) for at, c in enumerate(_LAYOUT) if c not in b"hv"
]
_ZERO_RUN: Final = b"0" * 16


class _IdBlock:
    """The ID fields of ``_IDS_PER_DRAW`` requests from one ``os.urandom`` draw, handed out in turn.

    Each draw is hex-formatted whole, then the constant characters of every record (dashes, the UUID
    version) are written over it column by column, one strided slice assignment per column: a few
    C-level calls per 128 requests instead of a dozen slices and joins per request. A request then
    takes four slices: its request ID and trace ID as ``str`` (logs, metrics) and as bytes (its head).
    """

    __slots__ = ("at", "fields", "text")

    def __init__(self) -> None:
        self.fields = b""
        self.text = ""
        self.at = 0

    def take(self) -> int:
        """Where the next record starts in ``fields`` and ``text``."""
        at = self.at
        if at >= len(self.fields):
            self._draw()
            at = 0
        self.at = at + RECORD
        return at

    def _draw(self) -> None:
        size = RECORD * _IDS_PER_DRAW
        while True:
            digits = bytearray(os.urandom((size + 1) // 2).hex().encode("ascii"))
            del digits[size:]
            digits[_VARIANT_AT::RECORD] = digits[_VARIANT_AT::RECORD].translate(_VARIANT_DIGITS)
            for at, column in _CONSTANT_COLUMNS:
                digits[at::RECORD] = column
            # W3C: a trace or span ID must not be all zeros. Either would be a run of 16 zero digits;
            # with 80 random digits a record that happens about once in 10^17 requests: draw again.
            if _ZERO_RUN not in digits:
                break
        self.fields = bytes(digits)
        self.text = self.fields.decode("ascii")


_BLOCK: Final = _IdBlock()


def _forget_draw() -> None:
    """In a forked child: the parent hands out the rest of its draw, so the child draws its own."""
    _BLOCK.fields = b""
    _BLOCK.text = ""
    _BLOCK.at = 0


os.register_at_fork(after_in_child=_forget_draw)  # as the random module reseeds itself in a child


def _python_fresh_fields() -> tuple[str, str, bytes, bytes]:
    """(request ID as a v4 UUID, trace ID, the request ID as bytes, ``<trace ID>-<span ID>`` as bytes).

    The bytes are what the request head needs: ``X-Request-ID: <id>`` and ``traceparent: 00-<trace
    ID>-<span ID>-<flags>``, without encoding the strings again. ``fresh_ids.c`` makes the same, about
    1,500 instructions cheaper per request; this runs where it is not built.
    """
    block = _BLOCK
    at = block.take()
    text = block.text
    fields = block.fields
    return (
        text[at : at + 36],
        text[at + TRACE_ID_AT : at + TRACE_ID_AT + 32],
        fields[at : at + 36],
        fields[at + TRACE_ID_AT : at + RECORD],
    )


def _native_fresh_fields() -> Callable[[], tuple[str, str, bytes, bytes]] | None:
    try:
        from sidecar.gateway.fresh_ids import fresh_fields as native  # noqa: PLC0415 (optional, C)
    except ImportError:
        return None
    return native


# A proxied request's new IDs (the one call per request that makes them): the native maker if built.
fresh_fields: Final = _native_fresh_fields() or _python_fresh_fields


def fresh_ids() -> tuple[str, str, str]:
    """(request ID as a v4 UUID, trace ID, span ID), from the same draws as ``fresh_fields``."""
    block = _BLOCK
    at = block.take()
    text = block.text
    return (
        text[at : at + 36],
        text[at + TRACE_ID_AT : at + TRACE_ID_AT + 32],
        text[at + SPAN_ID_AT : at + SPAN_ID_AT + 16],
    )


def new_request_id() -> str:
    """A random (version 4) UUID in its canonical 36-character form."""
    block = _BLOCK
    at = block.take()
    return block.text[at : at + 36]


def new_trace_id() -> str:
    """32 random hex digits, not all zeros."""
    block = _BLOCK
    at = block.take() + TRACE_ID_AT
    return block.text[at : at + 32]


def new_span_id() -> str:
    """16 random hex digits, not all zeros."""
    block = _BLOCK
    at = block.take() + SPAN_ID_AT
    return block.text[at : at + 16]


def request_id_of(values: list[bytes]) -> tuple[str, bool]:
    """(the ID to use, whether the client's was kept); more than one header is not trusted."""
    if len(values) == 1 and valid_request_id(values[0]):
        return values[0].decode("ascii"), True
    return new_request_id(), False
