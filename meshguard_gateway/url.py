"""URLs for the `hosts`, `schemes` and `publicAddress` conditions: scheme and host, host patterns, and
which addresses are public.

Pure: no DNS here. The gateway resolves a URL's host at the edge (``gateway.resolve_for``) and puts a
``Resolution`` in the request; the engine only classifies the addresses it is given.

Strict on purpose: a URL that browsers and Python's parsers could read differently (a backslash,
whitespace, control characters, an empty or non-ASCII host) is unreadable, and every condition on it
fails closed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "Resolution",
    "UnreadableUrl",
    "host_matches",
    "literal_address",
    "non_public_reason",
    "split_url",
    "valid_host_pattern",
]

_HOST = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnreadableUrl(ValueError):
    """The resource is not a URL we can judge; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the gateway's resolver said about ``host``: its addresses, or the error."""

    host: str
    addresses: tuple[str, ...] = ()
    error: str | None = None


def split_url(url: str) -> tuple[str, str]:
    """(scheme, host) of an absolute URL, both lower case; the host without brackets or a final dot."""
    if _BAD_URL_CHARS.search(url):
        raise UnreadableUrl("the URL contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise UnreadableUrl(f"the URL cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        raise UnreadableUrl("it is not an absolute URL with a host (scheme://host/...)")
    if not host:
        raise UnreadableUrl("the URL has no host")
    if not host.isascii():
        raise UnreadableUrl("the URL's host is not ASCII; give it in its punycode form (xn--...)")
    host = host.lower()
    if host.endswith(".") and len(host) > 1:
        host = host[:-1]
    if literal_address(host) is None and not _HOST.match(host):
        raise UnreadableUrl(f"the URL's host '{host[:80]}' is not a valid host name or address")
    return scheme, host


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, or None for a name. Also reads the forms a resolver
    accepts as IPv4 without asking DNS (``127.1``, ``0x7f.0.0.1``, ``2130706433``)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def non_public_reason(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not a public internet address (``"loopback"``...), or None when it is."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = non_public_reason(embedded)
            return f"embeds {embedded}, {inner}" if inner else None
        if ip.is_site_local:
            return "site-local (fec0::/10)"
        if ip in ipaddress.ip_network("fc00::/7"):
            return "unique local (fc00::/7)"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared address space (CGNAT, 100.64.0.0/10)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def valid_host_pattern(pattern: str) -> bool:
    """``example.com``, ``*.example.com`` or an IP address, lower case."""
    if (":" in pattern and literal_address(pattern) is not None) or _dotted_ipv4(pattern):
        return True
    name = pattern[2:] if pattern.startswith("*.") else pattern
    return bool(_HOST.match(name)) and "*" not in name


def _dotted_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def host_matches(host: str, pattern: str) -> bool:
    """``*.example.com`` matches every subdomain of example.com (at any depth) but not example.com
    itself; any other pattern matches only the host it names. Hosts and patterns are lower case."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    wanted = _pattern_address(pattern)
    if wanted is not None:  # an address: compare as addresses, whatever the spelling (2852039166, 0xa9fea9fe, 10.1,
        given = literal_address(host)  # octal, [::ffff:169.254.169.254] all name 169.254.169.254 / 10.0.0.1)
        return given is not None and _unwrapped(given) == wanted
    return host == pattern


def _pattern_address(pattern: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address an IP pattern names (IPv4-mapped IPv6 unwrapped), or None for a name pattern."""
    try:
        return _unwrapped(ipaddress.ip_address(pattern))
    except ValueError:
        return None


def _unwrapped(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
