"""The guarantee every listener's app gives: a malformed request is a 4xx with a reason, never a 500.

``client_errors`` is the outermost middleware of the admin app; the health app wraps each of its
handlers with ``answering_client_errors`` instead (the same mapping, see there why). What the client caused
(a body that does not decode, a broken chunked framing, a body refused by ``core.bodies``, a client
that went away mid-body) becomes 400/408/413/415 with a one-line JSON reason and no traceback. Anything else
that escapes a handler is the sidecar's own bug: it is logged once with its traceback and answered
500, so a test that throws malformed requests at every route catches it.

``HANDLER_ARGS`` are the aiohttp protocol settings both apps share: aiohttp must not inflate request
bodies itself (unbounded, and a decoding error there is a 500), so handlers read raw bytes and
``core.bodies`` inflates them with its bounds.
"""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from sidecar.core.bodies import BodyError

log = logging.getLogger(__name__)

HANDLER_ARGS: Final[dict[str, Any]] = {"auto_decompress": False}


def _answer(status: int, reason: str) -> web.Response:
    response = web.Response(
        body=orjson.dumps({"error": reason}), status=status, content_type="application/json"
    )
    if status in (400, 408):
        response.force_close()  # the rest of that connection's bytes cannot be trusted to frame
    return response


@web.middleware
async def client_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map what a client can cause to a 4xx with a reason; log (and 500) only our own bugs."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        return _mapped(request, exc)


def answering_client_errors(handler: Handler) -> Handler:
    """``client_errors`` for one handler, without aiohttp's middleware chain.

    Any middleware on an app makes aiohttp run its chain for every request: a cache lookup for the
    built chain, a frame per middleware and one more that sets ``current_app`` around the handler.
    For ``/readyz``, polled by every load balancer, that is a good part of what it cost beyond an
    aiohttp hello world (``bench/health_instructions.py``). An app whose routes are all wrapped here
    gives the same answers with one frame. Requests no route matches (404, 405) raise
    ``HTTPException``, which ``client_errors`` lets through as well.
    """

    @wraps(handler)
    async def answering(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            return _mapped(request, exc)

    return answering


def _mapped(request: web.Request, exc: Exception) -> web.Response:
    """The answer to what escaped a handler; called inside its ``except``, so a bug logs its traceback."""
    if isinstance(exc, BodyError):
        return _answer(exc.status, exc.detail)
    if isinstance(exc, web.RequestPayloadError):
        return _answer(400, f"the request body could not be read: {_first_line(exc)}")
    if isinstance(exc, HttpProcessingError):
        return _answer(400, f"the request could not be read: {type(exc).__name__}")
    if isinstance(exc, ConnectionResetError | ClientConnectionResetError):
        # The client went away mid-body: nobody will read this answer, and aiohttp drops it quietly
        # (re-raised, aiohttp would log a traceback for the client's disconnection).
        return _answer(400, "the connection was lost while the request was read")
    log.exception(
        "unexpected error while handling a request",
        extra={"method": request.method, "route": _route(request)},
    )
    return _answer(500, "internal error in the sidecar; it has been logged")


def _first_line(exc: BaseException) -> str:
    """The exception's message without anything the client sent after a newline."""
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"
