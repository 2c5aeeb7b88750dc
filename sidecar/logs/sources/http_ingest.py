"""``POST /ingest/logs`` on the admin listener: NDJSON bodies, optionally gzip-compressed.

Bounded three ways: the body as sent (``max_body_bytes``, checked against ``Content-Length`` first and
then while reading), the body once decompressed (``max_decompressed_bytes``: a gzip bomb is stopped
after that many bytes, never inflated in full), and the number of ingest requests at once. Either size
limit answers 413 and nothing of that body is counted, so a client can split it and retry. Lines are
processed in slices, yielding to the loop between them, and the answer says how many were accepted
and rejected (by reason).
"""

from __future__ import annotations

import asyncio
import zlib

import orjson
from aiohttp import web

from sidecar.app_keys import LOGS
from sidecar.logs.parse import TOO_LONG
from sidecar.logs.runtime import LogRuntime

SLICE_LINES = 2000
READ_CHUNK = 64 * 1024
_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


class _TooLarge(Exception):
    def __init__(self, what: str, limit: int) -> None:
        super().__init__(what)
        self.what = what
        self.limit = limit


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _too_large(exc: _TooLarge) -> web.Response:
    return _json(
        {
            "error": f"{exc.what} is larger than {exc.limit} bytes; send smaller batches",
            "limit_bytes": exc.limit,
        },
        status=413,
    )


async def _read_body(request: web.Request, max_raw: int, max_plain: int) -> bytes:
    """The (already decompressed, when aiohttp decodes it) body, stopping as soon as a limit is passed."""
    content = request.content
    parts: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > max_plain:
            raise _TooLarge("the decompressed body", max_plain)
        raw = getattr(content, "total_raw_bytes", size)
        if raw > max_raw:
            raise _TooLarge("the request body", max_raw)
        parts.append(chunk)
    return b"".join(parts)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body that reached us still compressed, never producing more than ``limit``."""
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise web.HTTPBadRequest(text="the body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _TooLarge("the decompressed body", limit)
    return out


async def ingest_logs(request: web.Request) -> web.Response:
    runtime: LogRuntime = request.app[LOGS]
    limits = runtime.settings.http
    if not limits.enabled:
        return _json({"error": "log ingestion over HTTP is disabled (logs.http.enabled)"}, status=404)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        return _json({"error": f"Content-Encoding {encoding!r} is not supported; use gzip"}, status=415)
    declared = request.content_length
    if declared is not None and declared > limits.max_body_bytes:
        return _too_large(_TooLarge("the request body", limits.max_body_bytes))
    if runtime.ingesting >= limits.max_concurrent:
        return _json(
            {"error": "too many log ingest requests at once; retry shortly"},
            status=503,
            headers={"Retry-After": "1"},
        )
    compressed = encoding not in {"", "identity"}
    max_plain = limits.max_decompressed_bytes if compressed else limits.max_body_bytes
    runtime.ingesting += 1
    try:
        try:
            body = await _read_body(request, limits.max_body_bytes, max_plain)
            if compressed and body[:2] == b"\x1f\x8b":  # not decoded on the way in
                body = _gunzip(body, max_plain)
        except _TooLarge as exc:
            return _too_large(exc)
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
