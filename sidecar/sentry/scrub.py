"""Scrubbing everything that leaves for Sentry: sensitive keys, bearer tokens, card numbers, URL passwords.

Keys are matched by *word*, not by substring. A key is split into words (``X-Api-Key`` -> x, api, key;
``accessToken`` -> access, token) and is sensitive when a run of consecutive words spells a denylist
entry (``api_key``/``apikey``, ``token``, ``password``...). So ``user_password`` and ``X-Auth-Token``
are filtered, while ``author``, ``authenticated`` and ``tokenizer`` are ordinary words and kept.
sentry-python matches whole keys only (too narrow: it misses ``user_password``); Relay matches
substrings (too wide: it filters ``author``); words sit between the two.

The denylist is sentry-python's ``DEFAULT_DENYLIST`` (sentry_sdk/scrubber.py, itself taken from Relay)
plus the keys of Relay's ``@password`` rule (relay-pii ``PASSWORD_KEY_REGEX``: ``mysql_pwd``,
``privatekey``, ``otp``, ``two_factor``...). Values are scanned whatever their key for what Relay's
default rules catch: ``Bearer``/``Basic`` credentials, ``key=value`` pairs with a sensitive key (query
strings, form bodies, messages), passwords in URLs, PEM private keys and card numbers (13-19 digits,
spaces or dashes allowed, Luhn-valid, first digit 2-6 so millisecond timestamps are left alone).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

FILTERED = "[Filtered]"
MAX_DEPTH = 64

DEFAULT_DENYLIST: tuple[str, ...] = (
    # sentry-python DEFAULT_DENYLIST ("stolen from relay" + frameworks)
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "auth",
    "credentials",
    "mysql_pwd",
    "privatekey",
    "private_key",
    "token",
    "session",
    "csrftoken",
    "sessionid",
    "x_csrftoken",
    "x_forwarded_for",
    "set_cookie",
    "cookie",
    "authorization",
    "proxy-authorization",
    "x_api_key",
    "aiohttp_session",
    "connect.sid",
    "csrf_token",
    "csrf",
    "_csrf",
    "_csrf_token",
    "PHPSESSID",
    "_session",
    "symfony",
    "user_session",
    "_xsrf",
    "XSRF-TOKEN",
    # Relay's @password key rule beyond the above
    "otp",
    "two_factor",
    # plurals and neighbours the lists above miss
    "passwords",
    "secrets",
    "tokens",
    "credential",
    "cookies",
    "xsrf",
)

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=-]{6,})")
_BASIC = re.compile(r"\b([Bb]asic)(\s+)([A-Za-z0-9+/]{6,}={0,2})(?![\w+/=])")
_JSON_PAIR = re.compile(r'"([A-Za-z_][\w.-]{0,63})"(\s*:\s*)"((?:[^"\\]|\\.)*)"')
_ASSIGNMENT = re.compile(r"(?<![\w.-])([A-Za-z_][\w.-]{0,63})=([^\s&;,\"'<>]+)")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s/]+)@")
_PEM = re.compile(
    r"-----BEGIN[A-Z ]*PRIVATE KEY-----.+?-----END[A-Z ]*PRIVATE KEY-----", re.DOTALL | re.IGNORECASE
)
_CARD = re.compile(r"(?<![\w.-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w-])")


def words(key: str) -> list[str]:
    """``X-Api-Key`` -> [x, api, key]; ``accessToken`` -> [access, token]; ``PHPSESSID`` -> [phpsessid]."""
    found: list[str] = []
    for part in _SEPARATORS.split(key):
        found += [w.lower() for w in _WORD.findall(part)] if part else []
    return found


def _forms(entry: str) -> set[str]:
    parts = words(entry)
    return {"_".join(parts), "".join(parts)} if parts else set()


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = text.replace(" ", "").replace("-", "")
    return FILTERED if 13 <= len(digits) <= 19 and luhn_valid(digits) else text


def _mask_basic(match: re.Match[str]) -> str:
    """``Basic <base64 of user:password>`` only: "basic configuration" is a phrase, not a credential."""
    try:
        decoded = base64.b64decode(match[3] + "=" * (-len(match[3]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match[0]
    return f"{match[1]}{match[2]}{FILTERED}" if b":" in decoded else match[0]


class Scrubber:
    """Filters sensitive keys and values out of any JSON-like structure; returns a scrubbed copy."""

    def __init__(self, extra_keys: Iterable[str] = (), allow_keys: Iterable[str] = ()) -> None:
        self._deny: set[str] = set()
        for entry in (*DEFAULT_DENYLIST, *extra_keys):
            self._deny |= _forms(entry)
        self._allow = {"_".join(words(k)) for k in allow_keys} | {k.lower() for k in allow_keys}
        self._cache: dict[str, bool] = {}

    def is_sensitive_key(self, key: str) -> bool:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        parts = words(key)
        normal = "_".join(parts)
        sensitive = False
        if key.lower() not in self._allow and normal not in self._allow:
            for start in range(len(parts)):
                for end in range(start + 1, len(parts) + 1):
                    run = parts[start:end]
                    if "_".join(run) in self._deny or "".join(run) in self._deny:
                        sensitive = True
                        break
                if sensitive:
                    break
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[key] = sensitive
        return sensitive

    def scrub_text(self, text: str) -> str:
        """Credentials inside free text: bearer tokens, ``secret=...``, URL passwords, keys, cards."""
        if len(text) < 6:
            return text
        if "-----BEGIN" in text:
            text = _PEM.sub(FILTERED, text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{FILTERED}@", text)
        text = _BEARER.sub(lambda m: f"{m[1]}{m[2]}{FILTERED}", text)
        if "asic" in text:
            text = _BASIC.sub(_mask_basic, text)
        if '":' in text or '" :' in text:
            text = _JSON_PAIR.sub(
                lambda m: f'"{m[1]}"{m[2]}"{FILTERED}"' if self.is_sensitive_key(m[1]) else m[0], text
            )
        if "=" in text:
            text = _ASSIGNMENT.sub(
                lambda m: f"{m[1]}={FILTERED}" if self.is_sensitive_key(m[1]) else m[0], text
            )
        return _CARD.sub(_mask_card, text)

    def scrub(self, value: Any, depth: int = 0) -> Any:
        """A scrubbed copy of ``value`` (dicts, lists, tuples, strings; other scalars as they are)."""
        if isinstance(value, str):
            return self.scrub_text(value)
        if depth >= MAX_DEPTH:
            return FILTERED if isinstance(value, dict | list | tuple) else value
        if isinstance(value, dict):
            return {
                k: self._filtered(v) if self.is_sensitive_key(str(k)) else self.scrub(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            if value and all(_is_pair(v) for v in value):
                # header/cookie/query lists as Sentry sends them: [["Authorization", "Bearer x"], ...]
                return [
                    [k, self._filtered(v) if self.is_sensitive_key(k) else self.scrub(v, depth + 1)]
                    for k, v in value
                ]
            return [self.scrub(v, depth + 1) for v in value]
        return value

    @staticmethod
    def _filtered(value: Any) -> Any:
        return value if value is None or value == "" else FILTERED

    def before_send(self, event: Any, hint: Any) -> Any:
        """sentry-sdk ``before_send`` hook for the sidecar's own errors."""
        return self.scrub(event)


def _is_pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str)
