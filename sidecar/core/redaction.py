"""Keeping secrets out of every text the sidecar emits: URLs, error messages, config dumps."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit

MASK = "***"

# Query parameters whose values are credentials in common connection strings and webhooks.
_SECRET_QUERY_KEYS = re.compile(
    r"(?i)^(?:[\w.-]*(?:password|passwd|secret|token|signature|passphrase|api_?key)|pwd|pass|key|sig|auth"
    r"|private_key|credential|x-amz-credential)\Z"
)
_USERINFO_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_SECRET_ASSIGNMENT = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)=([^\s&;]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def mask_url(url: str) -> str:
    """The URL with its password and credential-like query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:{MASK}@{host}"
    query = "&".join(_mask_query_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    masked = urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))
    # An unencoded '/', '?' or '#' in a password ends the authority early for urlsplit, which then sees
    # no password at all: mask anything still shaped like scheme://user:password@.
    return _USERINFO_PASSWORD.sub(_mask_userinfo, masked)


def _mask_userinfo(match: re.Match[str]) -> str:
    head = re.split(r"[/?#]", match["pw"], maxsplit=1)[0]
    if head.isascii() and head.isdigit() and head != match["pw"]:
        return match[0]  # host:port/path?email=a@b: a port and a later '@', not a password
    return f"{match['scheme']}{match['user']}:{MASK}@"


def _mask_query_pair(pair: str) -> str:
    key, sep, _value = pair.partition("=")
    return f"{key}={MASK}" if sep and _SECRET_QUERY_KEYS.match(key) else pair


def url_secrets(url: str | None) -> list[str]:
    """Passwords embedded in a URL, for redacting error texts that may echo them."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password] if parts.password else []
    for pair in parts.query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and value and _SECRET_QUERY_KEYS.match(key):
            found.append(value)
    # Drivers print the decoded value ("p@ss"), not the URL's encoding ("p%40ss"): redact both.
    decoded = [form for value in found for form in (unquote(value), unquote_plus(value))]
    return list(dict.fromkeys([*found, *(d for d in decoded if d not in found)]))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secrets and anything shaped like a credential from free text (error messages)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m[1]}={MASK}", text)
    return _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
