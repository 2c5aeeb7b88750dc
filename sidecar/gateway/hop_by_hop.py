"""Which header fields a proxy must not forward (RFC 9110 §7.6.1), and what the gateway does with the rest.

Hop-by-hop fields describe one connection, not the message: ``Connection`` and every field it names,
``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and the ``Proxy-*`` family. The
hot path classifies each raw header name once per distinct spelling (a small cache), so a request pays
one dict lookup per header instead of lower-casing and comparing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection"}
)

# Request header kinds (small ints: compared in the hot loop).
KEEP: Final = 0
DROP: Final = 1
CONNECTION: Final = 2
HOST: Final = 3
REQUEST_ID: Final = 4
TRACEPARENT: Final = 5
TRACESTATE: Final = 6
X_FORWARDED_FOR: Final = 7
X_FORWARDED_PROTO: Final = 8
X_FORWARDED_HOST: Final = 9
FORWARDED: Final = 10
USER_AGENT: Final = 11
CONTENT_LENGTH: Final = 12
TRANSFER_ENCODING: Final = 13
UPGRADE: Final = 14
X_REAL_IP: Final = 15  # dropped: the gateway states the client address itself (forwarded.py)

_REQUEST_SPECIAL: Final = {
    b"connection": CONNECTION,
    b"host": HOST,
    b"x-request-id": REQUEST_ID,
    b"traceparent": TRACEPARENT,
    b"tracestate": TRACESTATE,
    b"x-forwarded-for": X_FORWARDED_FOR,
    b"x-forwarded-proto": X_FORWARDED_PROTO,
    b"x-forwarded-host": X_FORWARDED_HOST,
    b"forwarded": FORWARDED,
    b"user-agent": USER_AGENT,
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"upgrade": UPGRADE,
    b"x-real-ip": X_REAL_IP,
}
# Fields a ``Connection`` header may not remove: the ones that frame the message or that the gateway
# writes itself. Removing Content-Length while llhttp reads the body by it was request smuggling (the
# body reached the app as a request of its own); the rest would let a client strip what the app relies
# on. A nomination of one of these is ignored (the field is restated or replaced anyway).
PROTECTED: Final = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"host",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-real-ip",
        b"forwarded",
    }
)
_RESPONSE_SPECIAL: Final = {
    b"connection": CONNECTION,
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"upgrade": UPGRADE,
    b"x-request-id": REQUEST_ID,
}
_CACHE_LIMIT: Final = 2048
REQUEST_KINDS: Final[dict[bytes, int]] = {}  # raw name -> kind, filled by request_kind (never rebound)
RESPONSE_KINDS: Final[dict[bytes, int]] = {}


def is_hop_by_hop(lower_name: bytes) -> bool:
    """True for the fixed hop-by-hop set and any ``Proxy-*`` field (credentials meant for this hop)."""
    return lower_name in HOP_BY_HOP or lower_name.startswith(b"proxy-")


def _classify(name: bytes, special: dict[bytes, int]) -> int:
    lower = name.lower()
    kind = special.get(lower)
    if kind is not None:
        return kind
    return DROP if is_hop_by_hop(lower) else KEEP


def request_kind(name: bytes) -> int:
    """What the gateway does with a request header of this (raw) name."""
    kind = REQUEST_KINDS.get(name)
    if kind is None:
        kind = _classify(name, _REQUEST_SPECIAL)
        if len(REQUEST_KINDS) < _CACHE_LIMIT:
            REQUEST_KINDS[name] = kind
    return kind


def response_kind(name: bytes) -> int:
    """What the gateway does with a response header of this (raw) name."""
    kind = RESPONSE_KINDS.get(name)
    if kind is None:
        kind = _classify(name, _RESPONSE_SPECIAL)
        if len(RESPONSE_KINDS) < _CACHE_LIMIT:
            RESPONSE_KINDS[name] = kind
    return kind


def connection_tokens(values: Iterable[bytes]) -> frozenset[bytes]:
    """The lower-cased field names listed in ``Connection`` values (``close``, ``keep-alive``, ...)."""
    tokens: set[bytes] = set()
    for value in values:
        for raw in value.split(b","):
            token = raw.strip().lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def extra_nominated(tokens: frozenset[bytes]) -> frozenset[bytes]:
    """Names in ``Connection`` that are not already dropped: those must be removed too (rare).

    ``PROTECTED`` names never are: framing and the gateway's own fields are not the client's to remove.
    """
    return frozenset(t for t in tokens if not is_hop_by_hop(t) and t != b"close" and t not in PROTECTED)


def without_nominated(
    headers: list[tuple[bytes, bytes]], nominated: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """``headers`` minus the fields a ``Connection`` header named."""
    return [(n, v) for n, v in headers if n.lower() not in nominated]
