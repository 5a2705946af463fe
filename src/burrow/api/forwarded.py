"""The client address of API requests that come through a trusted proxy.

uvicorn's own proxy-header handling is off (it trusts 127.0.0.1 by default, so any local
process could pick its address); this sets the scope's ``client`` once, for every reader
after it: rate limits, the audit trail, the access log and the dashboard.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from burrow.domain.forwarded import TrustedProxies

_XFF = b"x-forwarded-for"
_XFP = b"x-forwarded-proto"
_SCHEMES = {"http": ("http", "https"), "websocket": ("ws", "wss")}


class ForwardedClient:
    """Rewrites ``scope["client"]`` (and the scheme, from ``X-Forwarded-Proto``) for
    requests whose peer is one of ``proxies``; others pass untouched."""

    def __init__(self, app: ASGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] in _SCHEMES and peer and self.proxies.trusts(str(peer[0])):
            headers = scope["headers"]
            chain = [value.decode("latin-1") for name, value in headers if name == _XFF]
            client = self.proxies.client(str(peer[0]), chain)
            scope = dict(scope)
            if client != peer[0]:
                scope["client"] = (client, 0)
            protos = [value.decode("latin-1").strip().lower() for name, value in headers if name == _XFP]
            plain, secure = _SCHEMES[scope["type"]]
            if len(protos) == 1 and protos[0] in ("http", "https"):
                scope["scheme"] = secure if protos[0] == "https" else plain
        await self.app(scope, receive, send)
