"""Who may use the console: a signed session cookie after a login with ``admin_token``, and CSRF tokens.

- The session cookie is ``HttpOnly`` and ``SameSite=Strict`` (``Secure`` when the listener is TLS), so
  scripts cannot read it and other sites' pages cannot make the browser send it. It is stateless: an
  expiry, a random nonce and whether the holder logged in, signed with HMAC-SHA256 under a key drawn at
  start-up (a restart logs everyone out). A login issues a new nonce (no session fixation).
- Every console visitor gets a session, logged in or not, so that forms can carry a CSRF token: an HMAC
  of the session's nonce. State-changing requests (POST) must present it (form field or
  ``X-CSRF-Token``) and, when the browser sends one, an ``Origin`` of this very listener.
- Without ``admin_token`` (a loopback-only admin listener) every visitor is logged in, as the admin API
  is open there too; the CSRF check still applies, since any web page could otherwise make a local
  browser post to ``127.0.0.1``.
- ``Authorization: Bearer <admin_token>`` works on every console URL too, for scripts.
- Failed logins are limited (``MAX_FAILURES`` per ``FAILURE_WINDOW``) so the token cannot be guessed
  at speed; every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from sidecar.serving.security import bearer_matches

COOKIE = "sidecar_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
MAX_FAILURES = 5
FAILURE_WINDOW = 10.0
_MAX_COOKIE = 200


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    logged_in: bool
    expires: int


class Sessions:
    """Issues and checks session cookies and CSRF tokens for one process."""

    def __init__(self, admin_token: str | None, lifetime: float) -> None:
        self.admin_token = admin_token or None
        self.lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._failures: deque[float] = deque(maxlen=MAX_FAILURES)

    @property
    def open(self) -> bool:
        """No token configured: everyone is logged in (loopback-only admin listener)."""
        return self.admin_token is None

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def new(self, logged_in: bool) -> tuple[Session, str]:
        session = Session(secrets.token_urlsafe(16), logged_in, int(time.time() + self.lifetime))
        payload = f"{session.expires}.{session.nonce}.{int(logged_in)}"
        return session, f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or len(cookie) > _MAX_COOKIE:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._sign(payload).encode()):
            return None
        expires, nonce, flag = [*payload.split("."), "", "", ""][:3]
        if not expires.isdigit() or int(expires) < time.time() or flag not in ("0", "1"):
            return None
        return Session(nonce, flag == "1", int(expires))

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def csrf_ok(self, session: Session, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.csrf_token(session).encode())

    def bearer_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return bool(self.admin_token and header and bearer_matches(header, self.admin_token))

    def allowed(self, request: web.Request, session: Session | None) -> bool:
        return self.open or (session is not None and session.logged_in) or self.bearer_ok(request)

    def token_ok(self, presented: str) -> bool:
        """A login attempt; ``False`` also while too many recent attempts failed."""
        if self.admin_token is None:
            return True
        ok = hmac.compare_digest(presented.encode("utf-8", "replace"), self.admin_token.encode())
        if not ok:
            self._failures.append(time.monotonic())
        return ok

    def throttled(self) -> bool:
        now = time.monotonic()
        return len(self._failures) == MAX_FAILURES and now - self._failures[0] < FAILURE_WINDOW

    @staticmethod
    def same_origin(request: web.Request) -> bool:
        """A browser's ``Origin`` (when sent) names this listener; anything else is another site."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        return origin == f"{request.scheme}://{request.host}"

    def set_cookie(self, response: web.StreamResponse, request: web.Request, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.lifetime),
            path="/console",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
