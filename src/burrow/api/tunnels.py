"""``/tunnel_sessions`` and ``/tunnels``: what the edge has live, with ngrok's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from burrow.domain import errors, ids
from burrow.domain.models import Principal
from burrow.domain.tunnels import AgentSession, Registry, Tunnel
from burrow.store.store import Store

from . import http, paging
from .auth import authenticate

REGION = "local"


class EdgeControl(Protocol):
    """What the API needs of the edge: its registry, and a way to end a session."""

    registry: Registry

    async def stop_session(self, session_id: str, message: str) -> None: ...


class NoEdge:
    """Stands in when ``burrow serve`` runs without the edge: nothing is live."""

    def __init__(self) -> None:
        self.registry = Registry()

    async def stop_session(self, session_id: str, message: str) -> None:
        return None


def _time(value: datetime) -> str:
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def represent_session(base: str, session: AgentSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "uri": f"{base}/tunnel_sessions/{session.id}",
        "agent_version": session.agent_version,
        "credential": {"id": session.credential_id, "uri": f"{base}/credentials/{session.credential_id}"},
        "ip": session.client_addr.rpartition(":")[0].strip("[]"),
        "metadata": session.metadata,
        "os": session.os,
        "region": REGION,
        "started_at": _time(session.started_at),
        "transport": "ngrok/v2",
    }


def represent_tunnel(base: str, tunnel: Tunnel) -> dict[str, Any]:
    return {
        "id": tunnel.id,
        "public_url": tunnel.url,
        "started_at": _time(tunnel.created_at),
        "metadata": tunnel.metadata,
        "proto": "" if tunnel.proto == "labeled" else tunnel.proto,
        "region": REGION,
        "tunnel_session": {"id": tunnel.session_id, "uri": f"{base}/tunnel_sessions/{tunnel.session_id}"},
        "endpoint": None,
        "labels": dict(tunnel.labels),
        "backends": [],
        "forwards_to": tunnel.forwards_to,
    }


class TunnelHandlers:
    def __init__(self, store: Store, edge: EdgeControl, public_url: str | None) -> None:
        self.store = store
        self.edge = edge
        self.public_url = public_url

    def _begin(self, request: Request) -> Principal:
        http.check_version(request)
        return authenticate(request, self.store)

    def _sessions(self, principal: Principal) -> list[AgentSession]:
        live = [s for s in self.edge.registry.sessions.values() if s.account_id == principal.account_id]
        return sorted(live, key=lambda s: s.id, reverse=True)

    def _session(self, request: Request, principal: Principal) -> AgentSession:
        session_id = http.check_id(request.path_params["id"], (ids.TUNNEL_SESSION,))
        session = self.edge.registry.sessions.get(session_id)
        if session is None or session.account_id != principal.account_id:
            raise errors.NOT_FOUND()
        return session

    async def list_sessions(self, request: Request) -> Response:
        principal = self._begin(request)
        query = paging.ListQuery(request, (ids.TUNNEL_SESSION,))
        await http.refuse_body(request)
        base = http.absolute_base(request, self.public_url)
        items = [s for s in self._sessions(principal) if query.before_id is None or s.id < query.before_id]
        body = paging.page(
            request,
            query,
            base,
            "/tunnel_sessions",
            "tunnel_sessions",
            items,
            lambda s: represent_session(base, s),
        )
        return http.json_response(request, body)

    async def get_session(self, request: Request) -> Response:
        principal = self._begin(request)
        http.single_query_values(request, ())
        session = self._session(request, principal)
        return http.json_response(
            request, represent_session(http.absolute_base(request, self.public_url), session)
        )

    async def stop_session(self, request: Request) -> Response:
        principal = self._begin(request)
        http.single_query_values(request, ())
        await http.json_body(request)  # ngrok's clients send none; an empty object is fine too
        session = self._session(request, principal)
        if not principal.is_admin and session.owner_id != principal.owner_id:
            raise errors.NOT_PERMITTED(resource="tunnel session")
        await self.edge.stop_session(session.id, "stopped through the API")
        return http.empty_response(request)

    async def list_tunnels(self, request: Request) -> Response:
        principal = self._begin(request)
        query = paging.ListQuery(request, (ids.TUNNEL,))
        await http.refuse_body(request)
        base = http.absolute_base(request, self.public_url)
        tunnels = sorted(
            (t for s in self._sessions(principal) for t in s.tunnels.values()),
            key=lambda t: t.id,
            reverse=True,
        )
        items = [t for t in tunnels if query.before_id is None or t.id < query.before_id]
        body = paging.page(
            request, query, base, "/tunnels", "tunnels", items, lambda t: represent_tunnel(base, t)
        )
        return http.json_response(request, body)
