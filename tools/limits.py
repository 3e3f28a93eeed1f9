"""Rate limits at the HTTP boundary: per client address here, per account in ``tools.http.authenticate``.

The counting is ``core.rate_limits.RateLimits`` (in memory, or in Redis for every replica together); a request
over a limit is answered 429 with ``Retry-After`` before its handler runs, so it changes and charges nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable

from aiohttp import web

from tools.http import SERVICES, SETTINGS
from tools.openapi import UNLIMITED

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Probes and scrapes, which a load balancer or Prometheus sends often from one address.
EXEMPT = UNLIMITED
#: Platforms' calls: voice platforms and webhook senders call from a few addresses for all their customers, so
#: an address limit would throttle every business at once. Tool calls are limited per account instead, and
#: webhooks are refused cheaply without their signature.
PLATFORM_PREFIXES = ("/tools", "/mcp", "/webhooks/")


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(remote: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The client's address: the connection's (``remote``), or, when that is a trusted proxy, the right-most
    address of ``X-Forwarded-For`` that is not a trusted proxy itself (the left part is the client's to write,
    so it is never believed)."""
    networks = _networks(trusted)
    address = remote or "unknown"
    if not networks or not forwarded_for or not _trusted(address, networks):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if hop and not _trusted(hop, networks):
            return hop
    return address


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request against its client address (and ``/checkout/start`` and the sign-in page's emails
    against their stricter limits), unless a platform makes it (``PLATFORM_PREFIXES``); raises ``RateLimited``
    (429) past a limit."""
    limits = request.app[SERVICES].rate_limits
    if limits.enabled and request.path not in EXEMPT and not request.path.startswith(PLATFORM_PREFIXES):
        trusted = request.app[SETTINGS].rate_limits.trusted_proxies
        address = request.remote or "unknown"
        if trusted:
            address = client_address(address, request.headers.get("X-Forwarded-For"), tuple(trusted))
        if request.path == "/checkout/start":
            await limits.check("checkout_per_address", address)
        elif request.path == "/app/login" and request.method == "POST":  # each one emails someone
            await limits.check("sign_in_per_address", address)
        if limits.shared:
            await limits.check("per_address", address)
        else:
            limits.count("per_address", address)
    return await handler(request)
