"""Security response headers the app forgot: Helmet's defaults, a CSP when configured, per-route changes.

``gateway.security_headers`` (off until ``enabled: true``). The default set is what Helmet 8 sends
(``helmet()`` in Express) except ``Content-Security-Policy``, which is added only when configured,
because no default policy fits every app. A header the app already set is never added again (names
compared case-insensitively on the raw response head), so an app's own ``X-Frame-Options`` passes
through once, unchanged. ``X-Powered-By`` (and any name in ``remove``) is taken out.

Per route (``routes:`` entries matched by route template or path prefix, the first match wins): turn
the headers off, change a value, leave one out (``null``) or add one. Responses to WebSocket
upgrades (101) are left alone; the gateway's own error responses carry none of these headers.

Cost: a response pays one dict lookup per header name (cached by raw spelling) and one prebuilt
block of bytes per combination of headers the app already set.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from sidecar.core.routes import RouteTemplate
from sidecar.core.settings_model import Meta, Model, ValidationInfo, check_each, field, field_validator
from sidecar.gateway.hop_by_hop import is_hop_by_hop
from sidecar.gateway.query_mask import path_of

# Helmet 8 defaults (helmetjs.github.io), in Helmet's order; Content-Security-Policy only when configured.
HELMET_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Origin-Agent-Cluster", "?1"),
    ("Referrer-Policy", "no-referrer"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-DNS-Prefetch-Control", "off"),
    ("X-Download-Options", "noopen"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    ("X-XSS-Protection", "0"),
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\x20-\x7e\t]*")
_OWNED = frozenset({"content-length", "x-request-id", "host", "set-cookie", "ratelimit", "ratelimit-policy"})
_CACHE_LIMIT = 2048
_BLOCKS_LIMIT = 256
_REMOVE = -1


def _check_headers(value: dict[str, Any]) -> dict[str, str | None]:
    """Every header of the mapping checked, each bad one reported at its name (``headers.X-Foo``)."""
    checked = check_each(((name, (name, raw)) for name, raw in value.items()), _check_header)
    return dict(zip(value, checked, strict=True))


def _check_header(entry: tuple[str, Any]) -> str | None:
    name, raw = entry
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a header name")
    lower = name.lower()
    if is_hop_by_hop(lower.encode("ascii")) or lower in _OWNED or lower == "transfer-encoding":
        raise ValueError(f"{name!r} cannot be set here (the gateway or the app owns it)")
    if raw is None or raw is False:
        return None
    if not isinstance(raw, str):
        raise ValueError(f"{name}: a header value is a string, or null to leave the header out")
    text = raw.strip()
    if not text or not _VALUE.fullmatch(text):
        raise ValueError(f"{name}: {raw!r} is empty or has characters a header value cannot carry")
    return text


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"{name!r} is not a header name")
    return name


def _path_prefix(prefix: str) -> str:
    if not prefix.startswith("/") or not prefix.isascii():
        raise ValueError(f"path prefix {prefix!r} must be ASCII and start with '/'")
    return prefix


class SecurityHeaderRoute(Model):
    """Changes for some routes: ``enabled: false`` for none at all, or values to change, drop or add."""

    routes: Annotated[list[str], Meta(description="route templates such as /embed/{id}")] = []
    path_prefixes: Annotated[list[str], Meta(description="raw path prefixes such as /static/")] = []
    enabled: bool = True
    headers: Annotated[dict[str, Any], Meta(description="name: value, or name: null to drop")] = {}

    @field_validator("routes")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        check_each(enumerate(value), RouteTemplate)  # every bad template, each at [i]
        return value

    @field_validator("path_prefixes")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        return check_each(enumerate(value), _path_prefix)

    @field_validator("path_prefixes", always=True)
    @classmethod
    def _selects(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # across fields: reads ``routes`` when it is valid, in the same pass as every other problem
        if info.data.get("routes") == [] and not value:
            raise ValueError("a security_headers.routes entry needs routes or path_prefixes")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any]) -> dict[str, str | None]:
        return _check_headers(value)


class SecurityHeaderSettings(Model):
    """``gateway.security_headers``: Helmet's default set, a CSP, removals and per-route changes."""

    enabled: Annotated[bool, Meta(description="add the headers (off by default: opt in)")] = False
    content_security_policy: Annotated[str | None, Meta(description="a CSP, e.g. default-src 'self'")] = None
    content_security_policy_report_only: Annotated[
        bool, Meta(description="send the CSP as Content-Security-Policy-Report-Only")
    ] = False
    headers: Annotated[
        dict[str, Any], Meta(description="change (value), drop (null) or add headers of the default set")
    ] = {}
    remove: Annotated[list[str], Meta(description="taken out of responses")] = field(
        default_factory=lambda: ["X-Powered-By"]
    )
    routes: list[SecurityHeaderRoute] = []

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Any]) -> dict[str, str | None]:
        return _check_headers(value)

    @field_validator("content_security_policy")
    @classmethod
    def _csp(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = " ".join(value.split())
        if not text or not _VALUE.fullmatch(text):
            raise ValueError("content_security_policy is empty or has characters a header cannot carry")
        return text

    @field_validator("remove")
    @classmethod
    def _remove(cls, value: list[str]) -> list[str]:
        return check_each(enumerate(value), _header_name)

    def header_set(self) -> dict[str, str | None]:
        """The default set for every route: Helmet's, the CSP, then ``headers`` (case-insensitive names)."""
        result: dict[str, str | None] = dict(HELMET_DEFAULTS)
        if self.content_security_policy:
            name = "Content-Security-Policy"
            if self.content_security_policy_report_only:
                name += "-Report-Only"
            result[name] = self.content_security_policy
        return _merge(result, self.headers)


def _merge(base: dict[str, str | None], changes: dict[str, str | None]) -> dict[str, str | None]:
    merged = dict(base)
    spelled = {name.lower(): name for name in merged}
    for name, value in changes.items():
        merged.pop(spelled.get(name.lower(), name), None)
        merged[name] = value
    return merged


class _Profile:
    """One set of headers to add, with its blocks of bytes per set of names the app already sent."""

    __slots__ = ("blocks", "entries")

    def __init__(self, entries: list[tuple[int, bytes]]) -> None:
        self.entries = entries  # (bit of the name, "Name: value\r\n")
        self.blocks: dict[int, bytes] = {}

    def block(self, present: int) -> bytes:
        block = self.blocks.get(present)
        if block is None:
            block = b"".join(line for bit, line in self.entries if not bit & present)
            if len(self.blocks) < _BLOCKS_LIMIT:
                self.blocks[present] = block
        return block


class SecurityHeaders:
    """The compiled settings: what to add to a response head, for which path."""

    def __init__(self, settings: SecurityHeaderSettings) -> None:
        base = settings.header_set()
        self._bits: dict[str, int] = {}  # lower-case name -> its bit
        self._removed = frozenset(n.lower() for n in settings.remove)
        self.default = self._profile(base)
        self.overrides: list[tuple[list[RouteTemplate], tuple[bytes, ...], _Profile | None]] = [
            (
                [RouteTemplate(t) for t in route.routes],
                tuple(p.encode("ascii") for p in route.path_prefixes),
                self._profile(_merge(base, route.headers)) if route.enabled else None,
            )
            for route in settings.routes
        ]
        self._kinds: dict[bytes, int] = {}  # raw name -> bit (> 0), 0 (not ours) or _REMOVE
        self._paths: dict[bytes, _Profile | None] = {}

    def _profile(self, headers: dict[str, str | None]) -> _Profile:
        entries = []
        for name, value in headers.items():
            if value is None:
                continue
            bit = self._bits.setdefault(name.lower(), 1 << len(self._bits))
            entries.append((bit, f"{name}: {value}\r\n".encode("latin-1")))
        return _Profile(entries)

    def _kind(self, name: bytes) -> int:
        lower = name.lower().decode("latin-1")
        kind = _REMOVE if lower in self._removed else self._bits.get(lower, 0)
        if len(self._kinds) < _CACHE_LIMIT:
            self._kinds[name] = kind
        return kind

    def _for_path(self, target: bytes) -> _Profile | None:
        path = path_of(target)
        if path in self._paths:
            return self._paths[path]
        found: _Profile | None = self.default
        text = path.decode("utf-8", "surrogateescape")
        for templates, prefixes, profile in self.overrides:
            if (prefixes and path.startswith(prefixes)) or any(t.matches(text) for t in templates):
                found = profile
                break
        if len(self._paths) >= _CACHE_LIMIT:
            self._paths.clear()
        self._paths[path] = found
        return found

    def fields(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The lines to add to a response to ``target``; removes unwanted fields from ``headers``."""
        profile = self._for_path(target) if self.overrides else self.default
        if profile is None:
            return b""
        kinds = self._kinds
        present = 0
        remove = False
        for name, _ in headers:
            kind = kinds.get(name)
            if kind is None:
                kind = self._kind(name)
            if kind > 0:
                present |= kind
            elif kind == _REMOVE:
                remove = True
        if remove:
            removed = self._removed
            headers[:] = [(n, v) for n, v in headers if n.lower().decode("latin-1") not in removed]
        return profile.block(present)
