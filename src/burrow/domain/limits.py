"""What one client may cost Burrow's listeners: sizes, timeouts, connection caps.

One settings dataclass per kind of listener (the REST API, the agent listener, the public
listeners), the fitting of their connection caps to the process's file limit, and the
:class:`Admission` counter every listener checks its caps with. docs/limits.md and
docs/edge.md give the reasoning for each default.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

KIB = 1024


@dataclass(frozen=True)
class ApiLimits:
    """The REST API's HTTP listener."""

    max_head_bytes: int = 64 * KIB  # request line plus headers
    max_headers: int = 100
    head_timeout: float = 10.0  # from the first byte of a request (or the connection) to its last header
    body_timeout: float = 10.0  # the longest silence while a request body is being received
    keepalive_timeout: float = 5.0  # an idle connection between requests
    max_connections: int = 512
    max_connections_per_client: int = 64


@dataclass(frozen=True)
class AgentLimits:
    """The agent (muxado over TLS) listener."""

    tls_handshake_timeout: float = 10.0
    auth_timeout: float = 10.0  # from the TCP connection to a completed Auth
    max_message_bytes: int = 256 * KIB  # one JSON message on a typed stream
    max_message_depth: int = 32  # nesting of objects and arrays in one message
    max_connections: int = 1000
    max_connections_per_client: int = 64


@dataclass(frozen=True)
class PublicLimits:
    """The public HTTP, HTTPS, TLS and TCP listeners; defaults fit for the internet."""

    max_head_bytes: int = 64 * KIB  # request line and header fields (431 past it)
    max_headers: int = 100  # header fields in one request (431 past it)
    tls_handshake_timeout: float = 10.0  # HTTPS handshake
    head_timeout: float = 15.0  # from a connection's start, or a request's first byte, to its whole head
    body_timeout: float = 30.0  # longest silence within a request body
    idle_timeout: float = 60.0  # keep-alive: a connection between requests
    max_connections: int = 10_000  # open at once on one listener
    max_connections_per_client: int = 64  # open at once from one client address, all listeners together


# Descriptors kept for what is not a client connection: the database, logs, the listening
# sockets other than the TCP tunnel ports (counted separately), and refusing one more client.
FIXED_DESCRIPTORS = 64
# The public listeners whose connections are counted apart: HTTP, HTTPS, TLS, and the TCP
# tunnel ports together.
PUBLIC_LISTENERS = 4
MIN_CAP = 8


_Limits = TypeVar("_Limits", ApiLimits, AgentLimits, PublicLimits)


def fit_to_descriptors(
    api: ApiLimits, agent: AgentLimits, public: PublicLimits, descriptor_limit: int, listening_sockets: int
) -> tuple[ApiLimits, AgentLimits, PublicLimits]:
    """Connection caps that fit the process's file limit, so that no listener runs out of fds.

    Of the descriptors left after the fixed ones and the listening sockets, the API and
    agent listeners together get at most half (both scaled down in proportion if their caps
    add up to more), and the public listeners the other half, shared equally by the four of
    them. No cap goes below 8, and no per-client cap above its listener's cap.
    """
    share = (descriptor_limit - FIXED_DESCRIPTORS - listening_sockets) // 2
    wanted = api.max_connections + agent.max_connections
    if wanted > share:
        api = _capped(api, api.max_connections * share // wanted)
        agent = _capped(agent, agent.max_connections * share // wanted)
    if public.max_connections > share // PUBLIC_LISTENERS:
        public = _capped(public, share // PUBLIC_LISTENERS)
    return api, agent, public


def _capped(limits: _Limits, cap: int) -> _Limits:
    cap = max(MIN_CAP, cap)
    return dataclasses.replace(
        limits, max_connections=cap, max_connections_per_client=min(limits.max_connections_per_client, cap)
    )


class Admission:
    """Open connections counted against two caps: per listener, and per client address over
    all the listeners that share this counter (one listener needs no name)."""

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections = max_connections  # per listener
        self.max_per_client = max_per_client
        self._per_listener: Counter[str] = Counter()
        self._per_client: Counter[str] = Counter()
        # Since start, per listener: read by the metrics at scrape time.
        self.accepted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def open(self, listener: str = "") -> int:
        """Open connections on one listener."""
        return self._per_listener[listener]

    @property
    def total(self) -> int:
        """Open connections on all the listeners together."""
        return self._per_listener.total()

    def admit(self, client: str, listener: str = "", per_client: bool = True) -> str | None:
        """Count the connection in, or the reason it may not open (nothing is counted then);
        ``per_client=False`` for a trusted proxy's, which carry many clients."""
        if self._per_listener[listener] >= self.max_connections:
            self.refused[listener] += 1
            return f"the listener has {self.max_connections} connections open"
        if per_client and self._per_client[client] >= self.max_per_client:
            self.refused[listener] += 1
            return f"{self.max_per_client} connections from {client} are open"
        self.accepted[listener] += 1
        self._per_listener[listener] += 1
        self._per_client[client] += 1
        return None

    def release(self, client: str, listener: str = "") -> None:
        for table, key in ((self._per_listener, listener), (self._per_client, client)):
            table[key] -= 1
            if table[key] <= 0:
                del table[key]
