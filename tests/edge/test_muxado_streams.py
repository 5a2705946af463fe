"""muxado over asyncio, on real loopback sockets."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import pytest

from burrow.edge import muxado_protocol as mux
from burrow.edge.muxado_streams import MuxConnection, StreamReset

Scenario = Callable[[MuxConnection, MuxConnection], Awaitable[None]]


def run(scenario: Scenario) -> None:
    async def main() -> None:
        accepted: asyncio.Future[MuxConnection] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(MuxConnection(reader, writer, client_side=False))

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = MuxConnection(reader, writer, client_side=True)
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
        with pytest.raises(StreamReset):
            await asyncio.wait_for(reading, 5)
        with pytest.raises(StreamReset):
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
        with pytest.raises(StreamReset):
            await asyncio.wait_for(waiting_read, 5)
        assert await asyncio.wait_for(waiting_accept, 5) is None
        await asyncio.wait_for(client.done.wait(), 5)
        assert client.close_reason == "maintenance"

    run(scenario)


def test_garbage_ends_the_connection_with_a_go_away() -> None:
    async def scenario(client: MuxConnection, server: MuxConnection) -> None:
        client._writer.write(b"\xff" * 64)  # not muxado
        await asyncio.wait_for(server.done.wait(), 5)
        await asyncio.wait_for(client.done.wait(), 5)
        assert "unknown frame type" in server.close_reason or "frame of" in server.close_reason

    run(scenario)
