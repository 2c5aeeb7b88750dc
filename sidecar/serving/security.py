"""Who may call what: the admin bearer token, optional auth on /metrics, and loopback detection.

Probes must always get through (a kubelet or load balancer carries no credentials), so ``/livez``,
``/readyz``, ``/readyz/<check>`` and ``/startupz`` stay open; ``/metrics`` and ``/health`` (which shows every
dependency's observed values) can require the credentials Prometheus sends: HTTP basic auth
(``basic_auth`` in a scrape config) or a bearer token (``authorization``). Every comparison is
constant-time on bytes, so response timing says nothing about how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from typing import Annotated

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sidecar.core.settings_model import (
    FrozenModel,
    Meta,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

OPEN_PATHS = frozenset({"/livez", "/readyz", "/startupz"})
"""Paths that never ask for credentials (plus everything under ``/readyz/``): probes carry none."""


class BasicAuth(FrozenModel, frozen=True):
    """HTTP basic credentials, as Prometheus' ``basic_auth`` sends them."""

    username: Annotated[str, Meta(min_length=1)]
    password: SecretStr

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("a basic-auth username cannot contain ':' (RFC 7617)")
        return value

    @field_validator("password")
    @classmethod
    def _password_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("the basic-auth password is empty: set one")
        return value


class MetricsAuth(FrozenModel, frozen=True):
    """Credentials ``/metrics`` and ``/health`` require: exactly one of ``basic`` or ``bearer_token``."""

    basic: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    protect_health: Annotated[
        bool, Meta(description="also require the credentials on /health (it shows observed values)")
    ] = True

    @field_validator("bearer_token")
    @classmethod
    def _token_set(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("metrics_auth.bearer_token is empty: set one")
        return value

    @model_validator(mode="fields")
    @classmethod
    def _exactly_one(cls, info: ValidationInfo) -> None:
        data = info.data
        # only when both are valid (or left out): an invalid one was given, and is reported already
        if (
            "basic" in data
            and "bearer_token" in data
            and (data["basic"] is None) == (data["bearer_token"] is None)
        ):
            raise ValueError("set exactly one of metrics_auth.basic or metrics_auth.bearer_token")

    def allows(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header value carries these credentials."""
        if self.basic is not None:
            return basic_matches(authorization, self.basic.username, self.basic.password.get_secret_value())
        assert self.bearer_token is not None
        return bearer_matches(authorization, self.bearer_token.get_secret_value())

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value that tells a client which scheme to use."""
        if self.basic is not None:
            return 'Basic realm="sidecar-metrics", charset="UTF-8"'
        return 'Bearer realm="sidecar-metrics"'


def _bytes(text: str) -> bytes:
    # Header values can carry undecodable bytes as surrogates; they must compare unequal, not crash.
    return text.encode("utf-8", "surrogateescape")


def _split_scheme(authorization: str) -> tuple[str, str]:
    scheme, _, credentials = authorization.strip().partition(" ")
    return scheme.lower(), credentials.strip()


def bearer_matches(authorization: str, token: str) -> bool:
    """``Bearer <token>`` (scheme case-insensitive, RFC 7235) compared in constant time."""
    scheme, credentials = _split_scheme(authorization)
    same = hmac.compare_digest(_bytes(credentials), _bytes(token))
    return scheme == "bearer" and same and bool(token)


def basic_matches(authorization: str, username: str, password: str) -> bool:
    """``Basic base64(user:password)`` compared in constant time, user and password both checked."""
    scheme, credentials = _split_scheme(authorization)
    try:
        decoded = base64.b64decode(_bytes(credentials), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    user, _, supplied = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, _bytes(username))
    password_ok = hmac.compare_digest(supplied, _bytes(password))
    return scheme == "basic" and user_ok and password_ok


def is_loopback_host(host: str) -> bool:
    """True only for addresses that cannot be reached from another machine.

    ``localhost`` counts; any other name might resolve to a routable address, so it does not.
    The wildcard addresses (``0.0.0.0``, ``::``) and an empty host listen everywhere.
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def unauthorized(challenge: str, what: str) -> web.Response:
    """401 with the scheme to use, and a text saying which setting holds the credentials."""
    return web.Response(
        status=401,
        text=f"401 unauthorized: {what}\n",
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )


def metrics_auth_middleware(auth: MetricsAuth) -> Middleware:
    """Require ``auth`` on the health listener, except on the probe paths."""

    @web.middleware
    async def require_metrics_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        open_path = path in OPEN_PATHS or path.startswith("/readyz/")
        if path == "/health" and not auth.protect_health:
            open_path = True
        if not open_path and not auth.allows(request.headers.get("Authorization", "")):
            scheme = "basic" if auth.basic is not None else "bearer"
            return unauthorized(auth.challenge, f"send the {scheme} credentials set in metrics_auth")
        return await handler(request)

    return require_metrics_auth
