"""Security plumbing of the web app: response headers, body size caps, the client's address.

Both middlewares are plain ASGI, so they wrap every response, error pages included.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The default policy: our own stylesheet and one small script, nothing from elsewhere.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: An edition's web version: inline styles (the mail's CSS is inlined) and https images.
EDITION_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Links carry tokens in their path: never send them to another site.
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the security headers to every response (a route may set its own CSP first)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_POLICY.encode()))
                if self.hsts:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over a size (413), by Content-Length or while they stream in."""

    def __init__(
        self, app: ASGIApp, *, default: int, larger: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.default = default
        self.larger = larger

    def _limit(self, path: str) -> int:
        for prefix, size in self.larger:
            if path.startswith(prefix):
                return size
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _plain(send, 400, "bad Content-Length")
                    return
                if declared > limit:
                    await _plain(send, 413, f"the request body is larger than {limit} bytes")
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _plain(send, 413, f"the request body is larger than {limit} bytes")


async def _plain(send: Send, status: int, text: str) -> None:
    body = f"{text}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The trusted proxies setting as networks; a bad entry is a ConfigError."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"NEWSLETTER_TRUSTED_PROXIES: {value!r} is not an IP address or network",
                hint='write e.g. ["127.0.0.1", "10.0.0.0/8"]',
            ) from None
    return tuple(networks)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(value: str, networks: Sequence[IPNetwork]) -> bool:
    address = _address(value)
    return address is not None and any(address in network for network in networks)


def client_ip(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[IPNetwork]) -> str:
    """The client's address: the peer, or through trusted proxies the rightmost untrusted hop."""
    current = peer or "unknown"
    if not networks or not _trusted(current, networks):
        return current
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        if _address(hop) is None:
            return current
        if not _trusted(hop, networks):
            return hop
        current = hop
    return current


def has_line_break(*values: Any) -> bool:
    """Whether any value (text) holds a CR, LF or NUL: such a value must never reach a header."""
    return any(isinstance(value, str) and any(c in value for c in "\r\n\x00") for value in values)
