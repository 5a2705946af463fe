"""The client address behind trusted proxies: the right-most untrusted X-Forwarded-For hop."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burrow.domain.forwarded import TrustedProxies, parse_address

PROXIES = TrustedProxies.parse("10.0.0.0/8,fd00::/8")


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    assert PROXIES.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"
    assert TrustedProxies().client("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_a_trusted_peer_names_the_right_most_untrusted_hop() -> None:
    # The client forged the first entry; the proxies appended the rest.
    chain = ["6.6.6.6, 198.51.100.7", "10.1.1.1"]
    assert PROXIES.client("10.0.0.2", chain) == "198.51.100.7"
    assert PROXIES.client("10.0.0.2", ["198.51.100.7"]) == "198.51.100.7"
    assert PROXIES.client("fd00::1", ["2001:db8::5"]) == "2001:db8::5"


def test_no_header_or_only_trusted_hops_leave_a_trusted_address() -> None:
    assert PROXIES.client("10.0.0.2", []) == "10.0.0.2"
    assert PROXIES.client("10.0.0.2", ["10.9.9.9, 10.8.8.8"]) == "10.9.9.9"


def test_garbage_stops_at_the_proxy_that_vouched_for_the_hop_before_it() -> None:
    assert PROXIES.client("10.0.0.2", ["not-an-ip"]) == "10.0.0.2"
    assert PROXIES.client("10.0.0.2", ["198.51.100.7, ,10.3.3.3"]) == "10.3.3.3"
    assert PROXIES.client("10.0.0.2", ["unknown, 198.51.100.7"]) == "198.51.100.7"


def test_address_forms() -> None:
    assert parse_address("[2001:db8::1]:443") == ipaddress.ip_address("2001:db8::1")
    assert parse_address("192.0.2.1:8080") == ipaddress.ip_address("192.0.2.1")
    assert parse_address("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_address("example.com") is None
    assert PROXIES.trusts("::ffff:10.0.0.1")


def test_bad_networks_are_refused() -> None:
    for text in ("10.0.0.1/8", "nonsense", "10.0.0.0/33"):
        with pytest.raises(ValueError):
            TrustedProxies.parse(text)
    assert not TrustedProxies.parse("")
    assert TrustedProxies.parse(" 192.0.2.1 ").trusts("192.0.2.1")


addresses = st.ip_addresses(v=4).map(str)


@given(peer=addresses, chain=st.lists(addresses, max_size=6))
def test_the_client_is_the_peer_or_a_hop_never_anything_else(peer: str, chain: list[str]) -> None:
    client = PROXIES.client(peer, [", ".join(chain)])
    assert client == peer or client in chain
    if not PROXIES.trusts(peer):
        assert client == peer
    elif not PROXIES.trusts(client):
        # Every hop right of the client is a trusted proxy.
        right = chain[len(chain) - 1 - chain[::-1].index(client) + 1 :]
        assert all(PROXIES.trusts(hop) for hop in right)
