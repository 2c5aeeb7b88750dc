"""Request framing: where a request's body ends, decided once from the parsed message (RFC 9112).

Why one function: request smuggling is two parsers disagreeing on where a message ends. The gateway
reads the client's bytes with llhttp and writes a fresh head for the app, so the only way the two
can disagree is if that head says something about the body that llhttp did not act on. ``decide``
is the one place that turns what the client sent (Content-Length, Transfer-Encoding, version, Host,
target) into the framing llhttp used, refuses every request where that framing is ambiguous, and the
head builder restates exactly this result (``Content-Length: N`` or ``Transfer-Encoding: chunked``),
never a field value the client wrote. Nothing later (a ``Connection`` nomination, a trailer) can
change it. The rules and the RFC sections they come from are listed in docs/gateway.md.

The caller counts the fields in the pass it already makes over the headers (``request_head``), so
the checks here cost a few comparisons per request; the rare paths (absolute-form, Host syntax not
seen before) allocate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sidecar.gateway.exchange import Exchange

CHUNKED: Final = -1  # Exchange.body_length of a chunked request

_OWS: Final = b" \t"
_HOST_CACHE_LIMIT: Final = 1024
_VALID_HOSTS: Final[dict[bytes, bytes]] = {}  # Host value -> authority (lower case, no default port)
# The last valid Host value and its authority: each value is a fresh bytes object, so the cache above
# hashes it first (about 400 instructions); clients send the same Host request after request, and a
# comparison costs a fifth of that. Starts as the empty Host, whose authority is empty (``_authority``).
_LAST_HOST: Final = [b"", b""]
# reg-name characters (RFC 3986 §3.2.2) less "," : Host is a singleton field, and a comma reads as a
# list of two hosts to a recipient that parses field values as lists.
_REG_NAME: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+;=%")
_IPV6: Final = frozenset(b"0123456789abcdefABCDEF:.")
_DIGITS: Final = frozenset(b"0123456789")
# "#" as an int: ``int in bytes`` is a memchr, while ``bytes in bytes`` first tries the operand as an
# int and builds (and clears) a TypeError, about 2,000 instructions per request under callgrind.
_FRAGMENT: Final = 0x23


class FramingError(Exception):
    """The request cannot be framed unambiguously: answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decide(
    ex: Exchange,
    version: str,
    hosts: int,
    host: bytes | None,
    lengths: int,
    content_length: bytes | None,
    transfer_encoding: bytes | None,
) -> bytes | None:
    """Set ``ex.body_length``/``has_body``/``chunked``/``target`` and return the Host to send on.

    ``hosts``/``lengths``: how many Host and Content-Length field lines the request had;
    ``transfer_encoding``: every Transfer-Encoding line, joined with commas. Raises ``FramingError``.
    """
    http11 = version == "1.1"
    if not http11 and version != "1.0":  # llhttp accepts 0.9 and 2.0 request lines: not relayable
        raise FramingError(505, "http_version")
    authority = None
    if hosts == 1 and host is not None:  # the usual case: the previous request's Host, or one seen before
        if host == _LAST_HOST[0]:
            authority = _LAST_HOST[1]
        else:
            authority = _VALID_HOSTS.get(host)
            if authority is not None:
                _LAST_HOST[0] = host
                _LAST_HOST[1] = authority
    if authority is None:
        authority = _host_authority(hosts, host, http11)
    target = ex.target
    if target[:1] != b"/":
        host = _target(ex, host, authority)
        target = ex.target
    if _FRAGMENT in target:  # no request-target form has a "#" fragment (RFC 9112 §3.2)
        raise FramingError(400, "bad_target")
    if transfer_encoding is not None:
        if not http11:  # RFC 9112 §6.1: faulty framing in an HTTP/1.0 message
            raise FramingError(400, "bad_framing")
        if lengths:  # llhttp refuses this too; the check does not depend on it
            raise FramingError(400, "bad_framing")
        _only_chunked(transfer_encoding)
        ex.body_length = CHUNKED
        ex.chunked = ex.has_body = True
    elif lengths:
        length = _content_length(lengths, content_length)
        ex.body_length = length
        ex.has_body = length > 0
    return host


def _host_authority(hosts: int, host: bytes | None, http11: bool) -> bytes:
    """The Host field's authority, normalised; one Host, required in HTTP/1.1 (RFC 9112 §3.2)."""
    if hosts > 1:
        raise FramingError(400, "bad_host")
    if host is None:
        if http11:
            raise FramingError(400, "bad_host")
        return b""
    authority = _VALID_HOSTS.get(host)
    if authority is None:
        authority = _authority(host)
        if len(_VALID_HOSTS) < _HOST_CACHE_LIMIT:
            _VALID_HOSTS[host] = authority
    return authority


def _target(ex: Exchange, host: bytes | None, authority: bytes) -> bytes | None:
    """Rewrite an absolute-form target to origin-form; the Host to send on (RFC 9112 §3.2)."""
    target = ex.target
    if target == b"*" and ex.method == b"OPTIONS":  # asterisk-form (§3.2.4)
        return host
    target, from_target = _origin_form(target)
    if host is None:  # HTTP/1.0 without Host: the target names the authority
        _authority(from_target)
        host = from_target
    elif _authority(from_target) != authority:  # §3.2.2: the target's authority and Host must agree
        raise FramingError(400, "bad_host")
    ex.target = target
    return host


def _content_length(lengths: int, content_length: bytes | None) -> int:
    """The one Content-Length value (RFC 9112 §6.3 rule 5)."""
    if lengths > 1 or content_length is None:  # even equal values: §6.3 allows refusing, and it is stricter
        raise FramingError(400, "bad_framing")
    value = content_length.strip(_OWS)
    if not value or not value.isdigit():  # bytes.isdigit: ASCII digits only, no sign, no "_"
        raise FramingError(400, "bad_framing")
    return int(value)


def _only_chunked(transfer_encoding: bytes) -> None:
    """The Transfer-Encoding list must be exactly ``chunked`` (RFC 9112 §6.1, §7).

    A list that does not end in ``chunked`` has no length at all (§6.3 rule 4: 400 and close);
    ``chunked`` twice is forbidden (§6.1); another coding before it (``gzip, chunked``) is one the
    gateway would have to pass on and the app to decode, which it does not do: 501 (§6.1).
    """
    codings = [c.strip(_OWS).lower() for c in transfer_encoding.split(b",")]
    codings = [c for c in codings if c]  # empty list elements are allowed (RFC 9110 §5.6.1)
    if codings == [b"chunked"]:
        return
    if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
        raise FramingError(400, "bad_framing")
    raise FramingError(501, "transfer_coding")


def _authority(value: bytes) -> bytes:
    """``uri-host [":" port]`` in lower case without a default port; raises on anything else."""
    value = value.strip(_OWS)
    if not value:
        return b""
    if value[:1] == b"[":
        end = value.find(b"]")
        if end < 3 or not all(c in _IPV6 for c in value[1:end]):
            raise FramingError(400, "bad_host")
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        colon = value.find(b":")
        name, rest = (value, b"") if colon < 0 else (value[:colon], value[colon:])
        if not name or not all(c in _REG_NAME for c in name):
            raise FramingError(400, "bad_host")
    if rest:
        port = rest[1:]
        if rest[:1] != b":" or len(port) > 5 or not all(c in _DIGITS for c in port):
            raise FramingError(400, "bad_host")
        number = int(port) if port else 80
        rest = b"" if number in (80, 443) else b":%d" % number  # default ports: the same authority
    return name.lower() + rest


def _origin_form(target: bytes) -> tuple[bytes, bytes]:
    """``http://authority/path?query`` -> (``/path?query``, ``authority``) (RFC 9112 §3.2.2)."""
    scheme_end = target.find(b"://")
    if scheme_end < 0 or target[:scheme_end].lower() not in (b"http", b"https"):
        raise FramingError(400, "bad_target")
    rest = target[scheme_end + 3 :]
    end = len(rest)
    for stop in (b"/", b"?"):
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    authority = rest[:end]
    if not authority or b"@" in authority:  # userinfo is deprecated (RFC 9110 §4.2.4): refused
        raise FramingError(400, "bad_target")
    path = rest[end:]
    if path[:1] != b"/":
        path = b"/" + path
    return path, authority
