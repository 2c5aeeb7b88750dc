"""The response head the client receives: the app's end-to-end fields, our request ID, our framing.

The app's framing is not passed through: a body with a ``Content-Length`` is streamed as is, any
other body is re-chunked for HTTP/1.1 clients (so keep-alive survives an app that closes to end a
body) or streamed until close for HTTP/1.0 clients. ``Connection: close`` is sent whenever the client
connection will not be reused: the client asked, the gateway is draining, or the request body was not
fully read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sidecar.gateway import hop_by_hop as hbh
from sidecar.gateway.responses import status_line

if TYPE_CHECKING:
    from sidecar.gateway.exchange import Exchange

_CRLF: Final = b"\r\n"
_KINDS: Final = hbh.RESPONSE_KINDS  # the classification cache, held where compiled code reads it fast
# By name length, the last response field name of that length and its kind (see request_head): the
# app sends the same spellings on every response.
_RECENT_SIZES: Final = 32
_RECENT: Final = [(b"", hbh.KEEP)] * _RECENT_SIZES  # b"" is KEEP, as response_kind would say
_PLAIN: Final = frozenset({b"keep-alive", b"close"})  # the usual Connection values: nothing else to remove


def short_keep(name: bytes) -> bool:
    """True for a response field name so short it cannot be hop-by-hop or one the gateway handles.

    The names that are not KEEP (``hop_by_hop.response_kind``) are at least 7 characters long,
    except ``TE`` (2) and the ``Proxy-*`` family (``Proxy-`` itself is 6, and starts with a ``p``).
    A dict lookup hashes each fresh name: about 400 instructions for ``Date`` or ``Server`` on every
    response.
    """
    size = len(name)
    return size < 7 and size != 2 and (size != 6 or (name[0] != 0x70 and name[0] != 0x50))


def _end_to_end(
    headers: list[tuple[bytes, bytes]], parts: list[bytes]
) -> tuple[bytes | None, bytes | None, bytes | None, list[bytes] | None]:
    """Append kept fields to ``parts``; return (content-length, transfer-encoding, upgrade, connection)."""
    content_length = transfer_encoding = upgrade = None
    connection: list[bytes] | None = None
    for name, value in headers:
        size = len(name)
        if short_keep(name):  # Date, Server, ETag, Vary, ...: kept, without hashing the name
            kind = 0
        elif size < _RECENT_SIZES:  # the last name of this length seen: a comparison, not a hash
            recent, kind = _RECENT[size]
            if name != recent:
                known = _KINDS.get(name)
                kind = hbh.response_kind(name) if known is None else known
                _RECENT[size] = (name, kind)
        else:
            known = _KINDS.get(name)
            kind = hbh.response_kind(name) if known is None else known
        if kind == 0:
            parts.append(b"%b: %b\r\n" % (name, value))
        elif kind == hbh.CONTENT_LENGTH:
            content_length = value
        elif kind == hbh.TRANSFER_ENCODING:
            transfer_encoding = value
        elif kind == hbh.CONNECTION:
            connection = [value] if connection is None else [*connection, value]
        elif kind == hbh.UPGRADE:
            upgrade = value
    return content_length, transfer_encoding, upgrade, connection


def build_response_head(
    ex: Exchange, status: int, headers: list[tuple[bytes, bytes]], closing: bool, extra: bytes = b""
) -> bytes:
    """Set ``ex`` framing flags (``rechunk``, ``until_close``, ``close_after``) and return the head.

    ``extra``: CRLF-terminated lines the gateway adds (security and rate-limit headers, see ``edge``).
    """
    parts = [status_line(status)]
    content_length, transfer_encoding, upgrade, connection = _end_to_end(headers, parts)
    # ``Connection: keep-alive`` as most apps spell it is compared before lower-casing a copy
    if connection is not None and not (
        len(connection) == 1 and (connection[0] == b"keep-alive" or connection[0].lower() in _PLAIN)
    ):
        nominated = hbh.extra_nominated(hbh.connection_tokens(connection))
        if nominated:
            parts = [status_line(status)]
            _end_to_end(hbh.without_nominated(headers, nominated), parts)
    if status == 101:
        parts.append(b"Upgrade: %b\r\nConnection: upgrade\r\n" % (upgrade or b"websocket"))
    elif ex.is_head or status in (204, 304):
        if content_length is not None and status != 204:
            parts.append(b"Content-Length: %b\r\n" % content_length)
    elif content_length is not None and transfer_encoding is None:
        parts.append(b"Content-Length: %b\r\n" % content_length)
    else:
        codings = transfer_encoding.lower().strip() if transfer_encoding is not None else b""
        ex.until_close = not codings.endswith(b"chunked")
        if ex.http10:
            ex.close_after = True
        else:
            ex.rechunk = True
            if codings in (b"", b"chunked"):
                parts.append(b"Transfer-Encoding: chunked\r\n")
            else:  # keep inner codings (gzip, ...); the gateway re-applies the chunked framing
                inner = codings.removesuffix(b"chunked").rstrip(b", ")
                parts.append(b"Transfer-Encoding: " + inner + b", chunked\r\n")
    if extra:
        parts.append(extra)
    connection_field = b"" if status == 101 else _connection_field(ex, closing)
    # a literal format of %b only: compiled, one size sum and one copy per piece
    parts.append(b"X-Request-ID: %b\r\n%b\r\n" % (_request_id_bytes(ex), connection_field))
    return b"".join(parts)


def _request_id_bytes(ex: Exchange) -> bytes:
    """The request ID as request_head encoded it for the app's head (else encoded here)."""
    return ex.request_id_bytes or ex.request_id.encode("ascii")


def _connection_field(ex: Exchange, closing: bool) -> bytes:
    """``Connection: close`` when the client connection ends after this response (sets ``close_after``)."""
    if ex.upgrade or closing or not ex.keep_alive or ex.close_after or not ex.request_complete:
        ex.close_after = True
        return b"Connection: close\r\n"
    return b"Connection: keep-alive\r\n" if ex.http10 else b""


def build_scanned_head(
    ex: Exchange, status: int, kept: bytes, content_length: bytes | None, closing: bool
) -> bytes:
    """The head for a response ``head_scan`` read: the same as ``build_response_head`` would write.

    What the scanner accepts makes most of the decisions above moot: its kept fields arrive as one
    piece, the status is 200 to 599, the body is ``Content-Length`` bytes or none, and ``Connection``
    said no more than ``close`` or ``keep-alive``; the edge protections are off (they read the fields).
    """
    # One format per case, not the length field built first and copied in: a bytes object made and
    # freed per response, about 350 instructions.
    if content_length is not None and status != 204:
        return b"%b%bContent-Length: %b\r\nX-Request-ID: %b\r\n%b\r\n" % (
            status_line(status),
            kept,
            content_length,
            _request_id_bytes(ex),
            _connection_field(ex, closing),
        )
    return b"%b%bX-Request-ID: %b\r\n%b\r\n" % (
        status_line(status),
        kept,
        _request_id_bytes(ex),
        _connection_field(ex, closing),
    )


def build_interim_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 1xx (100 Continue, 103 Early Hints) passed on to an HTTP/1.1 client."""
    parts = [status_line(status)]
    _end_to_end(headers, parts)
    parts.append(_CRLF)
    return b"".join(parts)
