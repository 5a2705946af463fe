"""The public HTTP and HTTPS listeners: an HTTP/1.1 reverse proxy that routes each request by
its own ``Host``.

Requests are parsed strictly by the sans-IO core (``http1``: RFC 9112, every ambiguous
framing refused with 400/431/501/505 and the connection's close), then re-framed for the
agent: the head rebuilt without hop-by-hop fields and with ``X-Forwarded-*``, the body
re-sent with our own framing, so nothing the client smuggles in its framing reaches the
agent. One proxy stream serves a client connection's consecutive
requests to one tunnel; when a request names another tunnel, the stream is closed once the
response in progress is done and a new one opened (docs/edge.md). Requests go one at a time:
a request parsed while another is in progress waits (reading paused) until that response ends.

Responses are parsed strictly by the sans-IO core (``http1``, RFC 9112 section 6.3) and
re-serialised: the client gets a head rebuilt from the parsed fields, never the agent's
own; a malformed response, or bytes nobody asked for, get a 502 and the connection's
close. Content-Length bodies go on as the slices received, in the receive callbacks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from burrow.domain.limits import Admission, PublicLimits
from burrow.domain.tunnels import Tunnel

from . import elsewhere, traffic
from .flow import ClientProtocol, Upstream, end_tunnel, hang_up
from .forward_head import body_piece, forwarded_head, forwarded_start
from .http1 import NO_BODY, BodyData, RemoteProtocolError, RequestHead, RequestParser
from .jwt_check import JwksFetcher
from .muxado_streams import MuxStream
from .pages import (
    AGENT_BUSY,
    BAD_GATEWAY,
    CONNECTION_REFUSED,
    NOT_THIS_NODE,
    SERVICE_UNREACHABLE,
    malformed_page,
)
from .peers import Peers
from .phase_clock import ABORT, BODY_PHASE, BUSY_PHASE, HANG_UP, HEAD_PHASE, IDLE_PHASE, PhaseClock
from .proxy_request import ProxyRequest, log_request, pauses_reading, record_outcome
from .relay import RelayOut, RelayRoutes, RelayStream
from .request_checks import check_body, continues_here, unroutable
from .response_relay import UPGRADED, ResponseRelay
from .traffic_phases import CLOSE

ACME_PATH = b"/.well-known/acme-challenge/"
AcmeLookup = Callable[[str, str], Awaitable[str | None]]  # (host, token): the key authorization


async def acme_answer(lookup: AcmeLookup, host: str, target: bytes) -> bytes | None:
    """The response to an ACME HTTP-01 request, if that challenge is pending (any node answers
    the CA: challenges are in the database); None to route the request as any other."""
    token = target[len(ACME_PATH) :].decode("ascii", "replace")
    if not token or "/" in token or "?" in token:
        return None
    try:
        answer = await lookup(host, token)
    except Exception:  # the database away: as if none were pending
        return None
    if answer is None:
        return None
    body = answer.encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
        % (
            len(body),
            body,
        )
    )


class HttpListeners(RelayOut, Protocol):
    """What an HTTP(S) connection uses of the public listeners (public.py's ``PublicListeners``)."""

    limits: PublicLimits
    admission: Admission
    traffic: dict[str, traffic.TrafficCounts]
    relay_routes: RelayRoutes | None
    jwks: JwksFetcher  # the issuers' keys for jwt-validation
    _connections: set[Any]  # the open public connections, of every kind (public.py)
    acme_http: AcmeLookup | None  # ACME HTTP-01 challenges (acme.py)

    async def open_proxy(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None: ...

    def web_tunnel(self, scheme: str, host: str) -> Tunnel | None: ...

    def not_found(self, scheme: str, host: str) -> bytes: ...

    def internal_tunnel(self, account_id: str, host: str) -> Tunnel | None: ...

    @property
    def internal_elsewhere(self) -> bool:
        """Whether internal endpoints may be held by other nodes (a relay is configured)."""
        ...

    async def open_internal(self, relay_addr: str, header: dict[str, Any]) -> RelayStream | None: ...


class HttpProxyConnection(ClientProtocol):
    """One public HTTP(S) client connection, proxied request by request."""

    def __init__(
        self,
        listeners: HttpListeners,
        scheme: str,
        sni: str | None = None,
        relayed: bool = False,
        client: tuple[str, int] | None = None,
        internal: tuple[str, str, int] | None = None,
    ) -> None:
        super().__init__()
        self.listeners = listeners
        self.relayed = relayed  # came from another node: never relayed again
        self._internal = internal  # relayed forward-internal: (account, host, hops) (elsewhere.py)
        self._lookups: set[asyncio.Task[None]] = set()  # forward-internal routes being looked up
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
        self.peers = Peers.UNKNOWN
        self.sni = sni  # the TLS server name an HTTPS connection was accepted for
        self._loop = asyncio.get_running_loop()
        self._requests = RequestParser(listeners.limits.max_head_bytes, listeners.limits.max_headers)
        self._parsing: ProxyRequest | None = None  # the request being parsed
        self._waiting: collections.deque[ProxyRequest] = collections.deque()  # parsed, not yet forwarded
        self._current: ProxyRequest | None = None  # forwarded, its response not yet done
        self._stream: MuxStream | None = None
        self._stream_tunnel: Tunnel | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._opening = False
        self._up = Upstream(self._update_reading, lambda: self.transport.abort())  # client -> agent
        self._holding = False
        self._upgraded = False  # after an upgrade request: raw bytes from the client
        self._upgrade_request: ProxyRequest | None = None
        self._client_ended = False
        self._admitted = False
        self._timer: asyncio.TimerHandle | None = None  # one periodic check: the timeouts
        self._clock = PhaseClock(self.limits, self._loop.time())
        self._relay = ResponseRelay()  # agent -> client, for the stream held
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
    def client_address(self) -> str:
        return self.peers.client[0]

    def holds(self, stream: MuxStream) -> bool:
        return self._stream is stream

    def stream_to_give_back(self) -> tuple[bool, float] | None:
        """Whether this connection's stream could go back to its agent now, and how: (False,
        silent since) between requests (the stream alone goes; the next request opens
        another), (True, silent since) while a request's body is awaited and nothing of
        its answer has come (the connection goes too). None: the stream is doing work."""
        if self._stream is None or self._opening or self._upgraded or self._waiting:
            return None
        clock, request = self._clock, self._current
        if request is None:
            return False, max(clock.last_activity, clock.since)
        # While we hold the client back, its silence is ours.
        body_awaited = request is self._parsing and clock.phase == BODY_PHASE and not self._holding
        return (True, clock.last_activity) if body_awaited and self._relay.awaiting_head else None

    def give_back_stream(self) -> None:
        """Reset this connection's stream (see :meth:`stream_to_give_back`)."""
        self._drop_stream(reset=True)
        if self._current is not None:
            self.transport.abort()  # as at the body timeout

    # asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peers = Peers.of(transport, self._given_client)
        # HTTPS connections were counted by their listener before the handshake (a relayed
        # forward-internal has none).
        counted = self.scheme != "https" or self._internal is not None
        if counted and self.listeners.admission.admit(self.client_address, self.scheme) is not None:
            self.transport.write(CONNECTION_REFUSED)
            self.transport.close()
            return
        self._admitted = True
        self.listeners._connections.add(self)
        self._timer = self._loop.call_later(self._clock.tick_every, self._tick)

    def data_received(self, data: bytes) -> None:
        clock = self._clock
        clock.last_activity = self._loop.time()
        if self._upgraded:
            self._raw_up(data)
            return
        if self._relay_raw is not None:
            self._relay_raw += data
        if clock.phase == IDLE_PHASE:
            clock.phase, clock.since = HEAD_PHASE, clock.last_activity
        requests = self._requests
        requests.receive(data)
        try:
            while (event := requests.next_event()) is not None:
                if type(event) is RequestHead:
                    more = requests.end_bodiless()  # None: a body (or an upgrade) follows
                    self._request_head_parsed(event, whole=more is not None)
                    if more is False:
                        return  # the usual request: complete with its head, nothing after it
                elif type(event) is BodyData:
                    self._request_body(event.data)
                else:
                    request = self._parsing
                    self._request_complete()
                    if request is not None and request.upgrade:
                        self._upgrade(request, requests.take_rest())
                        return
                    requests.start_next()
                if self._lost or self.transport.is_closing():
                    return
        except RemoteProtocolError as error:
            self._refuse_connection(malformed_page(error))

    def _upgrade(self, request: ProxyRequest, rest: bytes) -> None:
        """After an upgrade request: the client's bytes go raw (once a 101 has come)."""
        self._upgraded = True
        self._upgrade_request = request
        self._raw_up(rest)
        self._update_reading()

    def _raw_up(self, data: bytes) -> None:
        request = self._upgrade_request
        if request is not None and not request.started:
            request.body += data  # goes after the request head, once its stream is open
            self._update_reading()
        elif data:
            self._up.send(data)

    def eof_received(self) -> bool:
        self._client_ended = True
        if self._upgraded:
            self._up.end()
            return True
        if self._current is None and not self._waiting and not self._opening:  # between requests
            self.transport.close()
            return False
        request = self._parsing
        if (request is not None and not request.complete) or self._requests.buffered:
            self.transport.abort()  # the request was cut short: nothing to answer
            return False
        return True  # keep our side open for the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._admitted:
            self.listeners.admission.release(self.client_address, self.scheme)
        self.listeners._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        current = self._current
        if current is not None and self._upgraded:
            self._log(current)
        elif current is not None and current.started:
            record_outcome(current.status, current.plan)
            self._log(current)
        self._drop_stream(reset=current is not None)
        for task in list(self._lookups):
            task.cancel()
        self._flow.resume()

    # Requests, as the core parses them -----------------------------------------------

    def _request_head_parsed(self, head: RequestHead, whole: bool) -> None:
        """``whole``: a request without a body, complete with its head (then this does what
        _request_complete does too, in the same step)."""
        request = ProxyRequest(head)
        request.complete = whole
        if not whole:
            self._parsing = request
        self._prepare(request)
        if request.whole_body and continues_here(request, head):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the edge reads this body itself
        if whole and request.whole_body:
            check_body(request)
        self._waiting.append(request)
        body_phase = not whole and request.answer is None and head.framing != NO_BODY
        self._clock.phase = BODY_PHASE if body_phase else BUSY_PHASE
        self._pump()

    def _request_body(self, body: bytes) -> None:
        request = self._parsing
        assert request is not None
        request.bytes_in += len(body)
        if request.answer is not None:
            return  # answered here: the body is read and dropped
        if request.started and not self._upgraded:
            self._up.send(body_piece(request, body))
            return
        if not request.keep(body):
            self._pump()  # to answer 413
        self._update_reading()

    def _request_complete(self) -> None:
        request = self._parsing
        assert request is not None
        request.complete = True
        self._parsing = None
        if self._clock.phase == BODY_PHASE:
            self._clock.phase = BUSY_PHASE
        check_body(request)
        if request.started and request.chunked and request.answer is None:
            self._up.send(b"0\r\n\r\n")
        self._pump()

    # Deciding what to do with a request ----------------------------------------------

    def _prepare(self, request: ProxyRequest) -> None:
        """Route the request and check it; sets ``answer`` when it is answered here."""
        first, self._relay_raw = self._relay_raw, None  # only a connection's first request may go elsewhere
        if self._internal is not None:
            elsewhere.prepare_internal(self, request, *self._internal)
            return
        request.answer = unroutable(request, self.scheme, self.sni)
        if request.answer is not None:
            return
        if acme_pending(self, request, first):  # an ACME HTTP-01 request: the database answers
            return
        tunnel = self.listeners.web_tunnel(self.scheme, request.host)
        if tunnel is None:
            routes = self.listeners.relay_routes
            if self.relayed:
                request.answer = NOT_THIS_NODE
            elif first is not None and routes is not None:
                request.routing = True  # reading stays paused while the route is looked up
                self._stream_task = self._loop.create_task(elsewhere.route(self, request, routes, first))
            else:
                request.answer = self.listeners.not_found(self.scheme, request.host)
            return
        elsewhere.judge(self, request, tunnel, 0)

    def _judged(self, request: ProxyRequest) -> None:  # judged once its JWT keys were fetched
        if not self._lost:
            if request.complete:
                check_body(request)
            elsewhere.look_up_internal(self, request)
            self._pump()

    # Moving requests along -------------------------------------------------------------

    def _pump(self) -> None:
        """Start the next request if none is in progress."""
        while self._current is None and self._waiting and not self._lost:
            request = self._waiting[0]
            if request.routing:
                break
            if request.answer is not None:
                self._waiting.popleft()
                self._answer_here(request)
                return
            if request.whole_body and not request.complete:
                self._update_reading()
                return  # once the whole body is here
            self._waiting.popleft()
            self._current = request
            if request.relay_to is not None:  # to the node holding its internal endpoint
                elsewhere.start_internal(self, request, request.relay_to)
            elif self._stream is not None and self._stream_tunnel is request.tunnel and self._relay.reusable:
                self._start(request)
            else:
                self._drop_stream(reset=False)
                self._opening = True
                self._stream_task = self._loop.create_task(self._open(request))
        self._update_reading()

    def _answer_here(self, request: ProxyRequest) -> None:
        assert request.answer is not None
        answer = request.answer
        if answer == CLOSE:  # the endpoint's policy closes the connection, answering nothing
            self._log(request)
            self.transport.abort()
            return
        request.status = int(answer[9:12])
        request.bytes_out = len(answer)
        self.transport.write(answer)
        self._log(request)
        self._hang_up()  # answers given here end the connection (the body may be unread)

    def _start(self, request: ProxyRequest) -> None:
        request.started = True
        self._relay.expect(request)
        start = forwarded_start if request.body or request.chunked else forwarded_head  # (the head alone)
        self._up.send(start(request, self.peers.client_bytes, self._scheme_bytes))

    async def _open(self, request: ProxyRequest) -> None:
        tunnel = request.tunnel
        assert tunnel is not None
        stream = None
        try:
            stream = await self.listeners.open_proxy(tunnel, self.peers.client_text, self.scheme)
            self._opening = False
            if stream is None:
                request.answer = AGENT_BUSY
                self._current = None
                self._answer_here(request)
                return
            if self._lost:
                stream.reset()
                return
            self._stream, self._stream_tunnel, self._relay = stream, tunnel, ResponseRelay()
            stream.holder = self
            self._up.attach(stream)
            proxy_header = tunnel.policy.proxy_protocol_header(self.peers.client, self.peers.server)
            if proxy_header:
                self._up.send(proxy_header)
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
        self._up.detach()
        if task is not None and not task.done():
            task.cancel()
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.reset() if reset else stream.close()

    # Client -> agent ---------------------------------------------------------------------

    def _update_reading(self) -> None:
        """Read while the request being received can go somewhere; pause otherwise."""
        waiting = self._waiting
        if not (waiting or self._holding or self._up.blocked or self._opening):
            return  # reading, and nothing to hold it for
        if self._lost or self.transport.is_closing():
            return
        hold = self._up.blocked or self._opening or pauses_reading(waiting, self._current is not None)
        if hold and not self._holding:
            self._holding = True
            self.transport.pause_reading()
        elif not hold and self._holding:
            self._holding = False
            self.transport.resume_reading()

    # Agent -> client: what forward_to() writes to ------------------------------------------

    def write(self, data: bytes) -> None:
        relay = self._relay
        if relay.passthrough(data):
            self.transport.write(data)  # a tunnel, or the middle of a download
            return
        if self.transport.is_closing():
            return
        out = self._out
        try:
            ended = relay.receive(data, out, self._client_ended and not self._waiting)
        except RemoteProtocolError:  # (nothing of the faulty answer is in ``out``)
            self._bad_gateway()
            return
        if ended is UPGRADED:
            self._update_reading()
        elif ended is not None:
            self._finish_response(out)
        if out:
            self.transport.write(b"".join(out))  # (one piece: joined without a copy)
            out.clear()

    def _finish_response(self, out: list[bytes]) -> None:
        request = self._current
        assert request is not None
        self._current = None
        if not request.plain:
            record_outcome(request.status, request.plan)
        log_request(request, self.listeners.traffic[self.scheme], self.scheme, self.peers.client_text)
        if not request.keep_alive:
            if out:
                self.transport.write(b"".join(out))
                out.clear()
            self.transport.close()
            return
        if not self._relay.reusable or self._stream_tunnel is None:  # a relay connection: one request
            self._drop_stream(reset=False)
        if not self._waiting and self._parsing is None:
            self._clock.phase, self._clock.since = IDLE_PHASE, self._loop.time()
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
        if self._relay.tunneling:
            end_tunnel(self.transport, reset, self._client_ended)
            return
        if request is None:
            return  # between requests: the next one opens a new stream
        out: list[bytes] = []
        silent = self._relay.awaiting_head  # not one byte of an answer: read before the EOF fails it
        if not reset and self._relay.receive_eof(out) is not None:
            self._finish_response(out)
            if out:
                self.transport.write(b"".join(out))
            return
        if request.status == 0:  # no head on the wire yet: a 502 (nothing at all: the SDKs' refused dial)
            self._bad_gateway(SERVICE_UNREACHABLE if silent else BAD_GATEWAY)
        else:
            self.transport.abort()  # mid-response: the client must see it cut

    def _bad_gateway(self, page: bytes = BAD_GATEWAY) -> None:
        request = self._current
        if request is not None and request.status == 0:
            request.status = 502
            request.bytes_out = len(page)
            self.transport.write(page)
            record_outcome(502, request.plan)
            self._log(request)
            self._current = None
            self._hang_up()
        elif request is None:
            self._hang_up()  # bytes after a complete answer: it goes out, then the connection closes
        else:
            self.transport.abort()  # mid-answer: the client must see it cut
        self._drop_stream(reset=True)

    def _refuse_connection(self, answer: bytes) -> None:
        """A bad request: answered (if no answer is under way), then the connection closes."""
        if self._current is None and not self._waiting:
            request = self._parsing or ProxyRequest()
            request.answer = answer
            self._parsing = None
            self._answer_here(request)
        else:
            self._hang_up()

    def _hang_up(self) -> None:
        hang_up(self.transport, self.scheme)

    # Timers ---------------------------------------------------------------------------

    def _tick(self) -> None:
        if self._lost:
            return
        verdict = self._clock.check(self._loop.time(), self._holding)
        if verdict == HANG_UP:
            self._hang_up()
        elif verdict == ABORT:
            self.transport.abort()  # and the stream is reset: the agent gets it back
        else:
            self._timer = self._loop.call_later(self._clock.tick_every, self._tick)

    def _log(self, request: ProxyRequest) -> None:
        log_request(request, self.listeners.traffic[self.scheme], self.scheme, self.peers.client_text)


def acme_pending(connection: HttpProxyConnection, request: ProxyRequest, first: bytearray | None) -> bool:
    """Whether ``request`` waits for the database to say if it is a pending ACME HTTP-01
    challenge (any node answers the CA); routed as any other request if it is not."""
    listeners = connection.listeners
    if listeners.acme_http is None or connection.scheme != "http" or request.acme_checked:
        return False
    if not request.target.startswith(ACME_PATH):
        return False
    request.routing = request.acme_checked = True  # reading stays paused meanwhile
    connection._stream_task = connection._loop.create_task(acme_or_route(connection, request, first))
    return True


async def acme_or_route(
    connection: HttpProxyConnection, request: ProxyRequest, first: bytearray | None
) -> None:
    lookup = connection.listeners.acme_http
    answer = await acme_answer(lookup, request.host, request.target) if lookup is not None else None
    if connection._lost:
        return
    request.routing = False
    if answer is None:
        connection._relay_raw = first  # as it was: the connection's first request may go elsewhere
        connection._prepare(request)
    else:
        request.answer = answer
    connection._pump()
