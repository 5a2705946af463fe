"""What an endpoint asks the edge to do with its traffic, read from a Bind's ``Opts``.

Pure: :meth:`EndpointPolicy.from_opts` runs once per bind and refuses (raises a
:class:`~burrow.domain.errors.BurrowError` naming the option) every option Burrow does not
enforce, so an agent never believes an endpoint is protected when it is not. The public
listeners then ask the policy about each connection and each request.

This module is the contract between the bind (``edge/control.py``) and the public
listeners (``edge/public.py`` and the HTTP proxy): the listeners call only what is
declared here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors

# Header fields as the proxy holds them: (name, value) pairs of raw bytes, in order,
# names as received (compare case-insensitively).
Headers = list[tuple[bytes, bytes]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Refusal:
    """An answer the edge gives instead of forwarding a request."""

    status: int
    code: str  # ERR_NGROK_...
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()  # e.g. WWW-Authenticate


class CircuitBreaker:
    """Opens after too many 5xx answers; interface used by the proxy (see from_opts)."""

    def allows(self, now: float) -> bool:
        """May a request go to the agent at monotonic time ``now``?"""
        return True

    def record(self, status: int, now: float) -> None:
        """The status the agent answered (0 when it answered nothing)."""


@dataclass(frozen=True)
class EndpointPolicy:
    """The enforced options of one endpoint. The default enforces nothing: no options."""

    # PROXY protocol header (0 none, 1 text, 2 binary) the edge writes on every proxy
    # stream of this endpoint before the client's bytes.
    proxy_proto: int = 0
    # Compress responses (gzip) for clients that accept it.
    compression: bool = False
    # The request body must be whole before forwarding (webhook verification); a body
    # larger than this many bytes is refused with 413.
    buffer_body_up_to: int = 0
    # PEM bundle of the CAs client certificates must chain to (mutual TLS at the edge,
    # for endpoints whose TLS the edge terminates).
    mutual_tls_ca: bytes | None = None
    circuit_breaker: CircuitBreaker | None = None

    @classmethod
    def from_opts(cls, proto: str, opts: Mapping[str, Any]) -> EndpointPolicy:
        """The policy for a bind of ``proto`` ("http", "https", "tcp", "tls") with these Opts.

        Raises BurrowError for any option that is set and not enforced.
        """
        for name, value in opts.items():
            if name.lower() in _IDENTITY_KEYS or _unset(value):
                continue
            raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=name)
        return cls()

    # Per connection (TCP, TLS; and every HTTP request) ---------------------------------

    def allows_client(self, ip: IPAddress) -> bool:
        """IP restrictions: may a client at ``ip`` reach this endpoint?"""
        return True

    def proxy_protocol_header(
        self, client: tuple[str, int], server: tuple[str, int], proto_tcp: bool = True
    ) -> bytes:
        """The PROXY protocol header to write first on a proxy stream (b"" when off)."""
        return b""

    # Per HTTP request ------------------------------------------------------------------

    def check_request_head(
        self, method: bytes, target: bytes, headers: Headers, client_ip: IPAddress
    ) -> Refusal | None:
        """IP restrictions (403) and basic auth (401) on a request head."""
        return None

    def check_request_body(self, headers: Headers, body: bytes) -> Refusal | None:
        """Webhook verification, once the whole body is there (only if buffer_body_up_to)."""
        return None

    def request_headers(self, headers: Headers) -> Headers:
        """Request header add/remove and host header rewrite, before forwarding."""
        return headers

    def response_headers(self, headers: Headers) -> Headers:
        """Response header add/remove, before answering the client."""
        return headers


# Keys of Opts that name the endpoint rather than ask for a protection.
_IDENTITY_KEYS = frozenset({"hostname", "subdomain", "addr", "domain", "localurlscheme"})


def _unset(value: object) -> bool:
    # An empty object is not "unset": ``"Compression": {}`` turns compression on.
    return value is None or value is False or value == "" or value == 0
