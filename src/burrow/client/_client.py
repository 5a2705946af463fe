"""``Client`` and ``AsyncClient``: the same services, on httpx, sync and async."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from . import _calls as calls
from ._calls import Call, Page, Resource
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
VERSION = "0.1.0"
USER_AGENT = f"burrow-client/{VERSION}"


def _settings(api_key: str | None, base_url: str | None) -> tuple[str, str]:
    key = api_key or os.environ.get("BURROW_API_KEY")
    if not key:
        raise ValueError("no API key: pass api_key=... or set BURROW_API_KEY")
    url = base_url or os.environ.get("BURROW_API_URL") or calls.DEFAULT_BASE_URL
    return key, url.rstrip("/")


# Sync ------------------------------------------------------------------------------


class _PageView(Generic[T]):
    """What both listings show of their first page."""

    def __init__(self, first: Page[T]) -> None:
        self.page = first

    @property
    def items(self) -> list[T]:
        return self.page.items

    @property
    def next_page_uri(self) -> str | None:
        return self.page.next_page_uri

    @property
    def uri(self) -> str:
        return self.page.uri

    def __getattr__(self, name: str) -> list[T]:
        # The official client's list objects name their items after the API's list key.
        if name == self.page.list_key:
            return self.page.items
        raise AttributeError(name)


class Listing(_PageView[T]):
    """A list result: the first page now, later pages as you iterate (``for item in ...``)."""

    def __init__(self, client: Client, resource: Resource[T], first: Page[T]) -> None:
        super().__init__(first)
        self._client = client
        self._resource = resource

    def __iter__(self) -> Iterator[T]:
        page = self.page
        while True:
            yield from page.items
            if page.next_page_uri is None:
                return
            page = self._client._send(self._resource.next_page(page.next_page_uri))


class Client:
    """Burrow's API, synchronously. ``with Client(...) as client:`` closes its connections.

    ``client.credentials.create(description="laptop", acl=["bind:*.example.com"])``
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key, self.base_url = _settings(api_key, base_url)
        self.max_retries = max_retries
        self.backoff = backoff
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=calls.headers(key, USER_AGENT),
            timeout=timeout,
            transport=transport,
        )
        self.api_keys = APIKeysClient(self)
        self.credentials = CredentialsClient(self)
        self.ssh_credentials = SshCredentialsClient(self)
        self.bot_users = BotUsersClient(self, calls.BOT_USERS)
        self.service_users = BotUsersClient(self, calls.SERVICE_USERS)
        self.tunnel_sessions = TunnelSessionsClient(self)
        self.tunnels = TunnelsClient(self)
        self.endpoints = EndpointsClient(self)
        self.audit_events = AuditEventsClient(self)
        self.reserved_domains = ReservedDomainsClient(self)
        self.reserved_addrs = ReservedAddrsClient(self)
        self.tls_certificates = TlsCertificatesClient(self)

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(call.method, call.path, **calls.request_kwargs(call))
            except httpx.TransportError as error:
                if attempt >= self.max_retries or not calls.should_retry(call.method, None, error):
                    raise
            else:
                if attempt >= self.max_retries or not calls.should_retry(call.method, response, None):
                    return calls.read(response, call.parse)
            time.sleep(calls.retry_delay(attempt, response, self.backoff))
            attempt += 1

    def _list(
        self, resource: Resource[T], before_id: str | None, limit: str | int | None, filter: str | None
    ) -> Listing[T]:
        return Listing(self, resource, self._send(resource.list(before_id, limit, filter)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class APIKeysClient:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._r = calls.API_KEYS.bound(self)

    def create(self, description: str = "", metadata: str = "", owner_id: str | None = None) -> ApiKey:
        return self._c._send(
            self._r.create({"description": description, "metadata": metadata, "owner_id": owner_id})
        )

    def get(self, id: str) -> ApiKey:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[ApiKey]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(self, id: str, description: str | None = None, metadata: str | None = None) -> ApiKey:
        return self._c._send(self._r.update(id, {"description": description, "metadata": metadata}))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class CredentialsClient:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._r = calls.CREDENTIALS.bound(self)

    def create(
        self,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] | None = None,
        owner_id: str | None = None,
    ) -> Credential:
        body = {
            "description": description,
            "metadata": metadata,
            "acl": calls.acl_list(acl),
            "owner_id": owner_id,
        }
        return self._c._send(self._r.create(body))

    def get(self, id: str) -> Credential:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[Credential]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(
        self,
        id: str,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
    ) -> Credential:
        body = {"description": description, "metadata": metadata, "acl": calls.acl_list(acl)}
        return self._c._send(self._r.update(id, body))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class SshCredentialsClient:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._r = calls.SSH_CREDENTIALS.bound(self)

    def create(
        self,
        public_key: str,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] | None = None,
        owner_id: str | None = None,
    ) -> SshCredential:
        body = {
            "public_key": public_key,
            "description": description,
            "metadata": metadata,
            "acl": calls.acl_list(acl),
            "owner_id": owner_id,
        }
        return self._c._send(self._r.create(body))

    def get(self, id: str) -> SshCredential:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[SshCredential]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(
        self,
        id: str,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
    ) -> SshCredential:
        body = {"description": description, "metadata": metadata, "acl": calls.acl_list(acl)}
        return self._c._send(self._r.update(id, body))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class BotUsersClient:
    def __init__(self, client: Client, resource: Resource[BotUser]) -> None:
        self._c = client
        self._r = resource.bound(self)

    def create(self, name: str | None = None, active: bool | None = None) -> BotUser:
        return self._c._send(self._r.create({"name": name, "active": active}))

    def get(self, id: str) -> BotUser:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[BotUser]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(self, id: str, name: str | None = None, active: bool | None = None) -> BotUser:
        return self._c._send(self._r.update(id, {"name": name, "active": active}))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class TunnelSessionsClient:
    def __init__(self, client: Client) -> None:
        self._c = client

    def get(self, id: str) -> TunnelSession:
        return self._c._send(calls.TUNNEL_SESSIONS.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[TunnelSession]:
        return self._c._list(calls.TUNNEL_SESSIONS, before_id, limit, filter)

    def stop(self, id: str) -> None:
        self._c._send(Call("POST", f"/tunnel_sessions/{calls.segment(id)}/stop", calls.none))


class TunnelsClient:
    def __init__(self, client: Client) -> None:
        self._c = client

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[Tunnel]:
        return self._c._list(calls.TUNNELS, before_id, limit, filter)


class EndpointsClient:
    """Endpoints online, across your agent sessions (read-only: agents make them)."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def get(self, id: str) -> Endpoint:
        return self._c._send(calls.ENDPOINTS.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[Endpoint]:
        return self._c._list(calls.ENDPOINTS, before_id, limit, filter)


class AuditEventsClient:
    """The audit trail: read-only, for admins."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def get(self, id: str) -> AuditEvent:
        return self._c._send(calls.AUDIT_EVENTS.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[AuditEvent]:
        return self._c._list(calls.AUDIT_EVENTS, before_id, limit, filter)


# Async -----------------------------------------------------------------------------


class ReservedDomainsClient:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._r = calls.RESERVED_DOMAINS.bound(self)

    def create(
        self,
        domain: str,
        description: str = "",
        metadata: str = "",
        certificate_management_policy: Mapping[str, str] | None = None,
        certificate_id: str | None = None,
    ) -> ReservedDomain:
        body: dict[str, Any] = {"domain": domain, "description": description, "metadata": metadata}
        if certificate_management_policy is not None:
            body["certificate_management_policy"] = dict(certificate_management_policy)
        if certificate_id is not None:
            body["certificate_id"] = certificate_id
        return self._c._send(self._r.create(body))

    def get(self, id: str) -> ReservedDomain:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[ReservedDomain]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(
        self,
        id: str,
        description: str | None = None,
        metadata: str | None = None,
        certificate_id: str | None = None,
    ) -> ReservedDomain:
        """``certificate_id`` "" stops serving an uploaded certificate for the domain."""
        body = {"description": description, "metadata": metadata, "certificate_id": certificate_id}
        return self._c._send(self._r.update(id, body))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class ReservedAddrsClient:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._r = calls.RESERVED_ADDRS.bound(self)

    def create(self, description: str = "", metadata: str = "", addr: str | None = None) -> ReservedAddr:
        """``addr`` (host:port) is Burrow's: without it the server assigns a free address."""
        body = {"description": description, "metadata": metadata, "addr": addr}
        return self._c._send(self._r.create(body))

    def get(self, id: str) -> ReservedAddr:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[ReservedAddr]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(self, id: str, description: str | None = None, metadata: str | None = None) -> ReservedAddr:
        return self._c._send(self._r.update(id, {"description": description, "metadata": metadata}))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class TlsCertificatesClient:
    def __init__(self, client: Client) -> None:
        self._c = client
        self._r = calls.TLS_CERTIFICATES.bound(self)

    def create(
        self, certificate_pem: str, private_key_pem: str, description: str = "", metadata: str = ""
    ) -> TlsCertificate:
        body = {
            "certificate_pem": certificate_pem,
            "private_key_pem": private_key_pem,
            "description": description,
            "metadata": metadata,
        }
        return self._c._send(self._r.create(body))

    def get(self, id: str) -> TlsCertificate:
        return self._c._send(self._r.get(id))

    def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> Listing[TlsCertificate]:
        return self._c._list(self._r, before_id, limit, filter)

    def update(self, id: str, description: str | None = None, metadata: str | None = None) -> TlsCertificate:
        return self._c._send(self._r.update(id, {"description": description, "metadata": metadata}))

    def delete(self, id: str) -> None:
        self._c._send(self._r.delete(id))


class AsyncListing(_PageView[T]):
    """A list result: the first page now, later pages as you iterate (``async for``)."""

    def __init__(self, client: AsyncClient, resource: Resource[T], first: Page[T]) -> None:
        super().__init__(first)
        self._client = client
        self._resource = resource

    async def __aiter__(self) -> AsyncIterator[T]:
        page = self.page
        while True:
            for item in page.items:
                yield item
            if page.next_page_uri is None:
                return
            page = await self._client._send(self._resource.next_page(page.next_page_uri))


class AsyncClient:
    """Burrow's API, asynchronously. ``async with AsyncClient(...) as client:``."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key, self.base_url = _settings(api_key, base_url)
        self.max_retries = max_retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=calls.headers(key, USER_AGENT),
            timeout=timeout,
            transport=transport,
        )
        self.api_keys = AsyncAPIKeysClient(self)
        self.credentials = AsyncCredentialsClient(self)
        self.ssh_credentials = AsyncSshCredentialsClient(self)
        self.bot_users = AsyncBotUsersClient(self, calls.BOT_USERS)
        self.service_users = AsyncBotUsersClient(self, calls.SERVICE_USERS)
        self.tunnel_sessions = AsyncTunnelSessionsClient(self)
        self.tunnels = AsyncTunnelsClient(self)
        self.endpoints = AsyncEndpointsClient(self)
        self.audit_events = AsyncAuditEventsClient(self)
        self.reserved_domains = AsyncReservedDomainsClient(self)
        self.reserved_addrs = AsyncReservedAddrsClient(self)
        self.tls_certificates = AsyncTlsCertificatesClient(self)

    async def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(call.method, call.path, **calls.request_kwargs(call))
            except httpx.TransportError as error:
                if attempt >= self.max_retries or not calls.should_retry(call.method, None, error):
                    raise
            else:
                if attempt >= self.max_retries or not calls.should_retry(call.method, response, None):
                    return calls.read(response, call.parse)
            await asyncio.sleep(calls.retry_delay(attempt, response, self.backoff))
            attempt += 1

    async def _list(
        self, resource: Resource[T], before_id: str | None, limit: str | int | None, filter: str | None
    ) -> AsyncListing[T]:
        return AsyncListing(self, resource, await self._send(resource.list(before_id, limit, filter)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class AsyncAPIKeysClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._r = calls.API_KEYS.bound(self)

    async def create(self, description: str = "", metadata: str = "", owner_id: str | None = None) -> ApiKey:
        return await self._c._send(
            self._r.create({"description": description, "metadata": metadata, "owner_id": owner_id})
        )

    async def get(self, id: str) -> ApiKey:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[ApiKey]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(self, id: str, description: str | None = None, metadata: str | None = None) -> ApiKey:
        return await self._c._send(self._r.update(id, {"description": description, "metadata": metadata}))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))


class AsyncCredentialsClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._r = calls.CREDENTIALS.bound(self)

    async def create(
        self,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] | None = None,
        owner_id: str | None = None,
    ) -> Credential:
        body = {
            "description": description,
            "metadata": metadata,
            "acl": calls.acl_list(acl),
            "owner_id": owner_id,
        }
        return await self._c._send(self._r.create(body))

    async def get(self, id: str) -> Credential:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[Credential]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(
        self,
        id: str,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
    ) -> Credential:
        body = {"description": description, "metadata": metadata, "acl": calls.acl_list(acl)}
        return await self._c._send(self._r.update(id, body))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))


class AsyncSshCredentialsClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._r = calls.SSH_CREDENTIALS.bound(self)

    async def create(
        self,
        public_key: str,
        description: str = "",
        metadata: str = "",
        acl: Sequence[str] | None = None,
        owner_id: str | None = None,
    ) -> SshCredential:
        body = {
            "public_key": public_key,
            "description": description,
            "metadata": metadata,
            "acl": calls.acl_list(acl),
            "owner_id": owner_id,
        }
        return await self._c._send(self._r.create(body))

    async def get(self, id: str) -> SshCredential:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[SshCredential]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(
        self,
        id: str,
        description: str | None = None,
        metadata: str | None = None,
        acl: Sequence[str] | None = None,
    ) -> SshCredential:
        body = {"description": description, "metadata": metadata, "acl": calls.acl_list(acl)}
        return await self._c._send(self._r.update(id, body))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))


class AsyncBotUsersClient:
    def __init__(self, client: AsyncClient, resource: Resource[BotUser]) -> None:
        self._c = client
        self._r = resource.bound(self)

    async def create(self, name: str | None = None, active: bool | None = None) -> BotUser:
        return await self._c._send(self._r.create({"name": name, "active": active}))

    async def get(self, id: str) -> BotUser:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[BotUser]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(self, id: str, name: str | None = None, active: bool | None = None) -> BotUser:
        return await self._c._send(self._r.update(id, {"name": name, "active": active}))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))


class AsyncTunnelSessionsClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def get(self, id: str) -> TunnelSession:
        return await self._c._send(calls.TUNNEL_SESSIONS.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[TunnelSession]:
        return await self._c._list(calls.TUNNEL_SESSIONS, before_id, limit, filter)

    async def stop(self, id: str) -> None:
        await self._c._send(Call("POST", f"/tunnel_sessions/{calls.segment(id)}/stop", calls.none))


class AsyncTunnelsClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[Tunnel]:
        return await self._c._list(calls.TUNNELS, before_id, limit, filter)


class AsyncEndpointsClient:
    """Endpoints online, across your agent sessions (read-only: agents make them)."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def get(self, id: str) -> Endpoint:
        return await self._c._send(calls.ENDPOINTS.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[Endpoint]:
        return await self._c._list(calls.ENDPOINTS, before_id, limit, filter)


class AsyncAuditEventsClient:
    """The audit trail: read-only, for admins."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def get(self, id: str) -> AuditEvent:
        return await self._c._send(calls.AUDIT_EVENTS.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[AuditEvent]:
        return await self._c._list(calls.AUDIT_EVENTS, before_id, limit, filter)


__all__ = ["AsyncClient", "AsyncListing", "Client", "Listing"]


class AsyncReservedDomainsClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._r = calls.RESERVED_DOMAINS.bound(self)

    async def create(
        self,
        domain: str,
        description: str = "",
        metadata: str = "",
        certificate_management_policy: Mapping[str, str] | None = None,
        certificate_id: str | None = None,
    ) -> ReservedDomain:
        body: dict[str, Any] = {"domain": domain, "description": description, "metadata": metadata}
        if certificate_management_policy is not None:
            body["certificate_management_policy"] = dict(certificate_management_policy)
        if certificate_id is not None:
            body["certificate_id"] = certificate_id
        return await self._c._send(self._r.create(body))

    async def get(self, id: str) -> ReservedDomain:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[ReservedDomain]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(
        self,
        id: str,
        description: str | None = None,
        metadata: str | None = None,
        certificate_id: str | None = None,
    ) -> ReservedDomain:
        body = {"description": description, "metadata": metadata, "certificate_id": certificate_id}
        return await self._c._send(self._r.update(id, body))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))


class AsyncReservedAddrsClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._r = calls.RESERVED_ADDRS.bound(self)

    async def create(
        self, description: str = "", metadata: str = "", addr: str | None = None
    ) -> ReservedAddr:
        """``addr`` (host:port) is Burrow's: without it the server assigns a free address."""
        body = {"description": description, "metadata": metadata, "addr": addr}
        return await self._c._send(self._r.create(body))

    async def get(self, id: str) -> ReservedAddr:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[ReservedAddr]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(
        self, id: str, description: str | None = None, metadata: str | None = None
    ) -> ReservedAddr:
        return await self._c._send(self._r.update(id, {"description": description, "metadata": metadata}))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))


class AsyncTlsCertificatesClient:
    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._r = calls.TLS_CERTIFICATES.bound(self)

    async def create(
        self, certificate_pem: str, private_key_pem: str, description: str = "", metadata: str = ""
    ) -> TlsCertificate:
        body = {
            "certificate_pem": certificate_pem,
            "private_key_pem": private_key_pem,
            "description": description,
            "metadata": metadata,
        }
        return await self._c._send(self._r.create(body))

    async def get(self, id: str) -> TlsCertificate:
        return await self._c._send(self._r.get(id))

    async def list(
        self, before_id: str | None = None, limit: str | int | None = None, filter: str | None = None
    ) -> AsyncListing[TlsCertificate]:
        return await self._c._list(self._r, before_id, limit, filter)

    async def update(
        self, id: str, description: str | None = None, metadata: str | None = None
    ) -> TlsCertificate:
        return await self._c._send(self._r.update(id, {"description": description, "metadata": metadata}))

    async def delete(self, id: str) -> None:
        await self._c._send(self._r.delete(id))
