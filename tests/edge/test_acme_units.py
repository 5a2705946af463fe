"""ACME's pure parts: the ALPN protocols of a real ClientHello, the TLS-ALPN-01 certificate,
renewal at two thirds, and ``burrow serve``'s ACME settings checked (secrets never echoed)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from burrow.cli.node import CommandError
from burrow.cli.serving import acme_settings
from burrow.cli.settings import SETTINGS
from burrow.domain.tunnels import AgentSession, Registry, Tunnel
from burrow.edge.acme import ACME_IDENTIFIER_OID, LETS_ENCRYPT, alpn_certificate, renews_at
from burrow.edge.muxado_streams import MuxConnection, MuxStream
from burrow.edge.public import PublicListeners
from burrow.edge.sniff import tls_alpn_protocols
from tests.edge.test_proxy_hooks import _agent_serves, _exchange


def hello(protocols: list[str]) -> bytes:
    context = ssl.create_default_context()
    if protocols:
        context.set_alpn_protocols(protocols)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="a.example.com")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_alpn_protocols_of_a_real_client_hello() -> None:
    assert tls_alpn_protocols(hello(["acme-tls/1"])) == [b"acme-tls/1"]
    assert tls_alpn_protocols(hello(["h2", "http/1.1"])) == [b"h2", b"http/1.1"]
    assert tls_alpn_protocols(hello([])) == []
    assert tls_alpn_protocols(b"") == [] and tls_alpn_protocols(b"GET / HTTP/1.1\r\n") == []


@given(st.binary(max_size=400))
def test_alpn_parsing_never_raises(data: bytes) -> None:
    assert isinstance(tls_alpn_protocols(data), list)


def test_the_tls_alpn_certificate_carries_the_key_authorization_digest() -> None:
    cert_pem, key_pem = alpn_certificate("a.example.com", "token.thumbprint")
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    extension = certificate.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert extension.critical
    assert extension.value.value == b"\x04\x20" + hashlib.sha256(b"token.thumbprint").digest()
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["a.example.com"]
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_renewal_is_at_two_thirds_of_the_lifetime() -> None:
    cert_pem, _ = alpn_certificate("x.example.com", "k")
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    expected = (start + (end - start) * 2 / 3).replace(tzinfo=None, microsecond=0)
    assert renews_at(certificate) == expected
    assert start.replace(tzinfo=None) < renews_at(certificate) < end.replace(tzinfo=None)
    assert end - start > datetime.timedelta(hours=20)


def values(**given: Any) -> dict[str, Any]:
    defaults = {s.param: s.default for s in SETTINGS}
    return {**defaults, **given}


def test_acme_is_off_without_an_email_and_lets_encrypt_with_one() -> None:
    assert acme_settings(values(), "burrow.test") is None
    on = acme_settings(values(acme_email="ops@example.com"), "burrow.test")
    assert on is not None and on.directory == LETS_ENCRYPT and on.challenge == "http-01"
    assert on.dns is None and on.extra == ()


SECRET = "c2VjcmV0LXRzaWcta2V5LWJ5dGVzLWZvci10ZXN0cw=="


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"acme_directory": "https://ca.example/dir"}, "need --acme-email"),
        ({"acme_email": "nobody"}, "not an email address"),
        ({"acme_email": "a@b.c", "acme_directory": "http://ca.example/dir"}, "not an https:// URL"),
        ({"acme_email": "a@b.c", "acme_challenge": "dns-01"}, "http-01 or tls-alpn-01"),
        ({"acme_email": "a@b.c", "acme_check_seconds": 0.0}, "must be positive"),
        ({"acme_email": "a@b.c", "dns_update_server": "127.0.0.1:53"}, "needs --dns-tsig-key"),
        ({"acme_email": "a@b.c", "dns_tsig_key": f"k:hmac-sha256:{SECRET}"}, "need --dns-update-server"),
        (
            {
                "acme_email": "a@b.c",
                "dns_update_server": "127.0.0.1:53",
                "dns_tsig_key": f"k:hmac-md4:{SECRET}",
            },
            "NAME:ALGORITHM:SECRET",
        ),
        (
            {"acme_email": "a@b.c", "dns_update_server": "127.0.0.1:53", "dns_tsig_key": "k:hmac-sha256:%%%"},
            "not base64",
        ),
        (
            {
                "acme_email": "a@b.c",
                "dns_update_server": "127.0.0.1:53",
                "dns_tsig_key": f"k:hmac-sha256:{SECRET}",
                "dns_update_zone": "other.test",
            },
            "does not hold --domain",
        ),
    ],
)
def test_bad_acme_settings_are_refused_without_echoing_secrets(given: dict[str, Any], message: str) -> None:
    with pytest.raises(CommandError) as refused:
        acme_settings(values(**given), "burrow.test")
    assert message in str(refused.value)
    assert SECRET not in str(refused.value)


def test_dns01_settings_add_the_wildcard(tmp_path: Path) -> None:
    key_file = tmp_path / "tsig.key"
    key_file.write_text(f"burrow-update:hmac-sha256:{SECRET}\n")
    on = acme_settings(
        values(acme_email="a@b.c", dns_update_server="127.0.0.1:5353", dns_tsig_key=str(key_file)),
        "burrow.test",
    )
    assert on is not None and on.dns is not None
    assert (on.dns.host, on.dns.port, on.dns.zone, on.dns.key_name) == (
        "127.0.0.1",
        5353,
        "burrow.test",
        "burrow-update",
    )
    assert [(m.name, m.challenge) for m in on.extra] == [("*.burrow.test", "dns-01")]


@pytest.mark.parametrize(
    ("agent_name", "ordered"),
    [
        ("connect.burrow.test", True),  # in the update zone: ordered by DNS-01 too
        ("agents.other.example", False),  # outside it: no DNS-01 for it, the local CA's
        ("127.0.0.1", False),  # not a DNS name
        (None, False),  # --tls-cert given: the operator's certificate
    ],
)
def test_dns01_settings_add_the_agent_name_in_the_zone(
    tmp_path: Path, agent_name: str | None, ordered: bool
) -> None:
    key_file = tmp_path / "tsig.key"
    key_file.write_text(f"burrow-update:hmac-sha256:{SECRET}\n")
    given = values(acme_email="a@b.c", dns_update_server="127.0.0.1:5353", dns_tsig_key=str(key_file))
    on = acme_settings(given, "burrow.test", agent_name)
    assert on is not None
    wanted = [("*.burrow.test", "dns-01")] + ([(agent_name, "dns-01")] if ordered else [])
    assert [(m.name, m.challenge) for m in on.extra] == wanted
    # Without DNS-01 settings, nothing is ordered for it (HTTP-01 cannot reach the agent listener).
    plain = acme_settings(values(acme_email="a@b.c"), "burrow.test", agent_name)
    assert plain is not None and plain.extra == ()


async def _http01_edge(lookups: list[tuple[str, str]]) -> tuple[Any, ...]:
    """The real public HTTP listener with an in-process agent for ``hooks.example``, whose
    ACME lookup knows one token (``good``) and fails for ``broken``."""
    loop = asyncio.get_running_loop()
    seen: list[bytes] = []
    tasks: set[asyncio.Task[None]] = set()

    def on_agent(connection: MuxConnection) -> None:
        async def accept() -> None:
            while (stream := await connection.accept_stream()) is not None:
                tasks.add(loop.create_task(_agent_serves(stream, seen)))

        tasks.add(loop.create_task(accept()))

    agent_server = await loop.create_server(
        lambda: MuxConnection(client_side=True, on_connected=on_agent), "127.0.0.1", 0
    )
    _, edge_side = await loop.create_connection(
        lambda: MuxConnection(client_side=False), "127.0.0.1", agent_server.sockets[0].getsockname()[1]
    )
    registry = Registry()
    registry.add_session(
        AgentSession("ts_1", "ac_1", "cr_1", "us_1", "", "", "", "", "", datetime.datetime.now(datetime.UTC))
    )
    registry.add_tunnel(
        Tunnel(
            "tn_1", "ts_1", "http", "", "", "", datetime.datetime.now(datetime.UTC), hostname="hooks.example"
        )  # type: ignore[arg-type]
    )

    async def open_proxy(tunnel: Tunnel, client: str, proto: str) -> MuxStream | None:
        return edge_side.open_stream()

    async def lookup(host: str, token: str) -> str | None:
        lookups.append((host, token))
        if token == "broken":
            raise OSError("the database is away")
        return "good.thumbprint" if (host, token) == ("hooks.example", "good") else None

    listeners = PublicListeners(registry, open_proxy, {})
    listeners.acme_http = lookup
    server = await loop.create_server(listeners.http_protocol, "127.0.0.1", 0)
    return server, listeners, edge_side, agent_server, seen


def test_http01_answers_pending_tokens_and_routes_every_other_request() -> None:
    async def run() -> None:
        lookups: list[tuple[str, str]] = []
        server, listeners, edge_side, agent_server, seen = await _http01_edge(lookups)
        port = server.sockets[0].getsockname()[1]

        def get(path: str, host: str = "hooks.example") -> bytes:
            return b"GET %b HTTP/1.1\r\nHost: %b\r\n\r\n" % (path.encode(), host.encode())

        try:
            answer = await _exchange(port, get("/.well-known/acme-challenge/good"))
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\ngood.thumbprint")
            assert seen == []  # the agent never saw it
            for path in ("/.well-known/acme-challenge/unknown", "/.well-known/acme-challenge/broken", "/x"):
                answer = await _exchange(port, get(path))
                assert answer.startswith(b"HTTP/1.1 200 ") and b"answer answer" in answer, answer[:200]
            assert [s.split(b"\r\n", 1)[0] for s in seen] == [
                b"GET /.well-known/acme-challenge/unknown HTTP/1.1",
                b"GET /.well-known/acme-challenge/broken HTTP/1.1",
                b"GET /x HTTP/1.1",
            ]
            # A name nobody serves: the token is looked up, then the usual 404.
            answer = await _exchange(port, get("/.well-known/acme-challenge/good", "else.example"))
            assert answer.startswith(b"HTTP/1.1 404 ")
            assert ("else.example", "good") in lookups and ("hooks.example", "unknown") in lookups
            assert not any(token == "" for _, token in lookups)
        finally:
            server.close()
            await listeners.close_all()
            await edge_side.close()
            agent_server.close()

    asyncio.run(run())
