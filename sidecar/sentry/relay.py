"""The Sentry relay on the admin listener: the app's SDK sends here, the sidecar scrubs, spools, forwards.

An app sets its SDK's DSN to ``http://<key>@127.0.0.1:9798/<project>`` (its real DSN with the sidecar as
host). ``POST /api/<project>/envelope/`` takes envelopes, ``POST /api/<project>/store/`` legacy JSON
events. SDKs cannot send the admin bearer token, so these two routes (and only these) skip it and
authenticate the way Sentry does: the public key, from ``X-Sentry-Auth``, ``?sentry_key=`` or the
envelope header's ``dsn``, must be the app DSN's key (compared in constant time).

Authentication comes first: the key (and the project) is checked before a byte of the body is read.
An envelope whose only key is its header's ``dsn`` has just that first line inflated and checked
before the rest; ``/store/`` needs the key in ``X-Sentry-Auth`` or ``?sentry_key=``.

Bounded (``core.bodies``): at most ``max_body_bytes`` on the wire and ``max_decompressed_bytes`` once
inflated (gzip, deflate; checked while inflating, else 413), the whole body within
``limits.body_timeout`` (else 408); a body that does not decode as labelled is 400. The answer is 200
only once the envelope is on disk, so an acknowledged event survives a crash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hmac
import logging
import re

import orjson
from aiohttp import web

from sidecar.app_keys import SENTRY, SETTINGS
from sidecar.core.bodies import BodyError, inflate, read_body
from sidecar.sentry.dsn import Dsn
from sidecar.sentry.envelope import Envelope, EnvelopeError, parse
from sidecar.sentry.events import new_event_id
from sidecar.sentry.forwarder import SentryForwarder
from sidecar.sentry.spool import SpoolFull

log = logging.getLogger(__name__)

RELAY_PATH = re.compile(r"^/api/[^/]+/(?:envelope|store)/?$")
_AUTH_PAIR = re.compile(r"([a-z_]+)\s*=\s*([^,\s]+)")
OFFLOAD_BYTES = 64 * 1024


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
        response = web.json_response({"detail": exc.detail}, status=exc.status, headers=headers)
        if exc.status == 408:
            response.force_close()  # the rest of a slow body is not worth waiting for
        return response
    forwarder.stats.relay_answer(200)
    return web.json_response({"id": event_id} if event_id else {})


async def _relay(request: web.Request, forwarder: SentryForwarder, *, legacy: bool) -> str | None:
    """Authenticate from what came before the body, then read it bounded, then parse and spool it."""
    dsn = forwarder.dsn
    if dsn is None:
        raise RelayError(503, "the sidecar has no sentry.app_dsn configured: nowhere to forward events")
    settings = request.app[SETTINGS]
    limits = settings.sentry.relay
    supplied = _key_from_request(request)
    if supplied is not None or legacy:  # a legacy event has no envelope header to carry a key
        _check_key(supplied, dsn)
    if request.match_info["project_id"] != dsn.project_id:
        raise RelayError(
            403,
            f"project {request.match_info['project_id']!r} is not the app's: use the app DSN's project id",
        )
    try:
        body = await read_body(
            request.content,
            content_encoding=request.headers.get("Content-Encoding", ""),
            content_length=request.content_length,
            max_wire=limits.max_body_bytes,
            max_decoded=limits.max_decompressed_bytes,
            deadline=settings.limits.body_timeout,
            wire_setting="sentry.relay.max_body_bytes",
            decoded_setting="sentry.relay.max_decompressed_bytes",
            first_line=None if supplied is not None else lambda line: _check_header_key(line, dsn),
        )
    except BodyError as exc:
        raise RelayError(exc.status, exc.detail) from None
    compressed_event = legacy and body.lstrip()[:1] not in (b"{", b"[")
    offload = len(body) > OFFLOAD_BYTES or compressed_event  # parse and scrub big bodies off the loop
    limit = limits.max_decompressed_bytes
    if legacy:
        read = functools.partial(_legacy_envelope, body, limit)
    else:
        read = functools.partial(_parse_envelope, body)
    envelope = await asyncio.to_thread(read) if offload else read()
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


def _check_header_key(line: bytes, dsn: Dsn) -> None:
    """No key before the body: the envelope header's ``dsn`` must carry it (checked before the rest)."""
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        header = None
    value = header.get("dsn") if isinstance(header, dict) else None
    if not isinstance(value, str):
        _check_key(None, dsn)
        return
    try:
        key = Dsn.parse(value).public_key
    except ValueError:
        raise RelayError(400, "invalid envelope: the 'dsn' header is not a DSN") from None
    _check_key(key, dsn)


def _check_key(supplied: str | None, dsn: Dsn) -> None:
    if not supplied:
        raise RelayError(401, "missing sentry_key: send X-Sentry-Auth, ?sentry_key= or a dsn envelope header")
    if not hmac.compare_digest(supplied.encode("utf-8", "surrogateescape"), dsn.public_key.encode()):
        raise RelayError(403, "unknown sentry_key: use the public key of the app's DSN")


def _parse_envelope(body: bytes) -> Envelope:
    try:
        return parse(body)
    except EnvelopeError as exc:
        raise RelayError(400, f"invalid envelope: {exc}") from None


def _legacy_envelope(body: bytes, limit: int) -> Envelope:
    """``/store/``: one JSON event (very old SDKs: base64 of zlib); becomes a one-item envelope.

    The zlib stream is inflated with the same bound as a ``Content-Encoding`` (``limit`` bytes).
    """
    text = body.strip()
    if text[:1] not in (b"{", b"["):
        try:
            compressed = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RelayError(400, "invalid event: the body is neither JSON nor base64") from None
        try:
            text = inflate(compressed, "deflate", limit, "sentry.relay.max_decompressed_bytes")
        except BodyError as exc:
            raise RelayError(exc.status, f"invalid event: {exc.detail}") from None
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RelayError(400, f"invalid event: the body is not JSON ({exc.msg})") from None
    if not isinstance(event, dict):
        raise RelayError(400, "invalid event: the body must be a JSON object")
    if not isinstance(event.get("event_id"), str):
        event["event_id"] = new_event_id()
    return Envelope.for_event(event)
