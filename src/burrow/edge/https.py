"""Certificates of the public HTTPS listener, chosen per TLS server name (SNI).

For a name, in order: the uploaded certificate its reserved domain chose (``certificate_id``,
uploaded.py), the certificate ACME issued for it, an extra certificate whose SAN covers it
(``--https-extra-cert``), the operator's certificate if its SAN covers it (``--https-cert``,
typically ``*.<domain>``), or else, for a name some HTTPS endpoint (or label route) serves,
a certificate the local CA issues on the fly (``<data-dir>/issued/``), so local use works
without setup. Names nobody serves get no certificate: the handshake is refused. An endpoint
asking for mutual TLS gets a context of its own that requires a client certificate chaining
to its CA.

The listener reads the server name from the ClientHello before TLS starts (peeking, so
the bytes stay for the handshake), then starts TLS with that name's context: OpenSSL
keeps a connection's verify mode from the context it started with, so switching contexts
in an SNI callback could change the certificate but never require a client certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, cast

from burrow.domain import names
from burrow.domain.forwarded import TrustedProxies
from burrow.domain.limits import Admission
from burrow.domain.proxy_protocol import ProxyHeaderError
from burrow.domain.tunnels import Registry

from .certs import ServerCertificate, certificate_names, ensure_name_certificate
from .proxy_inbound import read_header
from .relay import RelayOut
from .sniff import MAX_CLIENT_HELLO, NEED_MORE, tls_alpn_protocols, tls_server_name

MAX_CONTEXTS = 10_000
ACME_TLS_1 = "acme-tls/1"  # RFC 8737's ALPN protocol


def _covers(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _context(certificate: ServerCertificate, client_ca: bytes | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert_path, certificate.key_path)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpsCertificates:
    def __init__(
        self,
        registry: Registry,
        data_dir: Path,
        fallback: ServerCertificate,
        operator: ServerCertificate | None = None,
        extra: list[ServerCertificate] | None = None,
        served: Callable[[str], bool] | None = None,
    ) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self.fallback = fallback
        # (SAN pattern, certificate): the operator's first choices, then their default.
        self._given: list[tuple[str, ServerCertificate]] = []
        for certificate in [*(extra or []), *([operator] if operator else [])]:
            self._given += [(pattern, certificate) for pattern in certificate_names(certificate.cert_path)]
        self._served = served or (lambda name: False)  # label routes and the like
        self._contexts: dict[tuple[str, bytes | None], ssl.SSLContext] = {}
        self._fallback: ssl.SSLContext | None = None
        # ACME (acme.py): issued certificates by name (or *.name), and the TLS-ALPN-01
        # challenge certificate for a name, read from the database.
        self._managed: list[tuple[str, ServerCertificate]] = []
        self.acme_alpn: Callable[[str], Awaitable[tuple[str, bytes] | None]] | None = None
        # Reserved domains' uploaded certificates (certificate_id, uploaded.py), by domain.
        self._uploaded: dict[str, ServerCertificate] = {}

    def set_uploaded(self, served: dict[str, ServerCertificate]) -> None:
        """The uploaded certificates reserved domains chose (on the event loop's thread)."""
        self._uploaded = dict(served)
        self._contexts.clear()

    def set_managed(self, served: dict[str, ServerCertificate]) -> None:
        """The certificates ACME issued (on the event loop's thread): served from now on."""
        self._managed = list(served.items())
        self._contexts.clear()

    async def alpn_context(self, name: str) -> ssl.SSLContext | None:
        """A context presenting the pending TLS-ALPN-01 certificate for ``name``, if any."""
        if self.acme_alpn is None:
            return None
        held = await self.acme_alpn(name)
        if held is None:
            return None
        cert_pem, key_pem = held
        return await asyncio.to_thread(_alpn_context, cert_pem, key_pem)

    def context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context to start TLS with for this server name; None to refuse the connection."""
        if server_name is None:
            if self._fallback is None:
                self._fallback = _context(self.fallback, None)
            return self._fallback  # no name: requests will not match a Host (421)
        name = server_name.lower().rstrip(".")
        try:
            return self._context_for(name)
        except (OSError, ValueError, ssl.SSLError):
            return None

    def _context_for(self, name: str) -> ssl.SSLContext | None:
        tunnel = self.registry.https_tunnel(name)
        client_ca = tunnel.policy.mutual_tls_ca if tunnel is not None else None
        key = (name, client_ca)
        context = self._contexts.get(key)
        if context is not None:
            return context
        certificate = self._uploaded.get(name)
        if certificate is None:
            certificate = next((c for pattern, c in self._managed if pattern == name), None)
        if certificate is None:
            given = [*self._given, *self._managed]
            certificate = next((c for pattern, c in given if _covers(pattern, name)), None)
        if certificate is None:
            # Only a name in its normal form: it names the certificate's file.
            if (tunnel is None and not self._served(name)) or names.hostname(name) != name:
                return None
            certificate = ensure_name_certificate(self.data_dir, name)
        context = _context(certificate, client_ca)
        if len(self._contexts) >= MAX_CONTEXTS:
            self._contexts.clear()
        self._contexts[key] = context
        return context


def _alpn_context(cert_pem: str, key_pem: bytes) -> ssl.SSLContext:
    import tempfile

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols([ACME_TLS_1])
    with tempfile.TemporaryDirectory() as directory:  # ssl loads keys from files only
        cert_path, key_path = Path(directory) / "c.pem", Path(directory) / "k.pem"
        cert_path.write_text(cert_pem)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


class _Answered(asyncio.Protocol):
    """A TLS-ALPN-01 validation: the handshake was the answer; nothing more is said."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class HttpsRelay(RelayOut, Protocol):
    """Where another node serves a name, and how to splice a connection to it (relay.py)."""

    async def https_relay_target(self, server_name: str) -> str | None: ...


class _Held(asyncio.Protocol):
    """Holds a connection until the relay takes it over; keeps what arrives meanwhile (uvloop
    may read once before pausing takes effect)."""

    def __init__(self) -> None:
        self.early = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).pause_reading()

    def data_received(self, data: bytes) -> None:
        self.early += data


class HttpsListener:
    """Accepts TCP connections, reads each ClientHello's server name, then starts TLS, or,
    for a name another node serves (``relay``), relays the still-encrypted connection there."""

    def __init__(
        self,
        certificates: HttpsCertificates,
        protocol: Callable[[str | None, tuple[str, int] | None], asyncio.Protocol],
        handshake_timeout: float,
        admission: Admission,
        relay: HttpsRelay | None = None,
        elsewhere: Callable[[socket.socket, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.certificates = certificates
        self.protocol = protocol  # its connections release the count this listener took
        self.handshake_timeout = handshake_timeout
        self.admission = admission
        self.relay = relay
        self._socket: socket.socket | None = None
        # Given a connection and its server name, True if it took the connection (a sibling
        # worker holds the name: edge/handoff.py).
        self.elsewhere = elsewhere
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        # --proxy-protocol https: these peers send a PROXY header first (edge/proxy_inbound.py).
        self.proxies: TrustedProxies | None = None
        self.header_timeout = handshake_timeout

    async def start(self, host: str, port: int, bound: socket.socket | None = None) -> None:
        """Listen on ``host:port``, or accept on ``bound``, a socket listening already."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = bound or socket.create_server((host, port), family=family, backlog=1024)
        self._socket.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def stop(self) -> None:
        tasks = [t for t in (self._accepting, *self._handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()

    async def _accept(self) -> None:
        assert self._socket is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, peer = await loop.sock_accept(self._socket)
            except OSError:  # e.g. out of descriptors: try again shortly
                await asyncio.sleep(0.1)
                continue
            address = (str(peer[0]), int(peer[1]))
            if self.proxies is not None and self.proxies.trusts(address[0]):
                reading = loop.create_task(self._accept_proxied(client, address))
                self._handshakes.add(reading)
                reading.add_done_callback(self._handshakes.discard)
                continue
            # Counted from the start, handshakes too (the connection releases it when it ends).
            self.accept(client, address)

    async def _accept_proxied(self, client: socket.socket, proxy: tuple[str, int]) -> None:
        """A trusted proxy's connection: its PROXY header, then served as the client's it names."""
        try:
            parsed = await read_header(client, self.header_timeout)
        except (ProxyHeaderError, TimeoutError, OSError, asyncio.CancelledError):
            client.close()
            return
        if parsed.source is None:  # LOCAL / UNKNOWN: the proxy's own connection
            self.accept(client, proxy)
            return
        if self.admission.admit(parsed.source[0], "https") is not None:
            client.close()
            return
        self._handle(client, parsed.source, parsed.source, False)

    def accept(self, client: socket.socket, address: tuple[str, int], handed: bool = False) -> None:
        """Serve an accepted connection, or one a sibling worker ``handed`` over (never passed on)."""
        if self.admission.admit(address[0], "https") is not None:
            client.close()
            return
        self._handle(client, address, None, handed)

    def accept_relayed(self, client: socket.socket, address: tuple[str, int]) -> None:
        """A connection another node relayed (one end of a local socket pair), from ``address``."""
        if self.admission.admit(address[0], "https") is not None:
            client.close()
            return
        self._handle(client, address, address, True)

    def _handle(
        self,
        client: socket.socket,
        address: tuple[str, int],
        relayed_from: tuple[str, int] | None,
        passed_on: bool,
    ) -> None:
        starting = self._start_tls(client, address, relayed_from, passed_on)
        task = asyncio.get_running_loop().create_task(starting)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _start_tls(
        self,
        client: socket.socket,
        address: tuple[str, int],
        relayed_from: tuple[str, int] | None,
        passed_on: bool,
    ) -> None:
        """TLS for ``client``, or the connection passed to a sibling worker or another node
        that serves its server name; a connection passed on once is never passed on again."""
        loop = asyncio.get_running_loop()
        connected = False
        try:
            async with asyncio.timeout(self.handshake_timeout):
                name, hello = await _peek_hello(client)
            if name and ACME_TLS_1.encode() in tls_alpn_protocols(hello):
                alpn = await self.certificates.alpn_context(name)
                if alpn is None:
                    client.close()
                    return
                await loop.connect_accepted_socket(
                    _Answered, client, ssl=alpn, ssl_handshake_timeout=self.handshake_timeout
                )
                return  # the count is released below
            if name and not passed_on and self.elsewhere is not None and await self.elsewhere(client, name):
                client.close()  # the sibling holds the connection now
                return
            if name and not passed_on and self.relay is not None:
                target = await self.relay.https_relay_target(name)
                if target is not None:
                    held = _Held()
                    transport, _ = await loop.connect_accepted_socket(lambda: held, client)
                    connected = True  # from here the relay releases the count, when it ends
                    await self._relay(transport, held, address, name, target)
                    return
            context = self.certificates.context_for(name) if name != "" else None
            if context is None:
                client.close()  # no certificate for that name: nothing to say in TLS terms
                return
            await loop.connect_accepted_socket(
                lambda: self.protocol(name, relayed_from),
                client,
                ssl=context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
            connected = True
        except (OSError, TimeoutError, ssl.SSLError, asyncio.CancelledError):
            client.close()
        finally:
            if not connected:
                self.admission.release(address[0], "https")

    async def _relay(
        self, transport: asyncio.Transport, held: _Held, address: tuple[str, int], name: str, target: str
    ) -> None:
        """Splice the connection, its ClientHello still unread, to the node at ``target``."""
        assert self.relay is not None
        released = False

        def end() -> None:
            nonlocal released
            if not released:
                released = True
                self.admission.release(address[0], "https")

        header = {"listener": "https", "client": list(address), "sni": name}
        # No await until relay_out has taken the transport: nothing read is left behind.
        await self.relay.relay_out(transport, bytes(held.early), header, target, end)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _peek_hello(client: socket.socket) -> tuple[str | None, bytes]:
    """The SNI of the ClientHello waiting on ``client`` (None without one; "" if unreadable),
    and the bytes it was read from."""
    loop = asyncio.get_running_loop()
    seen = -1
    while True:
        ready = loop.create_future()
        loop.add_reader(client.fileno(), _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(client.fileno())
        data = client.recv(MAX_CLIENT_HELLO, socket.MSG_PEEK)
        if not data:
            return "", b""
        name = tls_server_name(data)
        if name != NEED_MORE:
            return name, data
        if len(data) == seen:  # still waiting for the rest of it (the bytes stay readable)
            await asyncio.sleep(0.01)
        seen = len(data)
