"""What is bound where: live agent sessions, their tunnels, and the names they hold.

Pure state, no I/O: the agent handler asks it to bind and unbind, the public listeners
ask it where a connection goes, the REST API lists it. A hostname, TCP port or TLS name
is held by one tunnel at a time; a second bind is refused, unless it comes from the agent
that held it reconnecting (its new session names the old one), which takes it over.

A bind is in two steps so that the cluster's claim (a database write) can be awaited off
the event loop: :meth:`Registry.begin_bind` checks the name and holds it as being claimed
(a second bind of it meanwhile is refused, as if it were bound), then
:meth:`Registry.finish_bind` installs the tunnel, or :meth:`Registry.abandon_bind` lets
the name go. :meth:`Registry.add_tunnel` does the three in one call.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from .endpoint import EndpointPolicy

Proto = Literal["http", "https", "tcp", "tls", "labeled"]


class BindConflict(Exception):
    """The name is held by another session."""


class RegistryUnavailable(Exception):
    """The cluster's shared registry (the database) could not be reached: refuse, fail closed."""


def binding_key(tunnel: Tunnel) -> tuple[str, str] | None:
    """The cluster-wide name a tunnel holds: ("host", name) for http and https alike (one
    session holds a hostname across both schemes), ("tls", name), ("tcp", port); None for
    labeled tunnels, which hold no name. An internal endpoint's name is its account's alone:
    ("internal", "<account id>/<host>")."""
    if tunnel.internal and tunnel.hostname:
        return "internal", f"{tunnel.account_id}/{_http_key(tunnel.hostname)}"
    if tunnel.proto in ("http", "https") and tunnel.hostname:
        return "host", _http_key(tunnel.hostname)
    if tunnel.proto == "tls" and tunnel.hostname:
        return "tls", _http_key(tunnel.hostname)
    if tunnel.proto == "tcp" and tunnel.port is not None:
        return "tcp", str(tunnel.port)
    return None


class RegistryMirror(Protocol):
    """Where the registry writes its changes through to (the cluster's shared registry).

    ``claim_tunnel`` runs before the local registry changes and raises
    :class:`BindConflict` when another session holds the name anywhere in the cluster.
    """

    def add_session(self, session: AgentSession) -> None: ...

    def remove_session(self, session_id: str) -> None: ...

    def claim_tunnel(
        self, tunnel: Tunnel, account_id: str, reconnecting_from: str | None, replacing: Tunnel | None
    ) -> None: ...

    def release_tunnel(self, tunnel: Tunnel, keep_binding: bool) -> None: ...


@dataclass
class Tunnel:
    id: str
    session_id: str
    proto: Proto
    url: str
    forwards_to: str
    metadata: str
    created_at: datetime
    hostname: str | None = None  # http, https, tls
    port: int | None = None  # tcp
    labels: dict[str, str] = field(default_factory=dict)  # labeled
    policy: EndpointPolicy = field(default_factory=EndpointPolicy)  # what its Opts asked for
    # The endpoint it serves, as /endpoints shows it (labeled tunnels serve none).
    endpoint_id: str = ""
    name: str = ""
    description: str = ""
    traffic_policy: str = ""  # the document as the agent sent it
    updated_at: datetime | None = None  # last PatchTunnelState; None: never patched
    # Internal endpoints (Bindings ["internal"], a *.internal URL): no public listener
    # reaches them, only forward-internal from a policy of their account's endpoints.
    internal: bool = False
    account_id: str = ""  # the binding session's account (set at bind)
    # PoolingEnabled: shares its name with the account's other pooled binds of it (each
    # request or connection goes to one of them, taking turns).
    pooled: bool = False


@dataclass
class PendingBind:
    """A bind between :meth:`Registry.begin_bind` and its finish or abandonment."""

    tunnel: Tunnel
    reconnecting_from: str | None
    replacing: Tunnel | None  # the tunnel whose name this bind takes over (same or reconnected session)
    slot: tuple[str, object] | None  # (proto, name) held while being claimed; None for labeled


@dataclass
class AgentSession:
    id: str
    account_id: str
    credential_id: str
    owner_id: str
    agent_version: str
    os: str
    user_agent: str
    client_addr: str
    metadata: str
    started_at: datetime
    tunnels: dict[str, Tunnel] = field(default_factory=dict)


def _http_key(hostname: str) -> str:
    return hostname.lower().rstrip(".")


def _pools_with(tunnel: Tunnel, other: Tunnel) -> bool:
    """Whether ``tunnel`` may share its name with ``other``: both pooled, one account's,
    in different sessions (a session's own binds of a name are one endpoint, not a pool)."""
    return (
        tunnel.pooled
        and other.pooled
        and tunnel.account_id == other.account_id
        and tunnel.session_id != other.session_id
    )


class Registry:
    def __init__(self, mirror: RegistryMirror | None = None) -> None:
        self.mirror = mirror
        self.sessions: dict[str, AgentSession] = {}
        # http and https endpoints are separate (ngrok: one endpoint per scheme), but a
        # hostname belongs to one session across both, so no tenant can take the other scheme.
        self._http: dict[str, Tunnel] = {}
        self._https: dict[str, Tunnel] = {}
        self._tls: dict[str, Tunnel] = {}
        self._tcp: dict[int, Tunnel] = {}
        self._labeled: dict[str, Tunnel] = {}
        self._internal: dict[tuple[str, str], Tunnel] = {}  # (account id, host) -> its tunnel
        self._claiming: dict[tuple[str, object], Tunnel] = {}  # (proto, name) -> its pending bind
        # Pools: a table's key held by several pooled tunnels of one account; the table
        # holds one of them, the pool all (routing takes turns among them).
        self._pools: dict[tuple[int, object], list[Tunnel]] = {}
        self._round_robin = itertools.count()
        self._tables: dict[str, dict[object, Tunnel]] = {
            "http": self._http,  # type: ignore[dict-item]
            "https": self._https,  # type: ignore[dict-item]
            "tls": self._tls,  # type: ignore[dict-item]
            "tcp": self._tcp,  # type: ignore[dict-item]
        }

    # Sessions ---------------------------------------------------------------------

    def add_session(self, session: AgentSession) -> None:
        if self.mirror is not None:
            self.mirror.add_session(session)
        self.attach_session(session)

    def attach_session(self, session: AgentSession) -> None:
        """Add a session whose mirror row is written already (or needs none)."""
        self.sessions[session.id] = session

    def remove_session(self, session_id: str) -> AgentSession | None:
        session = self.sessions.get(session_id)
        if session is not None:
            mirror, self.mirror = self.mirror, None  # one write removes the session's rows
            try:
                for tunnel_id in list(session.tunnels):
                    self.remove_tunnel(session_id, tunnel_id)
            finally:
                self.mirror = mirror
            del self.sessions[session_id]
            if mirror is not None:
                mirror.remove_session(session_id)
        return session

    def sessions_of_credential(self, credential_id: str) -> list[AgentSession]:
        return [s for s in self.sessions.values() if s.credential_id == credential_id]

    # Binding ----------------------------------------------------------------------

    def _holder(self, tunnel: Tunnel) -> tuple[dict[object, Tunnel], object] | None:
        if tunnel.internal and tunnel.hostname:
            return self._internal, (tunnel.account_id, _http_key(tunnel.hostname))  # type: ignore[return-value]
        if tunnel.proto == "http" and tunnel.hostname:
            return self._http, _http_key(tunnel.hostname)  # type: ignore[return-value]
        if tunnel.proto == "https" and tunnel.hostname:
            return self._https, _http_key(tunnel.hostname)  # type: ignore[return-value]
        if tunnel.proto == "tls" and tunnel.hostname:
            return self._tls, _http_key(tunnel.hostname)  # type: ignore[return-value]
        if tunnel.proto == "tcp" and tunnel.port is not None:
            return self._tcp, tunnel.port  # type: ignore[return-value]
        return None

    def is_free(self, proto: Proto, name: str | int, reconnecting_from: str | None = None) -> bool:
        protos: tuple[str, ...] = (
            ("tcp",) if proto == "tcp" else ("tls",) if proto == "tls" else ("http", "https")
        )
        key: object = name if isinstance(name, int) else _http_key(name)
        for table_proto in protos:
            holder = self._tables[table_proto].get(key)
            if holder is not None and (reconnecting_from is None or holder.session_id != reconnecting_from):
                return False
            if (table_proto, key) in self._claiming:
                return False
        return True

    def begin_bind(self, tunnel: Tunnel, reconnecting_from: str | None = None) -> PendingBind:
        """Check that ``tunnel`` may take its name, and hold the name while it is claimed.

        Raises :class:`BindConflict` if another session holds it, or another bind of it is
        being claimed; KeyError if the tunnel's session is not in the registry.
        """
        self.sessions[tunnel.session_id]
        place = self._holder(tunnel)
        if place is None:
            return PendingBind(tunnel, reconnecting_from, None, None)
        table, key = place
        allowed = (tunnel.session_id, reconnecting_from)
        holder = table.get(key)
        if holder is not None and holder.session_id not in allowed and not _pools_with(tunnel, holder):
            raise BindConflict(tunnel.hostname or str(tunnel.port))
        slot = ("internal" if tunnel.internal else tunnel.proto, key)
        claiming = self._claiming.get(slot)
        if claiming is not None and not _pools_with(tunnel, claiming):
            raise BindConflict(tunnel.hostname or str(tunnel.port))
        if tunnel.proto in ("http", "https") and not tunnel.internal:
            # A hostname belongs to one session (or one account's pool) across both schemes.
            other_proto = "https" if tunnel.proto == "http" else "http"
            foreign = self._tables[other_proto].get(key)
            if foreign is not None and foreign.session_id not in allowed and not _pools_with(tunnel, foreign):
                raise BindConflict(tunnel.hostname or str(tunnel.port))
            other = self._claiming.get((other_proto, key))
            if other is not None and other.session_id != tunnel.session_id and not _pools_with(tunnel, other):
                raise BindConflict(tunnel.hostname or str(tunnel.port))
        if claiming is not None:  # another member's bind is being claimed: this one joins
            return PendingBind(tunnel, reconnecting_from, None, None)
        self._claiming[slot] = tunnel
        replacing = None if holder is not None and _pools_with(tunnel, holder) else holder
        return PendingBind(tunnel, reconnecting_from, replacing, slot)

    def finish_bind(self, pending: PendingBind) -> bool:
        """Install the tunnel of a bind whose claim succeeded; False (nothing installed) if
        its session ended meanwhile."""
        tunnel = pending.tunnel
        self.abandon_bind(pending)
        session = self.sessions.get(tunnel.session_id)
        if session is None:
            return False
        place = self._holder(tunnel)
        if place is not None:
            table, key = place
            holder = table.get(key)
            if holder is not None and _pools_with(tunnel, holder):
                self._pools.setdefault((id(table), key), [holder]).append(tunnel)
            else:
                if holder is not None:
                    # The claim moved the name to this session and dropped the holder's row.
                    self.remove_tunnel(holder.session_id, holder.id, mirrored=False)
                table[key] = tunnel
        elif tunnel.proto == "labeled":
            self._labeled[tunnel.id] = tunnel
        session.tunnels[tunnel.id] = tunnel
        return True

    def abandon_bind(self, pending: PendingBind) -> None:
        """Let go of the name of a bind whose claim failed."""
        if pending.slot is not None and self._claiming.get(pending.slot) is pending.tunnel:
            del self._claiming[pending.slot]

    def add_tunnel(self, tunnel: Tunnel, reconnecting_from: str | None = None) -> None:
        """Bind ``tunnel`` (claiming its name through the mirror, synchronously); raises
        :class:`BindConflict` if its name is held by another."""
        pending = self.begin_bind(tunnel, reconnecting_from)
        try:
            if self.mirror is not None:
                account_id = self.sessions[tunnel.session_id].account_id
                self.mirror.claim_tunnel(tunnel, account_id, reconnecting_from, pending.replacing)
        except BaseException:
            self.abandon_bind(pending)
            raise
        self.finish_bind(pending)

    def remove_tunnel(self, session_id: str, tunnel_id: str, mirrored: bool = True) -> Tunnel | None:
        session = self.sessions.get(session_id)
        if session is None:
            return None
        tunnel = session.tunnels.pop(tunnel_id, None)
        if tunnel is None:
            return None
        place = self._holder(tunnel)
        if place is not None:
            table, key = place
            pool = self._pools.get((id(table), key))
            if pool is not None and tunnel in pool:
                pool.remove(tunnel)
                if len(pool) <= 1:
                    del self._pools[(id(table), key)]
            if table.get(key) is tunnel:
                if pool:
                    table[key] = pool[0]  # the pool goes on with its other members
                else:
                    del table[key]
        self._labeled.pop(tunnel.id, None)
        if self.mirror is not None and mirrored:
            self.mirror.release_tunnel(tunnel, keep_binding=self.shares_binding(tunnel))
        return tunnel

    def shares_binding(self, tunnel: Tunnel) -> bool:
        """Whether the tunnel's session holds its hostname under the other scheme too: the
        cluster's one binding row for the name then outlives this tunnel."""
        if tunnel.proto not in ("http", "https") or not tunnel.hostname or tunnel.internal:
            return False
        other = self._https if tunnel.proto == "http" else self._http
        held = other.get(_http_key(tunnel.hostname))
        return held is not None and held.session_id == tunnel.session_id

    # Routing ----------------------------------------------------------------------

    def internal_tunnel(self, account_id: str, hostname: str) -> Tunnel | None:
        """The account's internal endpoint for ``hostname`` on this node, if bound."""
        return self._routed(self._internal, (account_id, _http_key(hostname)))

    def _routed(self, table: dict[Any, Tunnel], key: object) -> Tunnel | None:
        tunnel = table.get(key)
        if tunnel is not None and tunnel.pooled:
            pool = self._pools.get((id(table), key))
            if pool:
                return pool[next(self._round_robin) % len(pool)]  # members take turns
        return tunnel

    def http_tunnel(self, hostname: str) -> Tunnel | None:
        return self._routed(self._http, _http_key(hostname))

    def https_tunnel(self, hostname: str) -> Tunnel | None:
        return self._routed(self._https, _http_key(hostname))

    def tls_tunnel(self, hostname: str) -> Tunnel | None:
        return self._routed(self._tls, _http_key(hostname))

    def tcp_tunnel(self, port: int) -> Tunnel | None:
        return self._routed(self._tcp, port)

    def labeled_tunnel(self, selector: dict[str, str], account_id: str | None = None) -> Tunnel | None:
        """A labeled tunnel whose labels include ``selector``, taking turns among them."""
        matching = [
            t
            for t in self._labeled.values()
            if (account_id is None or self.sessions[t.session_id].account_id == account_id)
            and all(t.labels.get(k) == v for k, v in selector.items())
        ]
        if not matching:
            return None
        return matching[next(self._round_robin) % len(matching)]

    def tunnels(self) -> Iterator[Tunnel]:
        for session in self.sessions.values():
            yield from session.tunnels.values()
