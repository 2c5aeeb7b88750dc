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


def fresh_ids() -> tuple[str, str, str]:
    """(request ID as a v4 UUID, trace ID, span ID) from one 320-bit random draw.

    The gateway needs all three for most requests; one draw and one hex formatting is cheaper than
    three. A trace or span ID must not be all zeros (W3C): that 1-in-2^64 case draws again.
    """
    h = random.getrandbits(320).to_bytes(40, "big").hex()  # twice as fast as f"{n:080x}"
    trace_id, span_id = h[32:64], h[64:]
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return fresh_ids()
    request_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"
    return request_id, trace_id, span_id


def request_id_of(values: list[bytes]) -> tuple[str, bool]:
    """(the ID to use, whether the client's was kept); more than one header is not trusted."""
    if len(values) == 1 and valid_request_id(values[0]):
        return values[0].decode("ascii"), True
    return new_request_id(), False
