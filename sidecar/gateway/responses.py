"""Responses the gateway writes itself (limits, timeouts, upstream failures), and status lines.

Each says in one line what happened and carries the request ID when there is one, so a user's
screenshot of an error page is enough to find the request in the logs.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}

MESSAGES: dict[str, bytes] = {
    "refused": b"the app refused the connection",
    "reset": b"the app closed the connection before answering",
    "connect_error": b"the app could not be reached",
    "protocol": b"the app sent an invalid HTTP response",
    "timeout": b"the app did not answer in time",
    "connect_timeout": b"the app did not accept the connection in time",
    "concurrency": b"too many requests in flight; retry shortly",
    "header_too_large": b"request header fields too large",
    "uri_too_long": b"request target too long",
    "header_timeout": b"request headers not received in time",
    "body_timeout": b"request body not received in time",
    "bad_request": b"malformed HTTP request",
    "bad_framing": b"ambiguous message framing (Content-Length / Transfer-Encoding)",
    "bad_host": b"missing, repeated or invalid Host, or a target whose authority is not the Host",
    "bad_target": b"invalid request target",
    "transfer_coding": b"only the chunked transfer coding is supported",
    "http_version": b"only HTTP/1.0 and HTTP/1.1 are supported",
    "method": b"CONNECT is not supported by this reverse proxy",
    "internal": b"the gateway failed to handle the request",
    "rate_limited": b"rate limit exceeded; retry after the time in Retry-After",
    "rate_limit_unavailable": b"the rate limiter is unavailable; retry shortly",
}


_OK: Final = STATUS_LINES[200]


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <phrase>``; 200, most responses, without a dict lookup."""
    if status == 200:
        return _OK
    line = STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def error_response(
    status: int, reason: str, request_id: str | None, *, close: bool = True, extra: bytes = b""
) -> bytes:
    """A complete small text/plain response for ``status`` explaining ``reason``; ``extra``: more fields."""
    body = b"%d %s: %s\n" % (status, HTTPStatus(status).phrase.encode(), MESSAGES.get(reason, b"error"))
    head = [status_line(status), b"Content-Type: text/plain; charset=utf-8\r\n"]
    head.append(b"Content-Length: %d\r\n" % len(body))
    if request_id:
        head.append(b"X-Request-ID: " + request_id.encode("ascii") + b"\r\n")
    if extra:
        head.append(extra)
    elif status == 503:
        head.append(b"Retry-After: 1\r\n")
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + body
