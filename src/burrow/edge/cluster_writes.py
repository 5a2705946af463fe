"""The cluster registry's writes and the control's reads, off the event loop.

A slow or locked database must not stall the tunnels a node carries, so nothing the
agent control asks of the database runs on the loop. Writes to the shared registry (a
session's row, a tunnel's claim on its name, their removal) run on one worker thread, in
the order the edge made them: a release queued before a claim of the same name lands
first, so no claim is refused by a row on its way out. The loop awaits what an answer
depends on (a session's row, a claim) up to :data:`DATABASE_WAIT` seconds, and never
waits for a removal (the cluster registry keeps and retries those that fail).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from burrow.domain import errors
from burrow.domain.tunnels import AgentSession, RegistryUnavailable, Tunnel
from burrow.store.cluster import ClusterRegistry

T = TypeVar("T")
log = logging.getLogger("burrow.edge")

# How long an agent's Auth or Bind waits for the database before it is refused (503): long
# enough to ride out a lock held for seconds, well inside the agent's own RPC timeout.
DATABASE_WAIT = 8.0


async def read(query: Callable[[], T], wait: float = DATABASE_WAIT) -> T:
    """``query()`` run on a worker thread; ERR_NGROK_90504 if it takes longer than ``wait``."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(query), wait)
    except TimeoutError:
        raise errors.DATABASE_UNAVAILABLE() from None


class ClusterWrites:
    """The edge's :class:`~burrow.domain.tunnels.RegistryMirror`: the registry's removals
    are queued, never awaited; :meth:`claim_session` and :meth:`claim_name` are
    awaited by the agent control around the registry's two-step bind."""

    def __init__(self, cluster: ClusterRegistry, wait: float = DATABASE_WAIT) -> None:
        self.cluster = cluster
        self.wait = wait
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="burrow-cluster-writes")

    def _queue(self, write: Callable[[], object]) -> Future[object]:
        return self._worker.submit(write)

    async def _awaited(self, write: Callable[[], object], undo: Callable[[], object]) -> None:
        future = self._queue(write)
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), self.wait)
        except RegistryUnavailable:
            raise errors.REGISTRY_UNAVAILABLE() from None
        except (TimeoutError, asyncio.CancelledError) as error:
            if not future.cancel():
                # It ran or is running: whatever it wrote is undone, in order, after it.
                self._queue(undo)
            if isinstance(error, asyncio.CancelledError):
                raise
            raise errors.REGISTRY_UNAVAILABLE() from None

    async def claim_session(self, session: AgentSession) -> None:
        await self._awaited(
            lambda: self.cluster.add_session(session), lambda: self.cluster.remove_session(session.id)
        )

    async def claim_name(
        self,
        tunnel: Tunnel,
        account_id: str,
        reconnecting_from: str | None,
        replacing: Tunnel | None,
        keep_binding: bool,
    ) -> None:
        """Claim the tunnel's name cluster-wide; raises BindConflict if another holds it,
        ERR_NGROK_90502 if the database does not answer in time."""
        await self._awaited(
            lambda: self.cluster.claim_tunnel(tunnel, account_id, reconnecting_from, replacing),
            lambda: self.cluster.release_tunnel(tunnel, keep_binding),
        )

    async def update_endpoint(self, before: Tunnel, after: Tunnel) -> None:
        """``after`` (a patched copy of the live ``before``) written to the cluster registry."""
        await self._awaited(
            lambda: self.cluster.update_endpoint(after), lambda: self.cluster.update_endpoint(before)
        )

    async def run(self, write: Callable[[], object]) -> None:
        """``write()`` run in its turn after the writes queued before it, awaited."""
        await asyncio.wrap_future(self._queue(write))

    def close(self) -> None:
        """No more writes; the queued ones still run."""
        self._worker.shutdown(wait=False)

    # RegistryMirror ----------------------------------------------------------------------
    # Synchronous claims block their caller until the worker has run them, so they are for
    # callers off the loop; the edge awaits the two methods above instead.

    def add_session(self, session: AgentSession) -> None:
        self._queue(lambda: self.cluster.add_session(session)).result()

    def claim_tunnel(
        self, tunnel: Tunnel, account_id: str, reconnecting_from: str | None, replacing: Tunnel | None
    ) -> None:
        claim = self.cluster.claim_tunnel
        self._queue(lambda: claim(tunnel, account_id, reconnecting_from, replacing)).result()

    def remove_session(self, session_id: str) -> None:
        self._queue(lambda: self.cluster.remove_session(session_id))

    def release_tunnel(self, tunnel: Tunnel, keep_binding: bool) -> None:
        self._queue(lambda: self.cluster.release_tunnel(tunnel, keep_binding))
