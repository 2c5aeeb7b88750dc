"""``X-Forwarded-For/-Proto/-Host`` and ``X-Real-IP``: believed only from configured proxies, always set.

A client that is not a trusted proxy could claim any address, so from it the gateway drops every
incoming ``X-Forwarded-*`` and ``Forwarded`` field and states what it saw itself. From a trusted proxy
(``trusted_proxies`` CIDRs, e.g. the load balancer) it appends the peer to the chain and keeps the
proto and host the proxy reported. The client address for logs is the right-most untrusted address;
the app receives it as ``X-Real-IP`` (a client's own ``X-Real-IP`` is always dropped).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Peer:
    """One client connection's peer as the forwarding rules see it, worked out once per connection."""

    address: str
    trusted: bool
    forwarded: bytes  # X-Forwarded-For/-Proto and X-Real-IP lines for an untrusted peer


class ForwardedPolicy:
    """Answers "is this peer a trusted proxy" and "who is the real client" for the configured CIDRs."""

    def __init__(self, trusted: Sequence[Network]) -> None:
        self._trusted = tuple(trusted)
        self.is_trusted = lru_cache(maxsize=4096)(self._is_trusted)

    def _is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._trusted)

    def peer(self, address: str) -> Peer:
        trusted = self.is_trusted(address)
        lines = self.headers(address, None, None, None, None) + real_ip(address)
        return Peer(address, trusted, lines)

    def client_address(self, peer: str, forwarded_for: bytes | None) -> str:
        """The real client: walk the chain from the right while hops are trusted proxies."""
        if forwarded_for is None or not self.is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def headers(
        self,
        peer: str,
        forwarded_for: bytes | None,
        forwarded_proto: bytes | None,
        forwarded_host: bytes | None,
        host: bytes | None,
    ) -> bytes:
        """The ``X-Forwarded-*`` lines to send to the app, CRLF-terminated (``X-Real-IP``: ``real_ip``)."""
        peer_bytes = peer.encode("ascii", "replace")
        trusted = self.is_trusted(peer)
        chain = forwarded_for + b", " + peer_bytes if trusted and forwarded_for else peer_bytes
        proto = forwarded_proto if trusted and forwarded_proto else b"http"
        out = b"X-Forwarded-For: " + chain + b"\r\nX-Forwarded-Proto: " + proto + b"\r\n"
        fhost = forwarded_host if trusted and forwarded_host else host
        if fhost:
            out += b"X-Forwarded-Host: " + fhost + b"\r\n"
        return out


def real_ip(client: str) -> bytes:
    """The ``X-Real-IP`` line for the client address the gateway worked out (never the client's own)."""
    return b"X-Real-IP: " + client.encode("ascii", "replace") + b"\r\n"
