"""The edge: the agent listener, the public listeners, and revocation, in one object."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from burrow.domain.limits import Admission, AgentLimits
from burrow.domain.tunnels import Registry, Tunnel
from burrow.store.store import Store

from . import muxado_protocol as mux
from . import traffic
from .agent import STOP, AgentSession
from .control import EdgeControl, EdgeSettings
from .https import HttpsCertificates, HttpsListener
from .limits import PublicLimits
from .muxado_streams import MuxConnection, MuxStream
from .public import PublicListeners, _peer

log = logging.getLogger("burrow.edge")
REVOCATION_CHECK_SECONDS = 0.25


@dataclass
class EdgeConfig:
    agent_addr: tuple[str, int] = ("127.0.0.1", 4443)
    http_addr: tuple[str, int] | None = ("127.0.0.1", 8080)
    tls_addr: tuple[str, int] | None = ("127.0.0.1", 8443)
    https_addr: tuple[str, int] | None = ("127.0.0.1", 8444)
    settings: EdgeSettings = field(default_factory=EdgeSettings)
    label_routes: dict[str, dict[str, str]] = field(default_factory=dict)
    agent_limits: AgentLimits = field(default_factory=AgentLimits)
    limits: PublicLimits = field(default_factory=PublicLimits)


class _AgentGate(asyncio.Protocol):
    """An agent's TCP connection until TLS takes it over, so that admission comes first.

    The event loop may read the ClientHello before ``start_tls`` has taken the transport:
    those bytes are kept and handed to the TLS protocol once it is in place.
    """

    MAX_EARLY_BYTES = 64 * 1024  # a ClientHello is at most a few KiB

    def __init__(self, accepted: Callable[[asyncio.Transport, _AgentGate], None]) -> None:
        self._accepted = accepted
        self.early = bytearray()
        self.lost = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        self._accepted(self._transport, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True  # before TLS took over: nothing else will hear of it

    def data_received(self, data: bytes) -> None:
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


class Edge:
    def __init__(self, store: Store, config: EdgeConfig, tls: ssl.SSLContext) -> None:
        self.store = store
        self.config = config
        self.tls = tls
        self.registry = Registry()
        self.control = EdgeControl(store, self.registry, config.settings)
        self.agents: dict[str, AgentSession] = {}
        limits = config.agent_limits
        self.agent_admission = Admission(limits.max_connections, limits.max_connections_per_client)
        self.public = PublicListeners(self.registry, self._open_proxy, config.label_routes, config.limits)
        self.https: HttpsCertificates | None = None  # set before start() to serve HTTPS
        self._https_listener: HttpsListener | None = None
        self._servers: list[asyncio.Server] = []
        self._agent_tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.ca_path: Path | None = None  # the CA agents must trust, when Burrow made it
        self.revocations = 0  # sessions ended because their credential or owner was revoked
        self.database_errors = 0  # failed revocation checks

    async def start(self) -> None:
        host, port = self.config.agent_addr
        loop = asyncio.get_running_loop()
        self._servers.append(await loop.create_server(lambda: _AgentGate(self._agent_accepted), host, port))
        if self.config.http_addr:
            h, p = self.config.http_addr
            self._servers.append(await loop.create_server(self.public.http_protocol, h, p))
        if self.config.tls_addr:
            h, p = self.config.tls_addr
            self._servers.append(await loop.create_server(self.public.tls_protocol, h, p))
        if self.config.https_addr and self.https is not None:
            self._https_listener = HttpsListener(
                self.https,
                self.public.https_protocol,
                self.config.limits.tls_handshake_timeout,
                self.public.counts,
            )
            await self._https_listener.start(*self.config.https_addr)
        settings = self.config.settings
        for tcp_port in settings.tcp_ports:
            self._servers.append(
                await loop.create_server(self.public.tcp_protocol(tcp_port), settings.tcp_host, tcp_port)
            )
        self._watcher = asyncio.create_task(self._watch_revocations())

    async def stop(self, grace: float = 0) -> None:
        """Stop accepting; give requests in flight through tunnels ``grace`` seconds to
        finish; then tell the agents to go away and close what is left."""
        for server in self._servers:
            server.close()
        if self._https_listener is not None:
            await self._https_listener.stop()
        await self.public.drain(grace)
        if self._watcher is not None:
            self._watcher.cancel()
        for agent in list(self.agents.values()):
            await agent.connection.close(mux.ErrorCode.NONE, "server shutting down")
        await self.public.close_all()
        traffic.flush()
        for task in list(self._agent_tasks):
            task.cancel()
        await asyncio.gather(*self._agent_tasks, return_exceptions=True)

    # Agents ---------------------------------------------------------------------------

    def _agent_accepted(self, transport: asyncio.Transport, gate: _AgentGate) -> None:
        peer = transport.get_extra_info("peername")
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
        agent = AgentSession(connection, self.control, _peer(transport), limits, loop.time())
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

    async def _register_when_authenticated(self, agent: AgentSession) -> None:
        await agent.auth_done.wait()
        authenticated = agent.authenticated
        assert authenticated is not None
        self.agents[authenticated.session.id] = agent
        previous = authenticated.reconnecting_from
        if previous and previous in self.agents and previous != authenticated.session.id:
            old = self.agents.pop(previous)
            await old.connection.close(mux.ErrorCode.NONE, "replaced by a reconnected session")

    async def _open_proxy(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None:
        agent = self.agents.get(tunnel.session_id)
        if agent is None or agent.connection.closed:
            return None
        try:
            return await agent.open_proxy(tunnel.id, client_addr, proto)
        except ConnectionError:
            return None

    async def stop_session(self, session_id: str, message: str) -> None:
        agent = self.agents.get(session_id)
        if agent is None:
            return
        await agent.send_command(STOP, {})
        await agent.stop(message)

    # Revocation -----------------------------------------------------------------------

    async def _watch_revocations(self) -> None:
        """End sessions whose credential was deleted or whose owner was deactivated."""
        while True:
            await asyncio.sleep(REVOCATION_CHECK_SECONDS)
            for session_id, agent in list(self.agents.items()):
                session = agent.authenticated.session if agent.authenticated else None
                if session is None:
                    continue
                try:
                    record = self.store.auth_record("credential", session.credential_id)
                except Exception:
                    self.database_errors += 1
                    log.debug("revocation check failed", exc_info=True)  # once per tick: no flood
                else:
                    if record is None or not record.owner_active:
                        reason = f"credential {session.credential_id} revoked"
                        log.info(
                            "revoking agent session",
                            extra={"fields": {"session": session_id, "reason": reason}},
                        )
                        self.agents.pop(session_id, None)
                        self.revocations += 1
                        stopping = asyncio.create_task(agent.stop(reason, "ERR_NGROK_300"))
                        self._agent_tasks.add(stopping)
                        stopping.add_done_callback(self._agent_tasks.discard)
