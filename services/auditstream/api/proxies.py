"""The client address of a request: the TCP peer, or ``X-Forwarded-For`` from a trusted proxy.

``actor.ip`` of the API's own audit trail (``export.created``, ``feed.read``, ...) is
whatever this says, so it must not be spoofable: a client that sends
``X-Forwarded-For: 10.9.8.7`` itself is recorded with its real address. The header is
only read when the TCP peer is one of ``AUDITSTREAM_TRUSTED_PROXIES`` (addresses or
CIDR networks; empty by default, so by default it is never read). Then the address is
the right-most entry of the header that is not itself a trusted proxy: each proxy
appends the address it saw, so entries left of the first untrusted one were written by
the client and prove nothing.

``auditstream run`` turns off uvicorn's own ``proxy_headers`` (which trusts 127.0.0.1
by default): this middleware is the one place the decision is made.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.py imports this module: keep it standard library only at run time
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrustedProxies", "TrustedProxyMiddleware", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; ValueError naming the first entry that is neither."""
    networks: list[Network] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {text!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen through a dual-stack socket is still that IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in n for n in self.networks)

    def client(self, peer: str | None, forwarded_for: list[str]) -> str | None:
        """The client address to record, given the TCP peer and the X-Forwarded-For headers."""
        peer_address = _address(peer) if peer else None
        if not self.networks or not self.trusts(peer_address):
            return peer
        hops = [h for header in forwarded_for for h in header.split(",")]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                return peer  # garbage in the chain: do not guess past it
            if not self.trusts(address):
                return str(address)
        return peer


class TrustedProxyMiddleware:
    """Set ``scope["client"]`` to the address ``TrustedProxies.client`` picks."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.proxies.networks:
            client = scope.get("client")
            peer = client[0] if client else None
            headers = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
            chosen = self.proxies.client(peer, headers)
            if chosen != peer:
                scope = {**scope, "client": (chosen, 0)}
        await self.app(scope, receive, send)
