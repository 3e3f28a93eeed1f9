"""Fetching an image a REST caller names by https URL, refusing addresses inside our network.

A URL whose host is, or resolves to, a loopback, private, link-local, multicast or otherwise non-global
address is refused before any connection (no server-side request forgery: cloud metadata at 169.254.169.254,
the database, Redis). Names are checked in the connector's resolver, so every connection, redirects included,
goes only where the check allowed; IP literals, which aiohttp does not resolve, are checked before each hop.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from core.errors import InvalidRequest, PayloadTooLarge

MAX_REDIRECTS = 3
_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


def public_address(host: str) -> bool:
    """True when ``host`` (an IP address) is a global unicast address (IPv4-mapped IPv6 judged as IPv4)."""
    address = ipaddress.ip_address(host.strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, answering only when every address of the name is public (else ``InvalidRequest``)."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raises ``InvalidRequest`` (field ``input_url``) for a name with a non-public address."""
        results = await self._resolver.resolve(host, port, family)
        if not results or not all(public_address(result["host"]) for result in results):
            message = f"{host} is not a public address; give an image URL on the internet"
            raise InvalidRequest(message, field="input_url")
        return results

    async def close(self) -> None:
        """Close the underlying resolver."""
        await self._resolver.close()


def _check_url(url: str, allow_private: bool) -> None:
    """Raise ``InvalidRequest`` unless ``url`` is https with a host that is a name or a public address."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidRequest("input_url must be an https URL", field="input_url")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not allow_private and not public_address(str(literal)):
        raise InvalidRequest(f"{parts.hostname} is not a public address", field="input_url")


async def fetch_image(url: str, max_bytes: int, *, allow_private: bool = False) -> bytes:
    """Download the file at the https ``url`` (at most ``max_bytes``), following up to three redirects.

    ``allow_private`` skips the address checks (for a deployment whose images live on its own network).
    Certificates are checked against the system's CAs, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set.

    Raises:
        InvalidRequest: not https, a non-public address, too many redirects, or the download failed
            (field ``input_url``).
        PayloadTooLarge: the file is larger than ``max_bytes``.
    """
    resolver = None if allow_private else PublicOnlyResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, ssl=httpx.create_ssl_context(trust_env=True))
    async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as http:
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(url, allow_private)
            try:
                async with http.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise InvalidRequest(f"input_url answered HTTP {response.status}", field="input_url")
                    if (response.content_length or 0) > max_bytes:
                        raise PayloadTooLarge(f"the image at input_url is larger than {max_bytes} bytes")
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(65536):
                        data += chunk
                        if len(data) > max_bytes:
                            raise PayloadTooLarge(f"the image at input_url is larger than {max_bytes} bytes")
                    return bytes(data)
            except aiohttp.ClientError as err:
                raise InvalidRequest(f"could not download input_url: {err}", field="input_url") from err
    raise InvalidRequest(f"input_url redirects more than {MAX_REDIRECTS} times", field="input_url")
