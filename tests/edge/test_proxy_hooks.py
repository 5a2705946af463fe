"""The HTTP(S) proxy calls every hook of the endpoint contract (domain/endpoint.py).

In-process: the real public listener on a real socket, and a small agent on the other end
of a real muxado connection (ours on both sides), serving HTTP on each proxy stream. The
endpoint policy is a subclass whose hooks do something visible, since the options
themselves are another module's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from burrow.domain.endpoint import CircuitBreaker, EndpointPolicy, Headers, IPAddress, Refusal
from burrow.domain.tunnels import AgentSession, Registry, Tunnel
from burrow.edge.certs import ensure_server_certificate
from burrow.edge.https import HttpsCertificates, HttpsListener
from burrow.edge.muxado_streams import MuxConnection, MuxStream, StreamResetError
from burrow.edge.public import PublicListeners
from tests.edge.test_http_proxy import _throwaway_ca
from tests.harness import free_port

PROXY_HEADER = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"


class CountingBreaker(CircuitBreaker):
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.open = False

    def allows(self, now: float) -> bool:
        return not self.open

    def record(self, status: int, now: float) -> None:
        self.statuses.append(status)


@dataclass(frozen=True)
class VisiblePolicy(EndpointPolicy):
    def check_request_head(
        self, method: bytes, target: bytes, headers: Headers, client_ip: IPAddress
    ) -> Refusal | None:
        if target.startswith(b"/private"):
            return Refusal(
                401, "ERR_NGROK_TEST", "Who are you?", ((b"WWW-Authenticate", b'Basic realm="t"'),)
            )
        return None

    def check_request_body(self, headers: Headers, body: bytes) -> Refusal | None:
        return None if body in (b"", b"signed") else Refusal(403, "ERR_NGROK_SIG", "Bad signature.")

    def request_headers(self, headers: Headers) -> Headers:
        return [*headers, (b"X-Added", b"by-policy")]

    def response_headers(self, headers: Headers) -> Headers:
        return [(n, v) for n, v in headers if n.lower() != b"server"] + [(b"X-Response", b"by-policy")]

    def proxy_protocol_header(
        self, client: tuple[str, int], server: tuple[str, int], proto_tcp: bool = True
    ) -> bytes:
        return PROXY_HEADER


async def _agent_serves(stream: MuxStream, seen: list[bytes]) -> None:
    with contextlib.suppress(StreamResetError):
        await _answer_requests(stream, seen)


async def _answer_requests(stream: MuxStream, seen: list[bytes]) -> None:
    """Answer each request on the stream with 2100 bytes; note what arrived."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = await stream.read()
            if not data:
                return
            buffer += data
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(buffer) < length:
            buffer += await stream.read()
        seen.append(head + b"\r\n\r\n" + buffer[:length])
        buffer = buffer[length:]
        if b" /reset " in head:
            stream.reset()
            return
        if b" /split " in head:  # a head ending in a bare LF, then a forged second response
            await stream.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 77\r\nX-A: 1\n\nX-Pad: " + b"p" * 40 + b"\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nSet-Cookie: sid=evil-planted\r\n\r\nEVIL-FAKE"
            )
            continue
        if b" /garbage " in head:
            await stream.write(b"NOT HTTP AT ALL\r\n\r\n")
            continue
        body = b"answer " * 300
        await stream.write(
            b"HTTP/1.1 200 OK\r\nServer: local\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
        )


async def _with_edge(
    policy: EndpointPolicy,
    test: Callable[[int, list[bytes]], Awaitable[None]],
    certificates: Callable[[Registry], HttpsCertificates] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[bytes] = []
    agent_side: list[MuxConnection] = []
    tasks: set[asyncio.Task[None]] = set()

    def on_agent(connection: MuxConnection) -> None:
        agent_side.append(connection)

        async def accept() -> None:
            while (stream := await connection.accept_stream()) is not None:
                tasks.add(loop.create_task(_agent_serves(stream, seen)))

        tasks.add(loop.create_task(accept()))

    agent_server = await loop.create_server(
        lambda: MuxConnection(client_side=True, on_connected=on_agent), "127.0.0.1", 0
    )
    _, edge_side = await loop.create_connection(
        lambda: MuxConnection(client_side=False), "127.0.0.1", agent_server.sockets[0].getsockname()[1]
    )
    registry = Registry()
    registry.add_session(AgentSession("ts_1", "ac_1", "cr_1", "us_1", "", "", "", "", "", datetime.now(UTC)))
    for proto in ("http", "https"):
        registry.add_tunnel(
            Tunnel(
                f"tn_{proto}",
                "ts_1",
                proto,
                "",
                "",
                "",
                datetime.now(UTC),
                hostname="hooks.example",
                policy=policy,
            )  # type: ignore[arg-type]
        )

    async def open_proxy(tunnel: Tunnel, client: str, proto: str) -> MuxStream | None:
        return edge_side.open_stream()

    listeners = PublicListeners(registry, open_proxy, {})
    server: asyncio.Server | HttpsListener
    if certificates is not None:
        server = HttpsListener(certificates(registry), listeners.https_protocol, 5, listeners.admission)
        port = free_port()
        await server.start("127.0.0.1", port)
    else:
        server = await loop.create_server(listeners.http_protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    try:
        await test(port, seen)
    finally:
        if isinstance(server, HttpsListener):
            await server.stop()
        else:
            server.close()
        await listeners.close_all()
        await edge_side.close()
        agent_server.close()


async def _exchange(
    port: int, request: bytes, ssl_context: ssl.SSLContext | None = None, name: str | None = None
) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ssl_context, server_hostname=name if ssl_context else None
    )
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(1 << 20), 10)
    while b"\r\n\r\n" in answer and not _whole(answer):
        more = await asyncio.wait_for(reader.read(1 << 20), 10)
        if not more:
            break
        answer += more
    writer.close()
    return answer


def _whole(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        return body.endswith(b"0\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def _dechunk(body: bytes) -> bytes:
    data = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if not size:
            return data
        data, body = data + body[:size], body[size + 2 :]


def test_every_request_hook_is_called() -> None:
    breaker = CountingBreaker()
    policy = VisiblePolicy(compression=True, circuit_breaker=breaker, buffer_body_up_to=1024)

    async def test(port: int, seen: list[bytes]) -> None:
        refused = await _exchange(port, b"GET /private HTTP/1.1\r\nHost: hooks.example\r\n\r\n")
        assert refused.startswith(b"HTTP/1.1 401 ") and b'WWW-Authenticate: Basic realm="t"' in refused
        assert b"ERR_NGROK_TEST" in refused and seen == []  # never forwarded

        answer = await _exchange(
            port, b"GET /public HTTP/1.1\r\nHost: hooks.example\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"X-Response: by-policy" in head
        assert b"Server:" not in head and b"Content-Encoding: gzip" in head
        assert gzip.decompress(_dechunk(body)) == b"answer " * 300
        assert seen[-1].startswith(PROXY_HEADER) and b"X-Added: by-policy" in seen[-1]
        assert breaker.statuses == [200]

        forged = await _exchange(
            port, b"POST /hook HTTP/1.1\r\nHost: hooks.example\r\nContent-Length: 6\r\n\r\nforged"
        )
        assert forged.startswith(b"HTTP/1.1 403 ") and b"ERR_NGROK_SIG" in forged and len(seen) == 1
        too_big = await _exchange(
            port, b"POST /hook HTTP/1.1\r\nHost: hooks.example\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
        )
        assert too_big.startswith(b"HTTP/1.1 413 ") and len(seen) == 1
        expecting = await _exchange(
            port,
            b"POST /hook HTTP/1.1\r\nHost: hooks.example\r\nContent-Length: 6\r\n"
            b"Expect: 100-continue\r\n\r\n",
        )
        assert expecting == b"HTTP/1.1 100 Continue\r\n\r\n"  # the edge asks for the body it must check
        signed = await _exchange(
            port, b"POST /hook HTTP/1.1\r\nHost: hooks.example\r\nContent-Length: 6\r\n\r\nsigned"
        )
        assert signed.startswith(b"HTTP/1.1 200 ") and seen[-1].endswith(b"\r\n\r\nsigned")

        for broken in (b"/reset", b"/garbage"):
            answer = await _exchange(port, b"GET %b HTTP/1.1\r\nHost: hooks.example\r\n\r\n" % broken)
            code = b"ERR_NGROK_8012" if broken == b"/reset" else b"ERR_NGROK_3004"  # no answer; a bad one
            assert answer.startswith(b"HTTP/1.1 502 ") and code in answer
        assert breaker.statuses[-2:] == [502, 502]

        breaker.open = True
        assert (await _exchange(port, b"GET / HTTP/1.1\r\nHost: hooks.example\r\n\r\n")).startswith(
            b"HTTP/1.1 503 "
        )

    asyncio.run(_with_edge(policy, test))


def test_mutual_tls_is_required_for_that_name(tmp_path: Path) -> None:
    client_ca, client_cert, client_key = _throwaway_ca(tmp_path, "client.example")
    local = ensure_server_certificate(tmp_path / "data")
    server_ca = local.ca_path
    assert server_ca is not None
    policy = EndpointPolicy(mutual_tls_ca=client_ca)

    async def test(port: int, seen: list[bytes]) -> None:
        request = b"GET /mtls HTTP/1.1\r\nHost: hooks.example\r\n\r\n"
        without = ssl.create_default_context(cafile=str(server_ca))
        try:
            answer = await _exchange(port, request, without, "hooks.example")
        except (ssl.SSLError, ConnectionError):
            answer = b""
        assert answer == b"" and seen == []
        with_cert = ssl.create_default_context(cafile=str(server_ca))
        with_cert.load_cert_chain(client_cert, client_key)
        answer = await _exchange(port, request, with_cert, "hooks.example")
        assert answer.startswith(b"HTTP/1.1 200 ") and len(seen) == 1

    certificates = lambda registry: HttpsCertificates(registry, tmp_path / "data", local)  # noqa: E731
    asyncio.run(_with_edge(policy, test, certificates))


def test_a_response_split_by_a_bare_lf_gets_502_and_the_close() -> None:
    """The agent's head ends early for a lenient client; the edge refuses it whole, forwards
    none of it, and closes, so the forged response can answer no later request."""

    async def test(port: int, seen: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /split HTTP/1.1\r\nHost: hooks.example\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: hooks.example\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 10)  # until the edge closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 502 ") and b"ERR_NGROK_3004" in answer
        assert b"evil" not in answer and b"EVIL" not in answer and b"X-Pad" not in answer
        assert answer.count(b"HTTP/1.1") == 1

    asyncio.run(_with_edge(EndpointPolicy(), test))
