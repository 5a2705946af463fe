"""The chunked-body decoder of the HTTP/1.1 core, fed in any split, and Accept-Encoding."""

from __future__ import annotations

import pytest

from burrow.edge.forward_head import accepts_gzip as _accepts_gzip
from burrow.edge.http1 import RemoteProtocolError
from burrow.edge.http1.chunked import ChunkedDecoder

BODY = b"5\r\nhello\r\n10;ext=1\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 7, len(BODY)])
def test_chunked_body_end_and_data_in_any_split(step: int) -> None:
    decoder = ChunkedDecoder()
    pieces: list[bytes] = []
    data = BODY + b"NEXT RESPONSE"
    buffer = b""
    used = 0
    for start in range(0, len(data), step):
        buffer += data[start : start + step]
        taken = decoder.feed(buffer, pieces)
        used += taken
        buffer = buffer[taken:]
        if decoder.done:
            break
    assert decoder.done and used == len(BODY)
    assert b"".join(pieces) == b"hello" + b"x" * 16


@pytest.mark.parametrize(
    "bad",
    [
        b"zz\r\n",
        b"5\r\nhelloXX",
        b"1" * 17 + b"\r\n",
        b"5;" + b"e" * 5000 + b"\r\n",
        b"5\nhello\r\n",  # bare LF after the size
        b"5 x\r\nhello\r\n",
        b"0\r\nBad Trailer: t\r\n\r\n",
    ],
)
def test_bad_chunk_framing_is_refused(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ChunkedDecoder().feed(bad + b"\r\n", [])


def test_accept_encoding() -> None:
    assert _accepts_gzip([b"br, gzip;q=0.8"]) and _accepts_gzip([b"*"])
    assert not _accepts_gzip([b"gzip;q=0"]) and not _accepts_gzip([b"br"]) and not _accepts_gzip([])
