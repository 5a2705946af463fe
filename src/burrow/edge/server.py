"""The edge: the agent listener, the public listeners, and revocation, in one object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from burrow.domain import ids
from burrow.domain.forwarded import TrustedProxies
from burrow.domain.limits import Admission, AgentLimits, PublicLimits
from burrow.domain.proxy_protocol import ProxyHeaderError
from burrow.domain.tunnels import AgentSession as LiveSession
from burrow.domain.tunnels import Tunnel
from burrow.store.acme import AcmeRows
from burrow.store.cluster import STOP_SESSION, ClusterRegistry
from burrow.store.notify import CHANGED, RESYNC, ROUTES, command_payload
from burrow.store.ratelimit import Throttle
from burrow.store.store import Store

from . import muxado_protocol as mux
from . import traffic, wire
from .acme import AcmeSettings, AcmeWorker
from .agent import AgentConnection
from .certs import ServerCertificate, server_context
from .cluster_writes import ClusterWrites
from .control import AgentControl, EdgeSettings
from .handoff import Handoff
from .https import HttpsCertificates, HttpsListener
from .jwt_check import JwksFetcher, Network
from .muxado_streams import MuxConnection, MuxStream
from .proxy_inbound import HeaderReader, ProxyProtocolGate, trusted_peer
from .public import PublicListeners, _peer
from .relay import RelayInbound, Relaying, RelayRoutes, _RelayedTransport
from .revocation import RevocationPolicy, RevocationWatcher
from .uploaded import UploadedCertificates

if TYPE_CHECKING:
    from .ssh import SshGateway

BACKLOG = 1024

log = logging.getLogger("burrow.edge")
# How often sessions are rechecked and commands taken without database notifications
# (SQLite, or while the PostgreSQL listener is down); with them, the edge acts on each
# notification at once and polls only every EdgeConfig.reconcile_seconds, in case one was missed.
POLL_SECONDS = 0.25
# The least time between two rounds: a burst of writes cluster-wide costs each node at most
# ten rechecks of its sessions a second, not one per write.
MIN_ROUND_SECONDS = 0.1
LEAVE_TIMEOUT = 2.0  # seconds leaving the cluster may take at shutdown (else the lease frees the rows)


@dataclass
class EdgeConfig:
    agent_addr: tuple[str, int] = ("127.0.0.1", 4443)
    # The name agents dial (--agent-name, else connect.DOMAIN): on the agent listener's
    # certificate; server_addr is the HOST:PORT agents are told to use.
    agent_name: str | None = None
    server_addr: str | None = None
    http_addr: tuple[str, int] | None = ("127.0.0.1", 8080)
    tls_addr: tuple[str, int] | None = ("127.0.0.1", 8443)
    https_addr: tuple[str, int] | None = ("127.0.0.1", 8444)
    settings: EdgeSettings = field(default_factory=EdgeSettings)
    label_routes: dict[str, dict[str, str]] = field(default_factory=dict)
    agent_limits: AgentLimits = field(default_factory=AgentLimits)
    limits: PublicLimits = field(default_factory=PublicLimits)
    node_name: str = field(default_factory=socket.gethostname)
    lease_seconds: float = 9.0  # a dead node's names come free this long after its last renewal
    relay_addr: tuple[str, int] | None = None  # where other nodes relay public traffic to this one
    # How long revocations may go unchecked (the database unreachable) before the edge
    # refuses new sessions and binds.
    revocation_fail_closed_after: float = 10.0
    # With PostgreSQL notifications received, how often the edge still rechecks every session
    # and looks for commands (the reconciliation of a missed notification).
    reconcile_seconds: float = 2.0
    # Peers whose X-Forwarded-For the API believes (--trusted-proxies).
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    # Non-public addresses the jwt-validation key fetches may reach (--jwks-allow-cidrs).
    jwks_allow_cidrs: tuple[Network, ...] = ()
    # The listeners (agent, http, https, tls, tcp) where those peers send a PROXY header first.
    proxy_protocol: frozenset[str] = frozenset()
    # Listening sockets bound before the edge starts (``burrow serve --workers``' parent binds
    # them once for every worker); without them the edge binds its addresses itself.
    sockets: BoundSockets | None = None
    # ACME for reserved domains with a certificate_management_policy (--acme-email, acme.py).
    acme: AcmeSettings | None = None
    # The SSH tunnel gateway (--ssh-addr, edge/ssh.py), off without an address; its host key
    # (OpenSSH private key format) comes from the data directory.
    ssh_addr: tuple[str, int] | None = None
    ssh_host_key: bytes | None = None


@dataclass
class BoundSockets:
    """The edge's listening sockets, bound and listening already."""

    agent: socket.socket
    http: socket.socket | None
    tls: socket.socket | None
    https: socket.socket | None
    tcp: dict[int, socket.socket]
    relay: socket.socket | None
    # A worker's Unix datagram socket for connections handed to it, and its siblings' (by
    # relay address) to hand connections to (edge/handoff.py).
    handoff_inbox: socket.socket | None = None
    handoff_siblings: dict[str, socket.socket] = field(default_factory=dict)


def _socket_peer(sock: socket.socket) -> tuple[str, int]:
    try:
        peer = sock.getpeername()
    except OSError:
        return ("", 0)
    return (str(peer[0]), int(peer[1]))


class _AgentGate(asyncio.Protocol):
    """An agent's TCP connection until TLS takes it over, so that admission comes first.

    The event loop may read the ClientHello before ``start_tls`` has taken the transport:
    those bytes are kept and handed to the TLS protocol once it is in place.
    """

    MAX_EARLY_BYTES = 64 * 1024  # a ClientHello is at most a few KiB

    def __init__(
        self,
        accepted: Callable[[asyncio.Transport, _AgentGate], None],
        proxies: TrustedProxies | None = None,
        header_timeout: float = 10.0,
    ) -> None:
        self._accepted = accepted
        self.early = bytearray()
        self.lost = False
        self._transport: asyncio.Transport | None = None
        # --proxy-protocol: a trusted proxy's PROXY header comes first, naming the client.
        self._proxies = proxies
        self._header: HeaderReader | None = None
        self._header_timeout = header_timeout
        self._timer: asyncio.TimerHandle | None = None
        self.client: tuple[str, int] | None = None  # the header's client, if it named one

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        if self._proxies is not None and trusted_peer(transport, self._proxies) is not None:
            self._header = HeaderReader()
            self._timer = asyncio.get_running_loop().call_later(self._header_timeout, self._transport.abort)
            return
        self._accepted(self._transport, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True  # before TLS took over: nothing else will hear of it
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self._header is not None:
            assert self._transport is not None
            try:
                parsed = self._header.feed(data)
            except ProxyHeaderError:
                self._transport.abort()
                return
            if parsed is None:
                return
            if self._timer is not None:
                self._timer.cancel()
            self.client, data, self._header = parsed.source, bytes(self._header.buffer), None
            self._accepted(self._transport, self)
        self.early += data
        if len(self.early) > self.MAX_EARLY_BYTES and self._transport is not None:
            self._transport.abort()

    async def start_tls(
        self,
        transport: asyncio.Transport,
        protocol: asyncio.BaseProtocol,
        tls: ssl.SSLContext,
        timeout: float,
    ) -> asyncio.Transport | None:
        if self.lost:
            return None
        loop = asyncio.get_running_loop()
        handshake = asyncio.ensure_future(
            loop.start_tls(transport, protocol, tls, server_side=True, ssl_handshake_timeout=timeout)
        )
        # Once start_tls has swapped the protocols (its first step, which ran before this one
        # resumes), the early bytes go to the TLS protocol after its connection_made, which
        # start_tls scheduled before the call scheduled here.
        await asyncio.sleep(0)
        if self.lost:
            handshake.cancel()
            return None
        loop.call_soon(self._hand_over, transport.get_protocol())
        return await handshake

    def _hand_over(self, tls: asyncio.BaseProtocol) -> None:
        data, self.early = bytes(self.early), bytearray()
        if not data or self._transport is None or self._transport.is_closing():
            return
        # Both asyncio's and uvloop's TLS protocols are buffered ones (uvloop's is no subclass).
        receiver = cast(asyncio.BufferedProtocol, tls)
        view = memoryview(data)
        while view:
            buffer = memoryview(receiver.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            receiver.buffer_updated(size)
            view = view[size:]


@dataclass(frozen=True)
class HttpsFiles:
    """The HTTPS listener's certificates: the operator's, else Burrow's own for each name."""

    data_dir: Path
    fallback: ServerCertificate  # the CA's certificate for this node
    operator: ServerCertificate | None = None
    extra: tuple[ServerCertificate, ...] = ()


@dataclass(frozen=True)
class EdgeTls:
    """The edge's certificates, read before it is built."""

    agents: ssl.SSLContext  # what agents connect to
    ca_path: Path | None = None  # the CA agents must trust, when Burrow made it
    https: HttpsFiles | None = None  # None: no HTTPS listener
    relay: tuple[ssl.SSLContext, ssl.SSLContext] | None = None  # (server, client), with relay_addr


class Edge:
    def __init__(
        self, store: Store, config: EdgeConfig, tls: EdgeTls, throttle: Throttle | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.tls = tls.agents
        self.ca_path = tls.ca_path
        self.node_id = "node_" + ids.new_id_body()
        relay_text = None
        if config.relay_addr is not None:
            host, port = config.relay_addr
            relay_text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.cluster = ClusterRegistry(
            store.engine, self.node_id, config.node_name, config.lease_seconds, relay_text
        )
        self.writes = ClusterWrites(self.cluster)
        self.control = AgentControl(store, self.writes, config.settings, throttle)
        self.registry = self.control.registry
        self.agents: dict[str, AgentConnection] = {}
        limits = config.agent_limits
        self.agent_admission = Admission(limits.max_connections, limits.max_connections_per_client)
        self._relay_server: ssl.SSLContext | None = None
        relaying = None
        if config.relay_addr is not None and tls.relay is not None:
            self._relay_server, client_context = tls.relay
            relaying = Relaying(RelayRoutes(self.cluster), config.settings.tcp_ports, client_context)
        bound = config.sockets
        self.handoff = (
            Handoff(bound.handoff_inbox, bound.handoff_siblings)
            if bound is not None and bound.handoff_inbox is not None
            else None
        )
        self.public = PublicListeners(
            self.registry, self._open_proxy, config.label_routes, config.limits, relaying, self.handoff
        )
        self.public.jwks = JwksFetcher(config.jwks_allow_cidrs)
        self.https: HttpsCertificates | None = None
        self._https_listener: HttpsListener | None = None
        if tls.https is not None:
            files = tls.https
            self.https = HttpsCertificates(
                self.registry,
                files.data_dir,
                files.fallback,
                files.operator,
                list(files.extra),
                served=lambda name: name in self.public.label_routes,
            )
            if config.https_addr:
                self._https_listener = HttpsListener(
                    self.https,
                    self.public.https_protocol,
                    config.limits.tls_handshake_timeout,
                    self.public.admission,
                    relay=self.public if relaying is not None else None,
                    elsewhere=self._https_elsewhere if self.handoff is not None else None,
                )
                if "https" in config.proxy_protocol:
                    self._https_listener.proxies = config.trusted_proxies
        self._loop: asyncio.AbstractEventLoop | None = None
        self.uploaded: UploadedCertificates | None = None
        self._uploaded_task: asyncio.Task[None] | None = None
        if self.https is not None and tls.https is not None:
            self.uploaded = UploadedCertificates(store, tls.https.data_dir, self.https.set_uploaded)
        self.acme: AcmeWorker | None = None
        self._agent_acme: ServerCertificate | None = None  # the agent listener's, from ACME
        if config.acme is not None and self.https is not None:
            self.acme = self._acme(config.acme, self.https, tls.https.data_dir if tls.https else Path("."))
        self.ssh: SshGateway | None = None
        if config.ssh_addr is not None and config.ssh_host_key is not None:
            # Imported only when on: importing asyncssh looks for optional C libraries
            # (ctypes runs ldconfig), which a server without the gateway need not do.
            from .ssh import SshGateway

            self.ssh = SshGateway(
                self.control,
                config.agent_limits,
                config.ssh_host_key,
                self._ssh_registered,
                self._ssh_unregistered,
                has_https=self._https_listener is not None,
            )
        self._servers: list[asyncio.Server] = []
        self._agent_tasks: set[asyncio.Task[None]] = set()
        self._revocations_due = asyncio.Event()  # a notification says: recheck now
        self._commands_due = asyncio.Event()  # a notification says: a command waits
        self.watcher = RevocationWatcher(
            store,
            self.registry,
            self.control,
            self.agents,
            RevocationPolicy(config.revocation_fail_closed_after, config.settings.tcp_host),
            lambda: self._next_round(self._revocations_due),
            self._spawn,
        )
        self._watcher: asyncio.Task[None] | None = None
        self._cluster_task: asyncio.Task[None] | None = None
        self._feed_callback: Callable[[str], None] | None = None

    def _acme(self, settings: AcmeSettings, https: HttpsCertificates, data_dir: Path) -> AcmeWorker:
        """ACME's worker thread; challenges answered from the database, on any node."""
        rows = AcmeRows(self.store.engine, self.store.secret)

        async def http_challenge(host: str, token: str) -> str | None:
            return await asyncio.to_thread(rows.http_challenge, host, token)

        async def alpn_challenge(name: str) -> tuple[str, bytes] | None:
            return await asyncio.to_thread(rows.alpn_challenge, name)

        self.public.acme_http = http_challenge
        https.acme_alpn = alpn_challenge

        def publish(served: dict[str, ServerCertificate]) -> None:  # in the worker's thread
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._acme_served, https, served)

        return AcmeWorker(rows, settings, self.node_id, data_dir, publish)

    def _acme_served(self, https: HttpsCertificates, served: dict[str, ServerCertificate]) -> None:
        """What ACME issued, on the event loop: the HTTPS listener's names, and the agent
        listener's own name (DNS-01), whose context new agent connections start TLS with."""
        https.set_managed(served)
        agent = served.get(self.config.agent_name or "")
        if agent is not None and agent != self._agent_acme:
            try:
                self.tls = server_context(agent)
            except (OSError, ValueError, ssl.SSLError):
                log.warning("could not load the agent listener's ACME certificate", exc_info=True)
                return
            self._agent_acme = agent
            log.info("agent listener certificate loaded", extra={"fields": {"name": self.config.agent_name}})

    @property
    def revocations(self) -> int:
        """Sessions ended because their credential or owner was revoked."""
        return self.watcher.revocations

    @property
    def database_errors(self) -> int:
        """Failed revocation checks."""
        return self.watcher.database_errors

    async def start(self) -> None:
        await asyncio.to_thread(self.cluster.register)
        self._loop = asyncio.get_running_loop()
        if self.acme is not None:
            self.acme.start()
        if self.uploaded is not None:
            self._uploaded_task = asyncio.create_task(self.uploaded.run())
        self._follow_notifications()
        bound = self.config.sockets
        loop = asyncio.get_running_loop()

        async def listen(
            factory: Callable[[], asyncio.BaseProtocol],
            addr: tuple[str, int],
            sock: socket.socket | None,
            **options: Any,
        ) -> None:
            # asyncio's default backlog (100) turns a burst of connections into SYN retries
            # (1 s, then 3 s) for the clients that come next; as the HTTPS listener's.
            if bound is not None:
                server = await loop.create_server(factory, sock=sock, backlog=BACKLOG, **options)
            else:
                server = await loop.create_server(factory, *addr, backlog=BACKLOG, **options)
            self._servers.append(server)

        https = self._https_listener
        if self.config.relay_addr is not None and self._relay_server is not None:
            relayed_https = https.accept_relayed if https is not None else None
            await listen(
                lambda: RelayInbound(self.public, self.config.limits.head_timeout, relayed_https),
                self.config.relay_addr,
                bound.relay if bound else None,
                ssl=self._relay_server,
                ssl_handshake_timeout=self.config.limits.tls_handshake_timeout,
            )
        proxied = self.config.proxy_protocol
        trusted = self.config.trusted_proxies
        header_timeout = self.config.limits.head_timeout

        def gated(listener: str, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
            if listener not in proxied:
                return factory
            return lambda: ProxyProtocolGate(factory, trusted, header_timeout)

        agent_proxies = trusted if "agent" in proxied else None
        agent_timeout = self.config.agent_limits.tls_handshake_timeout
        await listen(
            lambda: _AgentGate(self._agent_accepted, agent_proxies, agent_timeout),
            self.config.agent_addr,
            bound.agent if bound else None,
        )
        if self.config.http_addr:
            await listen(
                gated("http", self.public.http_protocol), self.config.http_addr, bound.http if bound else None
            )
        if self.config.tls_addr:
            await listen(
                gated("tls", self.public.tls_protocol), self.config.tls_addr, bound.tls if bound else None
            )
        if self.config.https_addr and https is not None:
            await https.start(*self.config.https_addr, bound.https if bound else None)
        settings = self.config.settings
        for tcp_port in settings.tcp_ports:
            await listen(
                gated("tcp", self.public.tcp_protocol(tcp_port)),
                (settings.tcp_host, tcp_port),
                bound.tcp[tcp_port] if bound else None,
            )
        if self.ssh is not None and self.config.ssh_addr is not None:
            await self.ssh.start(*self.config.ssh_addr)
        if self.handoff is not None:
            accept = None
            if https is not None:
                listener = https

                def accept(sock: socket.socket) -> None:
                    listener.accept(sock, _socket_peer(sock), handed=True)

            self.handoff.start(self.public, accept)
        self._watcher = asyncio.create_task(self.watcher.run())
        self._cluster_task = asyncio.create_task(self._keep_cluster())

    async def stop(self, grace: float = 0) -> None:
        """Stop accepting; give requests in flight through tunnels ``grace`` seconds to
        finish; then tell the agents to go away and close what is left."""
        for server in self._servers:
            server.close()
        if self.acme is not None:
            await asyncio.to_thread(self.acme.stop)
        if self._uploaded_task is not None:
            self._uploaded_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._uploaded_task
        if self.handoff is not None:
            self.handoff.stop()
        if self._https_listener is not None:
            await self._https_listener.stop()
        await self.public.drain(grace)
        if self.ssh is not None:
            await self.ssh.stop()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._cluster_task is not None:
            self._cluster_task.cancel()
        if self.store.feed is not None and self._feed_callback is not None:
            self.store.feed.unsubscribe(self._feed_callback)
        for agent in list(self.agents.values()):
            await agent.connection.close(mux.ErrorCode.NONE, "server shutting down")
        await self.public.close_all()
        traffic.flush()
        for task in list(self._agent_tasks):
            task.cancel()
        await asyncio.gather(*self._agent_tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # if the database is away, the lease frees the rows
            # After the sessions' removals queued before it.
            await asyncio.wait_for(self.writes.run(self.cluster.leave), LEAVE_TIMEOUT)
        self.writes.close()

    async def _https_elsewhere(self, client: socket.socket, name: str) -> bool:
        """Hand an HTTPS connection to the sibling worker holding ``name``, if one does."""
        handoff, routes = self.handoff, self.public.relay_routes
        if handoff is None or routes is None or self.public.web_tunnel("https", name) is not None:
            return False
        relay_addr = await routes.lookup("host", name)
        if relay_addr is None:
            return False
        return handoff.send(client.fileno(), {"listener": "https"}, b"", relay_addr)

    # Agents ---------------------------------------------------------------------------

    def _agent_accepted(self, transport: asyncio.Transport, gate: _AgentGate) -> None:
        peer = gate.client or transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else ""
        reason = self.agent_admission.admit(client)
        if reason is not None:
            log.debug("agent connection refused", extra={"fields": {"client": client, "reason": reason}})
            transport.abort()
            return
        task = asyncio.create_task(self._serve_agent(transport, gate, client))
        self._agent_tasks.add(task)
        task.add_done_callback(self._agent_tasks.discard)

    async def _serve_agent(self, transport: asyncio.Transport, gate: _AgentGate, client: str) -> None:
        loop = asyncio.get_running_loop()
        limits = self.config.agent_limits
        connection = MuxConnection(client_side=False)
        shown = _RelayedTransport(transport, gate.client) if gate.client else transport
        agent = AgentConnection(connection, self.control, _peer(shown), limits, loop.time())
        waiter: asyncio.Task[None] | None = None
        try:
            try:
                tls = await gate.start_tls(transport, connection, self.tls, limits.tls_handshake_timeout)
            except (OSError, ssl.SSLError) as error:  # the handshake failed or timed out
                log.debug("agent TLS failed", extra={"fields": {"client": client, "error": str(error)}})
                transport.abort()
                return
            if tls is None:
                transport.abort()
                return
            connection.connection_made(tls)
            waiter = asyncio.create_task(self._register_when_authenticated(agent))
            await agent.run()
        except Exception:
            log.exception("agent session failed")
        finally:
            self.agent_admission.release(client)
            if waiter is not None:
                waiter.cancel()
            if agent.session_id is not None:
                self.agents.pop(agent.session_id, None)
                log.info(
                    "agent session ended",
                    extra={"fields": {"session": agent.session_id, "reason": connection.close_reason}},
                )

    async def _register_when_authenticated(self, agent: AgentConnection) -> None:
        await agent.auth_done.wait()
        authenticated = agent.authenticated
        assert authenticated is not None
        self.agents[authenticated.session.id] = agent
        previous = authenticated.reconnecting_from
        if previous and previous in self.agents and previous != authenticated.session.id:
            old = self.agents.pop(previous)
            await old.connection.close(mux.ErrorCode.NONE, "replaced by a reconnected session")

    def _ssh_registered(self, agent: AgentConnection) -> None:
        """An SSH session (edge/ssh.py) is one of the edge's sessions from now on."""
        if agent.session_id is not None:
            self.agents[agent.session_id] = agent

    def _ssh_unregistered(self, agent: AgentConnection) -> None:
        if agent.session_id is not None and self.agents.get(agent.session_id) is agent:
            del self.agents[agent.session_id]

    async def _open_proxy(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None:
        agent = self.agents.get(tunnel.session_id)
        if agent is None or agent.connection.closed:
            return None
        try:
            return await agent.open_proxy(tunnel.id, client_addr, proto)
        except ConnectionRefusedError:  # at its stream cap: maybe a stream can be had back
            client_ip = client_addr.rsplit(":", 1)[0].strip("[]")
            if not self.public.reclaim_stream(agent.connection, client_ip):
                return None
        except ConnectionError:
            return None
        try:
            return await agent.open_proxy(tunnel.id, client_addr, proto)
        except ConnectionError:
            return None

    async def stop_session(self, session_id: str, message: str) -> None:
        """Stop a session held here, or ask the node holding it to."""
        agent = self.agents.get(session_id)
        if agent is None:
            found = self.cluster.session(session_id)
            if found is not None and found[1] != self.node_id:
                self.cluster.send_stop(found[1], session_id, message)
            return
        await agent.send_command(wire.Stop())
        await agent.stop(message)

    # The cluster's view, for the API ----------------------------------------------------

    def live_sessions(self, account_id: str) -> list[LiveSession]:
        return self.cluster.sessions(account_id)

    def live_session(self, session_id: str) -> LiveSession | None:
        found = self.cluster.session(session_id)
        return found[0] if found is not None else None

    def live_tunnels(self, account_id: str) -> list[Tunnel]:
        return self.cluster.tunnels(account_id)

    # Notifications and polling -------------------------------------------------------

    def _follow_notifications(self) -> None:
        """React to the database's notifications (PostgreSQL) as they arrive."""
        feed = self.store.feed
        if feed is None:
            return
        loop = asyncio.get_running_loop()
        mine = command_payload(self.node_id)

        def notified(payload: str) -> None:  # in the listener's thread
            routes = self.public.relay_routes
            if routes is not None and payload in (ROUTES, RESYNC):
                routes.forget()
            if payload in (CHANGED, RESYNC):
                loop.call_soon_threadsafe(self._revocations_due.set)
            if payload in (mine, RESYNC):
                loop.call_soon_threadsafe(self._commands_due.set)

        self._feed_callback = notified
        feed.subscribe(notified)
        self.store.listen()

    def poll_seconds(self) -> float:
        """How long the edge goes without rechecking sessions and taking commands."""
        feed = self.store.feed
        return self.config.reconcile_seconds if feed is not None and feed.listening else POLL_SECONDS

    async def _next_round(self, due: asyncio.Event, deadline: float | None = None) -> None:
        """Wait until ``due`` is set, polling is due (:meth:`poll_seconds`, looked at again
        every POLL_SECONDS, so that losing the listener speeds polling up) or ``deadline``."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(MIN_ROUND_SECONDS)
        while not due.is_set():
            now = loop.time()
            if now - began >= self.poll_seconds() or (deadline is not None and now >= deadline):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), POLL_SECONDS)
        due.clear()

    async def _keep_cluster(self) -> None:
        """Renew this node's lease (and reap expired nodes), and act on commands for it."""
        loop = asyncio.get_running_loop()
        renew_every = self.config.lease_seconds / 3
        renewed_at = loop.time()
        while True:
            await self._next_round(self._commands_due, renewed_at + renew_every)
            try:
                if loop.time() - renewed_at >= renew_every:
                    kept = await asyncio.to_thread(self.cluster.renew)
                    renewed_at = loop.time()
                    if not kept:
                        await self._lease_lost()
                    await self.writes.run(self.cluster.retry_removals)
                for command in await asyncio.to_thread(self.cluster.take_commands):
                    if command.action == STOP_SESSION:
                        await self.stop_session(command.session_id, command.message)
            except Exception as error:  # the database is away: try again next round
                log.warning("cluster registry unreachable", extra={"fields": {"error": str(error)}})

    async def _lease_lost(self) -> None:
        """This node's lease ran out (it was paused, or cut off from the database): other nodes
        may hold its names now. Join again and end every session here; the agents reconnect
        and bind afresh, refused where another session took a name."""
        log.error("lease lost: rejoining the cluster and ending this node's sessions")
        await asyncio.to_thread(self.cluster.register)
        for session_id, agent in list(self.agents.items()):
            self.agents.pop(session_id, None)
            stopping = asyncio.create_task(agent.stop("the edge node lost its lease", "ERR_NGROK_90502"))
            self._agent_tasks.add(stopping)
            stopping.add_done_callback(self._agent_tasks.discard)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._agent_tasks.add(task)
        task.add_done_callback(self._agent_tasks.discard)
