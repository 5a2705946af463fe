"""Dispatch of the resource routes: the route found by splitting the path, then its endpoint.

Starlette's router tries every route's pattern in turn, and each request it routes crosses
two error middlewares and an exception wrapper: about 16 µs a request, as much as all of
Burrow's own checks (docs/benchmarks.md). Every resource route has one of the shapes of
:data:`~burrow.api.endpoints.SHAPES` (``/things``, ``/things/{id}``, ``/things/{id}/stop``),
so its route is a dictionary lookup away. Everything else (health, the OpenAPI document,
the dashboard, unknown paths) goes on to the Starlette app, whose error handlers this
router shares: an error is shaped the same whichever of the two routed the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .endpoints import Endpoint

ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]
_ID = "{id}"


class ResourceRoute(Route):
    """A resource path with its endpoint per method (HEAD answered as GET).

    A Starlette :class:`Route`, so that what reads ``scope["route"]`` (the request
    metrics, by template) and what lists ``routes`` sees one kind of thing.
    """

    def __init__(self, path: str, endpoints: Mapping[str, Endpoint]) -> None:
        super().__init__(path, self._unrouted, methods=list(endpoints))
        self.endpoints = dict(endpoints)
        if "GET" in self.endpoints:
            self.endpoints["HEAD"] = self.endpoints["GET"]
        self.allow = ", ".join(sorted(self.endpoints))

    @staticmethod
    async def _unrouted(request: Request) -> Response:
        raise AssertionError("resource routes are dispatched by ResourceRouter")


class ResourceRouter:
    """The API's resource routes in front of ``fallback``, which answers every other path."""

    def __init__(
        self, routes: list[ResourceRoute], fallback: ASGIApp, handlers: Mapping[Any, ErrorHandler]
    ) -> None:
        self.routes = routes
        self.fallback = fallback
        self._handlers = handlers
        self._by_path = {route.path: route for route in routes}

    def match(self, path: str) -> tuple[ResourceRoute, dict[str, str]] | None:
        """The route serving ``path`` and the id in it, if any."""
        route = self._by_path.get(path)
        if route is not None:
            return route, {}
        head, _, tail = path.rpartition("/")
        if not tail:
            return None
        route = self._by_path.get(f"{head}/{_ID}")
        if route is not None:
            return route, {"id": tail}
        head, _, resource_id = head.rpartition("/")
        if not resource_id:
            return None
        route = self._by_path.get(f"{head}/{_ID}/{tail}")
        return (route, {"id": resource_id}) if route is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.match(_route_path(scope)) if scope["type"] == "http" else None
        if found is None:
            await self.fallback(scope, receive, send)
            return
        route, path_params = found
        scope["route"] = route
        scope["path_params"] = path_params
        request = Request(scope, receive)
        try:
            endpoint = route.endpoints.get(scope["method"])
            if endpoint is None:
                raise HTTPException(405, headers={"Allow": route.allow})
            response = await endpoint(request)
        except Exception as exc:  # shaped by the app's handlers, as Starlette would
            response = await self._handler(exc)(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> ErrorHandler:
        for cls in type(exc).__mro__:
            if cls in self._handlers:
                return self._handlers[cls]
        raise exc  # no handler for it: the server's to report


def _route_path(scope: Scope) -> str:
    """The path below the app's root path (as Starlette routes it)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path
