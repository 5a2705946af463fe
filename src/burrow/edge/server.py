"""The edge: the agent listener, the public listeners, and revocation, in one object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from burrow.domain.tunnels import Registry, Tunnel
from burrow.store.ratelimit import Throttle
from burrow.store.store import Store

from . import muxado_protocol as mux
from .agent import STOP, AgentSession
from .control import EdgeControl, EdgeSettings
from .muxado_streams import MuxConnection, MuxStream
from .public import PublicListeners, _peer

log = logging.getLogger("burrow.edge")
REVOCATION_CHECK_SECONDS = 0.25


@dataclass
class EdgeConfig:
    agent_addr: tuple[str, int] = ("127.0.0.1", 4443)
    http_addr: tuple[str, int] | None = ("127.0.0.1", 8080)
    tls_addr: tuple[str, int] | None = ("127.0.0.1", 8443)
    settings: EdgeSettings = field(default_factory=EdgeSettings)
    label_routes: dict[str, dict[str, str]] = field(default_factory=dict)


class Edge:
    def __init__(
        self, store: Store, config: EdgeConfig, tls: ssl.SSLContext, throttle: Throttle | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.tls = tls
        self.registry = Registry()
        self.control = EdgeControl(store, self.registry, config.settings, throttle)
        self.agents: dict[str, AgentSession] = {}
        self.public = PublicListeners(self.registry, self._open_proxy, config.label_routes)
        self._servers: list[asyncio.Server] = []
        self._agent_tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.ca_path: Path | None = None  # the CA agents must trust, when Burrow made it

    async def start(self) -> None:
        host, port = self.config.agent_addr
        loop = asyncio.get_running_loop()
        self._servers.append(
            await loop.create_server(
                lambda: MuxConnection(client_side=False, on_connected=self._agent_connected),
                host,
                port,
                ssl=self.tls,
            )
        )
        if self.config.http_addr:
            h, p = self.config.http_addr
            self._servers.append(await loop.create_server(self.public.http_protocol, h, p))
        if self.config.tls_addr:
            h, p = self.config.tls_addr
            self._servers.append(await loop.create_server(self.public.tls_protocol, h, p))
        settings = self.config.settings
        for tcp_port in settings.tcp_ports:
            self._servers.append(
                await loop.create_server(self.public.tcp_protocol(tcp_port), settings.tcp_host, tcp_port)
            )
        self._watcher = asyncio.create_task(self._watch_revocations())

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        if self._watcher is not None:
            self._watcher.cancel()
        for agent in list(self.agents.values()):
            await agent.connection.close(mux.ErrorCode.NONE, "server shutting down")
        await self.public.close_all()
        for task in list(self._agent_tasks):
            task.cancel()
        await asyncio.gather(*self._agent_tasks, return_exceptions=True)

    # Agents ---------------------------------------------------------------------------

    def _agent_connected(self, connection: MuxConnection) -> None:
        task = asyncio.create_task(self._serve_agent(connection))
        self._agent_tasks.add(task)
        task.add_done_callback(self._agent_tasks.discard)

    async def _serve_agent(self, connection: MuxConnection) -> None:
        agent = AgentSession(connection, self.control, _peer(connection))
        waiter = asyncio.create_task(self._register_when_authenticated(agent))
        try:
            await agent.run()
        except Exception:
            log.exception("agent session failed")
        finally:
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
                with contextlib.suppress(Exception):
                    record = self.store.auth_record("credential", session.credential_id)
                    if record is None or not record.owner_active:
                        reason = f"credential {session.credential_id} revoked"
                        log.info(
                            "revoking agent session",
                            extra={"fields": {"session": session_id, "reason": reason}},
                        )
                        self.agents.pop(session_id, None)
                        stopping = asyncio.create_task(agent.stop(reason, "ERR_NGROK_300"))
                        self._agent_tasks.add(stopping)
                        stopping.add_done_callback(self._agent_tasks.discard)
