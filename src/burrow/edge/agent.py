"""One agent's session: the typed streams it opens, and the proxy streams we open to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from typing import Any, Protocol

from burrow.domain import errors
from burrow.domain.limits import AgentLimits

from . import muxado_protocol as mux
from . import wire
from .control import AgentControl, Authenticated
from .heartbeat import Liveness
from .messages import MessageError, MessageScanner
from .muxado_streams import MuxConnection, MuxStream
from .wire import StreamType

log = logging.getLogger("burrow.edge")

RPC_TIMEOUT = 15.0
MAX_STREAMS_PER_AGENT = 480


async def read_message(stream: MuxStream, limits: AgentLimits, until_eof: bool = False) -> dict[str, Any]:
    """One JSON object; the requester sends no FIN after it, so its end is found as bytes arrive."""
    scanner = MessageScanner(limits.max_message_bytes, limits.max_message_depth)
    while data := await stream.read():
        if scanner.feed(data) and not until_eof:
            return scanner.message()
    if scanner.end is None:
        raise MessageError("the stream ended before a message")
    return scanner.message()


class _Message(Protocol):
    def to_json(self) -> dict[str, Any]: ...


async def respond(stream: MuxStream, message: _Message) -> None:
    await stream.write(json.dumps(message.to_json()).encode())
    await stream.write_eof()


class AgentConnection:
    """Drives one agent's muxado connection from Auth to its end: answers its typed streams
    (Auth, Bind, heartbeats, ...) and opens proxy streams to it. Once authenticated it has
    an :class:`AgentSession` (the record in the registry)."""

    def __init__(
        self,
        connection: MuxConnection,
        control: AgentControl,
        client_addr: str,
        limits: AgentLimits,
        connected_at: float,
    ) -> None:
        self.connection = connection
        self.control = control
        self.client_addr = client_addr
        self.limits = limits
        self.connected_at = connected_at  # the event loop's clock when the TCP connection came
        self.authenticated: Authenticated | None = None
        self.auth_done = asyncio.Event()
        self._auth_started = False  # set at the first Auth: a second is a protocol fault
        self.liveness = Liveness(time.monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        # Until Auth, the agent's first frame must open a stream and no frame may be larger
        # than a message: garbage that reads as a frame header must not hold the connection
        # waiting for its payload. Set before TLS is up, as data may arrive with the handshake.
        protocol = connection.protocol
        self._full_payload = protocol.max_payload
        protocol.max_payload = min(self._full_payload, limits.max_message_bytes + 4)
        protocol.expect_stream_first = True

    def start_authenticated(self, authenticated: Authenticated) -> None:
        """A session authenticated elsewhere (the SSH gateway, edge/ssh.py, whose bridge
        speaks muxado to this connection): no Auth on the wire, and no heartbeats, since the
        SSH transport's end ends the bridge and so this session."""
        self.authenticated = authenticated
        self._auth_started = True
        protocol = self.connection.protocol
        protocol.max_payload = self._full_payload
        protocol.expect_stream_first = False
        self.liveness.allowance = float("inf")
        self.auth_done.set()

    @property
    def session_id(self) -> str | None:
        return self.authenticated.session.id if self.authenticated else None

    async def run(self) -> None:
        watchdogs = [
            asyncio.create_task(self._watch_heartbeats()),
            asyncio.create_task(self._require_auth()),
        ]
        try:
            while (stream := await self.connection.accept_stream()) is not None:
                task = asyncio.create_task(self._serve_stream(stream))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for watchdog in watchdogs:
                watchdog.cancel()
            for task in list(self._tasks):
                task.cancel()
            if self.authenticated is not None:
                self.control.end(self.authenticated)
            await self.connection.close()

    async def _serve_stream(self, stream: MuxStream) -> None:
        try:
            number = struct.unpack(">I", await asyncio.wait_for(stream.readexactly(4), RPC_TIMEOUT))[0]
            kind = StreamType(number) if number in _STREAM_TYPES else None
            if kind == StreamType.HEARTBEAT:
                await self._heartbeats(stream)
            elif kind == StreamType.AUTH:
                await self._auth(stream)
            elif self.authenticated is None:
                await self._fail(f"stream type {number} before Auth")
            elif kind is not None and kind in _RPCS:
                await self._rpc(kind, stream)
            else:
                await self._fail(f"unknown stream type {number}")
        except (TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            await self._fail(f"bad stream: {error}")
        except (ConnectionError, asyncio.CancelledError):
            stream.reset()

    async def _fail(self, reason: str) -> None:
        log.info("closing agent session", extra={"fields": {"session": self.session_id, "reason": reason}})
        await self.connection.close(mux.ErrorCode.PROTOCOL, reason)

    async def _require_auth(self) -> None:
        """End the connection if Auth is not done within the limit of its start."""
        timeout = self.limits.auth_timeout
        remaining = self.connected_at + timeout - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self.auth_done.wait(), max(remaining, 0))
        except TimeoutError:
            await self._fail(f"no Auth within {timeout:g} s of connecting")

    async def _auth(self, stream: MuxStream) -> None:
        message = await asyncio.wait_for(read_message(stream, self.limits), RPC_TIMEOUT)
        if self._auth_started:
            await self._fail("a second Auth")
            return
        self._auth_started = True
        try:
            request = wire.Auth.parse(message)
            self.authenticated = await self.control.authenticate(request, self.client_addr)
        except errors.BurrowError as error:
            self.control.auth_failures += 1
            await respond(stream, wire.AuthResp(error=wire.Refusal.of(error)))
            log.info("agent refused", extra={"fields": {"client": self.client_addr, "error": error.code}})
            await asyncio.sleep(0.1)  # let the answer leave before the connection does
            await self.connection.close(mux.ErrorCode.NONE, "authentication failed")
            return
        self.liveness.negotiate(request.extra.heartbeat_interval, request.extra.heartbeat_tolerance)
        self.liveness.beat()
        self.connection.protocol.max_payload = self._full_payload
        await respond(stream, self.control.auth_response(self.authenticated))
        self.auth_done.set()
        session = self.authenticated.session
        log.info(
            "agent session started",
            extra={
                "fields": {
                    "session": session.id,
                    "credential": session.credential_id,
                    "client": self.client_addr,
                    "agent": session.user_agent,
                }
            },
        )

    async def _rpc(self, kind: StreamType, stream: MuxStream) -> None:
        message = await asyncio.wait_for(read_message(stream, self.limits), RPC_TIMEOUT)
        authenticated = self.authenticated
        assert authenticated is not None
        control = self.control
        response: _Message
        try:
            if kind == StreamType.BIND:
                response = await control.bind(authenticated, wire.Bind.parse(message))
            elif kind == StreamType.START_TUNNEL_WITH_LABEL:
                labeled = wire.StartTunnelWithLabel.parse(message)
                response = await control.start_labeled(authenticated, labeled)
            elif kind == StreamType.UNBIND:
                response = control.unbind(authenticated, wire.Unbind.parse(message))
            elif kind == StreamType.PATCH_TUNNEL_STATE:
                response = await control.patch(authenticated, wire.PatchTunnelState.parse(message))
            else:
                wire.SrvInfo.parse(message)
                response = control.srv_info()
        except errors.BurrowError as error:
            log.info(
                "agent request refused",
                extra={
                    "fields": {
                        "session": self.session_id,
                        "request": kind.name.lower(),
                        "error": error.code,
                        "reason": error.message,
                    }
                },
            )
            response = _refused(kind, wire.Refusal.of(error))
        await respond(stream, response)

    async def _heartbeats(self, stream: MuxStream) -> None:
        while True:
            beat = wire.Heartbeat.decode(await stream.readexactly(wire.Heartbeat.SIZE))
            self.liveness.beat()
            await stream.write(beat.encode())

    async def _watch_heartbeats(self) -> None:
        """End sessions whose agent went silent: no heartbeat within interval + tolerance."""
        while True:
            await asyncio.sleep(1)
            if self.liveness.expired():
                await self._fail("no heartbeat")
                return

    # Server-initiated streams -----------------------------------------------------------

    async def open_proxy(
        self, tunnel_id: str, client_addr: str, proto: str, edge_type: str = ""
    ) -> MuxStream:
        if self.connection.open_stream_count >= MAX_STREAMS_PER_AGENT:
            # ngrok's agents limit a session's streams (512 in ngrok-rust's muxado); refusing
            # the public connection here answers it clearly (503 for HTTP) and leaves the
            # session headroom for its own streams (heartbeats, binds).
            raise ConnectionRefusedError(f"{MAX_STREAMS_PER_AGENT} streams open to the agent")
        stream = self.connection.open_stream()
        header = json.dumps(wire.ProxyHeader(tunnel_id, client_addr, proto, edge_type).to_json()).encode()
        try:
            await stream.write(StreamType.PROXY.prefix() + struct.pack("<q", len(header)) + header)
        except BaseException:  # the client left (cancelled) or the agent did: drop the stream
            stream.reset()
            raise
        return stream

    async def send_command(self, command: wire.Command, timeout: float = 2.0) -> None:
        """Send Stop, StopTunnel, Restart or Update, and wait briefly for the agent's answer."""
        kind = wire.COMMAND_TYPES[type(command)]
        with contextlib.suppress(Exception):
            stream = self.connection.open_stream()
            await stream.write(kind.prefix() + json.dumps(command.to_json()).encode())
            if kind != StreamType.STOP_TUNNEL:
                answer = await asyncio.wait_for(read_message(stream, self.limits, until_eof=True), timeout)
                wire.CommandResp.parse(answer)
            stream.close()

    async def stop(self, message: str, error_code: str = "") -> None:
        """Tell the agent its tunnels are stopped, then end the session."""
        if self.authenticated is not None:
            for tunnel_id in list(self.authenticated.session.tunnels):
                await self.send_command(wire.StopTunnel(tunnel_id, message, error_code))
        await self.connection.close(mux.ErrorCode.NONE, message)


_STREAM_TYPES = frozenset(StreamType)
_RPCS = frozenset(
    {
        StreamType.BIND,
        StreamType.UNBIND,
        StreamType.START_TUNNEL_WITH_LABEL,
        StreamType.SRV_INFO,
        StreamType.PATCH_TUNNEL_STATE,
    }
)


def _refused(kind: StreamType, refusal: wire.Refusal) -> _Message:
    """A refused RPC's answer, in the shape its request's answer has."""
    if kind == StreamType.BIND:
        return wire.BindResp(error=refusal)
    if kind == StreamType.START_TUNNEL_WITH_LABEL:
        return wire.StartTunnelWithLabelResp(error=refusal)
    return wire.ErrorResp(error=refusal)
