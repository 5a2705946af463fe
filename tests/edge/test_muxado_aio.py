"""muxado over asyncio, on real loopback TCP: bulk transfer both ways, backpressure from a
slow reader, half-close, reset, go-away, protocol errors, and waking every waiter."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

from burrow.edge.muxado.aio import ConnectionClosedError, MuxadoConnection, MuxadoStream, StreamResetError
from burrow.edge.muxado.frames import DataFrame, ErrorCode, FrameParser, GoAwayFrame, RstFrame
from burrow.edge.muxado.session import WINDOW_SIZE, GoAwayReceived

MiB = 1024 * 1024


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout: float = 20) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


@contextlib.asynccontextmanager
async def loopback(**options: Any) -> AsyncIterator[tuple[MuxadoConnection, MuxadoConnection]]:
    """A client and a server connection over TCP on 127.0.0.1."""
    accepted: asyncio.Future[MuxadoConnection] = asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(MuxadoConnection(reader, writer, client_side=False, **options))

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = MuxadoConnection(reader, writer, client_side=True, **options)
    server = await asyncio.wait_for(accepted, 5)
    try:
        yield client, server
    finally:
        await client.close()
        await server.close()
        listener.close()
        await listener.wait_closed()


@contextlib.asynccontextmanager
async def raw_peer() -> AsyncIterator[tuple[MuxadoConnection, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A server connection, and a raw socket to it that speaks whatever bytes a test wants."""
    accepted: asyncio.Future[MuxadoConnection] = asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(MuxadoConnection(reader, writer, client_side=False))

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    server = await asyncio.wait_for(accepted, 5)
    try:
        yield server, reader, writer
    finally:
        writer.close()
        await server.close()
        listener.close()
        await listener.wait_closed()


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def accept(connection: MuxadoConnection) -> MuxadoStream:
    stream = await asyncio.wait_for(connection.accept_stream(), 5)
    assert stream is not None
    return stream


async def read_all(stream: MuxadoStream) -> bytes:
    parts = []
    while chunk := await stream.read(64 * 1024):
        parts.append(chunk)
    return b"".join(parts)


# Basics -------------------------------------------------------------------------------


def test_streams_both_ways() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            outbound = client.open_stream()
            await outbound.write(b"ping")
            inbound = await accept(server)
            assert (outbound.stream_id, inbound.stream_id) == (3, 3)
            assert await inbound.readexactly(4) == b"ping"
            await inbound.write(b"pong")
            assert await outbound.readexactly(4) == b"pong"
            pushed = server.open_stream()  # the edge opens streams too (proxy streams)
            await pushed.write(b"proxy")
            received = await accept(client)
            assert received.stream_id == pushed.stream_id == 2
            assert await received.read() == b"proxy"

    run(test)


def test_many_concurrent_streams_stay_apart() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            answering: set[asyncio.Task[None]] = set()

            async def echo() -> None:
                while (stream := await server.accept_stream()) is not None:
                    answering.add(asyncio.create_task(answer(stream)))

            async def answer(stream: MuxadoStream) -> None:
                await stream.write(await read_all(stream))
                await stream.write_eof()

            async def one(index: int) -> None:
                stream = client.open_stream()
                payload = os.urandom(1000 + index * 997)
                await stream.write(payload)
                await stream.write_eof()
                assert await read_all(stream) == payload

            echoer = asyncio.create_task(echo())
            await asyncio.gather(*(one(i) for i in range(60)))
            await asyncio.gather(*answering)
            assert client.session.stream_count == 0 and server.session.stream_count == 0
            echoer.cancel()

    run(test)


def test_readexactly_and_short_streams() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            stream = client.open_stream()
            await stream.write(b"abcdef")
            await stream.write_eof()
            inbound = await accept(server)
            assert await inbound.read(0) == b""
            assert await inbound.readexactly(2) == b"ab"
            with pytest.raises(asyncio.IncompleteReadError) as caught:
                await inbound.readexactly(10)
            assert caught.value.partial == b"cdef"
            assert await inbound.read() == b""

    run(test)


# Bulk and backpressure ----------------------------------------------------------------


def test_multi_mib_both_ways_through_an_echo() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            payload = os.urandom(6 * MiB)
            stream = client.open_stream()

            async def upload() -> None:
                view = memoryview(payload)
                for start in range(0, len(payload), 1 * MiB):  # writes larger than a window
                    await stream.write(bytes(view[start : start + MiB]))
                await stream.write_eof()

            async def echo() -> None:
                inbound = await accept(server)
                while chunk := await inbound.read():
                    assert inbound.buffered <= WINDOW_SIZE
                    await inbound.write(chunk)
                await inbound.write_eof()

            uploading, echoing = asyncio.create_task(upload()), asyncio.create_task(echo())
            downloaded = await read_all(stream)
            await asyncio.gather(uploading, echoing)
            assert hashlib.sha256(downloaded).digest() == hashlib.sha256(payload).digest()

    run(test)


def test_a_slow_reader_stalls_the_writer_within_one_window() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            payload = os.urandom(4 * MiB)
            stream = client.open_stream()
            writing = asyncio.create_task(stream.write(payload))
            inbound = await accept(server)
            # Nobody reads: the writer must stop once the window is spent, not buffer 4 MiB.
            await eventually(lambda: client.session.outbound_window(stream.stream_id) == 0)
            await asyncio.sleep(0.3)
            assert not writing.done()
            assert inbound.buffered == WINDOW_SIZE
            assert client.session.outbound_window(stream.stream_id) == 0  # no credit came back
            assert client._writer.transport.get_write_buffer_size() < WINDOW_SIZE
            # A slow reader: small reads, each returning a little credit, and pauses.
            received = bytearray()
            reads = 0
            while len(received) < len(payload):
                received += await inbound.read(32 * 1024)
                assert inbound.buffered <= WINDOW_SIZE
                reads += 1
                if reads % 16 == 0:
                    await asyncio.sleep(0.02)
                    assert inbound.buffered <= WINDOW_SIZE
            await asyncio.wait_for(writing, 5)
            assert received == payload

    run(test)


# Half-close, reset, close -------------------------------------------------------------


def test_half_close_leaves_the_other_direction_open() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            stream = client.open_stream()
            await stream.write(b"request")
            await stream.write_eof()
            with pytest.raises(BrokenPipeError):
                await stream.write(b"more")
            inbound = await accept(server)
            assert await read_all(inbound) == b"request"
            await inbound.write(b"response, after the client's FIN")
            await inbound.write_eof()
            assert await read_all(stream) == b"response, after the client's FIN"
            assert await stream.read() == b""  # stays at EOF
            await eventually(lambda: client.session.stream_count == server.session.stream_count == 0)

    run(test)


def test_reset_reaches_the_peer_reader_and_writer() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            stream = client.open_stream()
            # More than a window, so the writer is waiting for credit when the reset arrives.
            writing = asyncio.create_task(stream.write(bytes(2 * WINDOW_SIZE)))
            inbound = await accept(server)
            await eventually(lambda: inbound.buffered == WINDOW_SIZE)
            inbound.reset(ErrorCode.REFUSED)
            with pytest.raises(StreamResetError) as caught:
                await writing
            assert caught.value.code is ErrorCode.REFUSED
            with pytest.raises(StreamResetError):
                await stream.read()
            with pytest.raises(StreamResetError):
                await inbound.read()  # our own reset: our reads fail too
            assert not client.session.has_stream(stream.stream_id)

    run(test)


def test_closing_a_stream_refuses_what_the_peer_still_sends() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            stream = client.open_stream()
            await stream.write(b"request")
            inbound = await accept(server)
            assert await inbound.read() == b"request"
            inbound.close()
            assert await inbound.read() == b""
            assert await stream.read() == b""  # our FIN reached the client
            with pytest.raises(StreamResetError) as caught:  # the client keeps talking: RST
                for _ in range(100):
                    await stream.write(b"unwanted")
                    await asyncio.sleep(0.01)
            assert caught.value.code is ErrorCode.STREAM_CLOSED
            assert server.session.stream_count == 0

    run(test)


def test_go_away_ends_the_peer_and_wakes_everything() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            stream = client.open_stream()
            await stream.write(b"x")
            await accept(server)
            reading = asyncio.create_task(stream.read())
            accepting = asyncio.create_task(client.accept_stream())
            await asyncio.sleep(0.05)
            await server.close(ErrorCode.ENHANCE_YOUR_CALM, "too many requests")
            assert await asyncio.wait_for(accepting, 5) is None
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(reading, 5)
            await asyncio.wait_for(client.wait_closed(), 5)
            assert client.closed
            assert client.remote_goaway == GoAwayReceived(3, ErrorCode.ENHANCE_YOUR_CALM, "too many requests")
            with pytest.raises(ConnectionClosedError):
                client.open_stream()
            with pytest.raises(ConnectionClosedError):
                await stream.write(b"y")
            with pytest.raises(ConnectionClosedError):
                server.open_stream()
            assert await server.accept_stream() is None

    run(test)


def test_closing_wakes_a_blocked_reader_writer_and_acceptor() -> None:
    async def test() -> None:
        async with loopback() as (client, server):
            silent, stuffed = client.open_stream(), client.open_stream()
            await silent.write(b"hello")
            waiters: list[Awaitable[object]] = [
                asyncio.create_task(silent.read()),
                asyncio.create_task(stuffed.write(bytes(2 * WINDOW_SIZE))),  # blocks at one window
                asyncio.create_task(client.accept_stream()),
            ]
            await eventually(lambda: client.session.outbound_window(stuffed.stream_id) == 0)
            await client.close()
            results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 2)
            assert isinstance(results[0], ConnectionClosedError)
            assert isinstance(results[1], ConnectionClosedError)
            assert results[2] is None
            await asyncio.wait_for(server.wait_closed(), 5)  # GOAWAY, then EOF
            assert await server.accept_stream() is None  # streams of a dead connection are not handed out
            assert server.remote_goaway is not None and server.remote_goaway.code is ErrorCode.NONE

    run(test)


# Misbehaving peers --------------------------------------------------------------------


def test_protocol_errors_send_goaway_and_close() -> None:
    async def test() -> None:
        async with raw_peer() as (server, reader, writer):
            writer.write(DataFrame(3, b"fine", syn=True).encode())
            stream = await accept(server)
            assert await stream.read() == b"fine"
            writer.write(b"\xff" * 8)
            reply = await asyncio.wait_for(reader.read(), 5)  # everything, up to EOF
            parser = FrameParser()
            parser.feed(reply)
            frames = list(parser)
            assert frames[-1] == GoAwayFrame(3, ErrorCode.PROTOCOL, b"unknown frame type 15")
            assert await asyncio.wait_for(server.accept_stream(), 5) is None
            assert server.closed and "protocol error (PROTOCOL)" in server.close_reason
            with pytest.raises(ConnectionClosedError):
                await stream.read()

    run(test)


def test_late_data_for_a_reset_stream_gets_rst_and_does_not_end_the_session() -> None:
    async def test() -> None:
        async with raw_peer() as (server, reader, writer):
            writer.write(DataFrame(3, b"a", syn=True).encode())
            stream = await accept(server)
            stream.reset()
            writer.write(DataFrame(3, b"late").encode() + DataFrame(5, b"next", syn=True).encode())
            assert await (await accept(server)).read() == b"next"
            parser = FrameParser()
            while len(frames := list(parser)) < 2:
                parser.feed(await asyncio.wait_for(reader.read(1024), 5))
            assert frames[:2] == [RstFrame(3, ErrorCode.CANCELLED), RstFrame(3, ErrorCode.STREAM_CLOSED)]
            assert not server.closed

    run(test)


def test_peer_eof_without_goaway() -> None:
    async def test() -> None:
        async with raw_peer() as (server, _, writer):
            writer.write(DataFrame(3, b"partial", syn=True).encode())
            stream = await accept(server)
            writer.close()
            assert await stream.read() == b"partial"  # what arrived is still readable
            with pytest.raises(ConnectionClosedError):
                await stream.read()
            assert await asyncio.wait_for(server.accept_stream(), 5) is None
            assert server.close_reason == "the peer closed the connection"

    run(test)
