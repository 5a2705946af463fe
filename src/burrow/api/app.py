"""The ASGI application: routes, error shaping, request logs."""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import burrow
from burrow.domain import errors, resources
from burrow.domain.forwarded import TrustedProxies
from burrow.domain.reserved import NameSpace
from burrow.domain.resources import Operation, Resource
from burrow.logsink import BatchedLog, timestamp
from burrow.store.ratelimit import Throttle
from burrow.store.store import Store

from . import http
from .certificates import Certificates
from .endpoints import SHAPES, Endpoint, Handler, endpoint
from .forwarded import ForwardedClient
from .metrics import ApiMetrics
from .openapi import openapi_document
from .reserved import Reservations
from .resources import StoredHandlers
from .router import ResourceRoute, ResourceRouter
from .ssh_credentials import SshCredentials
from .tunnels import LiveEdge, LiveHandlers, NoEdge

access_log = logging.getLogger("burrow.access")
_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"})
# GET /version: what an operator or a client checks compatibility with.
REACHABLE_TIMEOUT = 1.0  # seconds /healthz and /readyz wait on the database before saying it is unavailable
VERSION = {
    "version": burrow.__version__,
    "python": platform.python_version(),
    "ngrok_api_version": "2",
}
error_log = logging.getLogger("burrow.error")


async def _burrow_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.BurrowError)
    if exc.code == errors.DATABASE_UNAVAILABLE.code:
        error_log.warning(
            "database unavailable: %s %s answered 503 (%s)", request.method, request.url.path, exc.__cause__
        )
    return http.error_response(request, exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error = errors.METHOD_NOT_ALLOWED(method=request.method, path=request.url.path, allowed=allowed)
        response = http.error_response(request, error)
        response.headers["Allow"] = allowed
        return response
    if exc.status_code == 404:
        error = errors.PATH_NOT_FOUND()
        error.details["path"] = request.url.path
        return http.error_response(request, error)
    return http.error_response(
        request, errors.BurrowError("ERR_NGROK_90400", exc.status_code, str(exc.detail))
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    op = http.operation_id(request)
    error_log.exception("unhandled error in %s %s (operation %s)", request.method, request.url.path, op)
    return http.error_response(request, errors.INTERNAL_ERROR(op=op))


# One access-log line; "%s" fields are JSON already (see access_lines).
_ACCESS_LINE = (
    '{"time":"%s","level":"info","logger":"burrow.access","message":"request","method":%s,'
    '"path":%s,"status":%d,"duration_ms":%.3f,"operation_id":%s,"client":%s}\n'
)
# What a request's line shows, queued as it ends: when, method, path, status, seconds, operation id, client.
AccessRecord = tuple[float, str, str, int, float, Any, Any]


def access_lines(records: list[AccessRecord]) -> str:
    """The access log's lines for ``records``: JSON objects, one per line."""
    dumps = orjson.dumps
    return "".join(
        [
            _ACCESS_LINE
            % (
                timestamp(at),
                dumps(method).decode(),
                dumps(path).decode(),
                status,
                seconds * 1000,
                dumps(operation_id).decode(),
                f'"{client[0]}:{client[1]}"' if client else "null",
            )
            for at, method, path, status, seconds, operation_id, client in records
        ]
    )


ACCESS_LOG: BatchedLog[AccessRecord] = BatchedLog(access_lines)


class AccessLog:
    """One JSON line per request: no query string, no headers, so no secrets; and the
    request's metrics, by route template.

    What the line shows is queued as a tuple on a :class:`BatchedLog`, which renders and
    writes lines in batches, not through :mod:`logging`, whose machinery cost more than
    the request itself; ``--no-access-log`` still works through the logger's level.
    """

    def __init__(
        self, app: ASGIApp, metrics: ApiMetrics | None, lines: BatchedLog[AccessRecord] = ACCESS_LOG
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.lines = lines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logging_on = access_log.isEnabledFor(logging.INFO)
        if scope["type"] != "http" or (self.metrics is None and not logging_on):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            duration = time.perf_counter() - started
            if self.metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                method = scope["method"] if scope["method"] in _METHODS else "other"
                self.metrics.observe(template, method, status, duration)
            if logging_on:
                state = scope.get("state") or {}
                operation_id = state.get("operation_id")
                client = scope.get("client")
                self.lines.add(
                    (time.time(), scope["method"], scope["path"], status, duration, operation_id, client)
                )


def create_app(
    store: Store,
    public_url: str | None = None,
    edge: LiveEdge | None = None,
    mounts: Callable[[ASGIApp], dict[str, ASGIApp]] | None = None,
    throttle: Throttle | None = None,
    names: NameSpace | None = None,
    metrics: ApiMetrics | None = None,
    trusted_proxies: TrustedProxies | None = None,
) -> ASGIApp:
    """The API; ``throttle`` is shared with the edge (failed authentications count together);
    ``names`` (--domain, --tcp-host, --tcp-ports) shape reserved names; ``mounts``, given
    the API's router, the apps to serve beside it by path (the CLI mounts the dashboard);
    requests from ``trusted_proxies`` count as the address their X-Forwarded-For names."""
    throttle = throttle or Throttle()
    names = names or NameSpace()
    store.listen()  # PostgreSQL: other nodes' writes clear the read cache (store/notify.py)
    live: LiveEdge = edge or NoEdge()
    creators = Reservations(
        store, names.domain, names.tcp_host, names.tcp_ports, live.registry, names.server_hosts
    ).creators()
    creators[resources.TLS_CERTIFICATES.name] = Certificates(store).create
    creators[resources.SSH_CREDENTIALS.name] = SshCredentials(store).create
    handlers: dict[Resource, dict[Operation, Handler]] = {
        resource: StoredHandlers(resource, store, creators.get(resource.name)).handlers()
        for resource in resources.STORED + resources.RECORDS
    }
    handlers.update(LiveHandlers(live, store).handlers())
    by_path: dict[str, dict[str, Endpoint]] = {}
    for resource in resources.ALL:
        for operation in [op for op in SHAPES if op in resource.operations]:
            shape = SHAPES[operation]
            run = endpoint(resource, shape, handlers[resource][operation], store, public_url, throttle)
            by_path.setdefault(shape.path(resource), {})[shape.method] = run
    document = openapi_document(resources.ALL)

    async def openapi(request: Request) -> Response:
        return http.json_response(request, document)

    async def healthz(request: Request) -> Response:
        # Liveness: this process answers, whatever the database does (readyz tells that).
        database = "ok" if await _reachable(store) else "unavailable"
        return http.json_response(request, {"status": "ok", "database": database})

    async def readyz(request: Request) -> Response:
        """Readiness: 503 while the database cannot be reached or its disk is full, so a
        balancer sends no traffic."""
        if not await _reachable(store):
            return http.error_response(request, errors.DATABASE_UNAVAILABLE())
        if store.storage_full():
            return http.error_response(request, errors.STORAGE_FULL())
        return http.json_response(request, {"status": "ok", "database": "ok"})

    async def version(request: Request) -> Response:
        return http.json_response(request, VERSION)

    async def unexpected(request: Request, exc: Exception) -> Response:
        if metrics is not None and isinstance(exc, SQLAlchemyError):
            metrics.database_errors += 1
        return await _unexpected(request, exc)

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
    ]
    handlers_by_error: dict[Any, Any] = {
        errors.BurrowError: _burrow_error,
        HTTPException: _http_exception,
        Exception: unexpected,
    }
    others = Starlette(routes=routes, exception_handlers=handlers_by_error)
    # ngrok answers 404 for "/credentials/"; a redirect would also build its Location from Host.
    others.router.redirect_slashes = False
    resource_routes = [ResourceRoute(path, endpoints) for path, endpoints in by_path.items()]
    app = ResourceRouter(resource_routes, others, handlers_by_error)
    for path, mounted in (mounts(app) if mounts is not None else {}).items():
        others.mount(path, mounted)
    logged = AccessLog(app, metrics)
    return ForwardedClient(logged, trusted_proxies) if trusted_proxies else logged


async def _reachable(store: Store) -> bool:
    """Whether the database answers within REACHABLE_TIMEOUT, asked off the event loop."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(store.is_reachable), REACHABLE_TIMEOUT)
    except TimeoutError:
        return False
