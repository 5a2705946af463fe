"""The PROXY protocol parser (domain/proxy_protocol.py): strict, bounded, incremental."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burrow.domain.proxy_protocol import (
    MAX_HEADER_BYTES,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    header,
    parse,
)

CASES = [
    (("198.51.100.7", 50123), ("203.0.113.1", 443)),
    (("2001:db8::7", 1), ("2001:db8::1", 65535)),
]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(("client", "server"), CASES)
def test_what_header_builds_parses_back_byte_by_byte(
    version: int, client: tuple[str, int], server: tuple[str, int]
) -> None:
    built = header(version, client, server)
    data = built + b"GET / HTTP/1.1\r\n"
    for end in range(len(built)):
        assert parse(data[:end]) is None, end  # more bytes needed, never a guess
    assert parse(data) == ProxyHeader(len(built), client, server)


def test_local_and_unknown_mean_the_peer_itself() -> None:
    assert parse(b"PROXY UNKNOWN\r\nrest") == ProxyHeader(15, None)
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == ProxyHeader(35, None)
    local = V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    assert parse(local + b"x") == ProxyHeader(16, None)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # LF alone
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",  # two spaces
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",  # a leading zero
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 001.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # the wrong family
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 example.com 5.6.7.8 1 2\r\n",
        b"PROXY " + b"A" * 200,  # no CRLF within 107 bytes
        V2_SIGNATURE + bytes([0x11, 0x11]) + struct.pack("!H", 12) + bytes(12),  # version 1 in v2
        V2_SIGNATURE + bytes([0x22, 0x11]) + struct.pack("!H", 12) + bytes(12),  # an unknown command
        V2_SIGNATURE + bytes([0x21, 0x12]) + struct.pack("!H", 12) + bytes(12),  # UDP
        V2_SIGNATURE + bytes([0x21, 0x31]) + struct.pack("!H", 216) + bytes(216),  # AF_UNIX
        V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 8) + bytes(8),  # too short
        V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", MAX_HEADER_BYTES),  # too long
    ],
)
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


def test_tlvs_are_skipped_within_the_limit() -> None:
    addresses = bytes([198, 51, 100, 7, 203, 0, 113, 1]) + struct.pack("!HH", 5000, 443)
    tlv = bytes([0x05, 0x00, 0x04]) + b"abcd"  # PP2_TYPE_UNIQUE_ID
    data = V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses) + len(tlv)) + addresses + tlv
    assert parse(data + b"next") == ProxyHeader(len(data), ("198.51.100.7", 5000), ("203.0.113.1", 443))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_header_more_or_a_refusal(data: bytes) -> None:
    try:
        result = parse(data)
    except ProxyHeaderError:
        return
    assert result is None or 0 < result.length <= min(len(data), MAX_HEADER_BYTES)


@given(st.binary(max_size=300))
def test_any_bytes_after_a_v2_signature_are_handled(data: bytes) -> None:
    try:
        result = parse(V2_SIGNATURE + data)
    except ProxyHeaderError:
        return
    assert result is None or result.length <= MAX_HEADER_BYTES
