"""``/tunnel_sessions`` and ``/tunnels``: what the edge has live, with ngrok's shapes."""

from __future__ import annotations

from typing import Protocol

from starlette.responses import Response

from burrow.domain import errors
from burrow.domain.resources import TUNNEL_SESSIONS, TUNNELS, Operation, Resource
from burrow.domain.tunnels import AgentSession, Registry
from burrow.store.store import Store

from . import paging
from .endpoints import Call, Handler, check_may_write


class LiveEdge(Protocol):
    """What the API needs of the running edge: its registry, and a way to end a session."""

    registry: Registry

    async def stop_session(self, session_id: str, message: str) -> None: ...


class NoEdge:
    """Stands in when ``burrow serve`` runs without the edge: nothing is live."""

    def __init__(self) -> None:
        self.registry = Registry()

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
        }

    def _sessions(self, call: Call) -> list[AgentSession]:
        account_id = call.principal.account_id
        live = [s for s in self.edge.registry.sessions.values() if s.account_id == account_id]
        return sorted(live, key=lambda s: s.id, reverse=True)

    def _session(self, call: Call) -> AgentSession:
        session = self.edge.registry.sessions.get(call.id)
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
        tunnels = sorted(
            (t for s in self._sessions(call) for t in s.tunnels.values()), key=lambda t: t.id, reverse=True
        )
        items = [t for t in tunnels if before_id is None or t.id < before_id]
        return call.json(paging.page(TUNNELS, call.query, call.base, items))
