"""Behind a reverse proxy: which scheme, host and client address a request really had.

Two settings decide. `IMAGEX_PROXY_HOPS` trusts that many hops of `X-Forwarded-For/-Proto/-Host`
(Hypercorn's `ProxyFixMiddleware`), so login throttling sees the client's address instead of the proxy's.
`IMAGEX_PUBLIC_URL` then fixes the scheme and host outright: links the site makes (invitation links) name
the public address, and `IMAGEX_SECURE_COOKIES=auto` marks cookies `Secure` when that address is https,
whatever the proxy forwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from app.settings import Settings

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class PublicAddress:
    """ASGI middleware: every HTTP request is seen as made to `public_url` (scheme and Host header)."""

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        parts = urlsplit(public_url)
        self.app = app
        self.scheme = parts.scheme
        self.host = parts.netloc.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope)
            scope["scheme"] = self.scheme if scope["type"] == "http" else ("wss" if self.scheme == "https"
                                                                          else "ws")
            scope["headers"] = [(name, value) for name, value in scope["headers"] if name.lower() != b"host"]
            scope["headers"].append((b"host", self.host))
        await self.app(scope, receive, send)


def behind_proxy(app: Any, settings: Settings) -> Any:
    """`app` wrapped as the proxy settings say (unchanged when neither is set)."""
    wrapped: Any = app
    if settings.public_url:
        wrapped = PublicAddress(wrapped, settings.public_url)
    if settings.proxy_hops:
        from hypercorn.middleware import ProxyFixMiddleware

        # outermost: the forwarded scheme and host it sets are then overridden by the public address
        wrapped = ProxyFixMiddleware(wrapped, mode="legacy", trusted_hops=settings.proxy_hops)
    return wrapped
