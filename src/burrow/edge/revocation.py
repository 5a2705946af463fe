"""The revocation watcher: sessions whose credential was deleted or whose owner was
deactivated end, and tunnels their credential's ACL no longer allows stop.

The database is read in a worker thread (bounded by :data:`CHECK_TIMEOUT`); the sessions
and the registry are changed on the event loop only.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from burrow.domain import errors
from burrow.domain.acl import BindPolicy
from burrow.domain.errors import BurrowError
from burrow.domain.models import Credential, SshCredential
from burrow.domain.tunnels import AgentSession, Registry, Tunnel
from burrow.store.store import AuthRecord, Store

from . import wire
from .agent import AgentConnection
from .control import AgentControl, credential_kind

log = logging.getLogger("burrow.edge")
CHECK_TIMEOUT = 5.0  # seconds a round's database reads may take before the round counts as failed

# What the database says of one session's credential: its auth record and its stored record,
# or why it could not be read.
_Found = tuple[AuthRecord | None, Credential | SshCredential | None] | Exception


@dataclass(frozen=True)
class RevocationPolicy:
    # How long revocations may go unchecked (the database unreachable) before the edge
    # refuses new sessions and binds.
    fail_closed_after: float
    tcp_host: str  # TCP tunnels' host, which ACLs name


class RevocationWatcher:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        control: AgentControl,
        agents: dict[str, AgentConnection],
        policy: RevocationPolicy,
        next_round: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.store = store
        self.registry = registry
        self.control = control
        self.agents = agents  # the edge's sessions by id, shared
        self.policy = policy
        self._next_round = next_round
        self._spawn = spawn
        self.revocations = 0  # sessions ended because their credential or owner was revoked
        self.database_errors = 0  # failed revocation checks
        # The ACL each session's tunnels were last checked against.
        self._checked_acls: weakref.WeakKeyDictionary[AgentConnection, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self) -> None:
        """Check every round. A failed check is logged, never skipped quietly. While checks
        fail for longer than ``fail_closed_after``, the edge starts no session and binds nothing."""
        loop = asyncio.get_running_loop()
        failing_since: float | None = None
        bound = self.policy.fail_closed_after
        while True:
            await self._next_round()
            try:
                await self.check()
            except Exception as error:
                now = loop.time()
                if failing_since is None:
                    failing_since = now
                    log.warning(
                        "revocation check failed; retrying",
                        extra={"fields": {"error": str(error) or type(error).__name__}},
                    )
                else:
                    log.warning(
                        "revocation check failed again",
                        extra={
                            "fields": {
                                "error": str(error) or type(error).__name__,
                                "failing_for_s": round(now - failing_since),
                            }
                        },
                    )
                if self.control.refusal is None and now - failing_since >= bound:
                    self.control.refusal = errors.REVOCATION_UNCHECKED(seconds=f"{now - failing_since:.0f}")
                    log.error(
                        "failing closed: revocations unchecked, refusing new agent sessions and binds",
                        extra={"fields": {"failing_for_s": round(now - failing_since, 1)}},
                    )
                continue
            if failing_since is not None:
                log.warning(
                    "revocation checks resumed",
                    extra={"fields": {"failed_for_s": round(loop.time() - failing_since, 1)}},
                )
                failing_since = None
            if self.control.refusal is not None:
                self.control.refusal = None
                log.warning("no longer failing closed: accepting agent sessions and binds again")

    async def check(self) -> None:
        """One round: every session's credential (or, with none, that the database answers).

        A session whose check fails is logged and the others are still checked; the first
        failure is raised after the round, so that the watcher can fail closed."""
        sessions = [
            (session_id, agent, agent.authenticated.session)
            for session_id, agent in list(self.agents.items())
            if agent.authenticated is not None
        ]
        read = asyncio.to_thread(self._read, [session for _, _, session in sessions])
        found = await asyncio.wait_for(read, CHECK_TIMEOUT)
        failure: Exception | None = None
        for (session_id, agent, session), result in zip(sessions, found, strict=True):
            if isinstance(result, Exception):
                self.database_errors += 1
                log.warning(
                    "revocation check failed",
                    extra={"fields": {"session": session_id, "error": str(result) or type(result).__name__}},
                )
                failure = failure or result
            elif self.agents.get(session_id) is agent:  # still here after the read
                self._apply(session_id, agent, session, *result)
        if failure is not None:
            raise failure

    def _read(self, sessions: list[AgentSession]) -> list[_Found]:
        """In a worker thread: each session's credential, as the database has it now."""
        found: list[_Found] = []
        for session in sessions:
            try:
                kind = credential_kind(session.credential_id)  # an authtoken's or an SSH key's
                record = self.store.auth_record(kind.name, session.credential_id)
                credential = self.store.get(kind, session.account_id, session.credential_id)
                found.append((record, credential))
            except Exception as error:
                found.append(error)
        if not sessions and not self.store.is_reachable():
            raise errors.DATABASE_UNAVAILABLE()
        return found

    def _apply(
        self,
        session_id: str,
        agent: AgentConnection,
        session: AgentSession,
        record: AuthRecord | None,
        credential: Credential | SshCredential | None,
    ) -> None:
        """On the loop: end the session, or stop the tunnels its credential no longer allows."""
        if record is None or not record.owner_active or credential is None:
            reason = f"credential {session.credential_id} revoked"
            log.info("revoking agent session", extra={"fields": {"session": session_id, "reason": reason}})
            self.agents.pop(session_id, None)
            self.revocations += 1
            self._spawn(agent.stop(reason, "ERR_NGROK_300"))
            return
        # An ACL is parsed again only when it differs from the one this session's tunnels
        # were last checked against (every tunnel bound since was checked at its bind).
        if self._checked_acls.get(agent) == credential.acl:
            return
        policy = BindPolicy.from_rules(credential.acl)
        for tunnel in list(session.tunnels.values()):
            denial = self._denial(policy, tunnel, session.credential_id)
            if denial is None:
                continue
            self.registry.remove_tunnel(session_id, tunnel.id)
            log.info(
                "stopping tunnel no longer allowed by its credential's ACL",
                extra={"fields": {"session": session_id, "tunnel": tunnel.id, "error": denial.code}},
            )
            self._spawn(agent.send_command(wire.StopTunnel(tunnel.id, denial.message, denial.code)))
        self._checked_acls[agent] = credential.acl

    def _denial(self, policy: BindPolicy, tunnel: Tunnel, credential_id: str) -> BurrowError | None:
        """Why ``policy`` would refuse ``tunnel``'s bind today, or None if it allows it."""
        if tunnel.proto == "labeled":
            if policy.allows_labels(tunnel.labels):
                return None
            shown = ", ".join(f"{k}={v}" for k, v in tunnel.labels.items())
            return errors.LABEL_DENIED(labels=shown, id=credential_id)
        if tunnel.proto == "tcp":
            host = self.policy.tcp_host
            if tunnel.port is not None and policy.allows_address(host, tunnel.port):
                return None
            return errors.TCP_ADDRESS_DENIED(addr=f"{host}:{tunnel.port}", id=credential_id)
        if tunnel.hostname is not None and policy.allows_hostname(tunnel.hostname):
            return None
        return errors.HOSTNAME_DENIED(name=tunnel.hostname, id=credential_id)
