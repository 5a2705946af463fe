"""The cluster's live registry in the database: nodes and their leases, the sessions and
tunnels each node holds, the names bound, and commands from one node to another.

Every node keeps its own in-memory :class:`~burrow.domain.tunnels.Registry` for routing
and writes its changes through to these tables (this class is the registry's mirror). A
name is bound by one session cluster-wide because ``cluster_bindings`` has it as its
primary key: a bind inserts the row and a violation is the conflict (no check-then-insert).
A node renews its lease every few seconds; any node deletes the rows of nodes whose lease
ran out, so a dead node's names come free and its agents can bind them elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, and_, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from burrow.domain.tunnels import AgentSession, BindConflict, Proto, RegistryUnavailable, Tunnel, binding_key
from burrow.store import schema
from burrow.store.notify import ROUTES, command_payload, notify

log = logging.getLogger("burrow.cluster")
STOP_SESSION = "stop_session"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class NodeStatus:
    id: str
    name: str
    relay_addr: str | None
    started_at: datetime
    lease_expires_at: datetime
    sessions: tuple[str, ...]

    @property
    def live(self) -> bool:
        return self.lease_expires_at > _now()


@dataclass(frozen=True)
class Command:
    id: int
    action: str
    session_id: str
    message: str


def _session(row: Any) -> AgentSession:
    return AgentSession(
        id=row.id,
        account_id=row.account_id,
        credential_id=row.credential_id,
        owner_id=row.owner_id,
        agent_version=row.agent_version,
        os=row.os,
        user_agent=row.user_agent,
        client_addr=row.client_addr,
        metadata=row.metadata,
        started_at=row.started_at.replace(tzinfo=UTC),
    )


def _tunnel(row: Any) -> Tunnel:
    proto: Proto = row.proto
    url = urlsplit(row.url)
    return Tunnel(
        row.id,
        row.session_id,
        proto,
        row.url,
        row.forwards_to,
        row.metadata,
        row.created_at.replace(tzinfo=UTC),
        hostname=url.hostname if proto in ("http", "https", "tls") else None,
        port=url.port if proto == "tcp" else None,
        labels=json.loads(row.labels),
        internal=(url.hostname or "").endswith(".internal"),  # only internal binds may name one
        pooled=row.pooled,
        account_id=row.account_id,
        endpoint_id=row.endpoint_id,
        name=row.name,
        description=row.description,
        traffic_policy=row.traffic_policy,
        updated_at=row.updated_at.replace(tzinfo=UTC) if row.updated_at is not None else None,
    )


def _endpoint_columns(tunnel: Tunnel) -> dict[str, Any]:
    updated = tunnel.updated_at
    return {
        "endpoint_id": tunnel.endpoint_id,
        "name": tunnel.name[:255],
        "description": tunnel.description[:255],
        "traffic_policy": tunnel.traffic_policy,
        "pooled": tunnel.pooled,
        "updated_at": updated.astimezone(UTC).replace(tzinfo=None) if updated is not None else None,
    }


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as error:
        raise RegistryUnavailable(str(error).splitlines()[0]) from error


class ClusterRegistry:
    """One node's handle on the shared registry tables (synchronous, like the store)."""

    def __init__(
        self,
        engine: Engine,
        node_id: str,
        node_name: str,
        lease_seconds: float,
        relay_addr: str | None = None,
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.node_name = node_name
        self.lease = timedelta(seconds=lease_seconds)
        self.relay_addr = relay_addr
        # Sessions and tunnels whose rows could not be removed (the database was away): the
        # node retries (retry_removals) so their names do not stay bound.
        self.unremoved_sessions: set[str] = set()
        self.unreleased: list[tuple[Tunnel, bool]] = []

    # Nodes and leases -----------------------------------------------------------------

    def register(self) -> None:
        now = _now()
        with self.engine.begin() as connection:
            self._reap(connection, now)
            connection.execute(delete(schema.cluster_nodes).where(schema.cluster_nodes.c.id == self.node_id))
            connection.execute(
                insert(schema.cluster_nodes),
                {
                    "id": self.node_id,
                    "name": self.node_name,
                    "relay_addr": self.relay_addr,
                    "started_at": now,
                    "lease_expires_at": now + self.lease,
                },
            )

    def renew(self) -> bool:
        """Extend this node's lease and delete expired nodes' rows; False if this node's
        lease had already run out (its rows are gone: other nodes may hold its names now)."""
        now = _now()
        nodes = schema.cluster_nodes
        with self.engine.begin() as connection:
            renewed = connection.execute(
                update(nodes)
                .where(and_(nodes.c.id == self.node_id, nodes.c.lease_expires_at > now))
                .values(lease_expires_at=now + self.lease)
            ).rowcount
            self._reap(connection, now)
        return bool(renewed)

    def _reap(self, connection: Connection, now: datetime) -> None:
        nodes = schema.cluster_nodes
        expired = [
            row.id for row in connection.execute(select(nodes.c.id).where(nodes.c.lease_expires_at <= now))
        ]
        if expired:
            log.info("expired nodes removed", extra={"fields": {"nodes": expired}})
            self._drop_nodes(connection, expired)

    def _drop_nodes(self, connection: Connection, node_ids: list[str]) -> None:
        members = schema.cluster_pool_members
        connection.execute(delete(members).where(members.c.node_id.in_(node_ids)))
        # A pool's name held by a session of these nodes passes to a member elsewhere.
        self._hand_over(connection, schema.cluster_bindings.c.node_id.in_(node_ids))
        for table in (
            schema.cluster_bindings,
            schema.cluster_tunnels,
            schema.cluster_sessions,
            schema.cluster_commands,
            schema.cluster_nodes,
        ):
            column = table.c.id if table is schema.cluster_nodes else table.c.node_id
            connection.execute(delete(table).where(column.in_(node_ids)))
        notify(connection, ROUTES)

    def leave(self) -> None:
        """Remove this node and everything it holds (a clean shutdown)."""
        with self.engine.begin() as connection:
            self._drop_nodes(connection, [self.node_id])

    def nodes(self) -> list[NodeStatus]:
        nodes, sessions = schema.cluster_nodes, schema.cluster_sessions
        with self.engine.connect() as connection:
            held: dict[str, list[str]] = {}
            for row in connection.execute(select(sessions.c.node_id, sessions.c.id).order_by(sessions.c.id)):
                held.setdefault(row.node_id, []).append(row.id)
            return [
                NodeStatus(
                    row.id,
                    row.name,
                    row.relay_addr,
                    row.started_at,
                    row.lease_expires_at,
                    tuple(held.get(row.id, ())),
                )
                for row in connection.execute(select(nodes).order_by(nodes.c.started_at))
            ]

    # The registry's mirror ------------------------------------------------------------

    def add_session(self, session: AgentSession) -> None:
        with _reachable(), self.engine.begin() as connection:
            connection.execute(
                insert(schema.cluster_sessions),
                {
                    "id": session.id,
                    "node_id": self.node_id,
                    "account_id": session.account_id,
                    "credential_id": session.credential_id,
                    "owner_id": session.owner_id,
                    "agent_version": session.agent_version[:255],
                    "os": session.os[:255],
                    "user_agent": session.user_agent[:1024],
                    "client_addr": session.client_addr[:300],
                    "metadata": session.metadata,
                    "started_at": session.started_at.astimezone(UTC).replace(tzinfo=None),
                },
            )

    def remove_session(self, session_id: str) -> None:
        try:
            self._remove_session(session_id)
        except SQLAlchemyError as error:
            log.warning(
                "session rows not removed", extra={"fields": {"session": session_id, "error": str(error)}}
            )
            self.unremoved_sessions.add(session_id)

    def _remove_session(self, session_id: str) -> None:
        bindings, members = schema.cluster_bindings, schema.cluster_pool_members
        with self.engine.begin() as connection:
            connection.execute(delete(members).where(members.c.session_id == session_id))
            self._hand_over(connection, bindings.c.session_id == session_id)
            for table in (schema.cluster_bindings, schema.cluster_tunnels):
                connection.execute(
                    delete(table).where(
                        and_(table.c.session_id == session_id, table.c.node_id == self.node_id)
                    )
                )
            connection.execute(
                delete(schema.cluster_sessions).where(schema.cluster_sessions.c.id == session_id)
            )
            notify(connection, ROUTES)

    def claim_tunnel(
        self, tunnel: Tunnel, account_id: str, reconnecting_from: str | None, replacing: Tunnel | None
    ) -> None:
        """Bind the tunnel's name to its session, cluster-wide, and record the tunnel.

        Raises :class:`BindConflict` if another session holds the name, unless that is the
        session ``reconnecting_from`` with the same credential, whose names this one takes.
        """
        tunnels = schema.cluster_tunnels
        key = binding_key(tunnel)
        with _reachable(), self.engine.begin() as connection:
            if key is not None:
                self._claim_name(connection, key, tunnel, account_id, reconnecting_from)
                notify(connection, ROUTES)
            for old in (replacing, tunnel):
                if old is not None:
                    connection.execute(
                        delete(tunnels).where(
                            and_(tunnels.c.session_id == old.session_id, tunnels.c.id == old.id)
                        )
                    )
            connection.execute(
                insert(tunnels),
                {
                    "session_id": tunnel.session_id,
                    "id": tunnel.id,
                    "node_id": self.node_id,
                    "account_id": account_id,
                    "proto": tunnel.proto,
                    "url": tunnel.url,
                    "forwards_to": tunnel.forwards_to,
                    "metadata": tunnel.metadata,
                    "labels": json.dumps(tunnel.labels),
                    "created_at": tunnel.created_at.astimezone(UTC).replace(tzinfo=None),
                    **_endpoint_columns(tunnel),
                },
            )

    def _claim_name(
        self,
        connection: Connection,
        key: tuple[str, str],
        tunnel: Tunnel,
        account_id: str,
        reconnecting_from: str | None,
    ) -> None:
        bindings, sessions = schema.cluster_bindings, schema.cluster_sessions
        kind, name = key
        session_id = tunnel.session_id
        if tunnel.pooled:
            self._join_pool(connection, kind, name, session_id)
        row = {
            "kind": kind,
            "name": name,
            "session_id": session_id,
            "node_id": self.node_id,
            "pooled": tunnel.pooled,
            "account_id": account_id,
        }
        try:
            with connection.begin_nested():
                connection.execute(insert(bindings), row)
            return
        except IntegrityError:
            pass  # the name is bound: by this session (the other scheme), by its pool, or by another
        bound = connection.execute(
            select(bindings.c.session_id, bindings.c.pooled, bindings.c.account_id).where(
                and_(bindings.c.kind == kind, bindings.c.name == name)
            )
        ).first()
        holder = bound.session_id if bound is not None else None
        if holder == session_id:
            return
        if bound is not None and tunnel.pooled and bound.pooled and bound.account_id == account_id:
            return  # a pool of this account's: this session is one more member
        if reconnecting_from is not None and holder == reconnecting_from:
            # The agent reconnected (maybe to this node, maybe its old node is gone): only the
            # same credential takes over the old session's names.
            mine = select(sessions.c.credential_id).where(sessions.c.id == session_id).scalar_subquery()
            theirs = (
                select(sessions.c.credential_id).where(sessions.c.id == reconnecting_from).scalar_subquery()
            )
            moved = connection.execute(
                update(bindings)
                .where(
                    and_(
                        bindings.c.kind == kind,
                        bindings.c.name == name,
                        bindings.c.session_id == reconnecting_from,
                        mine == theirs,
                    )
                )
                .values(session_id=session_id, node_id=self.node_id)
            ).rowcount
            if moved:
                return
        raise BindConflict(name)

    def _join_pool(self, connection: Connection, kind: str, name: str, session_id: str) -> None:
        members = schema.cluster_pool_members
        try:
            with connection.begin_nested():
                connection.execute(
                    insert(members),
                    {"kind": kind, "name": name, "session_id": session_id, "node_id": self.node_id},
                )
        except IntegrityError:
            pass  # a member already (its other scheme)

    def _hand_over(self, connection: Connection, held: Any) -> None:
        """The pooled bindings ``held`` selects (their holder is leaving) pass to another
        member of their pool, if one is left; the caller deletes what has no successor."""
        bindings, members = schema.cluster_bindings, schema.cluster_pool_members
        for row in connection.execute(select(bindings).where(and_(held, bindings.c.pooled.is_(True)))).all():
            successor = connection.execute(
                select(members.c.session_id, members.c.node_id)
                .where(
                    and_(
                        members.c.kind == row.kind,
                        members.c.name == row.name,
                        members.c.session_id != row.session_id,
                    )
                )
                .limit(1)
            ).first()
            if successor is not None:
                connection.execute(
                    update(bindings)
                    .where(and_(bindings.c.kind == row.kind, bindings.c.name == row.name))
                    .values(session_id=successor.session_id, node_id=successor.node_id)
                )

    def update_endpoint(self, tunnel: Tunnel) -> None:
        """A live tunnel's endpoint as an agent's PatchTunnelState left it, as the API lists it."""
        tunnels = schema.cluster_tunnels
        with _reachable(), self.engine.begin() as connection:
            connection.execute(
                update(tunnels)
                .where(and_(tunnels.c.session_id == tunnel.session_id, tunnels.c.id == tunnel.id))
                .values(metadata=tunnel.metadata, **_endpoint_columns(tunnel))
            )

    def release_tunnel(self, tunnel: Tunnel, keep_binding: bool) -> None:
        try:
            self._release_tunnel(tunnel, keep_binding)
        except SQLAlchemyError as error:
            log.warning(
                "tunnel rows not removed", extra={"fields": {"tunnel": tunnel.id, "error": str(error)}}
            )
            self.unreleased.append((tunnel, keep_binding))

    def retry_removals(self) -> None:
        """Remove the rows earlier removals left behind (raises while the database is away)."""
        while self.unreleased:
            tunnel, keep_binding = self.unreleased[0]
            self._release_tunnel(tunnel, keep_binding)
            self.unreleased.pop(0)
        for session_id in list(self.unremoved_sessions):
            self._remove_session(session_id)
            self.unremoved_sessions.discard(session_id)

    def _release_tunnel(self, tunnel: Tunnel, keep_binding: bool) -> None:
        tunnels, bindings = schema.cluster_tunnels, schema.cluster_bindings
        members = schema.cluster_pool_members
        key = binding_key(tunnel)
        with self.engine.begin() as connection:
            connection.execute(
                delete(tunnels).where(
                    and_(tunnels.c.session_id == tunnel.session_id, tunnels.c.id == tunnel.id)
                )
            )
            if key is not None and not keep_binding:
                notify(connection, ROUTES)
                if tunnel.pooled:
                    connection.execute(
                        delete(members).where(
                            and_(
                                members.c.kind == key[0],
                                members.c.name == key[1],
                                members.c.session_id == tunnel.session_id,
                            )
                        )
                    )
                    mine = and_(
                        bindings.c.kind == key[0],
                        bindings.c.name == key[1],
                        bindings.c.session_id == tunnel.session_id,
                    )
                    self._hand_over(connection, mine)
                connection.execute(
                    delete(bindings).where(
                        and_(
                            bindings.c.kind == key[0],
                            bindings.c.name == key[1],
                            bindings.c.session_id == tunnel.session_id,
                        )
                    )
                )

    # What the API lists ---------------------------------------------------------------

    def sessions(self, account_id: str) -> list[AgentSession]:
        table = schema.cluster_sessions
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(table).where(table.c.account_id == account_id).order_by(table.c.id.desc())
            )
            return [_session(row) for row in rows]

    def session(self, session_id: str) -> tuple[AgentSession, str] | None:
        """A live session anywhere in the cluster, and the id of the node holding it."""
        table = schema.cluster_sessions
        with self.engine.connect() as connection:
            row = connection.execute(select(table).where(table.c.id == session_id)).first()
        return (_session(row), row.node_id) if row is not None else None

    def tunnels(self, account_id: str) -> list[Tunnel]:
        table = schema.cluster_tunnels
        with self.engine.connect() as connection:
            rows = connection.execute(select(table).where(table.c.account_id == account_id))
            return [_tunnel(row) for row in rows]

    def route(self, kind: str, name: str) -> str | None:
        """The relay address of the live node, other than this one, holding the name."""
        bindings, nodes = schema.cluster_bindings, schema.cluster_nodes
        query = (
            select(nodes.c.relay_addr)
            .select_from(bindings.join(nodes, nodes.c.id == bindings.c.node_id))
            .where(
                bindings.c.kind == kind,
                bindings.c.name == name,
                nodes.c.id != self.node_id,
                nodes.c.lease_expires_at > _now(),
            )
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).scalar()
        return str(found) if found else None

    # Commands -------------------------------------------------------------------------

    def send_stop(self, node_id: str, session_id: str, message: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(schema.cluster_commands),
                {
                    "node_id": node_id,
                    "action": STOP_SESSION,
                    "session_id": session_id,
                    "message": message,
                    "created_at": _now(),
                },
            )
            notify(connection, command_payload(node_id))  # the node acts at once, not at its next poll

    def take_commands(self) -> list[Command]:
        """This node's waiting commands, removed as they are handed over."""
        table = schema.cluster_commands
        # Polled often: a read, and a write only when there is something (every commit clears
        # the store's read cache).
        with self.engine.connect() as connection:
            rows = list(
                connection.execute(select(table).where(table.c.node_id == self.node_id).order_by(table.c.id))
            )
        if rows:
            with self.engine.begin() as connection:
                connection.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))
        return [Command(row.id, row.action, row.session_id, row.message) for row in rows]
