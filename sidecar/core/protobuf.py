"""The protobuf wire primitives the OTLP encoders write by hand (traces and logs).

Both encoders write OTLP messages straight to bytes rather than building the SDK's message objects
(a tenth of the cost per span or record); these are the few primitives they share. Here, not in
either encoder: the trace encoder imports the OpenTelemetry SDK, which the log exporter must not load.
"""

from __future__ import annotations

import struct
from typing import Final

SMALL: Final = [bytes((i,)) for i in range(128)]  # one-byte varints, made once
FIXED64: Final = struct.Struct("<Q").pack


def varint(value: int) -> bytes:
    """A protobuf varint of a non-negative integer."""
    if value < 0x80:
        return SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + varint(len(payload)) + payload
