"""A malicious ngrok agent for the tests: raw muxado over TLS, answering proxy streams with
crafted bytes.

It speaks the agent protocol with Burrow's own sans-IO codec (``muxado_protocol.Connection``,
client side): Auth and Bind as a real agent does, then, for every proxy stream the server
opens, it reads the proxy header and the forwarded requests and answers each request with
what the test's ``script`` returns for its bytes: a :class:`Reply` (pieces written as
separate DATA frames, optionally after delays, optionally ending or resetting the stream)
or plain bytes. Everything it received is recorded, raw, per stream.

One thread owns the socket and the codec; the test only sets ``script`` and reads the
records (under ``lock``). Every socket operation is bounded by a timeout.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burrow.edge import muxado_protocol as mux

AUTH, BIND, PROXY, PATCH_TUNNEL_STATE = 0, 1, 3, 10
_PROXY_PREFIX = 4 + 8  # u32 stream type, then the header's i64 (little-endian) length


@dataclass(frozen=True)
class Reply:
    """What the agent writes back for one request."""

    pieces: tuple[bytes, ...]  # each its own DATA frame (split further only by the window)
    delay: float = 0.0  # seconds before each piece
    end: str | None = None  # after the pieces: "fin" (half-close), "reset" (RST), None (stay open)


Script = Callable[[bytes], "Reply | bytes"]


HONEST_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nA-HONEST"


def answer_ok(request: bytes) -> Reply:
    """An honest answer, for tests that only watch what reaches the agent."""
    return Reply((HONEST_ANSWER,))


@dataclass
class ProxyStream:
    """One proxy stream as the agent saw it."""

    stream_id: int
    header: dict[str, Any] | None = None
    raw: bytearray = field(default_factory=bytearray)  # every byte after the proxy header
    requests: list[bytes] = field(default_factory=list)  # complete requests found in ``raw``
    ended: bool = False  # the server half-closed it
    reset: bool = False  # the server reset it
    _prefix: bytearray = field(default_factory=bytearray)
    _scanned: int = 0  # offset in ``raw`` where the next request starts


class AgentError(Exception):
    pass


class MaliciousAgent:
    def __init__(
        self,
        server_addr: str,
        ca_path: Path,
        token: str,
        hostname: str,
        timeout: float = 10,
        bind: dict[str, Any] | None = None,
    ) -> None:
        self.server_addr = server_addr
        self.ca_path = ca_path
        self.token = token
        self.hostname = hostname
        self.bind = bind  # the Bind to send, if not the legacy http one for ``hostname``
        self.bound: dict[str, Any] = {}  # the BindResp
        self.timeout = timeout
        self.script: Script = answer_ok
        self.lock = threading.Lock()
        self.streams: dict[int, ProxyStream] = {}
        self.url = ""
        self.client_id = ""
        self._mux = mux.Connection(client_side=True)
        self._sock: ssl.SSLSocket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._actions: list[tuple[float, int, int, str, bytes]] = []  # (due, seq, stream, kind, data)
        self._seq = itertools.count()
        self._unsent: dict[int, bytearray] = {}  # bytes waiting for window credit
        self._fin_after_unsent: set[int] = set()
        self.error: BaseException | None = None

    # Lifecycle ----------------------------------------------------------------------------

    def start(self) -> MaliciousAgent:
        host, port = self.server_addr.rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(self.ca_path))
        raw = socket.create_connection((host, int(port)), timeout=self.timeout)
        self._sock = context.wrap_socket(raw, server_hostname=host)
        extra = {
            "AuthToken": self.token,
            "UserAgent": "burrow-tests/malicious-agent",
            # Long heartbeats: this agent sends none, and the module's tests outlast the default.
            "HeartbeatInterval": 600_000_000_000,
            "HeartbeatTolerance": 600_000_000_000,
        }
        auth = self._rpc(AUTH, {"Version": ["3", "2"], "ClientId": "", "Extra": extra})
        if auth.get("Error"):
            raise AgentError(f"Auth refused: {auth['Error']}")
        self.client_id = str(auth["ClientId"])
        bind = self.bound = self._rpc(
            BIND,
            self.bind
            or {
                "Id": "",
                "Proto": "http",
                "ForwardsTo": "malicious",
                "ForwardsProto": "",
                "Opts": {"Hostname": self.hostname, "Subdomain": "", "Auth": "", "HostHeaderRewrite": False},
                "Extra": {"Token": "", "IPPolicyRef": "", "Metadata": "", "Bindings": []},
            },
        )
        if bind.get("Error"):
            raise AgentError(f"Bind refused: {bind['Error']}")
        self.url = str(bind["URL"])
        self._thread = threading.Thread(target=self._run, name="malicious-agent", daemon=True)
        self._thread.start()
        return self

    def rpc(self, kind: int, message: dict[str, Any]) -> dict[str, Any]:
        """One more RPC on the running session (between requests: the thread pauses for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            return self._rpc(kind, message)
        finally:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="malicious-agent", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            assert not self._thread.is_alive(), "the malicious agent's thread did not stop"
        if self._sock is not None:
            try:
                self._mux.go_away(mux.ErrorCode.NONE, "bye")
                self._sock.settimeout(1)
                self._sock.sendall(self._mux.data_to_send())
            except (OSError, ValueError):
                pass
            self._sock.close()
            self._sock = None

    def __enter__(self) -> MaliciousAgent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What the test reads -----------------------------------------------------------------

    def requests(self) -> list[bytes]:
        """Every complete request received so far, over all streams, in stream order."""
        with self.lock:
            return [request for stream in self.streams.values() for request in stream.requests]

    def raw_received(self) -> bytes:
        with self.lock:
            return b"".join(bytes(stream.raw) for stream in self.streams.values())

    def forget(self) -> None:
        with self.lock:
            self.streams = {k: v for k, v in self.streams.items() if not (v.ended or v.reset)}
            for stream in self.streams.values():
                stream.requests.clear()

    # Setup RPCs, before the thread runs ---------------------------------------------------

    def _rpc(self, kind: int, message: dict[str, Any]) -> dict[str, Any]:
        assert self._sock is not None
        stream_id = self._mux.open_stream()
        self._mux.send_data(stream_id, struct.pack(">I", kind) + json.dumps(message).encode())
        self._sock.sendall(self._mux.data_to_send())
        answer = bytearray()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self._sock.recv(65536)
            if not data:
                raise AgentError(f"the server closed the connection during RPC {kind}")
            for event in self._mux.receive_data(data):
                if isinstance(event, mux.DataReceived) and event.stream_id == stream_id:
                    answer += event.data
                    self._mux.acknowledge_received_data(stream_id, len(event.data))
                elif isinstance(event, mux.StreamEnded) and event.stream_id == stream_id:
                    self._sock.sendall(self._mux.data_to_send())
                    self._mux.end_stream(stream_id)
                    self._sock.sendall(self._mux.data_to_send())
                    return json.loads(answer)  # type: ignore[no-any-return]
                elif isinstance(event, mux.ConnectionTerminated | mux.ProtocolViolation):
                    raise AgentError(f"session ended during RPC {kind}: {event}")
            self._sock.sendall(self._mux.data_to_send())
        raise AgentError(f"no answer to RPC {kind} within {self.timeout} s")

    # The thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while not self._stop.is_set():
                self._run_due_actions()
                self._flush()
                wait = 0.05
                if self._actions:
                    wait = max(0.0, min(wait, self._actions[0][0] - time.monotonic()))
                if not sock.pending():
                    readable, _, _ = select.select([sock], [], [], wait)
                    if not readable:
                        continue
                try:
                    data = sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not data:
                    return
                self._handle(self._mux.receive_data(data))
                self._flush()
        except (OSError, ValueError) as error:
            if not self._stop.is_set():
                self.error = error

    def _flush(self) -> None:
        out = self._mux.data_to_send()
        if out and self._sock is not None:
            self._sock.sendall(out)

    def _handle(self, events: list[mux.Event]) -> None:
        for event in events:
            if isinstance(event, mux.StreamOpened):
                with self.lock:
                    self.streams[event.stream_id] = ProxyStream(event.stream_id)
            elif isinstance(event, mux.DataReceived):
                self._mux.acknowledge_received_data(event.stream_id, len(event.data))
                self._received(event.stream_id, event.data)
            elif isinstance(event, mux.StreamEnded):
                with self.lock:
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream.ended = True
                # As a real agent does once its local connection is done: end our side too,
                # unless a scripted answer is still under way.
                if not any(action[2] == event.stream_id for action in self._actions):
                    self._end(event.stream_id)
            elif isinstance(event, mux.StreamReset):
                with self.lock:
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream.reset = True
                self._unsent.pop(event.stream_id, None)
                self._actions = [a for a in self._actions if a[2] != event.stream_id]
                heapq.heapify(self._actions)
            elif isinstance(event, mux.WindowUpdated):
                self._send(event.stream_id, b"")
            elif isinstance(event, mux.ConnectionTerminated | mux.ProtocolViolation):
                self.error = AgentError(f"session ended: {event}")
                self._stop.set()

    def _received(self, stream_id: int, data: bytes) -> None:
        with self.lock:
            stream = self.streams.setdefault(stream_id, ProxyStream(stream_id))
            if stream.header is None:
                stream._prefix += data
                if len(stream._prefix) < _PROXY_PREFIX:
                    return
                (kind,) = struct.unpack_from(">I", stream._prefix)
                (length,) = struct.unpack_from("<q", stream._prefix, 4)
                if kind != PROXY:
                    return
                if len(stream._prefix) < _PROXY_PREFIX + length:
                    return
                stream.header = json.loads(bytes(stream._prefix[_PROXY_PREFIX : _PROXY_PREFIX + length]))
                data = bytes(stream._prefix[_PROXY_PREFIX + length :])
                stream._prefix.clear()
            stream.raw += data
            complete = []
            while (end := _request_end(stream.raw, stream._scanned)) is not None:
                complete.append(bytes(stream.raw[stream._scanned : end]))
                stream._scanned = end
            stream.requests += complete
            script = self.script
        for request in complete:
            reply = script(request)
            if isinstance(reply, bytes):
                reply = Reply((reply,))
            self._schedule(stream_id, reply)

    def _schedule(self, stream_id: int, reply: Reply) -> None:
        due = max([time.monotonic()] + [a[0] for a in self._actions if a[2] == stream_id])
        for piece in reply.pieces:
            due += reply.delay
            heapq.heappush(self._actions, (due, next(self._seq), stream_id, "data", piece))
        if reply.end is not None:
            heapq.heappush(self._actions, (due, next(self._seq), stream_id, reply.end, b""))
        self._run_due_actions()

    def _run_due_actions(self) -> None:
        now = time.monotonic()
        while self._actions and self._actions[0][0] <= now:
            _, _, stream_id, kind, data = heapq.heappop(self._actions)
            if kind == "data":
                self._send(stream_id, data)
            elif kind == "fin":
                self._end(stream_id)
            else:
                self._unsent.pop(stream_id, None)
                self._mux.reset_stream(stream_id, mux.ErrorCode.RESET)

    def _send(self, stream_id: int, data: bytes) -> None:
        pending = self._unsent.setdefault(stream_id, bytearray())
        pending += data
        if not self._mux.is_open(stream_id):
            self._unsent.pop(stream_id, None)
            return
        if pending:
            try:
                taken = self._mux.send_data(stream_id, bytes(pending))
            except mux.LocalProtocolError:
                self._unsent.pop(stream_id, None)
                return
            del pending[:taken]
        if not pending:
            self._unsent.pop(stream_id, None)
            if stream_id in self._fin_after_unsent:
                self._fin_after_unsent.discard(stream_id)
                self._mux.end_stream(stream_id)

    def _end(self, stream_id: int) -> None:
        if self._unsent.get(stream_id):
            self._fin_after_unsent.add(stream_id)
        else:
            self._mux.end_stream(stream_id)


_CONTENT_LENGTH = re.compile(rb"\r?\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r?\ntransfer-encoding:[^\n]*chunked", re.IGNORECASE)


def _request_end(raw: bytearray, start: int) -> int | None:
    """Where the request that starts at ``start`` ends, if it is complete (framed as the edge
    frames what it forwards: Content-Length or chunked)."""
    match = re.compile(rb"\r?\n\r?\n").search(raw, start)
    if match is None:
        return None
    head = bytes(raw[start : match.start()])
    body = match.end()
    if _CHUNKED.search(head):
        last = raw.find(b"\r\n0\r\n\r\n", body - 2)
        if raw[body : body + 5] == b"0\r\n\r\n":
            return body + 5
        return None if last < 0 else last + 7
    length = _CONTENT_LENGTH.search(head)
    end = body + (int(length.group(1)) if length else 0)
    return end if len(raw) >= end else None
