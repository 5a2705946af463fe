"""The sans-IO HTTP/1.1 core (edge/http1), fed bytes, no sockets.

Valid messages, split anywhere, parse to the same message, and what the serialiser makes
of them re-parses (with this core and with h11, an independent parser) to the same
method, target, fields and body. Every ambiguous framing is refused, one case each.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burrow.edge.http1 import (
    CHUNKED,
    LENGTH,
    BodyData,
    MessageEnd,
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from burrow.edge.http1.serialize import request_fields, request_head, response_fields, response_head

Event = RequestHead | ResponseHead | BodyData | MessageEnd


def drain(parser: RequestParser | ResponseParser) -> list[Event]:
    events: list[Event] = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


def feed_split(parser: RequestParser | ResponseParser, data: bytes, cuts: list[int]) -> list[Event]:
    events: list[Event] = []
    at = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if cut > at:
            parser.receive(data[at:cut])
            events += drain(parser)
            at = cut
    return events


def body_of(events: list[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, BodyData))


# Valid messages ------------------------------------------------------------------------

_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
_names = _token.filter(
    lambda name: (
        name.lower()
        not in {"host", "content-length", "transfer-encoding", "connection", "te", "trailer", "upgrade"}
        and name.lower() not in {"keep-alive", "proxy-connection", "expect", "x-forwarded-for"}
        and not name.lower().startswith("x-forwarded")
    )
)
_values = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ;=,/.-_", max_size=30).map(
    lambda value: value.strip()
)
_fields = st.lists(st.tuples(_names, _values), max_size=6)
_bodies = st.binary(max_size=300)


def _chunked(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: t\r\n\r\n"


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]),
    target=st.sampled_from(["/", "/a/b?c=d&e=f", "/%7Euser", "*"]),
    fields=_fields,
    body=_bodies,
    chunked=st.booleans(),
    size=st.integers(1, 64),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_requests_in_any_split_are_forwarded_as_the_same_message(
    method: str,
    target: str,
    fields: list[tuple[str, str]],
    body: bytes,
    chunked: bool,
    size: int,
    cuts: list[int],
) -> None:
    if method == "GET":
        body, chunked = b"", False
    head = f"{method} {target} HTTP/1.1\r\nHost: tenant.example\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields)
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n"
    data = (head + framing + "Connection: keep-alive\r\n\r\n").encode() + (
        _chunked(body, size) if chunked else body
    )
    parser = RequestParser()
    events = feed_split(parser, data, cuts)
    assert isinstance(events[0], RequestHead) and isinstance(events[-1], MessageEnd)
    parsed = events[0]
    assert (parsed.method, parsed.target, parsed.host) == (
        method.encode(),
        target.encode(),
        b"tenant.example",
    )
    assert body_of(events) == body
    # Forwarded with our own framing, it is the same request to this core and to h11.
    out_framing = CHUNKED if chunked else LENGTH
    forwarded = request_head(parsed, request_fields(parsed, b"192.0.2.1", b"http"), out_framing, len(body))
    forwarded += (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n" if chunked else body
    again = RequestParser()
    again.receive(forwarded)
    events2 = drain(again)
    assert isinstance(events2[0], RequestHead) and body_of(events2) == body
    expected = [(n.encode(), v.encode()) for n, v in fields]
    kept = [(n, v) for n, v in events2[0].headers if not n.lower().startswith(b"x-forwarded")]
    assert [
        (n, v) for n, v in kept if n.lower() not in (b"host", b"content-length", b"transfer-encoding")
    ] == expected
    server = h11.Connection(h11.SERVER)
    server.receive_data(forwarded)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert (request.method, request.target) == (method.encode(), target.encode())
    seen = {name: value for name, value in request.headers}
    assert seen[b"x-forwarded-for"] == b"192.0.2.1" and b"connection" not in seen
    h11_body = b""
    while isinstance(event := server.next_event(), h11.Data):
        h11_body += event.data
    assert isinstance(event, h11.EndOfMessage) and h11_body == body


@settings(max_examples=150, deadline=None)
@given(
    status=st.sampled_from([200, 201, 404, 500, 204, 304]),
    fields=_fields,
    body=_bodies,
    framing=st.sampled_from(["length", "chunked", "close"]),
    size=st.integers(1, 64),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    interim=st.booleans(),
)
def test_responses_in_any_split_are_reserialised_as_the_same_message(
    status: int,
    fields: list[tuple[str, str]],
    body: bytes,
    framing: str,
    size: int,
    cuts: list[int],
    interim: bool,
) -> None:
    if status in (204, 304):
        body, framing = b"", "none"
    head = (
        b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    ) + f"HTTP/1.1 {status} Some Reason\r\n".encode()
    head += "".join(f"{name}: {value}\r\n" for name, value in fields).encode()
    if framing == "length":
        data = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        data = head + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body, size)
    else:
        data = head + b"\r\n" + body
    parser = ResponseParser()
    parser.expect(b"GET")
    events = feed_split(parser, data, cuts)
    if framing == "close":
        end = parser.receive_eof()
        assert end is not None
        events.append(end)
    heads = [event for event in events if isinstance(event, ResponseHead)]
    assert [h.status for h in heads] == ([100] if interim else []) + [status]
    assert isinstance(events[-1], MessageEnd) and body_of(events) == body
    final = heads[-1]
    out, encoder, close = response_head(final, response_fields(final), False, False)
    out += b"".join(encoder.piece(e.data) for e in events if isinstance(e, BodyData)) + encoder.end()
    assert close == (framing == "close")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(out)
    if close:
        client.receive_data(b"")
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == status
    names = [
        name
        for name, _ in response.headers
        if name not in (b"content-length", b"transfer-encoding", b"connection")
    ]
    assert names == [name.lower().encode() for name, _ in fields]
    h11_body = b""
    while isinstance(event := client.next_event(), h11.Data):
        h11_body += event.data
    assert isinstance(event, h11.EndOfMessage) and h11_body == body


# Refused requests ----------------------------------------------------------------------

GOOD = b"POST / HTTP/1.1\r\nHost: a.example\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),  # bare CR
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),  # NUL
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),  # a control character
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # space before the colon
        (GOOD + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400),
        (GOOD + b"Transfer-Encoding: gzip\r\n\r\n", 501),
        (GOOD + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 501),  # TE with a tab
        (GOOD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (GOOD + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),  # TE + CL
        (GOOD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (GOOD + b"Content-Length: 5, 5\r\n\r\nhello", 400),
        (GOOD + b"Content-Length: 05\r\n\r\nhello", 400),  # leading zeros
        (GOOD + b"Content-Length: +5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (GOOD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),  # bad chunk size
        (GOOD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400),  # no CRLF after data
        (GOOD + b"Transfer-Encoding: chunked\r\n\r\n5;" + b"e" * 5000, 400),  # chunk line too long
        (GOOD + b"X: " + b"b" * 70_000, 431),  # huge head
        (GOOD + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),  # too many fields
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody", 400),  # GET with a body
        (b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # two spaces
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ],
)
def test_ambiguous_requests_are_refused(request_bytes: bytes, status: int) -> None:
    parser = RequestParser()
    parser.receive(request_bytes)
    with pytest.raises(RemoteProtocolError) as refused:
        drain(parser)
    assert refused.value.status == status
    with pytest.raises(RemoteProtocolError):  # and the parser stays refused
        parser.next_event()


def test_pipelined_requests_wait_for_start_next() -> None:
    parser = RequestParser()
    parser.receive(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n")
    first = drain(parser)
    assert len(first) == 2 and parser.buffered and parser.next_event() is None
    parser.start_next()
    second = drain(parser)
    assert isinstance(second[0], RequestHead) and second[0].target == b"/2"


# Refused responses ---------------------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\n"


@pytest.mark.parametrize(
    ("response", "method", "upgrade"),
    [
        # The attack: a head ending in a bare LF, then a forged response in the same bytes.
        (
            OK + b"Content-Length: 77\r\nX-A: 1\n\nX-Pad: ppp\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nSet-Cookie: sid=evil-planted\r\n\r\nEVIL-FAKE",
            b"GET",
            False,
        ),
        (OK + b"X: a\rb\r\n\r\n", b"GET", False),  # bare CR
        (OK + b"X: a\r\n folded\r\n\r\n", b"GET", False),
        (OK + b"X: a\x00\r\n\r\n", b"GET", False),
        (OK + b"X : a\r\n\r\n", b"GET", False),
        (OK + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", b"GET", False),
        (OK + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", b"GET", False),
        (OK + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", b"GET", False),
        (OK + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", b"GET", False),
        (OK + b"Content-Length: 5, 5\r\n\r\nhello", b"GET", False),
        (OK + b"Content-Length: 05\r\n\r\nhello", b"GET", False),
        (b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"GET", False),
        (OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", b"GET", False),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", b"GET", False),
        (OK + b"Transfer-Encoding: chunked\r\n\r\n5;" + b"e" * 5000, b"GET", False),
        (OK + b"X: " + b"b" * 70_000, b"GET", False),  # huge head
        (OK + b"".join(b"X-%d: v\r\n" % i for i in range(300)) + b"\r\n", b"GET", False),
        (OK + b"Content-Length: 2\r\n\r\nhi" + OK + b"Content-Length: 0\r\n\r\n", b"GET", False),  # two
        (b"HTTP/1.1 100 Continue\r\n\r\nNOT HTTP\r\n\r\n", b"GET", False),  # 1xx then junk
        (b"HTTP/1.1 204 No Content\r\n\r\nbody", b"GET", False),  # a body after 204
        (b"HTTP/1.1 304 Not Modified\r\n\r\nbody", b"GET", False),
        (OK + b"Content-Length: 4\r\n\r\nbody", b"HEAD", False),  # a body after a HEAD's answer
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", b"GET", False),
        (b"HTTP/1.1 20 OK\r\n\r\n", b"GET", False),  # bad status line
        (b"HTTP/2 200 OK\r\n\r\n", b"GET", False),
        (b"NOT HTTP AT ALL\r\n\r\n", b"GET", False),
        (b"".join(b"HTTP/1.1 103 Early Hints\r\n\r\n" for _ in range(9)), b"GET", False),
    ],
)
def test_faulty_responses_are_refused(response: bytes, method: bytes, upgrade: bool) -> None:
    parser = ResponseParser()
    parser.expect(method, upgrade)
    with pytest.raises(RemoteProtocolError):
        parser.receive(response)
        drain(parser)


def test_bytes_when_no_response_is_due_are_a_fault() -> None:
    parser = ResponseParser()
    with pytest.raises(RemoteProtocolError):
        parser.receive(b"HTTP/1.1 200 OK\r\n\r\n")
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.receive(OK + b"Content-Length: 2\r\n\r\nhi")
    assert isinstance(drain(parser)[-1], MessageEnd)
    with pytest.raises(RemoteProtocolError):
        parser.receive(b"x")


def test_a_requested_upgrade_hands_over_the_rest() -> None:
    parser = ResponseParser()
    parser.expect(b"GET", upgrade=True)
    parser.receive(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw"
    )
    (head,) = drain(parser)
    assert isinstance(head, ResponseHead) and head.status == 101 and parser.take_rest() == b"raw"


def test_content_length_bodies_pass_through_as_received() -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.receive(OK + b"Content-Length: 10\r\n\r\nab")
    assert [type(e) for e in drain(parser)] == [ResponseHead, BodyData]
    chunk = b"cdefgh"
    assert parser.passthrough(chunk)  # inside the body: forwarded as is, not copied
    assert not parser.passthrough(b"ijk")  # would cross the end
    parser.receive(b"ij")
    assert [type(e) for e in drain(parser)] == [BodyData, MessageEnd]
