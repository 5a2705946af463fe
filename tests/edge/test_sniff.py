"""Host and SNI sniffing, against real request heads and real ClientHellos."""

from __future__ import annotations

import contextlib
import ssl

from hypothesis import given
from hypothesis import strategies as st

from burrow.edge.sniff import NEED_MORE, http_host, tls_server_name


def test_http_host() -> None:
    assert http_host(b"GET / HTTP/1.1\r\nHost: App.Example.com:8080\r\nX: y\r\n\r\n") == "app.example.com"
    assert http_host(b"GET / HTTP/1.1\r\nhost:a.example.com\r\n\r\nbody") == "a.example.com"
    assert http_host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n") == "[::1]"
    assert http_host(b"GET / HTTP/1.1\r\nHost: a.exam") == NEED_MORE
    assert http_host(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n") is None
    assert http_host(b"\x16\x03\x01\x00\x05hello\r\n\r\n") is None
    assert http_host(b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000) is None


def client_hello(server_name: str | None) -> bytes:
    """A real ClientHello, from Python's own TLS stack."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    if server_name is None:
        context.check_hostname = False
        tls = context.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_tls_server_name_from_a_real_client_hello() -> None:
    hello = client_hello("Tunnel.Example.com")
    assert tls_server_name(hello) == "tunnel.example.com"
    for cut in (0, 3, 5, 40, len(hello) - 1):
        assert tls_server_name(hello[:cut]) == NEED_MORE
    assert tls_server_name(client_hello(None)) is None
    assert tls_server_name(b"GET / HTTP/1.1\r\n\r\n") is None


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert tls_server_name(data) in (NEED_MORE, None) or isinstance(tls_server_name(data), str)
    assert http_host(data) in (NEED_MORE, None) or isinstance(http_host(data), str)


@given(st.binary(max_size=300))
def test_corrupted_client_hellos_never_raise(noise: bytes) -> None:
    hello = bytearray(client_hello("a.example.com"))
    for index, byte in enumerate(noise[: len(hello)]):
        hello[(index * 7) % len(hello)] ^= byte
    result = tls_server_name(bytes(hello))
    assert result is None or result == NEED_MORE or isinstance(result, str)
