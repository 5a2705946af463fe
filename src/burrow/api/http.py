"""Request and response plumbing shared by every route: JSON, errors, bodies, queries."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from burrow.domain import errors, ids

MAX_BODY_BYTES = 128 * 1024
OPERATION_ID_HEADER = "ngrok-operation-id"
_OPERATION_ID_HEADER = OPERATION_ID_HEADER.encode()
BODYLESS_METHODS = frozenset({"GET", "DELETE", "HEAD"})
_BODY_FRAMING = frozenset({b"content-length", b"transfer-encoding"})  # header names, as ASGI gives them


def operation_id(request: Request) -> str:
    state = request.scope.setdefault("state", {})
    op = state.get("operation_id")
    if op is None:
        op = state["operation_id"] = ids.new_operation_id()
    return str(op)


def json_response(request: Request, data: Any, status: int = 200) -> Response:
    return encoded_json_response(request, orjson.dumps(data), status)


def encoded_json_response(request: Request, body: bytes, status: int = 200) -> Response:
    return _JsonResponse(body, status, operation_id(request))


class _JsonResponse(Response):
    """A JSON answer with its headers written out: Starlette's ``init_headers`` would
    re-encode and re-check each, a few µs on every request."""

    media_type = "application/json"

    def __init__(self, body: bytes, status: int, op: str) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
            (_OPERATION_ID_HEADER, op.encode()),
        ]


def empty_response(request: Request) -> Response:
    return Response(None, 204, {OPERATION_ID_HEADER: operation_id(request)})


def error_body(error: errors.BurrowError, op: str) -> bytes:
    """ngrok's error body (also written by the HTTP layer, before a request has a route)."""
    return orjson.dumps(
        {
            "error_code": error.code,
            "status_code": error.status,
            "msg": error.message,
            "details": {**error.details, "operation_id": op},
        }
    )


def error_response(request: Request, error: errors.BurrowError) -> Response:
    op = operation_id(request)
    return Response(
        error_body(error, op),
        error.status,
        {**error.headers, OPERATION_ID_HEADER: op},
        media_type="application/json",
    )


def check_version(request: Request) -> None:
    version = request.headers.get("ngrok-version")
    if version is None:
        raise errors.MISSING_VERSION()
    if version.strip() != errors.SUPPORTED_VERSIONS:
        raise errors.BAD_VERSION(version=version)


async def read_body(request: Request) -> bytes:
    """The raw body, refusing anything over the cap before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise errors.UNREADABLE_BODY()
        if int(declared) > MAX_BODY_BYTES:
            raise errors.BODY_TOO_LARGE(max=MAX_BODY_BYTES)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise errors.BODY_TOO_LARGE(max=MAX_BODY_BYTES)
            chunks.append(chunk)
    except ClientDisconnect:  # the client left, or the HTTP layer timed its body out
        raise errors.UNREADABLE_BODY() from None
    return b"".join(chunks)


async def json_body(request: Request) -> object:
    """The parsed JSON body; an empty body counts as ``{}``.

    ngrok's own client sends ``update(id)`` with nothing to change as a PATCH with no
    body and no Content-Type, which must reach the "nothing to update" check.
    """
    raw = await read_body(request)
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise errors.MISSING_CONTENT_TYPE()
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise errors.UNSUPPORTED_CONTENT_TYPE(content_type=content_type)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as problem:
        raise errors.UNPARSABLE_BODY(reason=str(problem)) from None


async def refuse_body(request: Request) -> None:
    if not any(name in _BODY_FRAMING for name, _ in request.scope["headers"]):
        return  # HTTP/1.1 framing: a request with neither has no body
    if (await read_body(request)).strip():
        raise errors.UNEXPECTED_BODY(method=request.method)


def single_query_values(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each given at most once and each one we know."""
    if not request.scope.get("query_string"):
        return {}  # most requests: no need to parse
    items = request.query_params.multi_items()
    if not items:
        return {}
    unknown = sorted({name for name, _ in items if name not in allowed})
    if unknown:
        raise errors.UNKNOWN_QUERY_PARAMETER(
            unknown=", ".join(unknown), supported=", ".join(allowed) or "(none)"
        )
    values: dict[str, str] = {}
    for name, value in items:
        if name in values:
            every = [v for n, v in items if n == name]
            raise errors.REPEATED_QUERY_PARAMETER(name=name, count=len(every), values=every)
        values[name] = value
    return values


def check_id(value: str, prefixes: tuple[str, ...]) -> str:
    """``value`` if it is a well-formed id with one of ``prefixes``."""
    parts = ids.split_id(value)
    if parts is None:
        raise errors.INVALID_ID(value=value)
    if parts[0] not in prefixes:
        if len(prefixes) == 1:
            raise errors.WRONG_ID_PREFIX(value=value, prefix=f"{prefixes[0]}_")
        raise errors.WRONG_ID_PREFIXES(value=value, prefixes=", ".join(f"{p}_" for p in prefixes))
    return value


def absolute_base(request: Request, public_url: str | None) -> str:
    """The scheme and host that ``uri`` fields carry: the configured one, or the request's."""
    if public_url:
        return public_url
    scheme = request.scope.get("scheme", "http")  # request.url would build a whole URL
    host = request.headers.get("host")
    if not host:
        server = request.scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scheme}://{host}"
