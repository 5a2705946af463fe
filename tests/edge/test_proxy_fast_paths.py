"""The proxy path's fast paths (issue 17's cost work) decide exactly what the general paths do.

Byte-fed and pure: no sockets. Each fast path is compared with the general one on the
inputs where they could disagree: field names in any case, a request completed with its
head, the fields forwarded as they are, the Host names remembered between requests.
"""

from __future__ import annotations

import pytest

from burrow.edge import request_checks
from burrow.edge.forward_head import forwarded_head, kept_fields
from burrow.edge.http1 import (
    LENGTH,
    NO_BODY,
    BodyData,
    MessageEnd,
    RemoteProtocolError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)
from burrow.edge.http1.serialize import response_fields, response_head
from burrow.edge.proxy_request import ProxyRequest
from burrow.edge.request_checks import host_name, unroutable


def _head(data: bytes) -> RequestHead:
    parser = RequestParser()
    parser.receive(data)
    event = parser.next_event()
    assert isinstance(event, RequestHead)
    return event


@pytest.mark.parametrize("spelling", [b"Host", b"host", b"HOST", b"hOsT"])
def test_a_noted_field_is_noted_in_any_case(spelling: bytes) -> None:
    head = _head(b"GET / HTTP/1.1\r\n%b: a.example\r\nUser-Agent: x\r\nuser-agent: y\r\n\r\n" % spelling)
    assert head.noted == {b"host": [b"a.example"]} and head.host == b"a.example"
    assert head.headers == [(spelling, b"a.example"), (b"User-Agent", b"x"), (b"user-agent", b"y")]


@pytest.mark.parametrize(
    "field", [b"Connection: close", b"CONNECTION: close", b"connection: close", b"Connection: Close"]
)
def test_connection_options_in_any_case(field: bytes) -> None:
    head = _head(b"GET / HTTP/1.1\r\nHost: a\r\n%b\r\n\r\n" % field)
    assert head.named == frozenset({b"close"}) and not head.keep_alive


@pytest.mark.parametrize(
    ("value", "length"),
    [(b"0", 0), (b"7", 7), (b" 12 ", 12), (b"\t3", 3), (b"9" * 18, int("9" * 18))],
)
def test_content_lengths_accepted(value: bytes, length: int) -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.receive(b"HTTP/1.1 200 OK\r\ncontent-LENGTH:%b\r\n\r\n" % value)
    event = parser.next_event()
    assert isinstance(event, ResponseHead) and (event.framing, event.length) == (LENGTH, length)


@pytest.mark.parametrize(
    "value", [b"00", b"01", b"1 2", b"+1", b"-1", b"1,1", b"", b"9" * 19, b"\xd9\xa3", b"0x1"]
)
def test_content_lengths_refused(value: bytes) -> None:
    parser = RequestParser()
    parser.receive(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %b\r\n\r\n" % value)
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_a_bodiless_request_ends_with_its_head() -> None:
    parser = RequestParser()
    parser.receive(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    first = parser.next_event()
    assert isinstance(first, RequestHead) and first.framing == NO_BODY
    assert parser.end_bodiless() is True  # complete, and the next request is buffered
    second = parser.next_event()
    assert isinstance(second, RequestHead) and second.target == b"/2"
    assert parser.end_bodiless() is False and parser.next_event() is None and parser.between_requests


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ],
)
def test_requests_with_a_body_or_an_upgrade_take_the_general_path(data: bytes) -> None:
    parser = RequestParser()
    parser.receive(data)
    assert isinstance(parser.next_event(), RequestHead)
    assert parser.end_bodiless() is None  # nothing changed: the events follow as before
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    assert isinstance(events[-1], MessageEnd) and all(isinstance(e, BodyData) for e in events[:-1])


def test_a_bodiless_post_with_content_length_zero_ends_with_its_head() -> None:
    parser = RequestParser()
    parser.receive(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(parser.next_event(), RequestHead) and parser.end_bodiless() is False


def _general_kept(headers: list[tuple[bytes, bytes]]) -> bytes:
    dropped = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding"}
    dropped |= {b"upgrade", b"content-length", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-for"}
    return b"".join(b"%b: %b\r\n" % (n, v) for n, v in headers if n.lower() not in dropped)


@pytest.mark.parametrize(
    "fields",
    [
        b"Host: a\r\nUser-Agent: wrk\r\nAccept: */*\r\n",
        b"Host: a\r\nX-Forwarded-Host: evil\r\nx-forwarded-PROTO: https\r\nX-Kept: 1\r\n",
        b"Host: a\r\nTE: trailers\r\nKeep-Alive: 5\r\nX-Kept: 1\r\n",
        b"Host: a\r\nConnection: keep-alive\r\nProxy-Connection: x\r\n",
    ],
)
def test_the_kept_fields_are_those_the_general_path_keeps(fields: bytes) -> None:
    head = _head(b"GET / HTTP/1.1\r\n%b\r\n" % fields)
    kept = kept_fields(head.headers, head.noted)
    assert kept == _general_kept(head.headers)
    request = ProxyRequest(head)
    assert unroutable(request, "http", None) is None
    forwarded = forwarded_head(request, b"192.0.2.1", b"http")
    again = _head(forwarded)
    assert again.noted.get(b"x-forwarded-host") == [b"a"] and again.noted.get(b"x-forwarded-proto") == [
        b"http"
    ]
    assert b"evil" not in forwarded and b"trailers" not in forwarded and b"Keep-Alive" not in forwarded


@pytest.mark.parametrize(
    ("host", "name"),
    [
        (b"A.Example", "a.example"),
        (b"a.example.:8080", "a.example"),
        (b"[::1]:80", "[::1]"),
        (b"LOCALHOST.", "localhost"),
    ],
)
def test_host_names_are_the_same_from_the_cache(host: bytes, name: str) -> None:
    assert host_name(host) == name
    for _ in range(2):  # the second time from the cache
        request = ProxyRequest(_head(b"GET / HTTP/1.1\r\nHost: %b\r\n\r\n" % host))
        assert unroutable(request, "http", None) is None and request.host == name


def test_the_host_cache_stays_bounded() -> None:
    for i in range(request_checks.MAX_HOST_NAMES + 10):
        request = ProxyRequest(_head(b"GET / HTTP/1.1\r\nHost: n%d.example\r\n\r\n" % i))
        assert unroutable(request, "http", None) is None and request.host == f"n{i}.example"
    assert len(request_checks._HOST_NAMES) <= request_checks.MAX_HOST_NAMES
    long = b"a" * (request_checks.MAX_CACHED_HOST + 1)
    request = ProxyRequest(_head(b"GET / HTTP/1.1\r\nHost: %b\r\n\r\n" % long))
    assert unroutable(request, "http", None) is None and long not in request_checks._HOST_NAMES


@pytest.mark.parametrize(
    "spelling", [b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"content-LENGTH"]
)
def test_a_response_is_reserialised_with_one_content_length(spelling: bytes) -> None:
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.receive(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%b: 2\r\nX-Len: 1\r\n\r\nhi" % spelling)
    response = parser.next_event()
    assert isinstance(response, ResponseHead)
    fields = response_fields(response)
    assert fields == [(b"Content-Type", b"text/plain"), (b"X-Len", b"1")]
    head, _, close = response_head(response, fields, False, False)
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Len: 1\r\nContent-Length: 2\r\n\r\n"
    assert not close
