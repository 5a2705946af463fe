"""One agent's session: the typed streams it opens, and the proxy streams we open to it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from typing import Any

from burrow.domain.limits import AgentLimits

from . import muxado_protocol as mux
from .control import AgentControl, AgentError, Authenticated
from .heartbeat import Liveness
from .messages import MessageError, MessageScanner
from .muxado_streams import MuxConnection, MuxStream

log = logging.getLogger("burrow.edge")

# Typed streams: the first 4 bytes of every stream.
AUTH, BIND, UNBIND, PROXY, RESTART, STOP, UPDATE, START_LABELED, SRV_INFO, STOP_TUNNEL = range(10)
HEARTBEAT = 0xFFFFFFFF
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


async def respond(stream: MuxStream, message: dict[str, Any]) -> None:
    await stream.write(json.dumps(message).encode())
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
        self.liveness = Liveness(time.monotonic)
        self._tasks: set[asyncio.Task[None]] = set()
        # Until Auth, the agent's first frame must open a stream and no frame may be larger
        # than a message: garbage that reads as a frame header must not hold the connection
        # waiting for its payload. Set before TLS is up, as data may arrive with the handshake.
        protocol = connection.protocol
        self._full_payload = protocol.max_payload
        protocol.max_payload = min(self._full_payload, limits.max_message_bytes + 4)
        protocol.expect_stream_first = True

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
            kind = struct.unpack(">I", await asyncio.wait_for(stream.readexactly(4), RPC_TIMEOUT))[0]
            if kind == HEARTBEAT:
                await self._heartbeats(stream)
            elif kind == AUTH:
                await self._auth(stream)
            elif self.authenticated is None:
                await self._fail(f"stream type {kind} before Auth")
            elif kind in (BIND, UNBIND, START_LABELED, SRV_INFO):
                await self._rpc(kind, stream)
            else:
                await self._fail(f"unknown stream type {kind}")
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
        request = await asyncio.wait_for(read_message(stream, self.limits), RPC_TIMEOUT)
        if self.authenticated is not None:
            await self._fail("a second Auth")
            return
        try:
            self.authenticated = self.control.authenticate(request, self.client_addr)
        except AgentError as error:
            self.control.auth_failures += 1
            await respond(stream, {"Version": "", "ClientId": "", "Error": error.wire, "Extra": {}})
            log.info(
                "agent refused",
                extra={"fields": {"client": self.client_addr, "error": error.wire.split()[-1]}},
            )
            await asyncio.sleep(0.1)  # let the answer leave before the connection does
            await self.connection.close(mux.ErrorCode.NONE, "authentication failed")
            return
        self.liveness.negotiate(request.get("Extra"))
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

    async def _rpc(self, kind: int, stream: MuxStream) -> None:
        request = await asyncio.wait_for(read_message(stream, self.limits), RPC_TIMEOUT)
        authenticated = self.authenticated
        assert authenticated is not None
        try:
            if kind == BIND:
                response = self.control.bind(authenticated, request)
            elif kind == START_LABELED:
                response = self.control.start_labeled(authenticated, request)
            elif kind == UNBIND:
                response = self.control.unbind(authenticated, request)
            else:
                response = self.control.srv_info()
        except AgentError as error:
            message, _, code = error.wire.strip().rpartition("\n\n")
            log.info(
                "agent request refused",
                extra={
                    "fields": {
                        "session": self.session_id,
                        "request": {BIND: "bind", START_LABELED: "start_labeled"}.get(kind, str(kind)),
                        "error": code,
                        "reason": message,
                    }
                },
            )
            if kind == BIND:
                response = {
                    "Id": "",
                    "URL": "",
                    "Proto": "",
                    "Opts": {},
                    "Extra": {"Token": ""},
                    "Error": error.wire,
                }
            else:
                response = {"Id": "", "Error": error.wire}
        await respond(stream, response)

    async def _heartbeats(self, stream: MuxStream) -> None:
        while True:
            beat = await stream.readexactly(4)
            self.liveness.beat()
            await stream.write(beat)

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
        header = json.dumps(
            {
                "Id": tunnel_id,
                "ClientAddr": client_addr,
                "Proto": proto,
                "EdgeType": edge_type,
                "PassthroughTLS": False,
            }
        ).encode()
        try:
            await stream.write(struct.pack(">I", PROXY) + struct.pack("<q", len(header)) + header)
        except BaseException:  # the client left (cancelled) or the agent did: drop the stream
            stream.reset()
            raise
        return stream

    async def send_command(self, kind: int, message: dict[str, Any], timeout: float = 2.0) -> None:
        """Send Stop, StopTunnel, Restart or Update, and wait briefly for the agent's answer."""
        with contextlib.suppress(Exception):
            stream = self.connection.open_stream()
            await stream.write(struct.pack(">I", kind) + json.dumps(message).encode())
            if kind != STOP_TUNNEL:
                await asyncio.wait_for(read_message(stream, self.limits, until_eof=True), timeout)
            stream.close()

    async def stop(self, message: str, error_code: str = "") -> None:
        """Tell the agent its tunnels are stopped, then end the session."""
        if self.authenticated is not None:
            for tunnel_id in list(self.authenticated.session.tunnels):
                await self.send_command(
                    STOP_TUNNEL, {"Id": tunnel_id, "Message": message, "ErrorCode": error_code}
                )
        await self.connection.close(mux.ErrorCode.NONE, message)
