"""SNI sniffing, against real ClientHellos."""

from __future__ import annotations

import contextlib
import ssl

from hypothesis import given, settings
from hypothesis import strategies as st

from burrow.edge.sniff import NEED_MORE, tls_server_name


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


@settings(deadline=None)  # builds a real ClientHello per example: slow on a busy machine
@given(st.binary(max_size=300))
def test_corrupted_client_hellos_never_raise(noise: bytes) -> None:
    hello = bytearray(client_hello("a.example.com"))
    for index, byte in enumerate(noise[: len(hello)]):
        hello[(index * 7) % len(hello)] ^= byte
    result = tls_server_name(bytes(hello))
    assert result is None or result == NEED_MORE or isinstance(result, str)
