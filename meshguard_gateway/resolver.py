"""The one DNS lookup the gateway makes: the host of a URL resource, for the `publicAddress` condition.

An edge, not the core: the engine never resolves; the gateway (and `meshguard policy test --offline`)
call ``resolve_url_host`` before deciding and put the ``Resolution`` in the request. A lookup that
fails or takes longer than ``timeout`` is a Resolution with an ``error``, which the condition refuses.

Limit (DNS rebinding): the agent's own fetch resolves the name again, later, and may get another
address; see docs/security.md.
"""

from __future__ import annotations

import asyncio
import socket

from meshguard_gateway.url import Resolution, UnreadableUrl, literal_address, split_url

__all__ = ["DEFAULT_TIMEOUT", "resolve_url_host", "resolve_url_host_sync"]

DEFAULT_TIMEOUT = 2.0


def _host_to_resolve(resource: object) -> str | None:
    """The host name of a URL resource that needs DNS, or None (not a URL, or a literal address)."""
    if not isinstance(resource, str) or "://" not in resource:
        return None
    try:
        _, host = split_url(resource)
    except UnreadableUrl:
        return None  # the condition says why it cannot be checked
    return None if literal_address(host) is not None else host


async def resolve_url_host(resource: object, timeout: float = DEFAULT_TIMEOUT) -> Resolution | None:
    """Resolve the host of ``resource`` (when it is a URL with a host name), within ``timeout`` seconds."""
    host = _host_to_resolve(resource)
    if host is None:
        return None
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout)
    except asyncio.TimeoutError:
        return Resolution(host, (), f"no answer within {timeout:g} s")
    except (OSError, UnicodeError) as exc:
        return Resolution(host, (), getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    return Resolution(host, addresses, None if addresses else "no addresses")


def resolve_url_host_sync(resource: object, timeout: float = DEFAULT_TIMEOUT) -> Resolution | None:
    """``resolve_url_host`` for callers without an event loop (the CLI's offline policy test)."""
    if _host_to_resolve(resource) is None:
        return None
    return asyncio.run(resolve_url_host(resource, timeout))
