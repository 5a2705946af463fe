"""The public HTTP and HTTPS listeners: an HTTP/1.1 reverse proxy that routes each request by
its own ``Host``.

Requests are parsed with httptools (llhttp, strict: conflicting framing is refused), then
re-framed for the agent: the head rebuilt without hop-by-hop fields and with
``X-Forwarded-*``, the body re-sent with our own framing, so nothing the client smuggles in
its framing reaches the agent. One proxy stream serves a client connection's consecutive
requests to one tunnel; when a request names another tunnel, the stream is closed once the
response in progress is done and a new one opened (docs/edge.md). Requests go one at a time:
a request parsed while another is in progress waits (reading paused) until that response ends.

Responses are framed here (RFC 9112 section 6.3) with a bounded head scan, then relayed
as raw slices: bytes move in the receive callbacks, with no task switch per chunk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import re
import time
import zlib
from typing import Any, Protocol, cast

import httptools

from burrow.domain.endpoint import CIRCUIT_OPEN, EndpointPolicy, Headers, IPAddress, Refusal
from burrow.domain.limits import Admission, PublicLimits
from burrow.domain.tunnels import Tunnel

from . import traffic
from .flow import WriteFlow
from .muxado_streams import MuxStream
from .pages import BAD_GATEWAY, CONNECTION_REFUSED, HEAD_TOO_LARGE, bad_request, not_found_page, page
from .relay import RelayOut, RelayRoutes

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Framing and forwarding headers the proxy writes itself.
_OWN_REQUEST_FIELDS = frozenset({b"content-length", b"x-forwarded-proto", b"x-forwarded-host"})
# Request fields dropped from the forwarded head (written again by the proxy where needed).
_DROPPED = HOP_BY_HOP | _OWN_REQUEST_FIELDS | {b"x-forwarded-for"}
# Request fields the proxy looks at, noted by name as they are parsed.
_NOTED = _DROPPED | {b"host", b"accept-encoding"}
# Connection options that name no other field.
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
_NO_TOKENS: frozenset[bytes] = frozenset()
_PLAIN_REQUEST_HEAD = (
    b"%b %b HTTP/%b\r\n%bX-Forwarded-For: %b\r\nX-Forwarded-Host: %b\r\nX-Forwarded-Proto: %b\r\n"
)
# Response fields that send a response head down the slow path (rebuilt field by field).
_RESPONSE_HOP_BY_HOP = re.compile(b"\n(?:" + b"|".join(sorted(HOP_BY_HOP)) + b"):")
_DEFAULT_POLICY = EndpointPolicy()
_CLOSE_END = b"\r\nConnection: close\r\n\r\n"  # ends a response head that had none
MAX_RESPONSE_HEAD = 64 * 1024
MAX_CHUNK_LINE = 4096

_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _TUNNEL, _IDLE = range(6)
# What a connection is waiting for, for the timeouts.
_HEAD_PHASE, _BODY_PHASE, _IDLE_PHASE, _BUSY_PHASE = range(4)


class _Relay(Exception):
    """Raised from a parser callback: the connection goes to the node holding its Host."""

    def __init__(self, relay_addr: str, first: bytes) -> None:
        self.relay_addr = relay_addr
        self.first = first


class _BadRequest(Exception):
    def __init__(self, answer: bytes) -> None:
        super().__init__()
        self.answer = answer


class _Request:
    __slots__ = (
        "accepts_gzip",
        "answer",
        "body",
        "bytes_in",
        "bytes_out",
        "chunked",
        "complete",
        "fields_size",
        "head_size",
        "headers",
        "headers_done",
        "host",
        "keep_alive",
        "kept",
        "method",
        "noted",
        "plain",
        "start",
        "started",
        "status",
        "target",
        "tunnel",
        "upgrade",
        "version",
        "whole_body",
    )

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.target = b""
        self.headers: Headers = []
        self.noted: dict[bytes, list[bytes]] = {}  # the fields in _NOTED, by lower-case name
        self.kept = bytearray()  # the other fields, as forwarded (unless a policy rewrites them)
        self.plain = True  # the endpoint has no options: no hook changes anything
        self.headers_done = False
        self.head_size = 0
        self.fields_size = 0
        self.method = b""
        self.version = "1.1"
        self.host = ""
        self.tunnel: Tunnel | None = None
        self.answer: bytes | None = None  # answered here instead of forwarded
        self.body = bytearray()  # received before the request could be forwarded
        self.complete = False
        self.started = False
        self.chunked = False
        self.whole_body = 0  # buffer the whole body (at most this much) before forwarding
        self.keep_alive = True
        self.upgrade = False
        self.accepts_gzip = False
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0


class _ChunkScanner:
    """Finds the end of a chunked body in raw bytes, and the data in it (for re-encoding)."""

    def __init__(self) -> None:
        self.line = bytearray()
        self.remaining = 0  # data bytes left in the current chunk
        self.state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer lines
        self.done = False

    def feed(self, data: memoryview, pieces: list[bytes] | None) -> int:
        """How many bytes of ``data`` belong to the body; decoded data goes to ``pieces``."""
        position = 0
        end = len(data)
        while position < end and not self.done:
            if self.state == 1:
                n = min(self.remaining, end - position)
                if pieces is not None:
                    pieces.append(bytes(data[position : position + n]))
                position += n
                self.remaining -= n
                if not self.remaining:
                    self.state = 2
                    self.line.clear()
                continue
            window = min(end, position + MAX_CHUNK_LINE + 1)  # a line longer than this is refused
            newline = bytes(data[position:window]).find(b"\n")
            if newline < 0:
                self.line += data[position:window]
                position = window
            else:
                self.line += data[position : position + newline + 1]
                position += newline + 1
            if len(self.line) > MAX_CHUNK_LINE:
                raise ValueError("chunk line too long")
            if newline < 0:
                break
            line = bytes(self.line).rstrip(b"\r\n")
            self.line.clear()
            if self.state == 0:
                size = line.split(b";", 1)[0].strip()
                if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                    raise ValueError("bad chunk size")
                self.remaining = int(size, 16)
                self.state = 1 if self.remaining else 3
            elif self.state == 2:
                if line:
                    raise ValueError("no CRLF after chunk data")
                self.state = 0
            elif not line:  # state 3: the empty line that ends the trailers
                self.done = True
        return position


def peer_ip(peer: tuple[str, int]) -> IPAddress:
    try:
        return ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return ipaddress.ip_address("0.0.0.0")


def _field(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key.lower() == name]


def _tokens(values: list[bytes]) -> set[bytes]:
    return {token.strip().lower() for value in values for token in value.split(b",") if token.strip()}


class HttpListeners(RelayOut, Protocol):
    """What an HTTP(S) connection uses of the public listeners (public.py's ``PublicListeners``)."""

    limits: PublicLimits
    admission: Admission
    traffic: dict[str, traffic.TrafficCounts]
    relay_routes: RelayRoutes | None
    _connections: set[Any]  # the open public connections, of every kind (public.py)

    async def open_proxy(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None: ...

    def web_tunnel(self, scheme: str, host: str) -> Tunnel | None: ...


class HttpProxyConnection(asyncio.Protocol):
    """One public HTTP(S) client connection, proxied request by request."""

    def __init__(
        self,
        listeners: HttpListeners,
        scheme: str,
        sni: str | None = None,
        relayed: bool = False,
        client: tuple[str, int] | None = None,
    ) -> None:
        self.listeners = listeners
        self.relayed = relayed  # came from another node: never relayed again
        self._given_client = client  # the client's address, when the transport's peer is not it
        # The bytes of the connection until its first request is routed, in case it goes to
        # another node (only where a relay is configured: plain HTTP).
        self._relay_raw: bytearray | None = (
            bytearray() if scheme == "http" and not relayed and listeners.relay_routes is not None else None
        )
        self.limits = listeners.limits
        self.scheme = scheme  # "http" or "https"
        self._scheme_bytes = scheme.encode()
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.client: tuple[str, int] = ("0.0.0.0", 0)
        self.client_text = "unknown:0"
        self.client_ip: IPAddress = ipaddress.ip_address("0.0.0.0")
        self._client_address = b"0.0.0.0"
        self.server: tuple[str, int] = ("0.0.0.0", 0)
        self.sni = sni  # the TLS server name an HTTPS connection was accepted for
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._parsing: _Request | None = None  # the request being parsed
        self._waiting: collections.deque[_Request] = collections.deque()  # parsed, not yet forwarded
        self._current: _Request | None = None  # forwarded, its response not yet done
        self._stream: MuxStream | None = None
        self._stream_tunnel: Tunnel | None = None
        self._stream_reusable = False
        self._stream_task: asyncio.Task[None] | None = None
        self._opening = False
        self._pending = bytearray()  # for the agent, waiting for window credit
        self._holding = False
        self._waiting_for_connection = False
        self._upgraded = False  # after an upgrade request: raw bytes from the client
        self._upgrade_request: _Request | None = None
        self._plain_policy: EndpointPolicy | None = None
        self._client_ended = False
        self._lost = False
        self._admitted = False
        self._flow = WriteFlow()
        # One periodic check per connection enforces the timeouts: a request only moves
        # ``_phase`` and its start time, it never schedules or cancels a timer.
        self._timer: asyncio.TimerHandle | None = None
        self._phase = _HEAD_PHASE
        self._phase_since = self._loop.time()
        self._last_activity = self._loop.time()
        # The response in progress.
        self._mode = _IDLE
        self._head = bytearray()
        self._remaining = 0
        self._chunks: _ChunkScanner | None = None
        self._gzip: Any = None
        self._dechunk = False  # an HTTP/1.0 client gets the chunked body's data, then the close
        self._out: list[bytes] = []

    @property
    def idle(self) -> bool:
        """Between requests: closing now loses nothing (a graceful shutdown does)."""
        return (
            self._current is None
            and self._parsing is None
            and not self._waiting
            and not self._upgraded
            and not self._out
        )

    @property
    def stream(self) -> MuxStream | None:
        """The proxy stream this connection holds, if any."""
        return self._stream

    def stream_to_give_back(self) -> tuple[bool, float] | None:
        """Whether this connection's stream could go back to its agent now, and how: (False,
        silent since) between requests (the stream alone goes; the next request opens
        another), (True, silent since) while a request's body is awaited and nothing of
        its answer has come (the connection goes too). None: the stream is doing work."""
        if self._stream is None or self._opening or self._upgraded or self._waiting:
            return None
        request = self._current
        if request is None:
            return False, max(self._last_activity, self._phase_since)
        if (
            request is self._parsing
            and self._phase == _BODY_PHASE
            and self._mode == _HEAD
            and not self._head
            and not self._holding  # while we hold the client back, its silence is ours
        ):
            return True, self._last_activity
        return None

    def give_back_stream(self) -> None:
        """Reset this connection's stream (see :meth:`stream_to_give_back`)."""
        self._drop_stream(reset=True)
        if self._current is not None:
            self.transport.abort()  # as at the body timeout

    # asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self._given_client or transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
            host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
            self.client_text = f"{host}:{peer[1]}"
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            self.server = (str(sock[0]), int(sock[1]))
        self.client_ip = peer_ip(self.client)
        self._client_address = self.client[0].encode()  # for X-Forwarded-For
        # HTTPS connections were counted by their listener before the handshake.
        if self.scheme != "https" and self.listeners.admission.admit(self.client[0], self.scheme) is not None:
            self.transport.write(CONNECTION_REFUSED)
            self.transport.close()
            return
        self._admitted = True
        self.listeners._connections.add(self)
        limits = self.limits
        self._tick_every = max(0.05, min(limits.head_timeout, limits.body_timeout, limits.idle_timeout) / 4)
        self._timer = self._loop.call_later(self._tick_every, self._tick)

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if self._upgraded:
            upgrading = self._upgrade_request
            if upgrading is not None and not upgrading.started:
                upgrading.body += data  # goes after the request head, once its stream is open
                self._update_reading()
            else:
                self._send_up(data)
            return
        if self._relay_raw is not None:
            self._relay_raw += data
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            request = self._parsing
            if request is not None:
                request.complete = True
            self._upgraded = True
            self._upgrade_request = request
            rest = data[int(upgrade.args[0]) :]
            if rest and request is not None and not request.started:
                request.body += rest
            elif rest:
                self._send_up(rest)
            self._update_reading()
            return
        except httptools.HttpParserError as error:
            # Our callbacks refuse by raising; httptools hands their exception on as the context.
            bad = error.__context__
            if isinstance(bad, _Relay):
                self._relay_to_node(bad)
                return
            answer = (
                bad.answer if isinstance(bad, _BadRequest) else bad_request(f"Malformed request: {error}.")
            )
            self._refuse_connection(answer)
            return
        parsing = self._parsing
        if parsing is not None and not parsing.headers_done:
            parsing.head_size += len(data)  # bytes of an unfinished head (approximately)
            if parsing.head_size > self.limits.max_head_bytes:
                self._refuse_connection(HEAD_TOO_LARGE)

    def eof_received(self) -> bool:
        self._client_ended = True
        if self._upgraded:
            self._end_up_if_sent()
            return True
        busy = self._current is not None or self._waiting or self._opening
        if not busy:
            self.transport.close()
            return False
        request = self._parsing
        if request is not None and not request.complete:
            self.transport.abort()  # the request was cut short: nothing to answer
            return False
        return True  # keep our side open for the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._admitted:
            self.listeners.admission.release(self.client[0], self.scheme)
        self.listeners._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        current = self._current
        if current is not None and self._upgraded:
            self._log(current)
        elif current is not None and current.started:
            if self._stream_tunnel is not None and self._stream_tunnel.policy.circuit_breaker is not None:
                self._stream_tunnel.policy.circuit_breaker.record(current.status, time.monotonic())
            self._log(current)
        self._drop_stream(reset=current is not None)
        self._flow.resume()

    def pause_writing(self) -> None:
        self._flow.pause()

    def _relay_to_node(self, relay: _Relay) -> None:
        """Hand the connection to the node holding the first request's Host."""
        if self._timer is not None:  # the other node's listener keeps the time from here
            self._timer.cancel()
            self._timer = None
        header = {"listener": "http", "client": list(self.client)}
        self._stream_task = self._loop.create_task(
            self.listeners.relay_out(
                self.transport, relay.first, header, relay.relay_addr, lambda: self.connection_lost(None)
            )
        )

    def resume_writing(self) -> None:
        self._flow.resume()

    # httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._parsing = _Request()
        if self._phase == _IDLE_PHASE:
            self._phase, self._phase_since = _HEAD_PHASE, self._last_activity

    def on_url(self, url: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._parsing
        assert request is not None
        if request.headers_done:
            return  # a trailer field: dropped (we re-frame the body)
        headers = request.headers
        headers.append((name, value))
        if len(headers) > self.limits.max_headers:
            raise _BadRequest(HEAD_TOO_LARGE)
        request.fields_size += len(name) + len(value) + 4
        lower = name.lower()
        if lower in _NOTED:
            request.noted.setdefault(lower, []).append(value)
            if lower in _DROPPED:
                return
        request.kept += b"%b: %b\r\n" % (name, value)

    def on_headers_complete(self) -> None:
        request = self._parsing
        assert request is not None
        request.headers_done = True
        if len(request.target) + request.fields_size > self.limits.max_head_bytes:
            raise _BadRequest(HEAD_TOO_LARGE)
        request.method = self._parser.get_method()
        request.version = self._parser.get_http_version()
        request.keep_alive = self._parser.should_keep_alive() and request.version == "1.1"
        request.upgrade = self._parser.should_upgrade()
        request.head_size = 0
        self._prepare(request)
        if (
            request.whole_body
            and request.answer is None
            and request.version == "1.1"
            and any(
                value.lower() == b"100-continue"
                for name, value in request.headers
                if name.lower() == b"expect"
            )
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the edge reads this body itself
        self._waiting.append(request)
        if request.answer is None and (request.chunked or b"content-length" in request.noted):
            self._phase = _BODY_PHASE
        else:
            self._phase = _BUSY_PHASE
        self._pump()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.bytes_in += len(body)
        if request.answer is not None:
            return  # answered here: the body is read and dropped
        if request.started and not self._upgraded:
            self._send_up(b"%x\r\n%b\r\n" % (len(body), body) if request.chunked else body)
            return
        request.body += body
        if request.whole_body and len(request.body) > request.whole_body:
            request.answer = page(
                413, "Content Too Large", "ERR_NGROK_90413", "The request body is too large."
            )
            request.body.clear()
            self._pump()
        self._update_reading()

    def on_message_complete(self) -> None:
        request = self._parsing
        assert request is not None
        request.complete = True
        self._parsing = None
        if self._phase == _BODY_PHASE:
            self._phase = _BUSY_PHASE
        if request.answer is None and request.whole_body and request.tunnel is not None:
            refusal = request.tunnel.policy.check_request_body(request.headers, bytes(request.body))
            if refusal is not None:
                request.answer = self._refusal_page(refusal)
        if request.started and request.chunked and request.answer is None:
            self._send_up(b"0\r\n\r\n")
        self._pump()

    # Deciding what to do with a request ----------------------------------------------

    def _prepare(self, request: _Request) -> None:
        """Route the request and check it; sets ``answer`` when it is answered here."""
        noted = request.noted
        first, self._relay_raw = self._relay_raw, None  # only a connection's first request may go elsewhere
        if request.version not in ("1.0", "1.1"):
            request.answer = page(
                505, "HTTP Version Not Supported", "ERR_NGROK_90505", "Only HTTP/1.0 and HTTP/1.1 are served."
            )
            return
        hosts = noted.get(b"host", [])
        if len(hosts) != 1 or not hosts[0].strip():
            request.answer = bad_request("A request needs exactly one Host header.")
            return
        host = hosts[0].strip().decode("latin-1").lower()
        name = host[: host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
        request.host = name.rstrip(".")
        target = request.target
        if target[:1] != b"/" and target != b"*":
            authority = target.split(b"://", 1)[-1].split(b"/", 1)[0].decode("latin-1").lower()
            if b"://" not in target or authority.rsplit(":", 1)[0] != request.host:
                request.answer = bad_request("The request target must name the Host it is sent to.")
                return
        if request.method == b"CONNECT":
            request.answer = page(405, "Method Not Allowed", "ERR_NGROK_90405", "CONNECT is not served.")
            return
        if self.scheme == "https" and request.host != self.sni:
            request.answer = page(
                421, "Misdirected Request", "ERR_NGROK_90421", "The Host differs from the TLS server name."
            )
            return
        tunnel = self.listeners.web_tunnel(self.scheme, request.host)
        if tunnel is None:
            routes = self.listeners.relay_routes
            if self.relayed:
                request.answer = page(
                    421,
                    "Misdirected Request",
                    "ERR_NGROK_90421",
                    "This connection went to the node of another tunnel: send it on a new connection.",
                )
            elif first is not None and routes is not None and (found := routes.lookup("host", request.host)):
                raise _Relay(found, bytes(first))
            else:
                request.answer = not_found_page(request.host)
            return
        request.tunnel = tunnel
        policy = tunnel.policy
        if policy is not self._plain_policy:
            if policy != _DEFAULT_POLICY:
                request.plain = False
            else:
                self._plain_policy = policy  # an endpoint without options: every hook a no-op
        if request.plain:
            if b"transfer-encoding" in noted:
                request.chunked = b"chunked" in _tokens(noted[b"transfer-encoding"])
            return
        refusal = policy.check_request_head(request.method, target, request.headers, self.client_ip)
        if refusal is not None:
            request.answer = self._refusal_page(refusal)
            return
        # After the client's own checks, so refused clients neither use up the breaker's
        # probe nor learn its state.
        breaker = policy.circuit_breaker
        if breaker is not None and not breaker.allows(time.monotonic()):
            request.answer = self._refusal_page(CIRCUIT_OPEN)
            return
        request.whole_body = policy.buffer_body_up_to
        request.chunked = b"chunked" in _tokens(noted.get(b"transfer-encoding", []))
        if policy.compression:
            request.accepts_gzip = _accepts_gzip(noted.get(b"accept-encoding", []))

    def _refusal_page(self, refusal: Refusal) -> bytes:
        reasons = {
            401: "Unauthorized",
            403: "Forbidden",
            413: "Content Too Large",
            503: "Service Unavailable",
        }
        return page(
            refusal.status,
            reasons.get(refusal.status, "Refused"),
            refusal.code,
            refusal.message,
            refusal.headers,
        )

    def _request_head(self, request: _Request) -> bytes:
        """The head forwarded to the agent: hop-by-hop fields out, forwarding fields in."""
        noted = request.noted
        connection = noted.get(b"connection")
        named = _tokens(connection) if connection else _NO_TOKENS
        host = noted[b"host"][0].strip()
        client = self._client_address
        forwarded_for = (
            b", ".join([*(value.strip() for value in noted[b"x-forwarded-for"]), client])
            if b"x-forwarded-for" in noted
            else client
        )
        if request.plain and named <= _CONNECTION_OPTIONS:
            # The common case: the fields kept while parsing, spliced with ours.
            head = _PLAIN_REQUEST_HEAD % (
                request.method,
                request.target,
                b"1.1" if request.version == "1.1" else request.version.encode(),
                request.kept,
                forwarded_for,
                host,
                self._scheme_bytes,
            )
            if request.upgrade:
                head += b"".join([b"Upgrade: %b\r\n" % value for value in noted.get(b"upgrade", [])])
                head += b"Connection: Upgrade\r\n"
            if request.chunked:
                return head + b"Transfer-Encoding: chunked\r\n\r\n"
            if b"content-length" in noted:
                return head + b"Content-Length: %b\r\n\r\n" % noted[b"content-length"][0].strip()
            return head + b"\r\n"
        kept: Headers = []
        for name, value in request.headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in named or lower in _OWN_REQUEST_FIELDS:
                if request.upgrade and lower == b"upgrade":
                    kept.append((name, value))
                continue
            if lower == b"x-forwarded-for" or (lower == b"expect" and request.whole_body):
                continue  # a body the edge must have whole was asked for here (100 sent)
            kept.append((name, value))
        kept.append((b"X-Forwarded-For", forwarded_for))
        kept.append((b"X-Forwarded-Host", host))
        kept.append((b"X-Forwarded-Proto", self._scheme_bytes))
        assert request.tunnel is not None
        kept = request.tunnel.policy.request_headers(kept)
        if request.upgrade:
            kept.append((b"Connection", b"Upgrade"))
        if request.whole_body:
            kept.append((b"Content-Length", str(len(request.body)).encode()))
            request.chunked = False
        elif request.chunked:
            kept.append((b"Transfer-Encoding", b"chunked"))
        elif b"content-length" in noted:
            kept.append((b"Content-Length", noted[b"content-length"][0].strip()))
        lines = [b"%b %b HTTP/%b" % (request.method, request.target, request.version.encode())]
        lines += [name + b": " + value for name, value in kept]
        return b"\r\n".join(lines) + b"\r\n\r\n"

    # Moving requests along -------------------------------------------------------------

    def _pump(self) -> None:
        """Start the next request if none is in progress."""
        while self._current is None and self._waiting and not self._lost:
            request = self._waiting[0]
            if request.answer is not None:
                self._waiting.popleft()
                self._answer_here(request)
                return
            if request.whole_body and not request.complete:
                self._update_reading()
                return  # once the whole body is here
            self._waiting.popleft()
            self._current = request
            if self._stream is not None and self._stream_tunnel is request.tunnel and self._stream_reusable:
                self._start(request)
            else:
                self._drop_stream(reset=False)
                self._opening = True
                self._stream_task = self._loop.create_task(self._open(request))
        self._update_reading()

    def _answer_here(self, request: _Request) -> None:
        assert request.answer is not None
        answer = request.answer
        request.status = int(answer[9:12])
        request.bytes_out = len(answer)
        self.transport.write(answer)
        self._log(request)
        self._hang_up()  # answers given here end the connection (the body may be unread)

    def _start(self, request: _Request) -> None:
        request.started = True
        self._mode = _HEAD
        self._head.clear()
        data = self._request_head(request)
        if request.body:
            body = bytes(request.body)
            request.body.clear()
            data += b"%x\r\n%b\r\n" % (len(body), body) if request.chunked else body
        if request.complete and request.chunked:
            data += b"0\r\n\r\n"
        self._send_up(data)

    async def _open(self, request: _Request) -> None:
        tunnel = request.tunnel
        assert tunnel is not None
        stream = None
        try:
            stream = await self.listeners.open_proxy(tunnel, self.client_text, self.scheme)
            self._opening = False
            if stream is None:
                request.answer = page(
                    503,
                    "Service Unavailable",
                    "ERR_NGROK_90503",
                    "The tunnel's agent has too many open connections.",
                )
                self._current = None
                self._answer_here(request)
                return
            if self._lost:
                stream.reset()
                return
            self._stream, self._stream_tunnel, self._stream_reusable = stream, tunnel, True
            stream.owner = self
            stream.on_writable = self._resume_up
            proxy_header = tunnel.policy.proxy_protocol_header(self.client, self.server)
            if proxy_header:
                self._send_up(proxy_header)
            self._start(request)
            self._update_reading()
            await stream.forward_to(self)
            self._agent_ended(stream, reset=False)
        except ConnectionError:
            if stream is not None:
                self._agent_ended(stream, reset=True)
        finally:
            self._opening = False

    def _drop_stream(self, reset: bool) -> None:
        stream, task = self._stream, self._stream_task
        self._stream = self._stream_tunnel = None
        self._stream_task = None
        self._pending.clear()
        if task is not None and not task.done():
            task.cancel()
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.reset() if reset else stream.close()

    # Client -> agent ---------------------------------------------------------------------

    def _send_up(self, data: bytes) -> None:
        stream = self._stream
        if stream is None:
            return
        if self._pending:
            self._pending += data
            return
        try:
            taken = stream.send_nowait(data)
        except ConnectionError:
            self.transport.abort()
            return
        if taken < len(data):
            self._pending += memoryview(data)[taken:]
            self._update_reading()
        elif stream.connection.writing_paused:
            self._wait_for_connection()

    def _resume_up(self) -> None:
        stream = self._stream
        if stream is None or self._lost:
            return
        if self._pending:
            try:
                taken = stream.send_nowait(bytes(self._pending))
            except ConnectionError:
                self.transport.abort()
                return
            del self._pending[:taken]
        if self._pending:
            return
        if self._upgraded and self._client_ended:
            self._end_up_if_sent()
        elif stream.connection.writing_paused:
            self._wait_for_connection()
        else:
            self._update_reading()

    def _wait_for_connection(self) -> None:
        stream = self._stream
        if not self._waiting_for_connection and stream is not None:
            self._waiting_for_connection = True
            self._update_reading()

            def ready() -> None:
                self._waiting_for_connection = False
                self._resume_up()

            stream.connection.call_when_writable(ready)

    def _end_up_if_sent(self) -> None:
        if self._stream is not None and not self._pending:
            with contextlib.suppress(Exception):
                self._stream.end_nowait()

    def _update_reading(self) -> None:
        """Read while the request being received can go somewhere; pause otherwise."""
        waiting = self._waiting
        if not (waiting or self._holding or self._pending or self._opening or self._waiting_for_connection):
            return  # reading, and nothing to hold it for
        if self._lost or self.transport.is_closing():
            return
        # A request waiting to go pauses reading, unless it is first in line and only waits
        # for the rest of a body it must have whole before going.
        buffering = (
            len(waiting) == 1
            and self._current is None
            and waiting[0].whole_body > 0
            and waiting[0].answer is None
            and not waiting[0].complete
        )
        hold = (
            bool(self._pending)
            or self._waiting_for_connection
            or self._opening
            or (bool(waiting) and not buffering)
        )
        if hold and not self._holding:
            self._holding = True
            self.transport.pause_reading()
        elif not hold and self._holding:
            self._holding = False
            self.transport.resume_reading()

    # Agent -> client: what forward_to() writes to ------------------------------------------

    def write(self, data: bytes) -> None:
        mode = self._mode
        if mode == _TUNNEL or (mode == _UNTIL_CLOSE and self._gzip is None):
            self._current_bytes_out(len(data))
            self.transport.write(data)
            return
        if mode == _LENGTH and len(data) < self._remaining and self._gzip is None:
            self._remaining -= len(data)  # the fast path for downloads: no copy, no scan
            self._current_bytes_out(len(data))
            self.transport.write(data)
            return
        if self.transport.is_closing():
            return
        out = self._out
        request = self._current
        if mode == _HEAD and not self._head and request is not None and request.plain and not request.upgrade:
            # The common case: an HTTP/1.1 response head, whole in this read, that needs no
            # change but maybe a "Connection: close"; sent as received, body and all.
            end = data.find(b"\r\n\r\n")
            if end > 0 and data[:9] == b"HTTP/1.1 " and data[9:10] in b"2345":
                try:
                    close = self._plain_response(request, data[:end])
                except ValueError:
                    self._bad_gateway()
                    return
                if close is not None:
                    rest = len(data) - end - 4
                    mode = self._mode
                    if not close and (
                        (mode == _LENGTH and rest == self._remaining) or (mode == _IDLE and not rest)
                    ):
                        self.transport.write(data)
                        request.bytes_out += rest
                        self._remaining = 0
                        self._finish_response(out)
                    else:
                        out.append(data[:end] + _CLOSE_END if close else data[: end + 4])
                        if mode == _IDLE:
                            self._finish_response(out)
                        data = data[end + 4 :]  # the body goes the usual way
                    if not data or not out or self.transport.is_closing():
                        if out:
                            self.transport.write(b"".join(out))
                            out.clear()
                        return
        try:
            self._relay(memoryview(data), out)
        except ValueError:
            self._bad_gateway()
            return
        finally:
            if out:
                self.transport.write(b"".join(out) if len(out) > 1 else out[0])
                out.clear()

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("the public connection is closed")
        if self._flow.paused:
            await self._flow.drained()
            if self._lost:
                raise ConnectionResetError("the public connection is closed")

    def _current_bytes_out(self, n: int) -> None:
        if self._current is not None:
            self._current.bytes_out += n

    def _relay(self, data: memoryview, out: list[bytes]) -> None:
        while data and not self.transport.is_closing():
            mode = self._mode
            if mode == _HEAD:
                head = self._head
                start = max(0, len(head) - 3)
                head += data
                end = head.find(b"\r\n\r\n", start)
                if end < 0:
                    if len(head) > MAX_RESPONSE_HEAD:
                        raise ValueError("response head too large")
                    return
                rest = len(head) - (end + 4)
                data = data[len(data) - rest :] if rest else data[:0]
                self._response_head(bytes(head[:end]), out)
                head.clear()
            elif mode == _LENGTH:
                n = min(self._remaining, len(data))
                self._body_piece(data[:n], out)
                self._remaining -= n
                data = data[n:]
                if not self._remaining:
                    self._finish_response(out)
            elif mode == _CHUNKED:
                scanner = self._chunks
                assert scanner is not None
                if self._gzip is not None or self._dechunk:
                    pieces: list[bytes] = []
                    used = scanner.feed(data, pieces)
                    for piece in pieces:
                        self._body_piece(memoryview(piece), out, raw=False)
                else:
                    used = scanner.feed(data, None)
                    self._body_piece(data[:used], out)
                data = data[used:]
                if scanner.done:
                    self._finish_response(out)
            elif mode == _UNTIL_CLOSE:
                self._body_piece(data, out)
                return
            elif mode == _TUNNEL:
                self._current_bytes_out(len(data))
                out.append(bytes(data))
                return
            else:
                raise ValueError("the agent sent bytes nobody asked for")

    def _body_piece(self, data: memoryview, out: list[bytes], raw: bool = True) -> None:
        request = self._current
        assert request is not None
        if self._gzip is not None:
            compressed = self._gzip.compress(data)
            if compressed:
                out.append(b"%x\r\n%b\r\n" % (len(compressed), compressed))
                request.bytes_out += len(compressed)
            return
        request.bytes_out += len(data)
        out.append(bytes(data))

    def _response_head(self, head: bytes, out: list[bytes]) -> None:
        request = self._current
        if request is None:
            raise ValueError("a response without a request")
        if request.plain and not request.upgrade and head[:9] == b"HTTP/1.1 " and head[9:10] in b"2345":
            close = self._plain_response(request, head)
            if close is not None:
                out.append(head + (_CLOSE_END if close else b"\r\n\r\n"))
                if self._mode == _IDLE:
                    self._finish_response(out)
                return
        lines = head.split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/1.")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise ValueError("bad status line")
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else b""
        headers: Headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
                raise ValueError("bad response header")
            headers.append((name, value.strip()))
        named = _tokens(_field(headers, b"connection"))
        if b"close" in named or (parts[0] == b"HTTP/1.0" and b"keep-alive" not in named):
            self._stream_reusable = False
        upgrade_to = _field(headers, b"upgrade")
        kept = [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() not in named]
        if 100 <= status < 200:
            if status == 101:
                if not request.upgrade:
                    raise ValueError("101 without an upgrade request")
                request.status = 101
                kept = self._policy_response_headers(request, kept)
                kept += [(b"Upgrade", value) for value in upgrade_to] + [(b"Connection", b"Upgrade")]
                out.append(_serialize(b"HTTP/1.1 101 " + reason, kept))
                self._mode = _TUNNEL
                self._stream_reusable = False
                self._update_reading()
                return
            if request.version == "1.1":  # HTTP/1.0 clients get no interim responses
                out.append(_serialize(b"HTTP/1.1 %d %b" % (status, reason), kept))
            return
        request.status = status
        transfer = _tokens(_field(headers, b"transfer-encoding"))
        lengths = {value.strip() for value in _field(headers, b"content-length")}
        no_body = request.method == b"HEAD" or status in (204, 304)
        if transfer and not no_body:
            if (
                _field(headers, b"transfer-encoding")[-1].strip().lower().rsplit(b",", 1)[-1].strip()
                != b"chunked"
            ):
                raise ValueError("unsupported transfer coding")
            kept = [(n, v) for n, v in kept if n.lower() != b"content-length"]
            mode = _CHUNKED
        elif lengths and not no_body:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise ValueError("bad Content-Length")
            self._remaining = int(next(iter(lengths)))
            mode = _LENGTH if self._remaining else _IDLE
        elif no_body:
            mode = _IDLE
        else:
            mode = _UNTIL_CLOSE
            self._stream_reusable = False
        if request.upgrade:
            self._stream_reusable = False
        close = (
            not request.keep_alive
            or mode == _UNTIL_CLOSE
            or (self._client_ended and not self._waiting)
            or request.upgrade  # the parser has stopped at the upgrade: no more requests here
        )
        self._gzip = None
        self._dechunk = False
        if (
            request.accepts_gzip
            and mode != _IDLE
            and status not in (206,)
            and not _field(headers, b"content-encoding")
            and request.version == "1.1"
        ):
            self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
            kept = [(n, v) for n, v in kept if n.lower() != b"content-length"]
            kept.append((b"Content-Encoding", b"gzip"))
            kept.append((b"Vary", b"Accept-Encoding"))
        kept = self._policy_response_headers(request, kept)
        if self._gzip is not None:
            kept.append((b"Transfer-Encoding", b"chunked"))
        elif mode == _CHUNKED:
            if request.version == "1.1":
                kept.append((b"Transfer-Encoding", b"chunked"))
            else:
                self._dechunk = True
                close = True
        if not request.complete and not request.upgrade:
            close = True  # the agent answered before the body ended: no more requests here
        if close:
            kept.append((b"Connection", b"close"))
        request.keep_alive = not close
        out.append(_serialize(b"HTTP/1.1 %d %b" % (status, reason), kept))
        self._mode = mode
        if mode == _CHUNKED:
            self._chunks = _ChunkScanner()
        if mode == _IDLE:
            self._finish_response(out)

    def _plain_response(self, request: _Request, head: bytes) -> bool | None:
        """The common case, without rebuilding the head: an HTTP/1.1 response without
        hop-by-hop fields to an endpoint without options. Sets the response's mode and says
        whether the head needs "Connection: close" added; None: take the general path."""
        low = head.lower()
        if b"\n " in head or b"\n\t" in head or _RESPONSE_HOP_BY_HOP.search(low):
            return None
        status_text = head[9:12]
        if not status_text.isdigit() or head[12:13] not in (b" ", b"\r", b""):
            return None
        status = int(status_text)
        at = low.find(b"\ncontent-length:")
        no_body = request.method == b"HEAD" or status in (204, 304)
        if at >= 0 and not no_body:
            if low.find(b"\ncontent-length:", at + 1) >= 0:
                return None
            end = low.find(b"\r\n", at + 1)
            length = low[at + 16 : end if end >= 0 else len(low)].strip()
            if not length.isdigit():
                raise ValueError("bad Content-Length")
            self._remaining = int(length)
            mode = _LENGTH if self._remaining else _IDLE
        elif no_body:
            mode = _IDLE
        else:
            mode = _UNTIL_CLOSE
            self._stream_reusable = False
        close = (
            not request.keep_alive
            or mode == _UNTIL_CLOSE
            or (self._client_ended and not self._waiting)
            or not request.complete
        )
        request.keep_alive = not close
        request.status = status
        self._gzip = None
        self._dechunk = False
        self._mode = mode
        return close

    def _policy_response_headers(self, request: _Request, headers: Headers) -> Headers:
        assert request.tunnel is not None
        return request.tunnel.policy.response_headers(headers)

    def _finish_response(self, out: list[bytes]) -> None:
        request = self._current
        assert request is not None
        if self._gzip is not None:
            rest = self._gzip.flush()
            out.append((b"%x\r\n%b\r\n" % (len(rest), rest) if rest else b"") + b"0\r\n\r\n")
            request.bytes_out += len(rest)
            self._gzip = None
        self._mode = _IDLE
        self._current = None
        tunnel = request.tunnel
        if not request.plain and tunnel is not None and tunnel.policy.circuit_breaker is not None:
            tunnel.policy.circuit_breaker.record(request.status, time.monotonic())
        self._log(request)
        if not request.keep_alive:
            if out:
                self.transport.write(b"".join(out))
                out.clear()
            self.transport.close()
            return
        if not self._stream_reusable:
            self._drop_stream(reset=False)
        if not self._waiting and self._parsing is None:
            self._phase, self._phase_since = _IDLE_PHASE, self._loop.time()
        self._pump()

    def _agent_ended(self, stream: MuxStream, reset: bool) -> None:
        """The agent ended (or reset) the proxy stream."""
        if stream is not self._stream:
            return
        self._stream = None
        self._stream_tunnel = None
        with contextlib.suppress(Exception):
            stream.close()
        if self._lost:
            return
        request = self._current
        mode = self._mode
        if mode == _TUNNEL:
            if reset:
                self.transport.abort()
            elif self.transport.can_write_eof():
                self.transport.write_eof()
                if self._client_ended:
                    self.transport.close()
            return
        if request is None:
            return  # between requests: the next one opens a new stream
        if mode == _UNTIL_CLOSE and not reset:
            out: list[bytes] = []
            self._finish_response(out)
            return
        if mode == _HEAD and not self._head and request.status == 0:
            self._bad_gateway()
        else:
            self.transport.abort()  # mid-response: the client must see it cut

    def _bad_gateway(self) -> None:
        request = self._current
        if request is not None and request.status == 0:
            request.status = 502
            request.bytes_out = len(BAD_GATEWAY)
            self.transport.write(BAD_GATEWAY)
            tunnel = request.tunnel
            if tunnel is not None and tunnel.policy.circuit_breaker is not None:
                tunnel.policy.circuit_breaker.record(502, time.monotonic())
            self._log(request)
            self._current = None
            self._hang_up()
        else:
            self.transport.abort()
        self._drop_stream(reset=True)

    def _refuse_connection(self, answer: bytes) -> None:
        """A bad request: answered (if no answer is under way), then the connection closes."""
        if self._current is None and not self._waiting:
            request = self._parsing or _Request()
            request.answer = answer
            self._parsing = None
            self._answer_here(request)
        else:
            self._hang_up()

    def _hang_up(self) -> None:
        """Close once what is written has gone out; on HTTPS, without waiting for the client's
        close_notify. A TLS close otherwise waits for it up to 30 s, reading and decrypting
        all the client still sends (a 96 MiB head would cost its whole 96 MiB) and holding
        the connection's slot; a client refused or timed out is owed neither."""
        self.transport.close()  # TLS: our answer and close_notify are handed to the socket
        if self.scheme == "https":
            self.transport.abort()

    # Timers ---------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._lost:
            return
        now = self._loop.time()
        phase = self._phase
        limits = self.limits
        waited = now - self._phase_since
        if (phase == _HEAD_PHASE and waited > limits.head_timeout) or (
            phase == _IDLE_PHASE and waited > limits.idle_timeout
        ):
            self._hang_up()
        elif (
            phase == _BODY_PHASE
            and not self._holding  # while we hold the client back, its silence is ours
            and now - self._last_activity > limits.body_timeout
        ):
            self.transport.abort()  # and the stream is reset: the agent gets it back
        else:
            self._timer = self._loop.call_later(self._tick_every, self._tick)

    # The traffic log ----------------------------------------------------------------------

    def _log(self, request: _Request) -> None:
        counts = self.listeners.traffic[self.scheme]  # read by the metrics at scrape time
        counts.requests += 1
        counts.bytes_in += request.bytes_in
        counts.bytes_out += request.bytes_out
        if traffic.enabled():
            tunnel = request.tunnel
            target = request.target
            query = target.find(b"?")
            traffic.record_line(
                {
                    "time": None,
                    "listener": self.scheme,
                    "tunnel": tunnel.id if tunnel is not None else None,
                    "host": request.host,
                    "method": request.method.decode("latin-1"),
                    "path": (target if query < 0 else target[:query]).decode("latin-1"),
                    "status": request.status,
                    "bytes_in": request.bytes_in,
                    "bytes_out": request.bytes_out,
                    "duration_ms": round((time.monotonic() - request.start) * 1000, 3),
                    "client": self.client_text,
                }
            )


def _serialize(status_line: bytes, headers: Headers) -> bytes:
    return b"\r\n".join([status_line, *(name + b": " + value for name, value in headers)]) + b"\r\n\r\n"


def _accepts_gzip(values: list[bytes]) -> bool:
    for value in values:
        for item in value.split(b","):
            coding, _, params = item.strip().partition(b";")
            if coding.strip().lower() in (b"gzip", b"*"):
                q = params.strip().lower()
                return not (q.startswith(b"q=") and q[2:].strip().rstrip(b"0").rstrip(b".") in (b"0", b""))
    return False
