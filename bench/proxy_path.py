"""CPU per small request on the HTTP proxy's Python path, in one process, for A/B runs.

Not a test, and not the end-to-end figure (that is bench/edge.py): no sockets, no TLS, no
agent process. A public connection (``HttpProxyConnection``) and Burrow's muxado
connection run on in-memory transports; the agent side is our own muxado client, which
answers each request at once with a small response. Every request goes through the http1 core,
the proxy's routing and head building, the muxado codec both ways, the response fast path
and the traffic log (to a null handler). Prints microseconds of process CPU per request
(including the agent side and the event loop, the same in both arms of an A/B).

Usage: ``.venv/bin/python bench/proxy_path.py [REQUESTS] [ROUNDS] [policy]``; for an A/B, run
it alternately with two virtualenvs' interpreters (each imports its own ``burrow``). With
``policy``, each round runs twice, alternately: the endpoint without options, then with the
five-rule Traffic Policy below, and prints the difference a request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import uvloop

from burrow.domain.limits import Admission, PublicLimits
from burrow.domain.tunnels import Tunnel
from burrow.edge import traffic
from burrow.edge.http_proxy import HttpProxyConnection
from burrow.edge.muxado_streams import MuxConnection, MuxStream

SMALL = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, burrow"
HOST = "bench.burrow.localhost"
REQUEST = b"GET /path?q=1 HTTP/1.1\r\nHost: %b\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n" % HOST.encode()


class MemoryTransport:
    """Hands what is written straight to the peer protocol (if any); counts bytes."""

    def __init__(self, peer: asyncio.Protocol | None = None) -> None:
        self.peer = peer
        self.written = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.peer is not None:
            self.peer.data_received(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 80)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    abort = close

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None: ...


class Responder:
    """The agent's service: one small response for whatever arrives on its stream."""

    def __init__(self, stream: MuxStream) -> None:
        self.stream = stream
        self.transport = MemoryTransport()

    def write(self, data: bytes) -> None:
        self.stream.send_nowait(SMALL)

    async def drain(self) -> None: ...


class Listeners:
    """Routing for one name to one tunnel; its stream opened on the edge's connection."""

    def __init__(self, edge: MuxConnection, tunnel: Tunnel, with_jwks: bool = False) -> None:
        self.limits = PublicLimits()
        self.admission = Admission(self.limits.max_connections, self.limits.max_connections_per_client)
        self.traffic = {listener: traffic.TrafficCounts() for listener in traffic.LISTENERS}
        self.relay_routes = None
        self._connections: set[Any] = set()
        self.edge, self.tunnel = edge, tunnel
        if with_jwks:  # the policy arm's endpoint has a Traffic Policy: its JWT keys are asked for
            from burrow.edge.jwt_check import JwksFetcher  # (not in older checkouts)

            self.jwks = JwksFetcher()

    def web_tunnel(self, scheme: str, host: str) -> Tunnel | None:
        return self.tunnel if host == HOST else None

    def internal_tunnel(self, account_id: str, host: str) -> Tunnel | None:
        return None

    async def open_proxy(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None:
        return self.edge.open_stream()

    async def relay_out(self, *args: Any) -> None:
        raise AssertionError("one node: nothing is relayed")


# Five rules, as a user might write them: four on the request (none answers), one on the
# response; every expression and interpolation is evaluated on each request.
POLICY = """
on_http_request:
  - expressions: ["req.url.path.startsWith('/admin')"]
    actions: [{type: deny}]
  - actions: [{type: restrict-ips, config: {allow: [127.0.0.0/8]}}]
  - actions: [{type: set-vars, config: {vars: [{agent: "${req.headers['user-agent'][0]}"}]}}]
  - expressions: ["vars.agent == 'wrk'", "req.method == 'GET'"]
    actions: [{type: add-headers, config: {headers: {x-agent: "${vars.agent}"}}}]
on_http_response:
  - expressions: ["res.status_code >= 200"]
    actions: [{type: add-headers, config: {headers: {x-status: "${res.status_code}"}}}]
"""


async def run(requests: int, rounds: int, with_policy: bool) -> None:
    log = logging.getLogger("burrow.traffic")
    log.addHandler(logging.NullHandler())
    log.setLevel(logging.INFO)
    log.propagate = False
    edge, agent = MuxConnection(client_side=False), MuxConnection(client_side=True)
    edge.connection_made(MemoryTransport(agent))  # type: ignore[arg-type]
    agent.connection_made(MemoryTransport(edge))  # type: ignore[arg-type]
    tasks: set[asyncio.Task[None]] = set()

    async def serve() -> None:
        while (stream := await agent.accept_stream()) is not None:
            tasks.add(asyncio.create_task(stream.forward_to(Responder(stream))))

    tasks.add(asyncio.create_task(serve()))
    plain = Tunnel("tn_bench", "ts_bench", "http", f"http://{HOST}", "", "", datetime.now(UTC), hostname=HOST)
    arms = [("plain", plain)]
    if with_policy:
        from burrow.domain.endpoint import EndpointPolicy

        policy = EndpointPolicy.from_opts("http", {"TrafficPolicy": POLICY})
        arms.append(("policy", dataclasses.replace(plain, policy=policy)))

    async def one(proxy: HttpProxyConnection, client: MemoryTransport) -> None:
        before = client.written
        proxy.data_received(REQUEST)
        while client.written == before:
            await asyncio.sleep(0)

    connections = []
    for _, tunnel in arms:
        client = MemoryTransport()
        proxy = HttpProxyConnection(Listeners(edge, tunnel, with_policy), "http")
        proxy.connection_made(client)  # type: ignore[arg-type]
        connections.append((proxy, client))
        for _ in range(200):  # warm up
            await one(proxy, client)
    for _ in range(rounds):
        costs = []
        for proxy, client in connections:
            started = time.process_time()
            for _ in range(requests):
                await one(proxy, client)
            costs.append((time.process_time() - started) * 1e6 / requests)
        if with_policy:
            print(f"{costs[0]:.1f} / {costs[1]:.1f} us/request, the policy adds {costs[1] - costs[0]:.1f} us")
        else:
            print(f"{costs[0]:.1f} us/request", flush=True)
    traffic.flush()
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    uvloop.run(
        run(
            int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
            int(sys.argv[2]) if len(sys.argv) > 2 else 3,
            sys.argv[3:4] == ["policy"],
        )
    )
