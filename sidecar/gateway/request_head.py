"""The request head the app receives: the client's end-to-end fields plus IDs, trace and forwarding.

One pass over the raw header list: end-to-end fields are copied as bytes (name spelling kept),
hop-by-hop fields are dropped, the fields the gateway owns (``X-Request-ID``, ``traceparent``,
``tracestate``, ``X-Forwarded-*``, ``X-Real-IP``) are replaced, and framing is restated from what
``framing.decide`` made of the message, never copied from the client's fields. The same pass counts
``Host`` and ``Content-Length`` lines for it. The upstream connection is always HTTP/1.1 keep-alive,
so no ``Connection`` field is sent except for a WebSocket upgrade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sidecar.gateway import hop_by_hop as hbh
from sidecar.gateway.correlation_ids import fresh_fields, request_id_of
from sidecar.gateway.forwarded import real_ip
from sidecar.gateway.framing import FramingError, decide
from sidecar.gateway.traceparent import next_hop

if TYPE_CHECKING:
    from httptools import HttpRequestParser

    from sidecar.gateway.context import GatewayContext
    from sidecar.gateway.exchange import Exchange
    from sidecar.gateway.forwarded import Peer

_KINDS: Final = hbh.REQUEST_KINDS  # the classification cache, held where compiled code reads it fast
# By name length, the last request field name of that length and its kind. Every field name is a
# fresh bytes object, so the classification cache hashes it (about 400 instructions with the lookup);
# clients repeat the same spellings request after request, and comparing with the last name of the
# same length costs a fifth of that. Names of one length that alternate just fall back to the cache.
_RECENT_SIZES: Final = 32
_RECENT: Final = [(b"", hbh.KEEP)] * _RECENT_SIZES  # b"" is KEEP, as request_kind would say
# The last Host value and its X-Forwarded-Host line (the usual client sends one Host throughout).
_FORWARDED_HOST: Final = [b"", b"X-Forwarded-Host: \r\n"]
_HOST: Final = [b"", b"Host: \r\n"]  # the last Host value and its line
_PLAIN: Final = frozenset({b"keep-alive", b"close", b"upgrade"})  # usual Connection values: nothing to remove
_IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def build_request_head(  # noqa: PLR0912, PLR0915 (one pass on the hot path, kept in one frame)
    ctx: GatewayContext,
    peer: Peer,
    ex: Exchange,
    headers: list[tuple[bytes, bytes]],
    parser: HttpRequestParser,
    nominated_checked: bool = False,
    kept: bytes = b"",
    version: str = "",
    scanned_host: bytes | None = None,
) -> bytes:
    """Fill ``ex`` (IDs, client, framing) and return the head to write to the app.

    ``ex.keep_alive`` is the parser's ``should_keep_alive()`` already (the HTTP version follows from it).
    For a head ``head_scan`` read (llhttp did not), ``headers`` holds only the fields decided on here,
    ``kept`` the others' lines as they go on, ``version`` the request line's HTTP version and
    ``scanned_host`` the value of its one Host field (which ``headers`` then leaves out).

    Raises ``framing.FramingError`` for a request that must be refused (and its connection closed).
    """
    # Literal formats of %b only: compiled, each is one size sum and one copy (no format parsing). The
    # usual request's head is one such format at the end: the lines around its fixed ones are gathered
    # in lists only when there are any (a list, its appends and a join were about 1,400 instructions).
    copied: list[bytes] | None = None  # fields llhttp read that go on as they are (head_scan: in kept)
    host = scanned_host
    xff = xfp = xfh = None
    hosts = 0 if scanned_host is None else 1
    lengths = 0
    content_length = transfer_encoding = upgrade = None
    # Lists only for the fields a request has: most send none of these (three empty lists made and freed
    # per request were about 150 of its 37.6k instructions).
    request_ids: list[bytes] | None = None
    traceparents: list[bytes] | None = None
    tracestates: list[bytes] | None = None
    connection: list[bytes] | None = None
    forwarded: list[bytes] | None = None
    for name, value in headers:
        size = len(name)
        if size < _RECENT_SIZES:  # the last name of this length seen: a comparison, not a hash
            recent, kind = _RECENT[size]
            if name != recent:
                known = _KINDS.get(name)
                kind = hbh.request_kind(name) if known is None else known
                _RECENT[size] = (name, kind)
        else:
            known = _KINDS.get(name)
            kind = hbh.request_kind(name) if known is None else known
        if kind == 0:  # KEEP: the common case first
            line = b"%b: %b\r\n" % (name, value)
            if copied is None:
                copied = [line]
            else:
                copied.append(line)
        elif kind == hbh.HOST:
            host = value
            hosts += 1
        elif kind == hbh.USER_AGENT:
            ex.user_agent = value
            line = b"%b: %b\r\n" % (name, value)
            if copied is None:
                copied = [line]
            else:
                copied.append(line)
        elif kind == hbh.REQUEST_ID:
            request_ids = [value] if request_ids is None else [*request_ids, value]
        elif kind == hbh.TRACEPARENT:
            traceparents = [value] if traceparents is None else [*traceparents, value]
        elif kind == hbh.TRACESTATE:
            tracestates = [value] if tracestates is None else [*tracestates, value]
        elif kind == hbh.CONTENT_LENGTH:
            content_length = value
            lengths += 1
        elif kind == hbh.TRANSFER_ENCODING:
            transfer_encoding = value if transfer_encoding is None else transfer_encoding + b"," + value
        elif kind == hbh.CONNECTION:
            connection = [value] if connection is None else [*connection, value]
        elif kind == hbh.UPGRADE:
            upgrade = value
        elif kind == hbh.X_FORWARDED_FOR:
            xff = value if xff is None else xff + b", " + value
        elif kind == hbh.X_FORWARDED_PROTO:
            xfp = value
        elif kind == hbh.X_FORWARDED_HOST:
            xfh = value
        elif kind == hbh.FORWARDED:
            forwarded = [value] if forwarded is None else [*forwarded, value]
        # DROP: hop-by-hop, not forwarded
    if (
        connection is not None
        and not nominated_checked
        and not (len(connection) == 1 and connection[0].lower() in _PLAIN)
    ):
        nominated = hbh.extra_nominated(hbh.connection_tokens(connection))
        if nominated:
            without = hbh.without_nominated(headers, nominated)
            return build_request_head(ctx, peer, ex, without, parser, True, kept, version, scanned_host)
    # llhttp takes 0.9, 1.0, 1.1 and 2.0 request lines, and only 1.1 is keep-alive without a Connection
    # field: the usual request needs no get_http_version(), a str.format of about 1,200 instructions.
    if not version:
        version = "1.1" if connection is None and ex.keep_alive else parser.get_http_version()
    ex.http10 = version == "1.0"
    host = decide(ex, version, hosts, host, lengths, content_length, transfer_encoding)
    trusted = peer.trusted
    if host is not None and ctx.preserve_host:
        if host != _HOST[0]:  # the same Host as the previous request: the same line
            _HOST[0] = host
            _HOST[1] = b"Host: %b\r\n" % host
        host_line = _HOST[1]
    else:
        host_line = ctx.upstream_host_line
    added: list[bytes] | None = None  # the lines after Host that most requests do not need
    if ex.chunked:  # the gateway re-chunks what llhttp de-chunked (proxy.on_body)
        added = [b"Transfer-Encoding: chunked\r\n"]
    elif lengths:
        added = [b"Content-Length: %d\r\n" % ex.body_length]
    if upgrade is not None and parser.should_upgrade():  # asked only when it matters
        # llhttp skips the body of a request it takes for an upgrade and hands back the bytes after the
        # head unparsed: a body there would be read by nobody, or by the app as its next request.
        if ex.has_body:
            raise FramingError(400, "bad_framing")
        if ctx.websockets and b"websocket" in upgrade.lower():
            ex.upgrade = True
            line = b"Upgrade: %b\r\nConnection: upgrade\r\n" % upgrade
            added = [line] if added is None else [*added, line]
    forwarded_line = b""  # X-Forwarded-For and -Proto of an untrusted peer
    forwarded_host = b""
    if trusted:
        lines = [b"Forwarded: %b\r\n" % value for value in forwarded] if forwarded is not None else []
        lines.append(ctx.policy.headers(peer.address, xff, xfp, xfh, host))
        ex.client = ctx.policy.client_address(peer.address, xff)
        lines.append(real_ip(ex.client))
        added = lines if added is None else [*added, *lines]
    else:  # the common case: what this connection's peer is was worked out once
        forwarded_line = peer.forwarded
        if host is not None:
            if host != _FORWARDED_HOST[0]:  # the same Host as the previous request: the same line
                _FORWARDED_HOST[0] = host
                _FORWARDED_HOST[1] = b"X-Forwarded-Host: %b\r\n" % host
            forwarded_host = _FORWARDED_HOST[1]
        ex.client = peer.address
    request_id, trace_id, request_id_bytes, trace_span = fresh_fields()  # what the usual request needs
    made = True
    if request_ids is not None:
        request_id, kept_id = request_id_of(request_ids)
        request_id_bytes = request_id.encode("ascii")
        made = not kept_id
    ex.request_id = request_id
    ex.request_id_bytes = request_id_bytes
    ex.request_id_made = made
    # GET compared first: a set lookup would hash the fresh method bytes, which nothing else needs
    # (the RED recorder and the access line compare it with the previous request's)
    method = ex.method
    ex.retriable = not ex.has_body and not ex.upgrade and (method == b"GET" or method in _IDEMPOTENT)
    # The ID fields are written in the head's own format, not built first and copied in: a bytes
    # object made and freed per request, about 350 instructions. The traceparent value is three pieces:
    # a new trace's "00-", trace and span IDs, flags; or the next hop's value, nothing, its tracestate.
    if traceparents is not None:
        trace_id, traceparent, tracestate = next_hop(traceparents, tracestates or [], ctx.new_trace_sampled)
        ex.traceparent_in = traceparents[0]  # the server span's parent, when tracing is on
        value_head = traceparent
        value_ids = b""
        value_tail = b"" if tracestate is None else b"\r\ntracestate: %b" % tracestate
    else:
        sample = ctx.sample_new_trace  # set by tracing when its sampler decides per trace ID
        value_head = b"00-"
        value_ids = trace_span
        value_tail = ctx.new_trace_flags if sample is None else sample(trace_id)
    ex.trace_id = trace_id
    return b"%b %b HTTP/1.1\r\n%b%b%b%b%b%bX-Request-ID: %b\r\ntraceparent: %b%b%b\r\n\r\n" % (
        method,
        ex.target,  # as framing settled it
        kept,
        b"" if copied is None else b"".join(copied),
        host_line,
        b"" if added is None else b"".join(added),
        forwarded_line,
        forwarded_host,
        request_id_bytes,
        value_head,
        value_ids,
        value_tail,
    )
