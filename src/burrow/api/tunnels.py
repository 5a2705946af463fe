"""``/tunnel_sessions`` and ``/tunnels``: what the cluster's edge nodes have live (the
shared registry in the database), with ngrok's shapes."""

from __future__ import annotations

from typing import Protocol

from starlette.responses import Response

from burrow.domain import errors
from burrow.domain.resources import ENDPOINTS, TUNNEL_SESSIONS, TUNNELS, Operation, Resource
from burrow.domain.tunnels import AgentSession, Registry, Tunnel
from burrow.store.store import Store

from . import paging
from .endpoints import Call, Handler, check_may_write


class LiveEdge(Protocol):
    """What the API needs of the edge: the cluster's live sessions and tunnels, a way to
    end a session wherever it is held, and this node's registry (for reservations)."""

    registry: Registry

    def live_sessions(self, account_id: str) -> list[AgentSession]: ...

    def live_session(self, session_id: str) -> AgentSession | None: ...

    def live_tunnels(self, account_id: str) -> list[Tunnel]: ...

    async def stop_session(self, session_id: str, message: str) -> None: ...


class NoEdge:
    """Stands in when ``burrow serve`` runs without the edge: nothing is live."""

    def __init__(self) -> None:
        self.registry = Registry()

    def live_sessions(self, account_id: str) -> list[AgentSession]:
        return []

    def live_session(self, session_id: str) -> AgentSession | None:
        return None

    def live_tunnels(self, account_id: str) -> list[Tunnel]:
        return []

    async def stop_session(self, session_id: str, message: str) -> None:
        return None


class LiveHandlers:
    def __init__(self, edge: LiveEdge, store: Store) -> None:
        self.edge = edge
        self.store = store  # for the audit trail

    def handlers(self) -> dict[Resource, dict[Operation, Handler]]:
        return {
            TUNNEL_SESSIONS: {
                Operation.LIST: self.list_sessions,
                Operation.GET: self.get_session,
                Operation.STOP: self.stop_session,
            },
            TUNNELS: {Operation.LIST: self.list_tunnels},
            ENDPOINTS: {Operation.LIST: self.list_endpoints, Operation.GET: self.get_endpoint},
        }

    def _sessions(self, call: Call) -> list[AgentSession]:
        return sorted(self.edge.live_sessions(call.principal.account_id), key=lambda s: s.id, reverse=True)

    def _session(self, call: Call) -> AgentSession:
        assert call.id is not None
        session = self.edge.live_session(call.id)
        if session is None or session.account_id != call.principal.account_id:
            raise errors.NOT_FOUND()
        return session

    async def list_sessions(self, call: Call) -> Response:
        assert call.query is not None
        before_id = call.query.before_id
        items = [s for s in self._sessions(call) if before_id is None or s.id < before_id]
        return call.json(paging.page(TUNNEL_SESSIONS, call.query, call.base, items))

    async def get_session(self, call: Call) -> Response:
        return call.json(TUNNEL_SESSIONS.represent(self._session(call), call.base))

    async def stop_session(self, call: Call) -> Response:
        session = self._session(call)
        check_may_write(TUNNEL_SESSIONS, call.principal, session)
        await self.edge.stop_session(session.id, "stopped through the API")
        self.store.record(call.actor, session.account_id, "stop", TUNNEL_SESSIONS.name, session.id)
        return call.empty()

    async def list_tunnels(self, call: Call) -> Response:
        assert call.query is not None
        before_id = call.query.before_id
        tunnels = sorted(self.edge.live_tunnels(call.principal.account_id), key=lambda t: t.id, reverse=True)
        items = [t for t in tunnels if before_id is None or t.id < before_id]
        return call.json(paging.page(TUNNELS, call.query, call.base, items))

    def _endpoints(self, call: Call) -> list[Tunnel]:
        """The account's endpoints, newest first: every live tunnel but the labeled ones."""
        tunnels = self.edge.live_tunnels(call.principal.account_id)
        return sorted((t for t in tunnels if t.endpoint_id), key=lambda t: t.endpoint_id, reverse=True)

    async def list_endpoints(self, call: Call) -> Response:
        assert call.query is not None
        before_id = call.query.before_id
        items = [t for t in self._endpoints(call) if before_id is None or t.endpoint_id < before_id]
        return call.json(paging.page(ENDPOINTS, call.query, call.base, items))

    async def get_endpoint(self, call: Call) -> Response:
        found = next((t for t in self._endpoints(call) if t.endpoint_id == call.id), None)
        if found is None:
            raise errors.NOT_FOUND()
        return call.json(ENDPOINTS.represent(found, call.base))
