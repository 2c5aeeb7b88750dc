"""Property tests for the gateway's parsers of client input: ``X-Request-ID``, ``traceparent`` /
``tracestate``, hop-by-hop header handling, query masking for access logs and ``X-Forwarded-For``.

They state the promises the gateway's docstrings make for *any* header value a client can send.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.gateway.correlation_ids import MAX_REQUEST_ID, request_id_of, valid_request_id
from sidecar.gateway.forwarded import ForwardedPolicy
from sidecar.gateway.hop_by_hop import (
    DROP,
    HOP_BY_HOP,
    KEEP,
    connection_tokens,
    extra_nominated,
    is_hop_by_hop,
    request_kind,
    response_kind,
    without_nominated,
)
from sidecar.gateway.query_mask import MASK, mask_query
from sidecar.gateway.response_head import short_keep
from sidecar.gateway.settings import parse_upstream
from sidecar.gateway.traceparent import next_hop, parse_traceparent, valid_tracestate

pytestmark = pytest.mark.timeout(120)
FAST = settings(max_examples=400, deadline=None)
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
HEX = "0123456789abcdef"

header_bytes = st.binary(max_size=200) | st.text(max_size=140).map(lambda t: t.encode("utf-8", "replace"))

# -- X-Request-ID ----------------------------------------------------------------------------------------------


@FAST
@given(st.lists(header_bytes, max_size=3))
def test_request_id_is_always_short_visible_ascii(values: list[bytes]) -> None:
    request_id, kept = request_id_of(values)
    assert 1 <= len(request_id) <= MAX_REQUEST_ID
    assert all(0x21 <= ord(c) <= 0x7E for c in request_id), repr(request_id)
    if kept:
        assert len(values) == 1 and values[0] == request_id.encode()
    else:
        assert UUID4.fullmatch(request_id), request_id
    assert kept == (len(values) == 1 and valid_request_id(values[0]))


@FAST
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128))
def test_well_formed_request_ids_are_kept(value: str) -> None:
    assert request_id_of([value.encode()]) == (value, True)


# -- traceparent / tracestate ------------------------------------------------------------------------------------

hex_ids = st.text(HEX, min_size=32, max_size=32).filter(lambda s: s != "0" * 32)
span_ids = st.text(HEX, min_size=16, max_size=16).filter(lambda s: s != "0" * 16)
flags = st.text(HEX, min_size=2, max_size=2)


@FAST
@given(hex_ids, span_ids, flags)
def test_valid_version_00_traceparent_round_trips(trace: str, span: str, flag: str) -> None:
    parsed = parse_traceparent(f"00-{trace}-{span}-{flag}")
    assert parsed is not None
    assert (parsed.trace_id, parsed.parent_id, parsed.flags) == (trace, span, flag)
    assert parse_traceparent(f"00-{trace.upper()}-{span}-{flag}") is None or trace == trace.upper()
    assert parse_traceparent(f"ff-{trace}-{span}-{flag}") is None
    assert parse_traceparent(f"00-{trace}-{span}-{flag}-extra") is None


@FAST
@given(st.text(max_size=80))
def test_any_parsed_traceparent_has_valid_fields(value: str) -> None:
    parsed = parse_traceparent(value)
    if parsed is None:
        return
    assert re.fullmatch(r"[0-9a-f]{32}", parsed.trace_id) and parsed.trace_id != "0" * 32
    assert re.fullmatch(r"[0-9a-f]{16}", parsed.parent_id) and parsed.parent_id != "0" * 16
    assert re.fullmatch(r"[0-9a-f]{2}", parsed.flags)


@FAST
@given(st.lists(header_bytes, max_size=2), st.lists(header_bytes, max_size=2), st.booleans())
def test_next_hop_always_sends_a_valid_version_00_header(
    parents: list[bytes], states: list[bytes], sampled: bool
) -> None:
    trace_id, header, state = next_hop(parents, states, sampled)
    text = header.decode("ascii")
    assert len(text) == 55 and text.startswith("00-")
    parsed = parse_traceparent(text)
    assert parsed is not None and parsed.trace_id == trace_id
    incoming = None
    if len(parents) == 1:
        try:
            incoming = parse_traceparent(parents[0].decode("ascii"))
        except UnicodeDecodeError:
            incoming = None
    if incoming is not None:
        assert trace_id == incoming.trace_id and parsed.flags == incoming.flags
    else:
        assert state is None
    if state is not None:
        assert valid_tracestate(state.decode("ascii"))
        assert b"\r" not in state and b"\n" not in state


@FAST
@given(st.text(max_size=120))
def test_valid_tracestate_never_passes_control_characters(value: str) -> None:
    if valid_tracestate(value):
        assert all(0x20 <= ord(c) <= 0x7E or c == "\t" for c in value), repr(value)
        assert len([m for m in value.split(",") if m.strip(" \t")]) <= 32


# -- hop-by-hop headers --------------------------------------------------------------------------------------------

token_chars = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=16
)
NAMES = [
    b"Connection",
    b"Keep-Alive",
    b"TE",
    b"Trailer",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Proxy-Authorization",
]
NAMES += [
    b"Proxy-Connection",
    b"X-Custom",
    b"Authorization",
    b"Cookie",
    b"Host",
    b"X-Request-ID",
    b"Content-Type",
]
names = st.sampled_from(NAMES) | token_chars.map(str.encode)


@FAST
@given(names, st.sampled_from([bytes.lower, bytes.upper, bytes.title, lambda b: b]))
def test_header_kind_ignores_case(name: bytes, spelling: object) -> None:
    variant = spelling(name)  # type: ignore[operator]
    assert request_kind(variant) == request_kind(name.lower())
    assert response_kind(variant) == response_kind(name.lower())


@FAST
@given(names | st.sampled_from([b"te", b"Te", b"proxy-", b"Proxy-", b"PROXY-", b"p", b"Date", b"Server"]))
@example(b"Proxy-")
def test_short_names_kept_without_lookup_are_the_ones_classified_keep(name: bytes) -> None:
    """``short_keep`` skips the classification of short response fields: it may only skip KEEP ones."""
    if short_keep(name):
        assert response_kind(name) == KEEP


def test_short_keep_covers_the_usual_short_fields() -> None:
    assert all(short_keep(n) for n in (b"Date", b"Server", b"ETag", b"Vary", b"Age", b"Link"))
    assert not any(short_keep(n) for n in (b"TE", b"te", b"Proxy-", b"proxy-", b"Trailer", b"Upgrade"))


@FAST
@given(names)
def test_hop_by_hop_fields_are_never_kept(name: bytes) -> None:
    lower = name.lower()
    if lower in HOP_BY_HOP or lower.startswith(b"proxy-"):
        assert is_hop_by_hop(lower)
        assert request_kind(name) != KEEP
        assert response_kind(name) != KEEP
    if request_kind(name) == DROP:
        assert is_hop_by_hop(lower)


@FAST
@given(
    st.lists(st.tuples(names, st.binary(max_size=20)), max_size=10),
    st.lists(st.lists(names, max_size=4).map(b", ".join), max_size=2),
)
def test_fields_named_by_connection_are_removed(
    headers: list[tuple[bytes, bytes]], values: list[bytes]
) -> None:
    tokens = connection_tokens(values)
    assert all(t == t.strip().lower() and t for t in tokens)
    kept = without_nominated(headers, extra_nominated(tokens))
    nominated = extra_nominated(tokens)
    assert not [n for n, _ in kept if n.lower() in nominated]
    assert len(kept) + sum(1 for n, _ in headers if n.lower() in nominated) == len(headers)


# -- query masking for access logs ----------------------------------------------------------------------------

keys = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
values = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%+.~!$'()*,;:@/?", min_size=1, max_size=12).map(
    lambda v: "Q" + v + "Z"
)


@FAST
@given(st.from_regex(r"(/[a-z0-9]{0,6}){1,3}", fullmatch=True), st.lists(st.tuples(keys, values), max_size=5))
def test_query_values_never_reach_the_access_log(path: str, pairs: list[tuple[str, str]]) -> None:
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in pairs) if pairs else "")
    out = mask_query(target.encode())
    for key, value in pairs:
        assert value not in out, out
        assert f"{key}={MASK}" in out
    assert out.startswith(path)


@FAST
@given(st.binary(max_size=120))
def test_mask_query_never_raises(target: bytes) -> None:
    out = mask_query(target)
    assert "#" not in out.partition("?")[2]


# -- X-Forwarded-For --------------------------------------------------------------------------------------------

addresses = st.ip_addresses().map(str)
TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@FAST
@given(
    addresses,
    st.none() | st.lists(addresses | st.text(max_size=10), max_size=5).map(lambda a: ", ".join(a).encode()),
)
def test_client_address_is_the_peer_or_a_hop(peer: str, forwarded_for: bytes | None) -> None:
    policy = ForwardedPolicy(TRUSTED)
    client = policy.client_address(peer, forwarded_for)
    if forwarded_for is None or not policy.is_trusted(peer):
        assert client == peer
    else:
        hops = [h.strip() for h in forwarded_for.decode("latin-1").split(",")]
        assert client == peer or client in hops


@FAST
@given(
    addresses,
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=10),
    st.none() | st.binary(max_size=20),
)
def test_forwarded_headers_are_well_formed_lines(
    peer: str, forwarded_for: bytes | None, proto: bytes | None, host: bytes | None
) -> None:
    def clean(value: bytes | None) -> bytes | None:
        return None if value is None else value.replace(b"\r", b"").replace(b"\n", b"")

    out = ForwardedPolicy(TRUSTED).headers(peer, clean(forwarded_for), clean(proto), clean(host), b"app")
    lines = out.split(b"\r\n")
    assert lines[-1] == b""
    assert all(line.startswith(b"X-Forwarded-") for line in lines[:-1]), out


# -- upstream addresses (gateway settings) ------------------------------------------------------------------------


@FAST
@given(st.text(max_size=30))
@example("http://app:²")
@example("http://app:٣٠٠٠")
def test_any_upstream_is_an_ascii_address_or_a_friendly_error(value: str) -> None:
    try:
        address = parse_upstream(value)
    except ValueError as exc:
        message = str(exc)
    else:
        assert address.host_header.isascii() and (address.unix_path or 0 < address.port < 65536)
        return
    assert "upstream" in message or "host:port" in message or value in message, message
