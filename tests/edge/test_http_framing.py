"""The response framing the proxy does itself: the chunked-body scanner, fed in any split."""

from __future__ import annotations

import pytest

from burrow.edge.http_proxy import _accepts_gzip, _ChunkScanner

BODY = b"5\r\nhello\r\n10;ext=1\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 7, len(BODY)])
def test_chunked_body_end_and_data_in_any_split(step: int) -> None:
    scanner = _ChunkScanner()
    pieces: list[bytes] = []
    data = BODY + b"NEXT RESPONSE"
    used = 0
    for start in range(0, len(data), step):
        part = memoryview(data[start : start + step])
        taken = scanner.feed(part, pieces)
        used += taken
        if scanner.done:
            break
        assert taken == len(part)
    assert scanner.done and used == len(BODY)
    assert b"".join(pieces) == b"hello" + b"x" * 16


@pytest.mark.parametrize(
    "bad", [b"zz\r\n", b"5\r\nhelloXX", b"1" * 17 + b"\r\n", b"5;" + b"e" * 5000 + b"\r\n"]
)
def test_bad_chunk_framing_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        _ChunkScanner().feed(memoryview(bad + b"\r\n"), None)


def test_accept_encoding() -> None:
    assert _accepts_gzip([b"br, gzip;q=0.8"]) and _accepts_gzip([b"*"])
    assert not _accepts_gzip([b"gzip;q=0"]) and not _accepts_gzip([b"br"]) and not _accepts_gzip([])
