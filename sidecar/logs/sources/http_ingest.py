"""``POST /ingest/logs`` on the admin listener: NDJSON bodies, optionally gzip-compressed.

The admin token (a middleware) is checked before the body is touched. Bounded four ways, while the
body streams in (``core.bodies``): the body as sent (``max_body_bytes``, checked against
``Content-Length`` first and then while reading), the body once decompressed
(``max_decompressed_bytes``: checked while inflating, so a gzip bomb costs at most that much memory),
the time the whole body may take (``limits.body_timeout``: 408 and the slot is freed), and the number of
ingest requests at once. A size limit answers 413, a body that is not valid gzip or is cut short 400;
nothing of a refused body is counted, so a client can split it and retry. Lines are
processed in slices, yielding to the loop between them, and the answer says how many were accepted
and rejected (by reason).
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from sidecar.app_keys import LOGS, SETTINGS
from sidecar.core.bodies import BodyError, parse_codings, read_body
from sidecar.logs.parse import TOO_LONG
from sidecar.logs.runtime import LogRuntime

SLICE_LINES = 2000


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _body_error(exc: BodyError) -> web.Response:
    """400/408/413/415 with the reason; nothing of that body was counted, so the client may retry."""
    body: dict[str, object] = {"error": exc.detail}
    if exc.limit is not None:
        body["limit_bytes"] = exc.limit
    response = _json(body, status=exc.status)
    if exc.status == 408:
        response.force_close()  # the rest of a slow body is not worth waiting for
    return response


async def ingest_logs(request: web.Request) -> web.Response:
    runtime: LogRuntime = request.app[LOGS]
    limits = runtime.settings.http
    if not limits.enabled:
        return _json({"error": "log ingestion over HTTP is disabled (logs.http.enabled)"}, status=404)
    encoding = request.headers.get("Content-Encoding", "")
    try:
        compressed = bool(parse_codings(encoding))
    except BodyError as exc:
        return _body_error(exc)
    declared = request.content_length
    if declared is not None and declared > limits.max_body_bytes:
        return _body_error(
            BodyError(
                413,
                f"the body is larger than {limits.max_body_bytes} bytes (logs.http.max_body_bytes)",
                limits.max_body_bytes,
            )
        )
    if runtime.ingesting >= limits.max_concurrent:
        return _json(
            {"error": "too many log ingest requests at once; retry shortly"},
            status=503,
            headers={"Retry-After": "1"},
        )
    runtime.ingesting += 1
    try:
        try:
            body = await read_body(
                request.content,
                content_encoding=encoding,
                content_length=request.content_length,
                max_wire=limits.max_body_bytes,
                max_decoded=limits.max_decompressed_bytes if compressed else limits.max_body_bytes,
                deadline=request.app[SETTINGS].limits.body_timeout,
                wire_setting="logs.http.max_body_bytes",
                decoded_setting="logs.http.max_decompressed_bytes",
            )
        except BodyError as exc:
            return _body_error(exc)
        source = runtime.http_source(request.query.get("source"))
        limit = runtime.settings.max_line_bytes
        lines = [line for line in body.split(b"\n") if len(line) <= limit]
        too_long = body.count(b"\n") + 1 - len(lines)
        del body
        accepted = 0
        rejected: dict[str, int] = {TOO_LONG: too_long} if too_long else {}
        if too_long:
            runtime.metrics.reject(source, TOO_LONG, too_long)
        feed = runtime.pipeline.feed
        for start in range(0, len(lines), SLICE_LINES):
            result = feed(source, lines[start : start + SLICE_LINES])
            accepted += result.accepted
            for reason, n in result.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + n
            await asyncio.sleep(0)
    finally:
        runtime.ingesting -= 1
    return _json(
        {
            "accepted": accepted,
            "rejected": sum(rejected.values()),
            "rejected_by_reason": rejected,
            "source": source,
        }
    )
