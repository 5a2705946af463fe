"""What one client may cost the API and agent listeners: sizes, timeouts, connection caps.

One settings dataclass per listener; docs/limits.md gives the reasoning for each default.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

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


# Descriptors kept for what is not a client connection: the database, logs, the listening
# sockets other than the TCP tunnel ports (counted separately), and refusing one more client.
FIXED_DESCRIPTORS = 64


def fit_to_descriptors(
    api: ApiLimits, agent: AgentLimits, descriptor_limit: int, listening_sockets: int
) -> tuple[ApiLimits, AgentLimits]:
    """Caps that fit the process's file limit, so that the listeners never run out of fds.

    The API and agent listeners together get at most half of the descriptors left after the
    fixed ones; the other half stays for the public listeners' connections. If their caps
    add up to more, both are scaled down in proportion (to at least 8 each).
    """
    share = (descriptor_limit - FIXED_DESCRIPTORS - listening_sockets) // 2
    wanted = api.max_connections + agent.max_connections
    if wanted <= share:
        return api, agent
    api_cap = max(8, api.max_connections * share // wanted)
    agent_cap = max(8, agent.max_connections * share // wanted)
    return (
        dataclasses.replace(
            api,
            max_connections=api_cap,
            max_connections_per_client=min(api.max_connections_per_client, api_cap),
        ),
        dataclasses.replace(
            agent,
            max_connections=agent_cap,
            max_connections_per_client=min(agent.max_connections_per_client, agent_cap),
        ),
    )


class Admission:
    """Counts open connections, overall and per client address, against two caps."""

    def __init__(self, max_connections: int, max_per_client: int) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.total = 0
        self._per_client: Counter[str] = Counter()

    def admit(self, client: str) -> str | None:
        """Count the connection in, or the reason it may not open (nothing is counted then)."""
        if self.total >= self.max_connections:
            return f"the listener has {self.max_connections} connections open"
        if self._per_client[client] >= self.max_per_client:
            return f"{self.max_per_client} connections from {client} are open"
        self.total += 1
        self._per_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
