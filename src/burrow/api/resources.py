"""Handlers of the stored resources (API keys, credentials, bot users): the same for all.

What differs between resources is in their descriptions (burrow.domain.resources).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
import orjson
from starlette.responses import Response
from starlette.types import Receive

from burrow.domain import errors
from burrow.domain.deadline import Deadline
from burrow.domain.models import Actor, Principal
from burrow.domain.resources import Operation, Resource
from burrow.store.filter_sql import split_filter
from burrow.store.store import KINDS, Store

from . import http, paging
from .endpoints import Call, Handler, check_may_write
from .filtering import TIME_BUDGET, ListFilter, within_budget

# Filtered lists run at most this many at once (most of their time is in the database,
# without the GIL), each account's one at a time: an account's expensive filters wait for
# each other, never in front of another account's.
FILTER_THREADS = anyio.CapacityLimiter(max(2, (os.cpu_count() or 2) - 1))


class PerAccount:
    """One lock per account, held while its filtered list runs; dropped when nobody holds it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, account_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(account_id, (anyio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[account_id]


FILTER_TURNS = PerAccount()


async def _abandon_when_gone(receive: Receive, deadline: Deadline, waiting: anyio.CancelScope) -> None:
    """Wait for the client to go away; then abandon its list: out of its account's queue,
    and a list under way stops at its next check (its thread cannot be cancelled)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    deadline.abandon()
    waiting.cancel()


class StoredHandlers:
    """The five operations of one stored resource, bound to a store."""

    def __init__(
        self,
        resource: Resource,
        store: Store,
        creator: Callable[[Principal, dict[str, Any], Actor | None], Any] | None = None,
    ) -> None:
        self.resource = resource
        self.store = store
        self.kind = KINDS[resource.name]
        # Resources whose create needs more than storing the values (reserved names).
        self.creator = creator

    def handlers(self) -> dict[Operation, Handler]:
        return {
            Operation.LIST: self.list,
            Operation.GET: self.get,
            Operation.CREATE: self.create,
            Operation.UPDATE: self.update,
            Operation.DELETE: self.delete,
        }

    def _existing(self, call: Call) -> Any:
        item = self.store.get(self.kind, call.principal.account_id, call.id)
        if item is None:
            raise errors.NOT_FOUND()
        return item

    async def get(self, call: Call) -> Response:
        def encode(item: Any) -> bytes:
            return orjson.dumps(self.resource.represent(item, call.base))

        # Encoded once per item and base (the Host it is read through), until the data changes.
        body = self.store.get_derived(self.kind, call.principal.account_id, call.id, encode, call.base)
        if body is None:
            raise errors.NOT_FOUND()
        return http.encoded_json_response(call.request, body)

    async def list(self, call: Call) -> Response:
        query = call.query
        assert query is not None
        if not query.filter:
            items = self.store.iterate(self.kind, call.principal.account_id, query.before_id)
            return call.json(paging.page(self.resource, query, call.base, items))
        # Off the event loop: parsing a long expression takes milliseconds, and even a
        # filter SQL answers may scan the whole account.
        deadline = Deadline()
        page: dict[str, Any] | None = None
        failed: Exception | None = None
        async with anyio.create_task_group() as watching:
            watching.start_soon(_abandon_when_gone, call.request.receive, deadline, watching.cancel_scope)
            try:
                async with FILTER_TURNS.turn(call.principal.account_id):
                    # The budget starts once it is this account's turn. A client gone before
                    # then leaves the queue; one gone during the list stops it at its next check.
                    deadline.start(TIME_BUDGET)
                    page = await anyio.to_thread.run_sync(
                        self._filtered_page, call, query.filter, deadline, limiter=FILTER_THREADS
                    )
            except Exception as error:  # raised as itself, not in the task group's ExceptionGroup
                failed = error
            watching.cancel_scope.cancel()
        if failed is not None:
            raise failed
        if page is None:
            return Response(status_code=499)  # nobody reads it: the client is gone
        return call.json(page)

    def _filtered_page(self, call: Call, expression: str, deadline: Deadline) -> dict[str, Any]:
        query = call.query
        assert query is not None
        checked = ListFilter(self.resource.filter_fields, expression)
        columns = self.store.filter_columns(self.kind, f"{call.base}{self.resource.path}/")
        columns = {name: column for name, column in columns.items() if name in self.resource.filter_fields}
        split = split_filter(checked.compiled, columns, checked.now, self.store.dialect())
        items = self.store.iterate(
            self.kind, call.principal.account_id, query.before_id, where=split.condition, deadline=deadline
        )
        if split.residual is None:
            return paging.page(self.resource, query, call.base, items, keep=lambda item: True)
        keep = checked.predicate(split.residual)
        return paging.page(self.resource, query, call.base, within_budget(items, deadline), keep=keep)

    async def create(self, call: Call) -> Response:
        resource, principal = self.resource, call.principal
        values = resource.create_values(call.body)
        if resource.owned:
            values["owner_id"] = self._owner(principal, values.get("owner_id"))
        else:
            check_may_write(resource, principal, None)
        resource.check_required(values, creating=True)
        if self.creator is not None:
            item, token = self.creator(principal, values, call.actor), None
        else:
            item, token = self.store.create(self.kind, principal.account_id, values, call.actor)
        return call.json(resource.represent(item, call.base, token), 201)

    def _owner(self, principal: Principal, reference: str | None) -> str:
        if not reference or reference == principal.owner_id:
            return principal.owner_id  # authenticating checked that the caller is active
        owner_id = self.store.resolve_owner(principal.account_id, reference)
        if owner_id != principal.owner_id and not principal.is_admin:
            raise errors.NOT_ADMIN_FOR_OWNER()
        return owner_id

    async def update(self, call: Call) -> Response:
        values = self.resource.update_values(call.body)
        check_may_write(self.resource, call.principal, self._existing(call))
        item = self.store.update(self.kind, call.principal.account_id, call.id, values, call.actor)
        if item is None:
            raise errors.NOT_FOUND()
        return call.json(self.resource.represent(item, call.base))

    async def delete(self, call: Call) -> Response:
        check_may_write(self.resource, call.principal, self._existing(call))
        if not self.store.delete(self.kind, call.principal.account_id, call.id, call.actor):
            raise errors.NOT_FOUND()
        return call.empty()
