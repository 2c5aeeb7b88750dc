"""Optional TLS for the sidecar's listeners: one validated setting, one hardened ``ssl.SSLContext``.

Most deployments terminate TLS elsewhere (the pod network, a mesh, an ingress), so TLS is off by
default. When the health, metrics or admin port is reachable over an untrusted network, the bearer
token and basic-auth password must not cross it in clear text; that is what this module is for.
The context is built while the configuration is validated, so a missing file or a key that does not
match its certificate is a configuration error with exit status 2, not a crash at start-up.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Literal

from sidecar.core.settings_model import (
    FrozenModel,
    Meta,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

_MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TLSConfig(FrozenModel, frozen=True):
    """Certificate and key (PEM) a listener serves; TLS 1.2 or newer only."""

    cert_file: Annotated[Path, Meta(description="PEM certificate chain, leaf first")]
    key_file: Annotated[Path, Meta(description="PEM private key of the leaf certificate (unencrypted)")]
    min_version: Annotated[
        Literal["TLSv1.2", "TLSv1.3"], Meta(description="oldest protocol version accepted")
    ] = "TLSv1.2"

    # Loading now turns "file missing" or "key does not match" into a named configuration error: each
    # file on its own field, and the pair once both files are there, in the same pass as the rest.

    @field_validator("cert_file")
    @classmethod
    def _cert_readable(cls, value: Path) -> Path:
        return _readable("cert_file", value)

    @field_validator("key_file")
    @classmethod
    def _key_readable(cls, value: Path) -> Path:
        return _readable("key_file", value)

    @model_validator(mode="fields")
    @classmethod
    def _pair_loads(cls, info: ValidationInfo) -> None:
        data = info.data
        if "cert_file" in data and "key_file" in data:
            try:
                _context(data["cert_file"], data["key_file"], "TLSv1.2")
            except ValueError as exc:
                raise ValidationError([(("key_file",), str(exc))]) from None


def _readable(label: str, path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"{label} {str(path)!r} is not a readable file: mount it or fix the path")
    return path


def build_ssl_context(config: TLSConfig) -> ssl.SSLContext:
    """A server-side context with the system's secure defaults and nothing older than TLS 1.2."""
    _readable("cert_file", config.cert_file)
    _readable("key_file", config.key_file)
    return _context(config.cert_file, config.key_file, config.min_version)


def _context(cert_file: Path, key_file: Path, min_version: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _MIN_VERSIONS[min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except ssl.SSLError as exc:
        raise ValueError(
            f"cannot load the certificate and key ({exc.reason or exc}): check that key_file is the "
            "unencrypted PEM key of cert_file"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read the certificate or key: {exc.strerror}") from None
    return context


ListenerTLS = TLSConfig | Literal[False] | None
"""Per-listener TLS: its own files, ``False`` for plain HTTP, or ``None`` to use the shared ``tls``."""


def listener_ssl_context(own: ListenerTLS, shared: TLSConfig | None) -> ssl.SSLContext | None:
    """The context a listener serves with: its own setting wins; ``False`` opts out of the shared one."""
    if own is False:
        return None
    chosen = own if own is not None else shared
    return build_ssl_context(chosen) if chosen is not None else None
