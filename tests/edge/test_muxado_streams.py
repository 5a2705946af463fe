"""muxado over asyncio, on real loopback sockets."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Awaitable, Callable

import pytest

from burrow.edge import muxado_protocol as mux
from burrow.edge.muxado_streams import MuxConnection, StreamResetError

Scenario = Callable[[MuxConnection, MuxConnection], Awaitable[None]]


def run(scenario: Scenario) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[MuxConnection] = loop.create_future()
        server = await loop.create_server(
            lambda: MuxConnection(client_side=False, on_connected=accepted.set_result), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        client = await MuxConnection.connect("127.0.0.1", port)
        server_side = await asyncio.wait_for(accepted, 5)
        try:
            await asyncio.wait_for(scenario(client, server_side), 30)
        finally:
            await client.close()
            await server_side.close()
            server.close()

    asyncio.run(main())


def test_multi_mib_both_ways() -> None:
    size = 8 * 1024 * 1024
    payload = hashlib.sha256(b"seed").digest() * (size // 32)

    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        stream = client.open_stream()

        async def send() -> None:
            await stream.write(payload)
            await stream.write_eof()

        sending = asyncio.create_task(send())
        incoming = await server.accept_stream()
        assert incoming is not None
        received = await incoming.read_all(limit=size + 1)
        await sending
        assert received == payload

        async def reply() -> None:
            await incoming.write(received[::-1])
            await incoming.write_eof()

        replying = asyncio.create_task(reply())
        assert await stream.read_all(limit=size + 1) == payload[::-1]
        await replying

    run(scenario)


def test_a_slow_reader_stalls_the_writer_at_the_window() -> None:
    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        stream = client.open_stream()
        writing = asyncio.create_task(stream.write(b"z" * (4 * mux.WINDOW)))
        incoming = await server.accept_stream()
        assert incoming is not None
        await asyncio.sleep(0.3)
        assert not writing.done()  # blocked on window credit
        assert incoming._buffered <= mux.WINDOW  # memory bounded by the window
        assert client.protocol.send_window(stream.stream_id) == 0
        received = 0
        while received < 4 * mux.WINDOW:
            received += len(await incoming.read(10_000))
        await asyncio.wait_for(writing, 5)

    run(scenario)


def test_half_close_keeps_the_other_direction_open() -> None:
    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        stream = client.open_stream()
        await stream.write(b"question")
        await stream.write_eof()
        incoming = await server.accept_stream()
        assert incoming is not None
        assert await incoming.read_all(100) == b"question"
        await incoming.write(b"answer after your FIN")
        await incoming.write_eof()
        assert await stream.read_all(100) == b"answer after your FIN"

    run(scenario)


def test_reset_reaches_the_peer() -> None:
    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        stream = client.open_stream()
        await stream.write(b"x")
        incoming = await server.accept_stream()
        assert incoming is not None
        assert await incoming.read(1) == b"x"
        reading = asyncio.create_task(incoming.read())
        stream.reset()
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(reading, 5)
        with pytest.raises(StreamResetError):
            await stream.write(b"after reset")

    run(scenario)


def test_go_away_wakes_every_waiter() -> None:
    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        stream = client.open_stream()
        await stream.write(b"x")
        incoming = await server.accept_stream()
        assert incoming is not None
        waiting_read = asyncio.create_task(stream.read())
        waiting_accept = asyncio.create_task(client.accept_stream())
        await server.close(mux.ErrorCode.NONE, "maintenance")
        with pytest.raises(StreamResetError):
            await asyncio.wait_for(waiting_read, 5)
        assert await asyncio.wait_for(waiting_accept, 5) is None
        await asyncio.wait_for(client.done.wait(), 5)
        assert client.close_reason == "maintenance"

    run(scenario)


def test_garbage_ends_the_connection_with_a_go_away() -> None:
    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        assert client.transport is not None
        client.transport.write(b"\xff" * 64)  # not muxado
        await asyncio.wait_for(server.done.wait(), 5)
        await asyncio.wait_for(client.done.wait(), 5)
        assert "unknown frame type" in server.close_reason or "frame of" in server.close_reason

    run(scenario)


def test_forward_to_a_slow_socket_holds_back_credit_then_delivers_everything() -> None:
    """forward_to() writes from the receive callback; credit returns only as the socket takes it."""
    size = 16 * mux.WINDOW
    payload = hashlib.sha256(b"forward").digest() * (size // 32)

    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connected.set_result((reader, writer))

        # Small kernel buffers, so the sink fills up well before the payload is through.
        listening = socket.socket()
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        listening.bind(("127.0.0.1", 0))
        sink_server = await asyncio.start_server(on_connect, sock=listening)
        sending_socket = socket.socket()
        sending_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        sending_socket.connect(listening.getsockname())
        _, sink = await asyncio.open_connection(sock=sending_socket)
        slow_reader, slow_writer = await connected
        slow_reader._transport.pause_reading()  # type: ignore[attr-defined]

        stream = client.open_stream()
        await stream.write(b"")  # the SYN alone: forwarding starts before any data arrives
        incoming = await server.accept_stream()
        assert incoming is not None
        forwarding = asyncio.create_task(incoming.forward_to(sink))
        await asyncio.sleep(0)

        async def send() -> None:
            await stream.write(payload)
            await stream.write_eof()

        sending = asyncio.create_task(send())
        await asyncio.sleep(0.5)
        # Stalled: the sender is stuck on the window while the sink is not read.
        assert not sending.done() and not forwarding.done()
        assert client.protocol.send_window(stream.stream_id) == 0
        slow_reader._transport.resume_reading()  # type: ignore[attr-defined]
        received = await asyncio.wait_for(slow_reader.readexactly(size), 20)
        await sending
        await asyncio.wait_for(forwarding, 5)
        assert received == payload
        for writer in (sink, slow_writer):
            writer.close()
        sink_server.close()

    run(scenario)
