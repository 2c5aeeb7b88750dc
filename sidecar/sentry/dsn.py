"""Sentry DSNs: where an envelope goes and which public key it authenticates with.

A DSN is ``{scheme}://{public_key}[:{secret_key}]@{host}[:{port}]/{path/}{project_id}``. The key is a
credential of sorts (anyone holding it can send events), so ``Dsn`` never prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from sidecar import __version__

SENTRY_CLIENT = f"observability-sidecar/{__version__}"


@dataclass(frozen=True, slots=True)
class Dsn:
    """A parsed DSN; ``str()``/``repr()`` mask the key so it cannot leak into logs or errors."""

    scheme: str
    public_key: str
    host: str  # host[:port], IPv6 in brackets
    path: str  # prefix before the project id, "" or "/prefix"
    project_id: str

    @classmethod
    def parse(cls, text: str) -> Dsn:
        """Raise ``ValueError`` saying what is wrong, without echoing the key."""
        try:
            parts = urlsplit(text.strip())
            port = parts.port  # validates the port
        except ValueError:
            raise ValueError("not a URL: expected https://PUBLIC_KEY@HOST/PROJECT_ID") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("a DSN starts with https:// (or http://)")
        if not parts.username:
            raise ValueError("the DSN has no public key: expected https://PUBLIC_KEY@HOST/PROJECT_ID")
        if not parts.hostname:
            raise ValueError("the DSN has no host: expected https://PUBLIC_KEY@HOST/PROJECT_ID")
        path, _, project_id = parts.path.rstrip("/").rpartition("/")
        if not project_id:
            raise ValueError("the DSN has no project id: expected https://PUBLIC_KEY@HOST/PROJECT_ID")
        hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host = f"{hostname}:{port}" if port is not None else hostname
        return cls(parts.scheme, parts.username, host, path, project_id)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}/api/{quote(self.project_id)}"

    @property
    def envelope_url(self) -> str:
        return f"{self.base_url}/envelope/"

    @property
    def public(self) -> str:
        """The DSN as SDKs send it in envelope headers: key but never a secret key."""
        return f"{self.scheme}://{self.public_key}@{self.host}{self.path}/{self.project_id}"

    def auth_header(self) -> str:
        """``X-Sentry-Auth`` for ingestion (protocol version 7)."""
        return f"Sentry sentry_version=7, sentry_key={self.public_key}, sentry_client={SENTRY_CLIENT}"

    def __str__(self) -> str:
        return f"{self.scheme}://***@{self.host}{self.path}/{self.project_id}"

    def __repr__(self) -> str:
        return f"Dsn({self})"
