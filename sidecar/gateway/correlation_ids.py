"""``X-Request-ID``: keep a well-formed one from the client, replace anything else with a fresh UUID.

A request ID ends up in log lines, JSON and other systems' headers, so only short, visible ASCII is
trusted: at most 128 characters of ``%x21-7E`` (no spaces, control characters, CR/LF or non-ASCII).
IDs come from ``random.getrandbits`` (as OpenTelemetry's SDK does for trace IDs): unique, not secret,
and a tenth of the cost of ``uuid.uuid4()`` on the hot path.
"""

from __future__ import annotations

import random
import re
from typing import Final

MAX_REQUEST_ID: Final = 128
_VALID: Final = re.compile(rb"[\x21-\x7e]{1,128}")
_VERSION_MASK = ~(0xF000 << 64) & ((1 << 128) - 1)
_VERSION_4 = 0x4000 << 64
_VARIANT_MASK = ~(0xC000 << 48) & ((1 << 128) - 1)
_VARIANT_RFC4122 = 0x8000 << 48


def valid_request_id(value: bytes) -> bool:
    """True when ``value`` may be passed on unchanged."""
    return _VALID.fullmatch(value) is not None


def new_request_id() -> str:
    """A random (version 4) UUID in its canonical 36-character form."""
    n = (random.getrandbits(128) & _VERSION_MASK & _VARIANT_MASK) | _VERSION_4 | _VARIANT_RFC4122
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16


_IDS_PER_DRAW: Final = 64
_HEX_PER_IDS: Final = 80  # 320 random bits: 128 for the request ID, 128 trace ID, 64 span ID


class _RandomHex:
    """Hex digits from one large random draw, handed out 80 at a time (one draw per 64 requests)."""

    __slots__ = ("at", "digits")

    def __init__(self) -> None:
        self.digits = ""
        self.at = 0

    def take(self) -> tuple[str, int]:
        """(the digits, where this caller's 80 start)."""
        at = self.at
        if at >= len(self.digits):
            draw = random.getrandbits(_HEX_PER_IDS * 4 * _IDS_PER_DRAW)
            self.digits = draw.to_bytes(_HEX_PER_IDS // 2 * _IDS_PER_DRAW, "big").hex()
            at = 0
        self.at = at + _HEX_PER_IDS
        return self.digits, at


_RANDOM_HEX: Final = _RandomHex()


def fresh_ids() -> tuple[str, str, str]:
    """(request ID as a v4 UUID, trace ID, span ID) from 320 random bits.

    The gateway needs all three for most requests; drawing and hex-formatting the bits for 64
    requests at once is cheaper than three draws per request. A trace or span ID must not be all
    zeros (W3C): that 1-in-2^64 case takes the next 320 bits.
    """
    h, at = _RANDOM_HEX.take()
    trace_id, span_id = h[at + 32 : at + 64], h[at + 64 : at + 80]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return fresh_ids()
    request_id = (
        f"{h[at : at + 8]}-{h[at + 8 : at + 12]}-4{h[at + 13 : at + 16]}-"
        f"{_VARIANT[h[at + 16]]}{h[at + 17 : at + 20]}-{h[at + 20 : at + 32]}"
    )
    return request_id, trace_id, span_id


def request_id_of(values: list[bytes]) -> tuple[str, bool]:
    """(the ID to use, whether the client's was kept); more than one header is not trusted."""
    if len(values) == 1 and valid_request_id(values[0]):
        return values[0].decode("ascii"), True
    return new_request_id(), False
