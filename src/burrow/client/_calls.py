"""What each API operation sends and how its answer is read: shared by both clients."""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from ._errors import Error, NotFoundError
from ._models import (
    ApiKey,
    AuditEvent,
    BotUser,
    Credential,
    Endpoint,
    ReservedAddr,
    ReservedDomain,
    SshCredential,
    TlsCertificate,
    Tunnel,
    TunnelSession,
)

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:4080"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_RETRY_DELAY = 30.0


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str  # a path under the base URL, or an absolute URL (next_page_uri)
    parse: Callable[[Any], T]
    params: Mapping[str, str] | None = None
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    uri: str
    next_page_uri: str | None
    list_key: str = ""  # the key the API lists items under: "keys", "credentials", ...


def segment(id: str) -> str:
    """An id as one URL path segment: escaped, so ``"../x"`` cannot reach another route."""
    if not isinstance(id, str) or not id:
        raise ValueError("an id must be a non-empty string")
    return quote(id, safe="")


def drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def page_parser(list_key: str, item: Callable[[Mapping[str, Any]], T]) -> Callable[[Any], Page[T]]:
    def parse(data: Any) -> Page[T]:
        return Page([item(x) for x in data[list_key]], data["uri"], data.get("next_page_uri"), list_key)

    return parse


def none(_: Any) -> None:
    return None


class Resource(Generic[T]):
    """The calls of one REST resource."""

    def __init__(self, path: str, list_key: str, item: Callable[[Mapping[str, Any]], T]) -> None:
        self.path = path
        self.list_key = list_key
        self.item = item
        self.page = page_parser(list_key, item)

    def bound(self, service: object) -> Resource[T]:
        """The same calls, whose objects remember ``service`` (for ``obj.update()``)."""

        def item(data: Mapping[str, Any]) -> T:
            made = self.item(data)
            if dataclasses.is_dataclass(made) and hasattr(made, "service"):
                return dataclasses.replace(made, service=service)  # type: ignore[type-var]
            return made

        return Resource(self.path, self.list_key, item)

    def get(self, id: str) -> Call[T]:
        return Call("GET", f"{self.path}/{segment(id)}", self.item)

    def delete(self, id: str) -> Call[None]:
        return Call("DELETE", f"{self.path}/{segment(id)}", none)

    def list(self, before_id: str | None, limit: str | int | None, filter: str | None) -> Call[Page[T]]:
        params = drop_none(
            {"before_id": before_id, "limit": None if limit is None else str(limit), "filter": filter}
        )
        return Call("GET", self.path, self.page, params=params)

    def create(self, body: Mapping[str, Any]) -> Call[T]:
        return Call("POST", self.path, self.item, body=drop_none(body))

    def update(self, id: str, body: Mapping[str, Any]) -> Call[T]:
        return Call("PATCH", f"{self.path}/{segment(id)}", self.item, body=drop_none(body))

    def next_page(self, uri: str) -> Call[Page[T]]:
        return Call("GET", uri, self.page)


API_KEYS = Resource("/api_keys", "keys", ApiKey.from_json)
CREDENTIALS = Resource("/credentials", "credentials", Credential.from_json)
SSH_CREDENTIALS = Resource("/ssh_credentials", "ssh_credentials", SshCredential.from_json)
BOT_USERS = Resource("/bot_users", "bot_users", BotUser.from_json)
SERVICE_USERS = Resource("/service_users", "service_users", BotUser.from_json)
TUNNEL_SESSIONS = Resource("/tunnel_sessions", "tunnel_sessions", TunnelSession.from_json)
TUNNELS = Resource("/tunnels", "tunnels", Tunnel.from_json)
ENDPOINTS = Resource("/endpoints", "endpoints", Endpoint.from_json)
AUDIT_EVENTS = Resource("/audit_events", "audit_events", AuditEvent.from_json)
RESERVED_DOMAINS = Resource("/reserved_domains", "reserved_domains", ReservedDomain.from_json)
RESERVED_ADDRS = Resource("/reserved_addrs", "reserved_addrs", ReservedAddr.from_json)
TLS_CERTIFICATES = Resource("/tls_certificates", "tls_certificates", TlsCertificate.from_json)


def acl_list(acl: Sequence[str] | None) -> list[str] | None:
    return None if acl is None else list(acl)


def headers(api_key: str, user_agent: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Ngrok-Version": "2", "User-Agent": user_agent}


def request_kwargs(call: Call[Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": call.params}
    if call.body is not None:
        kwargs["json"] = call.body
    return kwargs


def read(response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """The parsed answer, or the API's error raised as :class:`Error`."""
    if response.status_code == 204:
        return parse(None)
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.is_success and data is not None:
        return parse(data)
    if not isinstance(data, dict):
        raise Error(None, response.text[:500] or response.reason_phrase, response.status_code)
    kind = NotFoundError if response.status_code == 404 else Error
    details = data.get("details") if isinstance(data.get("details"), dict) else {}
    raise kind(
        data.get("error_code"),
        str(data.get("msg", "")),
        int(data.get("status_code", response.status_code)),
        details,
    )


def should_retry(method: str, response: httpx.Response | None, error: Exception | None) -> bool:
    """429 always (the server did nothing); 502-504 and read failures only when idempotent;
    failures to connect always, as the request never left."""
    if response is not None:
        return response.status_code == 429 or (
            response.status_code in RETRY_STATUSES and method in IDEMPOTENT
        )
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return isinstance(error, httpx.TransportError) and method in IDEMPOTENT


def retry_delay(attempt: int, response: httpx.Response | None, backoff: float) -> float:
    """Honour Retry-After (seconds or an HTTP date); otherwise exponential backoff with jitter."""
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        if header.strip().isdigit():
            return min(float(header), MAX_RETRY_DELAY)
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_DELAY)
    return min(float(backoff * (2**attempt)) * (0.5 + random.random()), MAX_RETRY_DELAY)
