"""One grammar of names (domain/names.py), and every reader of names agreeing with it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burrow.cli.node import CommandError
from burrow.cli.serving import edge_config, own_hosts, split_addr
from burrow.domain import acl, errors, names
from burrow.domain.errors import BurrowError
from burrow.domain.reserved import is_servers, normalize_domain

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("a", "a"),
        ("1.2.3.4", "1.2.3.4"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c", "a-b.c"),
        ("-a.com", None),
        ("a-.com", None),
        ("a..com", None),
        ("a.com.", None),  # callers strip a trailing dot where they accept one
        (".a.com", None),
        ("a_b.com", None),
        ("a b.com", None),
        ("", None),
        ("\u212aelvin.example", None),  # the Kelvin sign matches "k" under re.IGNORECASE
        ("bücher.example", None),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        ("a" * 64 + ".com", None),
        (".".join(["a" * 63] * 4), None),  # 255 characters
        (".".join(["a" * 63] * 3 + ["a" * 61]), ".".join(["a" * 63] * 3 + ["a" * 61])),  # 253
        ("a.com\n", None),
    ],
)
def test_hostnames(text: str, expected: str | None) -> None:
    assert names.hostname(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("80", 80),
        ("20000", 20000),
        ("65535", 65535),
        ("65536", None),
        ("0", None),
        ("020000", None),  # leading zeros: refused everywhere (docs/edge.md)
        ("00080", None),
        ("", None),
        ("-1", None),
        ("+80", None),
        (" 80", None),
        ("80 ", None),
        ("\uff18\uff10", None),  # fullwidth digits pass str.isdigit() and int()
        ("\u0662\u0660\u0660\u0660\u0660", None),
        ("123456", None),
        ("1e3", None),
    ],
)
def test_ports(text: str, expected: int | None) -> None:
    assert names.port(text) == expected


def test_port_zero_only_where_allowed() -> None:
    assert names.port("0", allow_zero=True) == 0 and names.port("00", allow_zero=True) is None


@given(st.integers(min_value=1, max_value=65535))
def test_every_port_reads_back(number: int) -> None:
    assert names.port(str(number)) == number
    assert names.port("0" + str(number)) is None


@given(st.lists(LABEL, min_size=1, max_size=5))
def test_label_sequences_within_the_length_are_hostnames(labels: list[str]) -> None:
    text = ".".join(labels)
    assert (names.hostname(text) == text) == (len(text) <= 253)
    assert names.hostname(text.upper()) == names.hostname(text)


@given(st.text(max_size=30))
def test_a_hostname_is_ascii_letters_digits_hyphens_and_dots(text: str) -> None:
    name = names.hostname(text)
    if name is not None:
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.") and name == text.lower()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:20000", ("127.0.0.1", 20000)),
        ("Tcp.Example:1", ("tcp.example", 1)),
        ("[::1]:80", ("[::1]", 80)),
        ("[0:0::1]:80", ("[::1]", 80)),
        ("[nonsense]:80", None),
        ("::1:80", None),
        ("127.0.0.1:020000", None),
        ("127.0.0.1", None),
        (":80", None),
    ],
)
def test_addresses(text: str, expected: tuple[str, int] | None) -> None:
    assert names.address(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20000-20099", range(20000, 20100)),
        ("5", range(5, 6)),
        ("20000-020099", None),
        ("020000-20099", None),
        ("20099-20000", None),
        ("0-10", None),
        ("1-65536", None),
        ("20000-", None),
        ("-", None),
    ],
)
def test_port_ranges(text: str, expected: range | None) -> None:
    assert names.port_range(text) == expected


def test_the_readers_of_names_agree() -> None:
    """ACL rules, reserved domains and the server's settings read names with one grammar."""
    with pytest.raises(acl.InvalidRule):
        acl.parse_rule("bind:127.0.0.1:020000")
    with pytest.raises(acl.InvalidRule):
        acl.parse_rule("bind:\u212a.example.com")
    assert acl.parse_rule("bind:127.0.0.1:20000") == acl.Address("127.0.0.1", 20000)
    assert acl.parse_rule("bind:*.Example.com") == acl.WildcardDomain(".example.com")
    with pytest.raises(errors.BurrowError):
        normalize_domain("\u212a.example.com", "burrow.localhost")
    assert normalize_domain("App", "burrow.localhost") == "app.burrow.localhost"
    with pytest.raises(CommandError):
        split_addr("127.0.0.1:08080")
    assert split_addr("127.0.0.1:0") == ("127.0.0.1", 0)
    for ports in ("020000-20099", "20000-20099x"):
        with pytest.raises(CommandError):
            edge_config("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ports, "127.0.0.1", "d.example", [])
    config = edge_config("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "1-3", "127.0.0.1", "d.example", [])
    assert config.settings.tcp_ports == range(1, 4)


def test_the_server_s_own_names_are_no_tenant_s() -> None:
    assert is_servers("127.0.0.1", "burrow.localhost") and is_servers("localhost", "burrow.localhost")
    assert is_servers("a.localhost", "burrow.localhost") and not is_servers(
        "a.burrow.localhost", "burrow.localhost"
    )
    assert is_servers("x.api.example.com", "example.com", frozenset({"api.example.com"}))
    assert not is_servers("api2.example.com", "example.com", frozenset({"api.example.com"}))
    with pytest.raises(BurrowError):
        normalize_domain("192.168.0.1", "burrow.localhost")
    # What a browser's URL parser reads as an IPv4 address, IPv6, and --domain itself.
    for name in ("0x7f000001", "127.1", "a.0x1", "0x", "::1", "burrow.localhost"):
        assert is_servers(name, "burrow.localhost"), name
    for name in ("a.0x1g", "0xa.example", "burrow.localhost.example"):
        assert not is_servers(name, "burrow.localhost"), name
    with pytest.raises(BurrowError) as error:
        normalize_domain("burrow.localhost", "burrow.localhost")
    assert "never an endpoint's" in str(error.value)


def test_the_api_s_own_names_are_the_public_url_s_host_and_a_named_api_addr() -> None:
    assert own_hosts("127.0.0.1", None, "burrow.localhost") == frozenset()
    assert own_hosts("0.0.0.0", "https://API.example.com/x", "burrow.localhost") == {"api.example.com"}
    # --api-addr burrow.corp.example:4080: the browser's host, so no tenant's.
    assert own_hosts("Burrow.corp.example", None, "tunnels.example") == {"burrow.corp.example"}
    # localhost is refused anyway; a parent of --domain would refuse every tenant name.
    assert own_hosts("localhost", None, "burrow.localhost") == frozenset()
    assert own_hosts("example.com", None, "tunnels.example.com") == frozenset()
