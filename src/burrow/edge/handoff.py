"""Handing a public connection to a sibling worker (``burrow serve --workers``).

Workers on one machine share the listening sockets, so a connection one worker accepted may
be for a tunnel another holds. Relaying it (edge/relay.py) would cost a TLS connection and
a second parse of every request; instead the worker passes the connection itself: its
descriptor (``SCM_RIGHTS``) over a Unix datagram socket the parent made for the holder,
with the header a relay would send and the bytes already read. The holder serves it as if
it had accepted it (the client's address is the socket's own). HTTPS connections, which
the relay does not carry, are handed over before their handshake: the listener only peeks
at the ClientHello, so the holder reads it again and answers with its certificate for the
name. A later request on a handed-over connection
for a name the holder does not serve gets 421, as on a relayed connection. A message that
cannot be sent (too large, the holder's queue full) falls back to the relay. Between
machines the relay stays.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from .relay import PublicProtocols

log = logging.getLogger("burrow.edge")
MAX_MESSAGE = 128 * 1024  # the header plus the bytes read: a request head is at most 64 KiB
_FD_SPACE = socket.CMSG_SPACE(array.array("i", [0]).itemsize)


class _Handed(asyncio.Protocol):
    """Gives the public protocol the connection, then the bytes the other worker read."""

    def __init__(self, protocol: asyncio.Protocol, first: bytes) -> None:
        self.protocol = protocol
        self.first = first

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.set_protocol(self.protocol)
        self.protocol.connection_made(transport)
        if self.first:
            self.protocol.data_received(self.first)


class Handoff:
    """This worker's inbox of connections, and the siblings' inboxes by relay address."""

    def __init__(self, inbox: socket.socket, siblings: dict[str, socket.socket]) -> None:
        self.inbox = inbox
        self.siblings = siblings
        self.handed = 0  # connections passed to siblings
        self.received = 0
        self._listeners: PublicProtocols | None = None
        self._https_accept: Callable[[socket.socket], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, listeners: PublicProtocols, https_accept: Callable[[socket.socket], None] | None) -> None:
        """Take connections from siblings, for ``listeners`` and, with ``https_accept``, the
        HTTPS listener's entry for a handed socket whose ClientHello is still unread."""
        self._listeners = listeners
        self._https_accept = https_accept
        self.inbox.setblocking(False)
        asyncio.get_running_loop().add_reader(self.inbox.fileno(), self._readable)

    def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.inbox.fileno())
        for task in self._tasks:
            task.cancel()

    def hand_over(
        self, client: asyncio.Transport, first: bytes, header: dict[str, Any], relay_addr: str
    ) -> bool:
        """Pass ``client`` to the sibling at ``relay_addr``; False if it is not a sibling or
        the message cannot go (the caller relays instead). On True the caller's transport
        is closed: the sibling holds the connection now."""
        sock = client.get_extra_info("socket")
        if relay_addr not in self.siblings or sock is None:
            return False
        client.pause_reading()  # what the client sends next stays in the socket for the sibling
        if not self.send(sock.fileno(), header, first, relay_addr):
            client.resume_reading()
            return False
        client.set_protocol(asyncio.Protocol())  # closing this copy is no event for the connection
        client.close()  # no shutdown: the sibling's descriptor keeps the connection open
        return True

    def send(self, descriptor: int, header: dict[str, Any], first: bytes, relay_addr: str) -> bool:
        """Send the connection ``descriptor`` to the sibling at ``relay_addr``; the caller then
        closes its own descriptor (which ends nothing: the sibling has one)."""
        inbox = self.siblings.get(relay_addr)
        message = json.dumps(header).encode() + b"\n" + first
        if inbox is None or len(message) > MAX_MESSAGE:
            return False
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [descriptor]))]
        try:
            inbox.sendmsg([message], rights, socket.MSG_DONTWAIT)
        except OSError as error:
            log.debug("handoff failed", extra={"fields": {"node": relay_addr, "error": str(error)}})
            return False
        self.handed += 1
        return True

    def _readable(self) -> None:
        while True:
            try:
                message, ancillary, _flags, _addr = self.inbox.recvmsg(MAX_MESSAGE, _FD_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("handoff inbox failed", extra={"fields": {"error": str(error)}})
                return
            descriptors = array.array("i")
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    descriptors.frombytes(data[: len(data) - len(data) % descriptors.itemsize])
            if len(descriptors) != 1:
                for descriptor in descriptors:
                    socket.close(descriptor)
                continue
            task = asyncio.get_running_loop().create_task(self._serve(descriptors[0], message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, descriptor: int, message: bytes) -> None:
        sock = socket.socket(fileno=descriptor)
        sock.setblocking(False)
        protocol = None
        end = message.find(b"\n")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            header = json.loads(message[:end])
            if header["listener"] == "https" and self._https_accept is not None:
                self.received += 1
                self._https_accept(sock)
                return
            if end > 0 and self._listeners is not None:
                protocol = self._listeners.relayed_protocol(
                    str(header["listener"]), int(header.get("port", 0)), header.get("sni")
                )
        if protocol is None:
            sock.close()
            return
        self.received += 1
        first = message[end + 1 :]
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: _Handed(protocol, first), sock)
        except OSError:
            sock.close()
