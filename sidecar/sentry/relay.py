"""The Sentry relay on the admin listener: the app's SDK sends here, the sidecar scrubs, spools, forwards.

An app sets its SDK's DSN to ``http://<key>@127.0.0.1:9798/<project>`` (its real DSN with the sidecar as
host). ``POST /api/<project>/envelope/`` takes envelopes, ``POST /api/<project>/store/`` legacy JSON
events. SDKs cannot send the admin bearer token, so these two routes (and only these) skip it and
authenticate the way Sentry does: the public key, from ``X-Sentry-Auth``, ``?sentry_key=`` or the
envelope header's ``dsn``, must be the app DSN's key (compared in constant time).

Bounded: at most ``max_body_bytes`` on the wire and ``max_decompressed_bytes`` once inflated (gzip,
deflate; br when the brotli module is installed), else 413; the admin listener's own
``limits.max_body_bytes`` (a declared ``Content-Length``) applies before the relay sees the request.
The answer is 200 only once the envelope is on disk, so an acknowledged event survives a crash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import importlib
import importlib.util
import logging
import re
import zlib
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from sidecar.app_keys import SENTRY, SETTINGS
from sidecar.sentry.dsn import Dsn
from sidecar.sentry.envelope import Envelope, EnvelopeError, parse
from sidecar.sentry.events import new_event_id
from sidecar.sentry.forwarder import SentryForwarder
from sidecar.sentry.spool import SpoolFull

log = logging.getLogger(__name__)

RELAY_PATH = re.compile(r"^/api/[^/]+/(?:envelope|store)/?$")
_AUTH_PAIR = re.compile(r"([a-z_]+)\s*=\s*([^,\s]+)")
_CHUNK = 64 * 1024
OFFLOAD_BYTES = 256 * 1024


class RelayError(Exception):
    """An answer other than 200, with the text an SDK author needs to fix it."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def is_relay_request(request: web.Request) -> bool:
    """True for exactly the relay routes (when the relay is on): they authenticate by sentry_key instead."""
    return (
        request.method == "POST"
        and RELAY_PATH.match(request.path) is not None
        and request.app[SETTINGS].sentry.relay.enabled
    )


def add_relay_routes(app: web.Application, core: web.Application) -> None:
    """Register the relay on the admin app (when enabled), sharing the core app's forwarder."""
    app[SENTRY] = core[SENTRY]
    if not app[SETTINGS].sentry.relay.enabled:
        return
    for path, handler in (("envelope", envelope_endpoint), ("store", store_endpoint)):
        app.router.add_post(f"/api/{{project_id}}/{path}/", handler)
        app.router.add_post(f"/api/{{project_id}}/{path}", handler)


async def envelope_endpoint(request: web.Request) -> web.Response:
    return await _handle(request, legacy=False)


async def store_endpoint(request: web.Request) -> web.Response:
    return await _handle(request, legacy=True)


async def _handle(request: web.Request, *, legacy: bool) -> web.Response:
    forwarder = request.app[SENTRY]
    try:
        event_id = await _relay(request, forwarder, legacy=legacy)
    except RelayError as exc:
        forwarder.stats.relay_answer(exc.status)
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return web.json_response({"detail": exc.detail}, status=exc.status, headers=headers)
    forwarder.stats.relay_answer(200)
    return web.json_response({"id": event_id} if event_id else {})


async def _relay(request: web.Request, forwarder: SentryForwarder, *, legacy: bool) -> str | None:
    dsn = forwarder.dsn
    if dsn is None:
        raise RelayError(503, "the sidecar has no sentry.app_dsn configured: nowhere to forward events")
    limits = request.app[SETTINGS].sentry.relay
    supplied = _key_from_request(request)
    if supplied is not None:
        _check_key(supplied, dsn)
    if request.match_info["project_id"] != dsn.project_id:
        raise RelayError(
            403,
            f"project {request.match_info['project_id']!r} is not the app's: use the app DSN's project id",
        )
    body = await _read_body(request, limits.max_body_bytes, limits.max_decompressed_bytes)
    offload = len(body) > OFFLOAD_BYTES  # parse and scrub big bodies off the event loop
    read = _legacy_envelope if legacy else _parse_envelope
    envelope = await asyncio.to_thread(read, body) if offload else read(body)
    if supplied is None:
        _check_key(_key_from_envelope(envelope), dsn)
    try:
        await forwarder.relay(envelope, offload=offload)
    except EnvelopeError as exc:
        raise RelayError(400, f"invalid envelope: {exc}") from None
    except (SpoolFull, TimeoutError):
        raise RelayError(503, "the sidecar cannot take more events right now; retry later") from None
    return envelope.event_id


def _key_from_request(request: web.Request) -> str | None:
    for header in ("X-Sentry-Auth", "Authorization"):
        value = request.headers.get(header, "")
        if value[:7].lower() == "sentry ":
            pairs: dict[str, str] = dict(_AUTH_PAIR.findall(value[7:]))
            if "sentry_key" in pairs:
                return pairs["sentry_key"]
    return request.query.get("sentry_key")


def _key_from_envelope(envelope: Envelope) -> str | None:
    dsn = envelope.headers.get("dsn")
    if not isinstance(dsn, str):
        return None
    try:
        return Dsn.parse(dsn).public_key
    except ValueError:
        raise RelayError(400, "invalid envelope: the 'dsn' header is not a DSN") from None


def _check_key(supplied: str | None, dsn: Dsn) -> None:
    if not supplied:
        raise RelayError(401, "missing sentry_key: send X-Sentry-Auth, ?sentry_key= or a dsn envelope header")
    if not hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), dsn.public_key.encode()):
        raise RelayError(403, "unknown sentry_key: use the public key of the app's DSN")


async def _read_body(request: web.Request, max_wire: int, max_decoded: int) -> bytes:
    """The body, bounded on the wire (``max_body_bytes``) and decoded (``max_decompressed_bytes``).

    aiohttp's server decodes gzip/deflate (and br with brotli installed) while streaming, so normally the
    chunks read here are already inflated and only the bounds are ours; a body that still looks
    compressed (a server with ``auto_decompress`` off) is inflated here, with the same bound.
    """
    wire_limit = RelayError(413, f"body larger than {max_wire} bytes (sentry.relay.max_body_bytes)")
    decoded_limit = RelayError(
        413, f"body inflates past {max_decoded} bytes (sentry.relay.max_decompressed_bytes)"
    )
    if request.content_length is not None and request.content_length > max_wire:
        raise wire_limit
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.read(_CHUNK):
            size += len(chunk)
            if size > max_decoded:
                raise decoded_limit
            if getattr(request.content, "total_raw_bytes", size) > max_wire:
                raise wire_limit
            chunks.append(chunk)
    except HttpProcessingError:
        raise RelayError(400, "body is not valid for its Content-Encoding") from None
    body = b"".join(chunks)
    encoding = request.headers.get("Content-Encoding", "")
    if encoding and body.lstrip()[:1] != b"{":
        if len(body) > max_wire:
            raise wire_limit
        body = _inflate(body, encoding, max_decoded)
    return body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            body = _bounded_zlib(body, 31, limit)
        elif coding == "deflate":
            try:
                body = _bounded_zlib(body, 15, limit)
            except RelayError as exc:
                if exc.status == 413:
                    raise
                body = _bounded_zlib(body, -15, limit)  # raw deflate, as some clients send it
        elif coding == "br" and importlib.util.find_spec("brotli") is not None:
            body = _brotli(body, limit)
        else:
            raise RelayError(415, f"Content-Encoding {coding!r} is not supported: use gzip or deflate")
    return body


def _bounded_zlib(data: bytes, wbits: int, limit: int) -> bytes:
    """Inflate without ever holding more than ``limit + 1`` bytes of output (zip bombs stop at the limit)."""
    out = bytearray()
    remaining = data
    while remaining:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(remaining, limit + 1 - len(out))
        except zlib.error:
            raise RelayError(400, "body is not valid for its Content-Encoding") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise RelayError(413, f"body inflates past {limit} bytes (sentry.relay.max_decompressed_bytes)")
        if not inflater.eof:
            raise RelayError(400, "compressed body is truncated")
        remaining = inflater.unused_data if wbits == 31 else b""  # gzip may have several members
    return bytes(out)


def _brotli(data: bytes, limit: int) -> bytes:
    brotli: Any = importlib.import_module("brotli")
    inflater = brotli.Decompressor()
    try:
        try:
            out: bytes = inflater.process(data, output_buffer_limit=limit + 1)
        except TypeError:  # older brotli: no output bound, so the size is checked afterwards
            out = inflater.process(data)
    except brotli.error:
        raise RelayError(400, "body is not valid brotli") from None
    if len(out) > limit:
        raise RelayError(413, f"body inflates past {limit} bytes (sentry.relay.max_decompressed_bytes)")
    return out


def _parse_envelope(body: bytes) -> Envelope:
    try:
        return parse(body)
    except EnvelopeError as exc:
        raise RelayError(400, f"invalid envelope: {exc}") from None


def _legacy_envelope(body: bytes) -> Envelope:
    """``/store/``: one JSON event (very old SDKs: base64 of zlib); becomes a one-item envelope."""
    text = body.strip()
    if text[:1] not in (b"{", b"["):
        try:
            text = zlib.decompress(base64.b64decode(text, validate=True))
        except (binascii.Error, zlib.error, ValueError):
            raise RelayError(400, "invalid event: the body is not JSON") from None
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RelayError(400, f"invalid event: the body is not JSON ({exc.msg})") from None
    if not isinstance(event, dict):
        raise RelayError(400, "invalid event: the body must be a JSON object")
    if not isinstance(event.get("event_id"), str):
        event["event_id"] = new_event_id()
    return Envelope.for_event(event)
