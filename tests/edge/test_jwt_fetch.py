"""The edge's JWKS fetches for jwt-validation (edge/jwt_check.py), against a real HTTPS server
started here in-process (a local CA made for it): the SSRF guard, the size limit, the cache
and its bounds, the one fetch per URL however many wait."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from burrow.domain.traffic_policy import compile_policy
from burrow.edge import jwt_check
from burrow.edge.certs import ensure_server_certificate, server_context
from burrow.edge.jwt_check import FetchError, JwksFetcher, _body, keyrings, parse_cidrs
from tests.domain.test_jwt_validation import JWKS

LOOPBACK = parse_cidrs("127.0.0.0/8, ::1/128")


class JwksServer:
    """An HTTPS server answering every request with ``response`` (counting requests)."""

    def __init__(self, tmp_path: Path) -> None:
        certificate = ensure_server_certificate(tmp_path)
        self.context = server_context(certificate)
        assert certificate.ca_path is not None
        self.client_context = ssl.create_default_context(cafile=str(certificate.ca_path))
        self.response = self.ok(json.dumps(JWKS).encode())
        self.requests: list[bytes] = []

    @staticmethod
    def ok(body: bytes, status: bytes = b"200 OK") -> bytes:
        head = b"HTTP/1.1 %b\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
            status,
            len(body),
        )
        return head + body

    async def start(self) -> int:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(self.response)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])


def run(test: Callable[[], Any]) -> Any:
    return asyncio.run(test())


def test_keys_are_fetched_over_https_once_and_cached(tmp_path: Path) -> None:
    server = JwksServer(tmp_path)

    async def scenario() -> None:
        port = await server.start()
        url = f"https://localhost:{port}/.well-known/jwks.json"
        now = [0.0]
        fetcher = JwksFetcher(LOOPBACK, server.client_context, clock=lambda: now[0])
        policy = compile_policy(
            json.dumps(
                {"on_http_request": [{"actions": [{"type": "jwt-validation", "config": config(url)}]}]}
            )
        )
        assert fetcher.stale(policy) == [url]
        await asyncio.gather(*(fetcher.fetch_all([url]) for _ in range(5)))  # five waiting: one fetch
        assert len(server.requests) == 1 and server.requests[0].startswith(
            b"GET /.well-known/jwks.json HTTP/1.0"
        )
        assert b"\r\nHost: localhost:%d\r\n" % port in server.requests[0]
        assert fetcher.stale(policy) == []
        (keyring,) = keyrings(policy)
        keys = keyring.fetched[url]
        assert keys is not None and [key.kid for key in keys] == ["rsa-1", "ec-1"]
        now[0] += jwt_check.TTL + 1  # expired: fetched again
        assert fetcher.stale(policy) == [url]
        server.response = server.ok(b"oops", b"500 Internal Server Error")
        await fetcher.fetch_all([url])
        assert fetcher.stale(policy) == [] and keyring.fetched[url] is None  # a failure, kept a while
        now[0] += jwt_check.FAILURE_TTL + 1
        assert fetcher.stale(policy) == [url]

    run(scenario)


def config(url: str) -> dict[str, Any]:
    return {
        "issuer": {"allow_list": [{"value": "https://issuer.example/"}]},
        "http": {
            "tokens": [{"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "}]
        },
        "jws": {"allowed_algorithms": ["RS256"], "keys": {"sources": {"additional_jkus": [url]}}},
    }


def test_the_ssrf_guard_refuses_non_public_addresses_unless_allowed(tmp_path: Path) -> None:
    server = JwksServer(tmp_path)

    async def scenario() -> None:
        port = await server.start()
        for url in (f"https://localhost:{port}/k", f"https://127.0.0.1:{port}/k"):
            with pytest.raises(FetchError, match="not public"):
                await JwksFetcher((), server.client_context).fetch(url)
        refusing = JwksFetcher(parse_cidrs("192.0.2.0/24"), server.client_context)  # allows others only
        for host in (
            "10.1.2.3",
            "169.254.169.254",
            "192.168.0.1",
            "[::ffff:127.0.0.1]",
            "224.0.0.1",
            "0.0.0.0",
        ):
            with pytest.raises(FetchError, match="not public"):
                await refusing.fetch(f"https://{host}:{port}/k")
        assert server.requests == []  # nothing was sent
        with pytest.raises(FetchError, match="only https"):
            await JwksFetcher(LOOPBACK).fetch(f"http://127.0.0.1:{port}/k")
        with pytest.raises(
            ssl.SSLError
        ):  # the certificate is checked: the local CA is not trusted by default
            await JwksFetcher(LOOPBACK).fetch(f"https://localhost:{port}/k")
        body = await JwksFetcher(LOOPBACK, server.client_context).fetch(f"https://localhost:{port}/k")
        assert json.loads(body) == JWKS

    run(scenario)


def test_a_response_is_refused_when_too_large_or_not_plain(tmp_path: Path) -> None:
    server = JwksServer(tmp_path)

    async def scenario() -> None:
        port = await server.start()
        fetcher = JwksFetcher(LOOPBACK, server.client_context)
        server.response = server.ok(b" " * (jwt_check.MAX_BYTES + 1))
        with pytest.raises(FetchError, match="larger than"):
            await fetcher.fetch(f"https://localhost:{port}/k")
        server.response = (
            b"HTTP/1.1 302 Found\r\nLocation: https://169.254.169.254/\r\nContent-Length: 0\r\n\r\n"
        )
        with pytest.raises(FetchError, match="not 200"):  # redirects are not followed
            await fetcher.fetch(f"https://localhost:{port}/k")

    run(scenario)
    with pytest.raises(FetchError, match="chunked"):
        _body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    with pytest.raises(FetchError, match="Content-Length"):
        _body(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwt_check, "MAX_ENTRIES", 3)

    async def scenario() -> None:
        fetcher = JwksFetcher()  # 127.0.0.1 is not allowed: every fetch fails, and is cached as such
        urls = [f"https://127.0.0.1:1/{number}" for number in range(5)]
        for url in urls:  # one after another: the cache keeps the last fetched
            await fetcher.fetch_all([url])
        assert list(fetcher._cache) == urls[2:]

    run(scenario)


def test_allowed_cidrs_are_parsed_or_refused_by_name() -> None:
    assert [str(net) for net in parse_cidrs("127.0.0.1/32, 10.0.0.0/8,::1")] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    assert parse_cidrs(None) == () and parse_cidrs("") == ()
    with pytest.raises(ValueError, match="'nope' is not a CIDR"):
        parse_cidrs("10.0.0.0/8,nope")
