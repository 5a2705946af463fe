"""The issuers' keys for ``jwt-validation`` (docs/traffic-policy.md): fetched by the edge from
the policy's ``additional_jkus``, cached, and handed to the policy's keyrings before its
request phase runs.

The fetch is guarded, as a request a tenant's document makes the edge send: https only,
the name resolved first and every address it resolves to checked (loopback, private,
link-local, multicast and reserved addresses are refused unless ``--jwks-allow-cidrs``
lets them in), the connection made to the checked address (no second lookup to rebind),
no redirects, at most ``MAX_BYTES`` and ``TIMEOUT`` seconds, never blocking the event loop.
Key sets are kept ``TTL`` seconds (a failure ``FAILURE_TTL``), ``MAX_ENTRIES`` at most.
Keys that cannot be had fail closed: the request gets 503, never goes through.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from burrow.domain.traffic_policy import Policy
from burrow.domain.traffic_policy.actions import REQUEST, JwtValidation
from burrow.domain.traffic_policy.jwt import Failure, Key, Keyring, parse_jwks
from burrow.domain.tunnels import Tunnel

from .pages import page

if TYPE_CHECKING:
    from .proxy_request import ProxyRequest

log = logging.getLogger("burrow.edge")

TTL: Final = 900.0  # ngrok refreshes its JWKS cache about every 15 minutes
FAILURE_TTL: Final = 30.0
MAX_ENTRIES: Final = 1024
MAX_BYTES: Final = 256 * 1024
TIMEOUT: Final = 5.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(text: str | None) -> tuple[Network, ...]:
    """``--jwks-allow-cidrs``: comma-separated CIDRs (ValueError naming a bad one)."""
    networks = []
    for item in (text or "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{item.strip()!r} is not a CIDR such as 127.0.0.1/32") from None
    return tuple(networks)


class FetchError(Exception):
    """Why a key set could not be had (logged for the operator, never shown to clients)."""


@dataclass
class _Entry:
    keys: tuple[Key, ...] | None
    expires: float


def keyrings(policy: Policy | None) -> Iterator[Keyring]:
    """The keyrings of the policy's jwt-validation actions that fetch keys."""
    for rule in policy.phases.get(REQUEST, ()) if policy is not None else ():
        for action in rule.actions:
            if isinstance(action, JwtValidation) and action.settings.keyring.urls:
                yield action.settings.keyring


class JwksFetcher:
    """The edge's key sets by URL, and the fetches that fill them."""

    def __init__(
        self,
        allow: Sequence[Network] = (),
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow = tuple(allow)
        self._ssl = ssl_context or ssl.create_default_context()
        self._clock = clock
        self._cache: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._fetching: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def stale(self, policy: Policy | None) -> list[str]:
        """Give the policy's keyrings what the cache has; the URLs it has nothing fresh for."""
        now, stale = self._clock(), []
        for keyring in keyrings(policy):
            for url in keyring.urls:
                entry = self._cache.get(url)
                if entry is None or entry.expires <= now:
                    stale.append(url)
                else:
                    keyring.fetched[url] = entry.keys
        return stale

    async def fetch_all(self, urls: Iterable[str]) -> None:
        """Fetch every URL (one fetch per URL at a time, however many requests wait)."""
        waits = []
        for url in dict.fromkeys(urls):
            task = self._fetching.get(url)
            if task is None:
                task = self._fetching[url] = asyncio.get_running_loop().create_task(self._refresh(url))
                task.add_done_callback(lambda _, url=url: self._fetching.pop(url, None))  # type: ignore[misc]
            waits.append(task)
        await asyncio.gather(*waits, return_exceptions=True)

    async def _refresh(self, url: str) -> None:
        try:
            keys: tuple[Key, ...] | None = parse_jwks(await self.fetch(url))
            ttl = TTL
        except (TimeoutError, FetchError, ValueError, OSError) as error:
            shown = urlsplit(url)._replace(query="", fragment="").geturl()[:200]  # a query may hold a secret
            log.warning("jwks fetch failed", extra={"fields": {"url": shown, "error": str(error)[:200]}})
            keys, ttl = None, FAILURE_TTL
        self._cache[url] = _Entry(keys, self._clock() + ttl)
        self._cache.move_to_end(url)
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)

    async def fetch(self, url: str) -> bytes:
        """The body of ``url`` (200, JSON), by the guarded fetch the module describes."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme != "https" or not host:
            raise FetchError("only https:// URLs are fetched")
        port = parts.port or 443
        async with asyncio.timeout(TIMEOUT):
            reader, writer = await self._connect(host, port)
            try:
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                authority = host if parts.port is None else f"{host}:{port}"
                writer.write(
                    f"GET {target} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n"
                    "User-Agent: burrow-jwks\r\nConnection: close\r\n\r\n".encode("ascii")
                )
                data = await reader.read(MAX_BYTES + 16 * 1024)
                while chunk := await reader.read(MAX_BYTES):
                    data += chunk
                    if len(data) > MAX_BYTES + 16 * 1024:
                        raise FetchError(f"the response is larger than {MAX_BYTES} bytes")
            finally:
                writer.close()
        return _body(data)

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection to ``host``: every address it resolves to must be allowed, and
        the connection goes to one of those (in order), never to a second lookup's."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise FetchError(f"{host} does not resolve")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%", 1)[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
            if not _public(address) and not any(address in network for network in self.allow):
                raise FetchError(
                    f"{host} resolves to {address}, which is not public (see --jwks-allow-cidrs)"
                )
        problem: OSError = OSError(f"no address of {host} answers")
        for address_text in addresses:
            try:
                return await asyncio.open_connection(
                    address_text, port, ssl=self._ssl, server_hostname=host, limit=MAX_BYTES
                )
            except ssl.SSLError:
                raise
            except OSError as error:
                problem = error
        raise problem

    def judge(
        self,
        request: ProxyRequest,
        tunnel: Tunnel,
        apply: Callable[[], None],
        done: Callable[[ProxyRequest], None],
    ) -> None:
        """Run ``apply`` (the endpoint's policy) with the keys its jwt-validation needs: at once
        when they are cached, else once fetched (``request.routing`` holds the request until
        then, ``done`` resumes it). A forward-internal to an endpoint whose keys were not
        cached runs again once they are."""
        stale = self.stale(tunnel.policy.traffic)
        policies = [tunnel.policy.traffic]
        if not stale:
            apply()
            final = request.tunnel
            if final is None or final is tunnel:
                return
            stale = self.stale(final.policy.traffic)
            if not stale:
                return
            policies.append(final.policy.traffic)
        request.routing = True  # reading stays paused while the keys are fetched
        later = self._judge_later(request, tunnel, stale, policies, apply, done)
        task = asyncio.get_running_loop().create_task(later)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge_later(
        self,
        request: ProxyRequest,
        tunnel: Tunnel,
        stale: list[str],
        policies: list[Policy | None],
        apply: Callable[[], None],
        done: Callable[[ProxyRequest], None],
    ) -> None:
        await self.fetch_all(stale)
        for policy in policies:
            self.stale(policy)  # fetched or failed now: judged as it stands
        request.routing, request.answer, request.plan, request.tunnel = False, None, None, tunnel
        apply()
        done(request)


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast one (``is_global`` alone lets multicast by)."""
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_loopback or address.is_link_local
    )


def _body(data: bytes) -> bytes:
    """A 200's body from a whole HTTP/1.0 response; FetchError for anything else."""
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        raise FetchError("the response has no complete head")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or status[1] != b"200":
        raise FetchError(f"the response is not 200 OK: {lines[0][:60]!r}")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            raise FetchError("a chunked response to an HTTP/1.0 request")
        if name == b"content-length" and value.strip() != str(len(body)).encode():
            raise FetchError("the body does not have its Content-Length")
    if len(body) > MAX_BYTES:
        raise FetchError(f"the response is larger than {MAX_BYTES} bytes")
    return body


def refusal(failure: Failure) -> bytes:
    """The ngrok-style answer to a request jwt-validation refused."""
    headers = ((b"WWW-Authenticate", b'Bearer error="invalid_token"'),) if failure.status == 401 else ()
    reason = {401: "Unauthorized", 403: "Forbidden"}.get(failure.status, "Service Unavailable")
    return page(failure.status, reason, failure.code, f"JWT validation failed: {failure.reason}.", headers)
