"""The ACL grammar and the bind decision the edge will enforce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burrow.domain import acl
from burrow.domain.acl import BindPolicy

VALID = {
    "*": acl.AllowAll(),
    "bind:*": acl.AllowAll(),
    "bind:example.com": acl.Domain("example.com"),
    "bind:Example.COM": acl.Domain("example.com"),
    "bind:localhost": acl.Domain("localhost"),
    "bind:xn--bcher-kva.example": acl.Domain("xn--bcher-kva.example"),
    "bind:*.example.com": acl.WildcardDomain(".example.com"),
    "bind:1.tcp.example.com:20002": acl.Address("1.tcp.example.com", 20002),
    "bind:127.0.0.1:8080": acl.Address("127.0.0.1", 8080),
    "bind:[::1]:443": acl.Address("[::1]", 443),
    "bind:[2001:db8:0:0::1]:1": acl.Address("[2001:db8::1]", 1),
    "bind:host.example.com:65535": acl.Address("host.example.com", 65535),
    "bind:edge=web": acl.Label("edge", "web"),
    "bind:*=web": acl.Label(None, "web"),
    "bind:edge=*": acl.Label("edge", None),
    "bind:*=*": acl.Label(None, None),
    "bind:app.kubernetes.io/name=api-v2": acl.Label("app.kubernetes.io/name", "api-v2"),
}

INVALID = [
    "",
    " ",
    "bind",
    "bind:",
    "bind: example.com",
    "bind:example.com ",
    "BIND:example.com",
    "bind:*.",
    "bind:*.*.example.com",
    "bind:a*.example.com",
    "bind:example.*.com",
    "bind:*example.com",
    "bind:-a.example.com",
    "bind:a-.example.com",
    "bind:ex ample.com",
    "bind:exa_mple.com",
    "bind:" + "a" * 64 + ".com",
    "bind:" + ".".join(["a" * 63] * 5),
    "bind:example..com",
    "bind:.example.com",
    "bind:example.com.",
    "bind:example.com:0",
    "bind:example.com:65536",
    "bind:example.com:080",
    "bind:example.com:",
    "bind::80",
    "bind:*:80",
    "bind:*.example.com:80",
    "bind:[::1]",
    "bind:[zz::1]:80",
    "bind:=v",
    "bind:k=",
    "bind:k=v=w",
    "bind:k v=x",
    "bind:-k=v",
    "connect:example.com",
    "*.example.com",
    "example.com",
    "bind:**",
    "bind:x" * 200,
]


@pytest.mark.parametrize(("rule", "parsed"), VALID.items())
def test_valid_rules_parse(rule: str, parsed: acl.Rule) -> None:
    assert acl.parse_rule(rule) == parsed


@pytest.mark.parametrize("rule", INVALID)
def test_invalid_rules_are_refused(rule: str) -> None:
    with pytest.raises(acl.InvalidRule):
        acl.parse_rule(rule)


def test_empty_list_and_star_allow_everything() -> None:
    for rules in ([], ["*"], ["bind:*"], ["bind:example.com", "*"]):
        policy = BindPolicy.from_rules(rules)
        assert policy.allows_hostname("anything.example.org")
        assert policy.allows_address("1.tcp.example.org", 12345)
        assert policy.allows_random_address()
        assert policy.allows_labels({"any": "thing"})


def test_exact_domain() -> None:
    policy = BindPolicy.from_rules(["bind:app.example.com"])
    assert policy.allows_hostname("app.example.com")
    assert policy.allows_hostname("APP.Example.com")
    assert policy.allows_hostname("app.example.com.")
    assert not policy.allows_hostname("x.app.example.com")
    assert not policy.allows_hostname("example.com")
    assert not policy.allows_hostname("app.example.co")
    assert not policy.allows_random_address()
    assert not policy.allows_address("app.example.com", 80)
    assert not policy.allows_labels({"app.example.com": "x"})


def test_wildcard_domain() -> None:
    policy = BindPolicy.from_rules(["bind:*.example.com"])
    assert policy.allows_hostname("a.example.com")
    assert policy.allows_hostname("a.b.example.com")
    assert policy.allows_hostname("*.example.com")
    assert not policy.allows_hostname("example.com")
    assert not policy.allows_hostname("badexample.com")
    assert not policy.allows_hostname("a.example.com.evil.org")


def test_addresses() -> None:
    policy = BindPolicy.from_rules(["bind:1.tcp.example.com:20002", "bind:[::1]:443", "bind:10.0.0.1:22"])
    assert policy.allows_address("1.tcp.example.com", 20002)
    assert policy.allows_address("1.TCP.example.com", 20002)
    assert not policy.allows_address("1.tcp.example.com", 20003)
    assert not policy.allows_address("2.tcp.example.com", 20002)
    assert policy.allows_address("::1", 443) and policy.allows_address("[::1]", 443)
    assert policy.allows_address("0:0::1", 443)
    assert policy.allows_address("10.0.0.1", 22)
    assert not policy.allows_address("not a host", 22)
    assert not policy.allows_random_address()
    assert not policy.allows_hostname("1.tcp.example.com")


def test_labels() -> None:
    policy = BindPolicy.from_rules(["bind:edge=web", "bind:*=shared", "bind:team=*"])
    assert policy.allows_labels({"edge": "web"})
    assert policy.allows_labels({"anything": "shared"})
    assert policy.allows_labels({"team": "blue", "edge": "web"})
    assert not policy.allows_labels({"edge": "api"})
    assert not policy.allows_labels({"edge": "web", "other": "x"})  # every label must be allowed
    assert not policy.allows_labels({})
    assert not policy.allows_hostname("web")


hostname_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(hostname_labels, min_size=1, max_size=4).map(".".join)


@given(hostnames, hostnames)
def test_wildcard_matches_exactly_the_proper_subdomains(suffix: str, name: str) -> None:
    policy = BindPolicy.from_rules([f"bind:*.{suffix}"])
    assert policy.allows_hostname(name) == name.endswith("." + suffix)


@given(hostnames)
def test_exact_rule_matches_only_itself(name: str) -> None:
    policy = BindPolicy.from_rules([f"bind:{name}"])
    assert policy.allows_hostname(name)
    assert policy.allows_hostname(name.upper())
    assert not policy.allows_hostname("x" + name)
    assert not policy.allows_hostname("x." + name)


@given(hostnames, st.integers(1, 65535), st.integers(1, 65535))
def test_address_rule_matches_host_and_port(host: str, port: int, other: int) -> None:
    policy = BindPolicy.from_rules([f"bind:{host}:{port}"])
    assert policy.allows_address(host, port)
    assert policy.allows_address(host, other) == (other == port)


@given(st.text(max_size=80))
def test_arbitrary_text_either_parses_or_is_refused(text: str) -> None:
    try:
        parsed = acl.parse_rule(text)
    except acl.InvalidRule:
        return
    assert text == "*" or text.startswith("bind:")
    assert isinstance(parsed, acl.AllowAll | acl.Domain | acl.WildcardDomain | acl.Address | acl.Label)


@given(st.lists(st.sampled_from(list(VALID)), max_size=6), hostnames)
def test_adding_rules_never_takes_permission_away(rules: list[str], name: str) -> None:
    base = BindPolicy.from_rules(rules) if rules else None
    more = BindPolicy.from_rules([*rules, "bind:extra.example.com"])
    if base is not None and base.allows_hostname(name):
        assert more.allows_hostname(name)
