"""The edge: the agent listener, the public listeners, and revocation, in one object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from burrow.domain import errors, ids
from burrow.domain.acl import BindPolicy
from burrow.domain.errors import BurrowError
from burrow.domain.limits import Admission, AgentLimits, PublicLimits
from burrow.domain.tunnels import AgentSession as LiveSession
from burrow.domain.tunnels import Registry, Tunnel
from burrow.store.cluster import STOP_SESSION, ClusterRegistry
from burrow.store.notify import CHANGED, RESYNC, ROUTES, command_payload
from burrow.store.ratelimit import Throttle
from burrow.store.store import CREDENTIALS, Store

from . import muxado_protocol as mux
from . import traffic
from .agent import STOP, STOP_TUNNEL, AgentConnection
from .control import AgentControl, EdgeSettings
from .handoff import Handoff
from .https import HttpsCertificates, HttpsListener
from .muxado_streams import MuxConnection, MuxStream
from .public import PublicListeners, _peer
from .relay import RelayInbound, RelayRoutes

BACKLOG = 1024

log = logging.getLogger("burrow.edge")
# How often sessions are rechecked and commands taken without database notifications
# (SQLite, or while the PostgreSQL listener is down); with them, the edge acts on each
# notification at once and polls only every EdgeConfig.reconcile_seconds, in case one was missed.
POLL_SECONDS = 0.25
# The least time between two rounds: a burst of writes cluster-wide costs each node at most
# ten rechecks of its sessions a second, not one per write.
MIN_ROUND_SECONDS = 0.1


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
    node_name: str = field(default_factory=socket.gethostname)
    lease_seconds: float = 9.0  # a dead node's names come free this long after its last renewal
    relay_addr: tuple[str, int] | None = None  # where other nodes relay public traffic to this one
    # How long revocations may go unchecked (the database unreachable) before the edge
    # refuses new sessions and binds.
    revocation_fail_closed_after: float = 10.0
    # With PostgreSQL notifications received, how often the edge still rechecks every session
    # and looks for commands (the reconciliation of a missed notification).
    reconcile_seconds: float = 2.0
    # Listening sockets bound before the edge starts (``burrow serve --workers``' parent binds
    # them once for every worker); without them the edge binds its addresses itself.
    sockets: BoundSockets | None = None


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
    def __init__(
        self, store: Store, config: EdgeConfig, tls: ssl.SSLContext, throttle: Throttle | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.tls = tls
        self.node_id = "node_" + ids.new_id_body()
        relay_text = None
        if config.relay_addr is not None:
            host, port = config.relay_addr
            relay_text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.cluster = ClusterRegistry(
            store.engine, self.node_id, config.node_name, config.lease_seconds, relay_text
        )
        self.relay_contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None  # (server, client)
        self.registry = Registry(self.cluster)
        self.control = AgentControl(store, self.registry, config.settings, throttle)
        self.agents: dict[str, AgentConnection] = {}
        limits = config.agent_limits
        self.agent_admission = Admission(limits.max_connections, limits.max_connections_per_client)
        self.public = PublicListeners(self.registry, self._open_proxy, config.label_routes, config.limits)
        self.https: HttpsCertificates | None = None  # set before start() to serve HTTPS
        self._https_listener: HttpsListener | None = None
        self._servers: list[asyncio.Server] = []
        self._agent_tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        # The ACL each session's tunnels were last checked against.
        self._checked_acls: weakref.WeakKeyDictionary[AgentConnection, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._cluster_task: asyncio.Task[None] | None = None
        self.ca_path: Path | None = None  # the CA agents must trust, when Burrow made it
        self.revocations = 0  # sessions ended because their credential or owner was revoked
        self.database_errors = 0  # failed revocation checks
        self._revocations_due = asyncio.Event()  # a notification says: recheck now
        self._commands_due = asyncio.Event()  # a notification says: a command waits
        self._feed_callback: Callable[[str], None] | None = None

    async def start(self) -> None:
        self.cluster.register()
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

        if self.config.relay_addr is not None and self.relay_contexts is not None:
            server_context, client_context = self.relay_contexts
            self.public.relay_routes = RelayRoutes(self.cluster)
            self.public.tcp_ports = self.config.settings.tcp_ports
            self.public.relay_context = client_context
            await listen(
                lambda: RelayInbound(self.public, self.config.limits.head_timeout),
                self.config.relay_addr,
                bound.relay if bound else None,
                ssl=server_context,
                ssl_handshake_timeout=self.config.limits.tls_handshake_timeout,
            )
        await listen(
            lambda: _AgentGate(self._agent_accepted), self.config.agent_addr, bound.agent if bound else None
        )
        if self.config.http_addr:
            await listen(self.public.http_protocol, self.config.http_addr, bound.http if bound else None)
        if self.config.tls_addr:
            await listen(self.public.tls_protocol, self.config.tls_addr, bound.tls if bound else None)
        if self.config.https_addr and self.https is not None:
            self._https_listener = HttpsListener(
                self.https,
                self.public.https_protocol,
                self.config.limits.tls_handshake_timeout,
                self.public.admission,
                relay=self.public if self.public.relay_routes is not None else None,
            )
            self.public.https_handoff = self._https_listener.accept_relayed
            await self._https_listener.start(*self.config.https_addr, bound.https if bound else None)
        settings = self.config.settings
        for tcp_port in settings.tcp_ports:
            await listen(
                self.public.tcp_protocol(tcp_port),
                (settings.tcp_host, tcp_port),
                bound.tcp[tcp_port] if bound else None,
            )
        if bound is not None and bound.handoff_inbox is not None:
            handoff = self.public.handoff = Handoff(bound.handoff_inbox, bound.handoff_siblings)
            if self._https_listener is not None:
                https = self._https_listener
                https.elsewhere = self._https_elsewhere
                handoff.https_accept = lambda sock: https.accept(sock, _socket_peer(sock), handed=True)
            handoff.start(self.public)
        self._watcher = asyncio.create_task(self._watch_revocations())
        self._cluster_task = asyncio.create_task(self._keep_cluster())

    async def stop(self, grace: float = 0) -> None:
        """Stop accepting; give requests in flight through tunnels ``grace`` seconds to
        finish; then tell the agents to go away and close what is left."""
        for server in self._servers:
            server.close()
        if self.public.handoff is not None:
            self.public.handoff.stop()
        if self._https_listener is not None:
            await self._https_listener.stop()
        await self.public.drain(grace)
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
            self.cluster.leave()

    def _https_elsewhere(self, client: socket.socket, name: str) -> bool:
        """Hand an HTTPS connection to the sibling worker holding ``name``, if one does."""
        handoff, routes = self.public.handoff, self.public.relay_routes
        if handoff is None or routes is None or self.public.web_tunnel("https", name) is not None:
            return False
        relay_addr = routes.lookup("host", name)
        if relay_addr is None:
            return False
        return handoff.send(client.fileno(), {"listener": "https"}, b"", relay_addr)

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
        agent = AgentConnection(connection, self.control, _peer(transport), limits, loop.time())
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
        await agent.send_command(STOP, {})
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
                    self.cluster.retry_removals()
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
        self.cluster.register()
        for session_id, agent in list(self.agents.items()):
            self.agents.pop(session_id, None)
            stopping = asyncio.create_task(agent.stop("the edge node lost its lease", "ERR_NGROK_90502"))
            self._agent_tasks.add(stopping)
            stopping.add_done_callback(self._agent_tasks.discard)

    # Revocation -----------------------------------------------------------------------

    async def _watch_revocations(self) -> None:
        """End sessions whose credential was deleted or whose owner was deactivated, and
        tunnels their credential's ACL no longer allows.

        A failed check is logged, never skipped quietly. While checks fail for longer than
        ``revocation_fail_closed_after``, the edge starts no session and binds nothing.
        """
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        bound = self.config.revocation_fail_closed_after
        while True:
            await self._next_round(self._revocations_due)
            try:
                self._check_revocations()
            except Exception as error:
                now = loop.time()
                if failing_since is None:
                    failing_since = now
                    log.exception("revocation check failed; retrying")
                else:
                    log.warning(
                        "revocation check failed again",
                        extra={"fields": {"error": str(error), "failing_for_s": round(now - failing_since)}},
                    )
                if self.control.refusal is None and now - failing_since >= bound:
                    self.control.refusal = errors.REVOCATION_UNCHECKED(seconds=f"{now - failing_since:.0f}")
                    log.error(
                        "failing closed: revocations unchecked, refusing new agent sessions and binds",
                        extra={"fields": {"failing_for_s": round(now - failing_since, 1)}},
                    )
                continue
            if failing_since is not None:
                log.warning(
                    "revocation checks resumed",
                    extra={"fields": {"failed_for_s": round(loop.time() - failing_since, 1)}},
                )
                failing_since = None
            if self.control.refusal is not None:
                self.control.refusal = None
                log.warning("no longer failing closed: accepting agent sessions and binds again")

    def _check_revocations(self) -> None:
        """One round: every session's credential (or, with none, that the database answers).

        A session whose check fails is logged and the others are still checked; the first
        failure is raised after the round, so that the watcher can fail closed."""
        checked = False
        failure: Exception | None = None
        for session_id, agent in list(self.agents.items()):
            try:
                checked = self._recheck(session_id, agent) or checked
            except Exception as error:
                self.database_errors += 1
                log.exception("revocation check failed", extra={"fields": {"session": session_id}})
                failure = failure or error
        if failure is not None:
            raise failure
        if not checked and not self.store.is_reachable():
            raise errors.DATABASE_UNAVAILABLE()

    def _recheck(self, session_id: str, agent: AgentConnection) -> bool:
        """Check one session; False when it has not authenticated yet."""
        session = agent.authenticated.session if agent.authenticated else None
        if session is None:
            return False
        record = self.store.auth_record("credential", session.credential_id)
        credential = self.store.get(CREDENTIALS, session.account_id, session.credential_id)
        if record is None or not record.owner_active or credential is None:
            reason = f"credential {session.credential_id} revoked"
            log.info("revoking agent session", extra={"fields": {"session": session_id, "reason": reason}})
            self.agents.pop(session_id, None)
            self.revocations += 1
            self._spawn(agent.stop(reason, "ERR_NGROK_300"))
            return True
        # An ACL is parsed again only when it differs from the one this session's tunnels
        # were last checked against (every tunnel bound since was checked at its bind).
        if self._checked_acls.get(agent) == credential.acl:
            return True
        policy = BindPolicy.from_rules(credential.acl)
        for tunnel in list(session.tunnels.values()):
            denial = self._denial(policy, tunnel, session.credential_id)
            if denial is None:
                continue
            self.registry.remove_tunnel(session_id, tunnel.id)
            log.info(
                "stopping tunnel no longer allowed by its credential's ACL",
                extra={"fields": {"session": session_id, "tunnel": tunnel.id, "error": denial.code}},
            )
            message = {"Id": tunnel.id, "Message": denial.message, "ErrorCode": denial.code}
            self._spawn(agent.send_command(STOP_TUNNEL, message))
        self._checked_acls[agent] = credential.acl
        return True

    def _denial(self, policy: BindPolicy, tunnel: Tunnel, credential_id: str) -> BurrowError | None:
        """Why ``policy`` would refuse ``tunnel``'s bind today, or None if it allows it."""
        if tunnel.proto == "labeled":
            if policy.allows_labels(tunnel.labels):
                return None
            shown = ", ".join(f"{k}={v}" for k, v in tunnel.labels.items())
            return errors.LABEL_DENIED(labels=shown, id=credential_id)
        if tunnel.proto == "tcp":
            host = self.config.settings.tcp_host
            if tunnel.port is not None and policy.allows_address(host, tunnel.port):
                return None
            return errors.TCP_ADDRESS_DENIED(addr=f"{host}:{tunnel.port}", id=credential_id)
        if tunnel.hostname is not None and policy.allows_hostname(tunnel.hostname):
            return None
        return errors.HOSTNAME_DENIED(name=tunnel.hostname, id=credential_id)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._agent_tasks.add(task)
        task.add_done_callback(self._agent_tasks.discard)
