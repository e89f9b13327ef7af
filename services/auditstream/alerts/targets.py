"""Webhook target URLs: http(s) only, and never an address inside our own network (SSRF).

A rule's author chooses the URL the server will POST to; without this check a tenant admin
could make the server call its own metadata service (169.254.169.254), a loopback admin
port or a private host. The host is resolved and *every* address it resolves to is checked
(a name with one public and one private address is refused). The check runs when the rule
is written (422 naming the target) and again before each delivery attempt, because DNS
answers change. ``AUDITSTREAM_ALLOW_PRIVATE_TARGETS=true`` turns the address check off
(tests with a receiver on 127.0.0.1; a deployment whose receivers are on its own network).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from auditstream.alerts.model import RuleError

__all__ = ["TargetRefused", "check_url"]


class TargetRefused(RuleError):
    """The URL may not be used as a target (``field`` names it)."""


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def check_url(url: str, field: str = "url", *, allow_private: bool = False) -> None:
    """Raise :class:`TargetRefused` unless ``url`` is an http(s) URL whose host is public."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused(field, "not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise TargetRefused(field, "only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        raise TargetRefused(field, "the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused(field, "credentials in the URL are not allowed; use the target secret")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(
            host, port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        raise TargetRefused(field, f"the host {host!r} does not resolve") from None
    addresses = {info[4][0] for info in infos}
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if _forbidden(ip):
            raise TargetRefused(
                field,
                f"the host {host!r} resolves to {ip}, a loopback, link-local or private address; "
                "set AUDITSTREAM_ALLOW_PRIVATE_TARGETS=true to allow it",
            )
