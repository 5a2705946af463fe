"""The REST resources: API keys, tunnel credentials and bot users (also as service users).

Each resource is described once by a :class:`ResourceSpec`; the handlers below are the
same for all of them, and the OpenAPI document is generated from the same specs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from burrow.domain import errors, fields
from burrow.domain.models import ApiKey, BotUser, Credential, Principal
from burrow.store.store import API_KEYS, BOT_USERS, CREDENTIALS, Kind, Store

from . import http, paging
from .auth import authenticate

Handler = Callable[[Request], Awaitable[Response]]


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with whole seconds; stored times are naive UTC."""
    return value.replace(microsecond=0).isoformat() + "Z"


@dataclass(frozen=True)
class ResourceSpec:
    path: str  # "/credentials"
    list_key: str  # the list body's key: "credentials"
    kind: Kind[Any]
    create_fields: tuple[fields.Field, ...]
    update_fields: tuple[fields.Field, ...]
    admin_only_writes: bool  # bot users: only admins manage them
    title: str

    def uri(self, base: str, resource_id: str) -> str:
        return f"{base}{self.path}/{resource_id}"


API_KEY_SPEC = ResourceSpec(
    "/api_keys",
    "keys",
    API_KEYS,
    (fields.DESCRIPTION, fields.METADATA, fields.OWNER_ID),
    (fields.DESCRIPTION, fields.METADATA),
    admin_only_writes=False,
    title="API key",
)
CREDENTIAL_SPEC = ResourceSpec(
    "/credentials",
    "credentials",
    CREDENTIALS,
    (fields.DESCRIPTION, fields.METADATA, fields.ACL, fields.OWNER_ID),
    (fields.DESCRIPTION, fields.METADATA, fields.ACL),
    admin_only_writes=False,
    title="tunnel credential",
)
BOT_USER_SPEC = ResourceSpec(
    "/bot_users",
    "bot_users",
    BOT_USERS,
    (fields.NAME, fields.ACTIVE),
    (fields.NAME, fields.ACTIVE),
    admin_only_writes=True,
    title="bot user",
)
SERVICE_USER_SPEC = ResourceSpec(
    "/service_users",
    "service_users",
    BOT_USERS,
    (fields.NAME, fields.ACTIVE),
    (fields.NAME, fields.ACTIVE),
    admin_only_writes=True,
    title="service user",
)
SPECS = (CREDENTIAL_SPEC, API_KEY_SPEC, BOT_USER_SPEC, SERVICE_USER_SPEC)


def represent(
    spec: ResourceSpec, base: str, item: ApiKey | Credential | BotUser, token: str | None = None
) -> dict[str, Any]:
    """The JSON shape ngrok's clients read: every field present, ``token`` null but once."""
    uri = spec.uri(base, item.id)
    if isinstance(item, BotUser):
        return {
            "id": item.id,
            "uri": uri,
            "name": item.name,
            "active": item.active,
            "created_at": timestamp(item.created_at),
        }
    shape: dict[str, Any] = {
        "id": item.id,
        "uri": uri,
        "created_at": timestamp(item.created_at),
        "description": item.description,
        "metadata": item.metadata,
        "token": token,
    }
    if isinstance(item, Credential):
        shape["acl"] = list(item.acl)
    shape["owner_id"] = item.owner_id
    return shape


class ResourceHandlers:
    """The five operations of one resource, bound to a store."""

    def __init__(self, spec: ResourceSpec, store: Store, public_url: str | None) -> None:
        self.spec = spec
        self.store = store
        self.public_url = public_url
        self.prefixes = (spec.kind.prefix,)

    def _begin(self, request: Request) -> Principal:
        http.check_version(request)
        return authenticate(request, self.store)

    def _check_may_write(self, principal: Principal, owner_id: str | None) -> None:
        if principal.is_admin:
            return
        if self.spec.admin_only_writes or owner_id != principal.owner_id:
            raise errors.NOT_PERMITTED(resource=self.spec.title)

    def _id(self, request: Request) -> str:
        return http.check_id(request.path_params["id"], self.prefixes)

    def _base(self, request: Request) -> str:
        return http.absolute_base(request, self.public_url)

    async def get(self, request: Request) -> Response:
        principal = self._begin(request)
        resource_id = self._id(request)
        http.single_query_values(request, ())
        item = self.store.get(self.spec.kind, principal.account_id, resource_id)
        if item is None:
            raise errors.NOT_FOUND()
        return http.json_response(request, represent(self.spec, self._base(request), item))

    async def list(self, request: Request) -> Response:
        principal = self._begin(request)
        query = paging.ListQuery(request, self.prefixes)
        await http.refuse_body(request)
        base = self._base(request)
        items = self.store.iterate(self.spec.kind, principal.account_id, query.before_id)
        body = paging.page(
            request,
            query,
            base,
            self.spec.path,
            self.spec.list_key,
            items,
            lambda item: represent(self.spec, base, item),
        )
        return http.json_response(request, body)

    async def create(self, request: Request) -> Response:
        principal = self._begin(request)
        http.single_query_values(request, ())
        values = fields.validate(await http.json_body(request), self.spec.create_fields)
        store, account_id = self.store, principal.account_id
        token: str | None = None
        item: ApiKey | Credential | BotUser
        if self.spec.kind is BOT_USERS:
            self._check_may_write(principal, None)
            name = values.get("name", "")
            if not name.strip():
                raise errors.BOT_NAME_REQUIRED()
            item = store.create_bot_user(account_id, name, values.get("active", True))
        else:
            owner_id = self._owner(principal, values.get("owner_id"))
            description, metadata = values.get("description", ""), values.get("metadata", "")
            if self.spec.kind is API_KEYS:
                item, token = store.create_api_key(account_id, owner_id, description, metadata)
            else:
                item, token = store.create_credential(
                    account_id, owner_id, description, metadata, values.get("acl", [])
                )
        return http.json_response(request, represent(self.spec, self._base(request), item, token), 201)

    def _owner(self, principal: Principal, reference: str | None) -> str:
        if not reference or reference == principal.owner_id:
            return principal.owner_id  # authenticating checked that the caller is active
        owner_id = self.store.resolve_owner(principal.account_id, reference)
        if owner_id != principal.owner_id and not principal.is_admin:
            raise errors.NOT_ADMIN_FOR_OWNER()
        return owner_id

    async def update(self, request: Request) -> Response:
        principal = self._begin(request)
        resource_id = self._id(request)
        http.single_query_values(request, ())
        body = await http.json_body(request)
        if isinstance(body, dict) and "owner_id" in body and self.spec.kind is not BOT_USERS:
            raise (
                errors.OWNER_IS_PERMANENT_KEY
                if self.spec.kind is API_KEYS
                else errors.OWNER_IS_PERMANENT_CREDENTIAL
            )()
        values = fields.validate(body, self.spec.update_fields)
        if not values:
            raise errors.NOTHING_TO_UPDATE()
        if "name" in values and not values["name"].strip():
            raise errors.BOT_NAME_REQUIRED()
        existing = self.store.get(self.spec.kind, principal.account_id, resource_id)
        if existing is None:
            raise errors.NOT_FOUND()
        self._check_may_write(principal, getattr(existing, "owner_id", None))
        item = self.store.update(self.spec.kind, principal.account_id, resource_id, values)
        if item is None:
            raise errors.NOT_FOUND()
        return http.json_response(request, represent(self.spec, self._base(request), item))

    async def delete(self, request: Request) -> Response:
        principal = self._begin(request)
        resource_id = self._id(request)
        http.single_query_values(request, ())
        await http.refuse_body(request)
        existing = self.store.get(self.spec.kind, principal.account_id, resource_id)
        if existing is None:
            raise errors.NOT_FOUND()
        self._check_may_write(principal, getattr(existing, "owner_id", None))
        if not self.store.delete(self.spec.kind, principal.account_id, resource_id):
            raise errors.NOT_FOUND()
        return http.empty_response(request)
