"""Webhook target URLs: http(s) only, and never an address inside our own network (SSRF).

A rule's author chooses the URL the server will POST to; without this check a tenant admin
could make the server call its own metadata service (169.254.169.254), a loopback admin
port or a private host. The host is resolved and *every* address it resolves to is checked
(a name with one public and one private address is refused): loopback, link-local, private,
multicast, unspecified, reserved, anything not globally routable, and IPv4-mapped IPv6
forms of those (``::ffff:127.0.0.1``). The check runs when the rule is written (422 naming
the target) and again at each delivery attempt.

DNS rebinding: a name can resolve to a public address when checked and to 127.0.0.1 a moment
later when the HTTP client resolves it again. So a delivery attempt resolves *once*
(:func:`resolve_target`), checks what it got, and connects to exactly that address
(:class:`PinnedTarget`): the request goes to ``scheme://ADDRESS:port/path`` with the original
``Host`` header, and for https the TLS server name (SNI) and the certificate check use the
original host name (httpcore's ``sni_hostname`` request extension). The delivery client keeps
no idle connections, so a connection made for one name is never reused for another name on
the same address. ``AUDITSTREAM_ALLOW_PRIVATE_TARGETS=true`` turns the address check off
(tests with a receiver on 127.0.0.1; a deployment whose receivers are on its own network);
the attempt is still pinned to the address it resolved.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from auditstream.alerts.model import RuleError

__all__ = [
    "PinnedTarget",
    "Resolver",
    "TargetRefused",
    "check_url",
    "forbidden_address",
    "resolve_target",
    "system_resolve",
]

# (host, port) -> the addresses it resolves to, as text (socket.getaddrinfo in production).
Resolver = Callable[[str, int], list[str]]


class TargetRefused(RuleError):
    """The URL may not be used as a target (``field`` names it)."""


def forbidden_address(address: str) -> bool:
    """True for an address a webhook may not reach unless private targets are allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is no part of it
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


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """A target URL bound to the one address that was checked: what the attempt connects to."""

    parts: SplitResult
    host: str  # the URL's host name, as written (lower case)
    port: int
    address: str

    @property
    def request_url(self) -> str:
        """The URL with the checked address in place of the name (the port always explicit)."""
        netloc = f"[{self.address}]" if ":" in self.address else self.address
        path = self.parts.path or "/"
        query = f"?{self.parts.query}" if self.parts.query else ""
        return f"{self.parts.scheme.lower()}://{netloc}:{self.port}{path}{query}"

    @property
    def _ascii_host(self) -> str:
        try:
            return self.host.encode("idna").decode("ascii")
        except UnicodeError:
            return self.host

    @property
    def host_header(self) -> str:
        name = self._ascii_host
        if ":" in name:  # an IPv6 literal host
            name = f"[{name}]"
        default = 443 if self.parts.scheme.lower() == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"

    @property
    def extensions(self) -> dict[str, Any]:
        """httpcore request extensions: TLS SNI and certificate check against the original name."""
        if self.parts.scheme.lower() != "https":
            return {}
        return {"sni_hostname": self._ascii_host}


def _split(url: str, field: str) -> tuple[SplitResult, str, int]:
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
    return parts, host, port or (443 if parts.scheme.lower() == "https" else 80)


def resolve_target(
    url: str, field: str = "url", *, allow_private: bool = False, resolve: Resolver = system_resolve
) -> PinnedTarget:
    """Resolve ``url``'s host once, check every address, and pin the attempt to the first one."""
    parts, host, port = _split(url, field)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError):
        raise TargetRefused(field, f"the host {host!r} does not resolve") from None
    if not addresses:
        raise TargetRefused(field, f"the host {host!r} does not resolve")
    for address in addresses:
        try:
            bad = forbidden_address(address)
        except ValueError:
            raise TargetRefused(field, f"the host {host!r} resolved to {address!r}, not an address") from None
        if bad and not allow_private:
            raise TargetRefused(
                field,
                f"the host {host!r} resolves to {address}, a loopback, link-local or private address; "
                "set AUDITSTREAM_ALLOW_PRIVATE_TARGETS=true to allow it",
            )
    return PinnedTarget(parts, host, port, addresses[0])


def check_url(
    url: str, field: str = "url", *, allow_private: bool = False, resolve: Resolver = system_resolve
) -> None:
    """Raise :class:`TargetRefused` unless ``url`` is an http(s) URL whose host is public."""
    _split(url, field)
    if not allow_private:
        resolve_target(url, field, resolve=resolve)
