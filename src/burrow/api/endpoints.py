"""What every endpoint checks before its handler runs, declared once per operation.

Each :class:`~burrow.domain.resources.Operation` has one HTTP shape (:data:`SHAPES`):
method, path, whether it takes an id, a list query, a JSON body. :func:`endpoint` runs the
preamble that shape implies, in one order for every route (the per-address rate limit, API
version, authentication, the per-key rate limit, the id in the path, the query, the body),
and hands the handler a checked :class:`Call`.
A :class:`~burrow.domain.errors.BurrowError` raised anywhere becomes ngrok's error body
through the exception handler registered in ``app.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from burrow.domain import errors
from burrow.domain.models import Actor, Principal
from burrow.domain.resources import Operation, Resource
from burrow.store.ratelimit import Throttle
from burrow.store.store import Store

from . import http
from .auth import authenticate, client_address
from .paging import ListQuery

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Shape:
    """How an operation looks over HTTP."""

    method: str
    suffix: str  # after the resource's path
    success: int  # the status of a successful answer
    takes_id: bool = False
    lists: bool = False  # before_id, limit, filter; otherwise no query parameter is accepted
    json_body: bool = False  # otherwise a body is refused

    def path(self, resource: Resource) -> str:
        return resource.path + self.suffix


SHAPES: dict[Operation, Shape] = {
    Operation.LIST: Shape("GET", "", 200, lists=True),
    Operation.CREATE: Shape("POST", "", 201, json_body=True),
    Operation.GET: Shape("GET", "/{id}", 200, takes_id=True),
    Operation.UPDATE: Shape("PATCH", "/{id}", 200, takes_id=True, json_body=True),
    Operation.DELETE: Shape("DELETE", "/{id}", 204, takes_id=True),
    Operation.STOP: Shape("POST", "/{id}/stop", 204, takes_id=True, json_body=True),
}
WRITES = frozenset({Operation.CREATE, Operation.UPDATE, Operation.DELETE, Operation.STOP})


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a µs more, on every request
class Call:
    """A request that passed its endpoint's preamble (handlers read it, never change it)."""

    request: Request
    principal: Principal
    base: str  # what ``uri`` fields start with
    id: str  # the checked id in the path; "" when the path has none
    query: ListQuery | None  # for list operations
    body: Any  # the parsed JSON body for operations that take one; None otherwise
    client_ip: str

    @property
    def actor(self) -> Actor:
        """Who the audit trail says made this call's write."""
        principal = self.principal
        return Actor(
            principal.api_key_id, principal.owner_id, self.client_ip, http.operation_id(self.request)
        )

    def json(self, data: Any, status: int = 200) -> Response:
        return http.json_response(self.request, data, status)

    def empty(self) -> Response:
        return http.empty_response(self.request)


Handler = Callable[[Call], Awaitable[Response]]


def endpoint(
    resource: Resource,
    shape: Shape,
    handler: Handler,
    store: Store,
    public_url: str | None,
    throttle: Throttle,
) -> Endpoint:
    prefixes = (resource.id_prefix,)

    async def run(request: Request) -> Response:
        address = client_address(request)
        throttle.api_request(address)
        http.check_version(request)
        principal = authenticate(request, store, throttle, address)
        throttle.api_key(principal.api_key_id)
        if resource.admin_only and not principal.is_admin:
            raise errors.ADMINS_ONLY(resource=resource.title)
        resource_id = http.check_id(request.path_params["id"], prefixes) if shape.takes_id else ""
        query = None
        if shape.lists:
            query = ListQuery(request, prefixes)
        else:
            http.single_query_values(request, ())
        body = None
        if shape.json_body:
            body = await http.json_body(request)
            if shape.takes_id:
                body = _without_path_id(body, resource_id)
        else:
            await http.refuse_body(request)
        base = http.absolute_base(request, public_url)
        return await handler(Call(request, principal, base, resource_id, query, body, address))

    return run


def _without_path_id(body: object, path_id: str) -> object:
    """The body without an ``id`` equal to the path's: the official Node client sends one."""
    if not isinstance(body, dict) or "id" not in body:
        return body
    if body["id"] != path_id:
        raise errors.ID_MISMATCH(body_id=body["id"], path_id=path_id)
    return {name: value for name, value in body.items() if name != "id"}


def check_may_write(resource: Resource, principal: Principal, item: Any) -> None:
    """Admins write anything of their account; members what they own, and never bot users."""
    if principal.is_admin:
        return
    if resource.admin_only_writes or resource.owner_of(item) != principal.owner_id:
        raise errors.NOT_PERMITTED(resource=resource.title)
