"""Listener addresses as the configuration writes them (``host:port``, ``[::1]:9797``)."""

from __future__ import annotations


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9797`` for IPv6) -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"{value!r} is not host:port, e.g. 0.0.0.0:9797 or [::1]:9797")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)
