"""The endpoint options: parsing and refusals at bind time, and what each one enforces."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import ipaddress
import re
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from burrow.domain import errors, webhooks
from burrow.domain.circuit import CircuitBreaker
from burrow.domain.endpoint import WEBHOOK_REFUSED, EndpointPolicy, Refusal, ca_bundle, redacted_opts
from burrow.edge.http1 import RequestHead, RequestParser
from burrow.edge.traffic_phases import RequestPlan, edited, on_http_request, on_http_response, on_tcp_connect

IP = ipaddress.ip_address
LOCAL = IP("127.0.0.1")


def refused(proto: str, opts: dict[str, Any], forwards_to: str = "") -> errors.BurrowError:
    with pytest.raises(errors.BurrowError) as caught:
        EndpointPolicy.from_opts(proto, opts, forwards_to=forwards_to)
    return caught.value


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


# What the edge decides, by the one engine it runs (the options compiled into Traffic Policy
# rules around the endpoint's document): these ask it as the proxy does.
_REQUEST = RequestParser()
_REQUEST.receive(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
_HEAD = _REQUEST.next_event()
assert isinstance(_HEAD, RequestHead)


def _plan(policy: EndpointPolicy, headers: list[tuple[bytes, bytes]], client: Any) -> RequestPlan | None:
    if policy.enforced is None:
        return None
    env = {"conn.client_ip": str(client), "req.url": "https://a.example/"}
    return on_http_request(policy.enforced, env, _HEAD, client, webhooks.header(headers, b"authorization"))


def check_request_head(
    policy: EndpointPolicy, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], client: Any
) -> Refusal | None:
    """The edge's answer to a request head instead of forwarding it, read back as a Refusal."""
    plan = _plan(policy, headers, client)
    if plan is None or plan.answer is None:
        return None
    head, _, body = plan.answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    code = re.search(rb"ERR_NGROK_[0-9]+", body)
    challenge = tuple(
        (b"WWW-Authenticate", line.split(b": ", 1)[1])
        for line in lines[1:]
        if line.lower().startswith(b"www-authenticate:")
    )
    return Refusal(int(lines[0][9:12]), code.group().decode() if code else "", "", challenge)


def allows_client(policy: EndpointPolicy, client: Any) -> bool:
    """Whether a client at ``client`` gets through: a connection (TCP, TLS) or a request."""
    if policy.enforced is None:
        return True
    if policy.tcp:
        return on_tcp_connect(policy.enforced, {"conn.client_ip": str(client)}, client)
    return check_request_head(policy, b"GET", b"/", [], client) is None


def request_headers(policy: EndpointPolicy, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    plan = _plan(policy, headers, LOCAL)
    return headers if plan is None else edited(headers, plan.edits)


def response_headers(policy: EndpointPolicy, fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return fields if policy.enforced is None else on_http_response(policy.enforced, {}, 200, fields)[0]


def check_request_body(
    policy: EndpointPolicy, headers: list[tuple[bytes, bytes]], body: bytes, now: float | None = None
) -> Refusal | None:
    """Webhook verification of a whole body, as the edge does once it has come."""
    plan = _plan(policy, headers, LOCAL)
    at = time.time() if now is None else now
    for action in plan.verify if plan is not None else ():
        if not action.verifier.verify(headers, body, at):
            return WEBHOOK_REFUSED
    return None


# Unset options, identity keys, refused options ---------------------------------------


def test_unset_options_enforce_nothing() -> None:
    opts = {
        "Hostname": "a.example",
        "Subdomain": "",
        "Auth": "",
        "HostHeaderRewrite": False,
        "LocalUrlScheme": None,
        "ProxyProto": 0,
        "BasicAuth": None,
        "OAuth": None,
        "MutualTLSCA": None,
        "TrafficPolicy": None,
        "CircuitBreaker": None,
    }
    policy = EndpointPolicy.from_opts("https", opts)
    assert policy == EndpointPolicy()
    assert check_request_head(policy, b"GET", b"/", [], LOCAL) is None
    assert policy.proxy_protocol_header(("1.2.3.4", 1), ("5.6.7.8", 2)) == b""


@pytest.mark.parametrize(
    "name",
    [
        "OAuth",
        "OIDC",
        "SAML",
        "WebsocketTCPConverter",
        "UserAgentFilter",
        "SomethingNew",
    ],
)
def test_protections_not_enforced_refuse_the_bind_naming_them(name: str) -> None:
    error = refused("https", {"Hostname": "a.example", name: {"provider": "google"}})
    assert error.code == "ERR_NGROK_90301" and name in error.message
    assert "not enforced by this Burrow server" in error.message


def test_a_traffic_policy_is_compiled_at_bind_and_what_the_edge_cannot_do_is_refused() -> None:
    deny = "on_http_request: [{actions: [{type: deny}]}]"
    policy = EndpointPolicy.from_opts("https", {"TrafficPolicy": deny})
    assert policy.traffic is not None and not policy.plain
    assert EndpointPolicy.from_opts("https", {"TrafficPolicy": ""}) == EndpointPolicy()
    too_deep = "on_http_request: " + "[" * 40 + "]" * 40
    cases = {
        "on_http_request: [": "ERR_NGROK_2236",  # not YAML
        "x" * (1024 * 1024): "ERR_NGROK_2236",  # 1 MiB
        too_deep: "ERR_NGROK_2236",
        "on_http_requests: []": "ERR_NGROK_9026",  # an unknown field
        "on_http_request: [{actions: [{type: deny, config: {status_code: x}}]}]": "ERR_NGROK_9026",
        "on_http_request: [{expressions: ['req.method == 1'], actions: [{type: deny}]}]": "ERR_NGROK_9026",
        "on_http_request: [{actions: [{type: oauth}]}]": "ERR_NGROK_9026",  # not an action Burrow knows
        # Known, compiled, but not carried out by the edge yet: refused, never ignored.
        "on_tcp_connect: [{actions: [{type: forward-internal, config: {url: 'tls://x.internal:1'}}]}]": (
            "ERR_NGROK_90301"
        ),
        "on_http_request: [{actions: [{type: jwt-validation, config: {jwks_url: 'https://idp/keys'}}]}]": (
            "ERR_NGROK_9026"  # ngrok's fields, not these
        ),
        "on_http_response: [{actions: [{type: compress-response, config: {algorithms: [br]}}]}]": (
            "ERR_NGROK_90301"  # Burrow writes gzip only
        ),
        "on_http_response: [{actions: [{type: deny}]}]": "ERR_NGROK_90301",
    }
    for document, expected in cases.items():
        error = refused("https", {"TrafficPolicy": document})
        assert error.code == expected, (document[:60], error.message)
    message = refused("https", {"TrafficPolicy": cases_key(cases, "ERR_NGROK_90301")}).message
    assert "forward-internal in on_tcp_connect" in message
    assert refused("tcp", {"TrafficPolicy": deny}).code == "ERR_NGROK_90301"
    assert refused("https", {"TrafficPolicy": {"inbound": []}}).code == "ERR_NGROK_90302"  # not a document
    both = {"TrafficPolicy": "{}", "Policy": {"Inbound": []}}
    assert refused("https", both).code == "ERR_NGROK_90302"


def cases_key(cases: dict[str, str], code: str) -> str:
    return next(document for document, expected in cases.items() if expected == code)


def test_the_legacy_policy_object_is_the_document_it_stands_for() -> None:
    admin = "req.url.path.startsWith('/admin')"
    rules = [{"name": "no admin", "expressions": [admin], "actions": [{"type": "deny"}]}]
    policy = EndpointPolicy.from_opts("https", {"Policy": {"Inbound": rules, "Outbound": []}})
    assert policy.traffic is not None
    assert [rule.name for rule in policy.traffic.phases["on_http_request"]] == ["no admin"]
    close = [{"actions": [{"type": "close-connection"}]}]
    tcp = EndpointPolicy.from_opts("tcp", {"Policy": {"Inbound": close}})
    assert tcp.traffic is not None and len(tcp.traffic.phases["on_tcp_connect"]) == 1
    assert refused("https", {"Policy": {"provider": "google"}}).code == "ERR_NGROK_90301"


def test_an_empty_object_is_set() -> None:
    assert EndpointPolicy.from_opts("http", {"Compression": {}}).compression is True
    assert refused("http", {"OAuth": {}}).code == "ERR_NGROK_90301"


@pytest.mark.parametrize(
    ("proto", "name", "value"),
    [
        ("tcp", "BasicAuth", {"credentials": [{"username": "a", "cleartext_password": "12345678"}]}),
        ("tls", "Compression", {}),
        ("tcp", "WebhookVerification", {"provider": "github", "secret": "s"}),
        ("tls", "CircuitBreaker", {"error_threshold": 0.5}),
        ("tls", "MutualTLSAtEdge", {"mutual_tls_ca": "x"}),
        ("tls", "TLSTermination", {"key": "k", "cert": "c"}),
        ("tls", "MutualTLSAtAgent", True),
        ("http", "MutualTLSCA", {"mutual_tls_ca": "x"}),
    ],
)
def test_options_a_protocol_cannot_enforce_are_refused(proto: str, name: str, value: object) -> None:
    error = refused(proto, {name: value})
    assert error.code == "ERR_NGROK_90301" and name in error.message


def test_mutual_tls_at_agent_false_is_fine() -> None:
    assert EndpointPolicy.from_opts("tls", {"MutualTLSAtAgent": False}) == EndpointPolicy()


def test_unknown_fields_inside_an_option_refuse_the_bind() -> None:
    error = refused("tcp", {"IPRestriction": {"allow_cidrs": ["10.0.0.0/8"], "ip_policies": ["ipp_1"]}})
    assert error.code == "ERR_NGROK_90301" and "IPRestriction.ip_policies" in error.message


def test_keys_match_whatever_their_case() -> None:
    policy = EndpointPolicy.from_opts(
        "tcp", {"iprestriction": {"Allow_CIDRs": ["10.0.0.0/8"]}, "PROXYPROTO": 2}
    )
    assert policy.proxy_proto == 2 and not allows_client(policy, LOCAL)


# Basic auth ---------------------------------------------------------------------------


def sdk_basic_auth(*credentials: tuple[str, str]) -> dict[str, Any]:
    return {"BasicAuth": {"credentials": [{"username": u, "cleartext_password": p} for u, p in credentials]}}


def test_basic_auth_answers_401_without_or_with_wrong_credentials() -> None:
    policy = EndpointPolicy.from_opts(
        "https", sdk_basic_auth(("alice", "correct horse"), ("bob", "battery staple"))
    )
    for authorization in [
        None,
        basic("alice", "wrong password"),
        basic("bob", "correct horse"),
        basic("mallory", "correct horse"),
        b"Bearer abc",
        b"Basic !!!",
        b"Basic " + base64.b64encode(b"alicecorrect horse"),
    ]:
        headers = [] if authorization is None else [(b"Authorization", authorization)]
        refusal = check_request_head(policy, b"GET", b"/", headers, LOCAL)
        assert isinstance(refusal, Refusal) and refusal.status == 401, authorization
        assert refusal.code == "ERR_NGROK_90401"
        assert refusal.headers == ((b"WWW-Authenticate", b'Basic realm="ngrok", charset="UTF-8"'),)
    for user, password in [("alice", "correct horse"), ("bob", "battery staple")]:
        headers = [(b"authorization", basic(user, password))]
        assert check_request_head(policy, b"GET", b"/", headers, LOCAL) is None
    # Scheme case-insensitive, passwords may hold ':'.
    policy = EndpointPolicy.from_opts("http", sdk_basic_auth(("u", "pass:word:x")))
    assert (
        check_request_head(
            policy, b"GET", b"/", [(b"AUTHORIZATION", b"basic " + basic("u", "pass:word:x")[6:])], LOCAL
        )
        is None
    )


def test_the_policy_keeps_no_cleartext_password() -> None:
    policy = EndpointPolicy.from_opts("https", sdk_basic_auth(("alice", "correct horse")))
    assert policy.basic_auth is not None
    assert all(b"correct horse" not in digest for pair in policy.basic_auth.digests for digest in pair)
    assert "correct horse" not in repr(policy)


def test_v2_agent_auth_string() -> None:
    policy = EndpointPolicy.from_opts("http", {"Auth": "user:password1"})
    assert (
        check_request_head(policy, b"GET", b"/", [(b"Authorization", basic("user", "password1"))], LOCAL)
        is None
    )
    assert check_request_head(policy, b"GET", b"/", [], LOCAL) is not None
    assert refused("http", {"Auth": "nocolon"}).code == "ERR_NGROK_90302"


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("", "password1", "ERR_NGROK_359"),
        ("alice", "short", "ERR_NGROK_360"),
        ("alice", "x" * 129, "ERR_NGROK_360"),
        ("al:ice", "password1", "ERR_NGROK_15011"),
        ("al\nice", "password1", "ERR_NGROK_15011"),
        ("alice", "pass\r\nword", "ERR_NGROK_15012"),
    ],
)
def test_basic_auth_credentials_are_validated_as_ngrok_does(username: str, password: str, code: str) -> None:
    error = refused("https", sdk_basic_auth((username, password)))
    assert error.code == code
    assert password not in error.message or len(password) < 2


def test_basic_auth_limits_are_inclusive() -> None:
    EndpointPolicy.from_opts("https", sdk_basic_auth(("a", "x" * 8), ("b", "y" * 128)))
    assert refused("https", {"BasicAuth": {"credentials": []}}).code == "ERR_NGROK_90302"


# IP restrictions ------------------------------------------------------------------------


def restricted(allow: list[str], deny: list[str] | None = None, proto: str = "tcp") -> EndpointPolicy:
    return EndpointPolicy.from_opts(proto, {"IPRestriction": {"allow_cidrs": allow, "deny_cidrs": deny}})


def test_ip_restriction_deny_wins_and_allow_lists_are_exclusive() -> None:
    policy = restricted(["10.0.0.0/8", "2001:db8::/32"], ["10.1.0.0/16"])
    assert allows_client(policy, IP("10.2.3.4")) and allows_client(policy, IP("2001:db8::1"))
    assert not allows_client(policy, IP("10.1.2.3"))
    assert not allows_client(policy, LOCAL) and not allows_client(policy, IP("::1"))
    # An IPv4-mapped IPv6 client matches IPv4 rules.
    assert allows_client(policy, IP("::ffff:10.2.3.4")) and not allows_client(policy, IP("::ffff:10.1.0.1"))
    deny_only = restricted([], ["127.0.0.0/8"])
    assert not allows_client(deny_only, LOCAL) and allows_client(deny_only, IP("192.0.2.1"))


def test_ip_restriction_refuses_http_requests_with_403() -> None:
    policy = restricted(["10.0.0.0/8"], proto="http")
    refusal = check_request_head(policy, b"GET", b"/", [], LOCAL)
    assert refusal is not None and (refusal.status, refusal.code) == (403, "ERR_NGROK_3205")
    assert check_request_head(policy, b"GET", b"/", [], IP("10.0.0.1")) is None


def test_ip_restriction_comes_before_basic_auth() -> None:
    opts = {"IPRestriction": {"deny_cidrs": ["127.0.0.1/32"]}, **sdk_basic_auth(("a", "password1"))}
    policy = EndpointPolicy.from_opts("https", opts)
    refusal = check_request_head(policy, b"GET", b"/", [(b"Authorization", basic("a", "password1"))], LOCAL)
    assert refusal is not None and refusal.status == 403


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "nonsense", "10.0.0", "::/129", ""])
def test_invalid_cidrs_refuse_the_bind(cidr: str) -> None:
    error = refused("tls", {"IPRestriction": {"allow_cidrs": ["10.0.0.0/8", cidr]}})
    assert error.code == "ERR_NGROK_362"


@given(
    st.ip_addresses(),
    st.lists(
        st.ip_addresses().flatmap(lambda a: st.tuples(st.just(a), st.integers(0, a.max_prefixlen))),
        max_size=4,
    ),
    st.lists(
        st.ip_addresses().flatmap(lambda a: st.tuples(st.just(a), st.integers(0, a.max_prefixlen))),
        max_size=4,
    ),
)
def test_ip_restriction_matches_the_definition(
    client: Any, allow: list[tuple[Any, int]], deny: list[tuple[Any, int]]
) -> None:
    allow_nets = [ipaddress.ip_network(f"{a}/{p}", strict=False) for a, p in allow]
    deny_nets = [ipaddress.ip_network(f"{a}/{p}", strict=False) for a, p in deny]
    policy = restricted([f"{a}/{p}" for a, p in allow], [f"{a}/{p}" for a, p in deny])

    def inside(ip: Any, networks: list[Any]) -> bool:
        return any(
            ip.version == n.version and int(ip) & int(n.netmask) == int(n.network_address) for n in networks
        )

    # An IPv4-mapped IPv6 client (::ffff:a.b.c.d) is the IPv4 client it carries.
    seen = client.ipv4_mapped if client.version == 6 and client.ipv4_mapped is not None else client
    expected = not inside(seen, deny_nets) and (not allow_nets or inside(seen, allow_nets))
    assert allows_client(policy, client) is expected
    if client.version == 4:  # the same client seen through a dual-stack socket
        assert allows_client(policy, ipaddress.IPv6Address(f"::ffff:{client}")) is expected


# Headers --------------------------------------------------------------------------------


def test_request_and_response_headers_remove_then_add() -> None:
    policy = EndpointPolicy.from_opts(
        "https",
        {
            "RequestHeaders": {"add": ["x-a:1", "x-multi: two words "], "remove": ["X-B", "x-a"]},
            "ResponseHeaders": {"add": ["x-c:2"], "remove": ["server"]},
        },
    )
    request = [(b"Host", b"h"), (b"X-b", b"gone"), (b"X-A", b"old"), (b"keep", b"k")]
    assert request_headers(policy, request) == [
        (b"Host", b"h"),
        (b"keep", b"k"),
        (b"x-a", b"1"),
        (b"x-multi", b"two words"),
    ]
    response = [(b"Server", b"nginx"), (b"X-C", b"old"), (b"Content-Length", b"3")]
    assert response_headers(policy, response) == [(b"Content-Length", b"3"), (b"x-c", b"2")]


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"add": ["x-a:1\r\nx-evil:1"]}, "ERR_NGROK_1624"),
        ({"add": ["x-a:1\nx"]}, "ERR_NGROK_1624"),
        ({"add": ["x-a:a\x00b"]}, "ERR_NGROK_1624"),
        ({"add": ["x-a:"]}, "ERR_NGROK_1624"),
        ({"add": ["bad name:1"]}, "ERR_NGROK_90302"),
        ({"add": ["novalue"]}, "ERR_NGROK_90302"),
        ({"add": [":v"]}, "ERR_NGROK_90302"),
        ({"remove": ["x\r\ny"]}, "ERR_NGROK_90302"),
        ({"add": ["content-length:0"]}, "ERR_NGROK_90302"),
        ({"remove": ["Transfer-Encoding"]}, "ERR_NGROK_90302"),
        ({"add": "x-a:1"}, "ERR_NGROK_90302"),
    ],
)
def test_invalid_header_rules_refuse_the_bind(rule: dict[str, Any], code: str) -> None:
    assert refused("http", {"ResponseHeaders": rule}).code == code
    assert refused("http", {"RequestHeaders": rule}).code == code


_TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
).filter(lambda n: n.lower() not in ("content-length", "transfer-encoding"))
_VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
_HEADERS = st.lists(st.tuples(_TOKEN, _VALUE), max_size=8)


@given(_HEADERS, st.lists(st.tuples(_TOKEN, _VALUE), max_size=4), st.lists(_TOKEN, max_size=4))
def test_header_rules_properties(
    headers: list[tuple[str, str]], add: list[tuple[str, str]], remove: list[str]
) -> None:
    policy = EndpointPolicy.from_opts(
        "http", {"RequestHeaders": {"add": [f"{n}:{v}" for n, v in add], "remove": remove}}
    )
    raw = [(n.encode(), v.encode()) for n, v in headers]
    result = request_headers(policy, raw)
    removed = {n.lower() for n in remove} | {n.lower() for n, _ in add}
    # Every removed name is gone except as added; every added field is there, last, in order.
    assert result[len(result) - len(add) :] == [(n.encode(), v.encode()) for n, v in add]
    assert all(n.decode().lower() not in removed for n, _ in result[: len(result) - len(add)])
    # Untouched fields keep their order.
    assert result[: len(result) - len(add)] == [(n, v) for n, v in raw if n.decode().lower() not in removed]


def test_host_header_rewrite_uses_forwards_to() -> None:
    request = [(b"Host", b"public.example"), (b"Accept", b"*/*")]
    for forwards_to, host in [
        ("http://localhost:8080", b"localhost:8080"),
        ("127.0.0.1:3000", b"127.0.0.1:3000"),
        ("https://app.internal", b"app.internal"),
        ("http://[::1]:81", b"[::1]:81"),
    ]:
        policy = EndpointPolicy.from_opts("http", {"HostHeaderRewrite": True}, forwards_to=forwards_to)
        assert request_headers(policy, list(request)) == [(b"Accept", b"*/*"), (b"Host", host)]


def test_host_header_rewrite_without_forwards_to_is_refused() -> None:
    error = refused("http", {"HostHeaderRewrite": True})
    assert error.code == "ERR_NGROK_90301" and "HostHeaderRewrite" in error.message
    assert (
        refused("http", {"HostHeaderRewrite": True}, forwards_to="http://a\r\nb:80").code == "ERR_NGROK_90302"
    )


# Circuit breaker ------------------------------------------------------------------------


def test_circuit_breaker_option() -> None:
    policy = EndpointPolicy.from_opts("https", {"CircuitBreaker": {"error_threshold": 0.5}})
    assert (
        isinstance(policy.circuit_breaker, CircuitBreaker) and policy.circuit_breaker.error_threshold == 0.5
    )
    default = EndpointPolicy.from_opts("https", {"CircuitBreaker": {}}).circuit_breaker
    assert default is not None and default.error_threshold == 0.5  # ngrok's default
    for value in [1.5, -0.1, "half", True]:
        assert refused("https", {"CircuitBreaker": {"error_threshold": value}}).code == "ERR_NGROK_361"


def test_circuit_breaker_trips_on_errors_over_volume_and_recovers_through_a_probe() -> None:
    breaker = CircuitBreaker(0.5)
    now = 1000.0
    for _ in range(9):  # below the volume threshold (10) nothing trips
        assert breaker.allows(now)
        breaker.record(502, now)
    assert breaker.allows(now)
    breaker.record(200, now)  # 10 answers, 9 errors: over 50%
    assert not breaker.allows(now + 0.1) and not breaker.allows(now + 9.9)
    # Tripped for 10 s, then a single probe.
    assert breaker.allows(now + 10.0)
    assert not breaker.allows(now + 10.1)
    breaker.record(500, now + 10.2)  # the probe failed: open again
    assert not breaker.allows(now + 15)
    assert breaker.allows(now + 20.3)
    breaker.record(200, now + 20.4)  # the probe succeeded: closed, window empty
    assert breaker.allows(now + 20.5) and breaker.allows(now + 20.6)


def test_circuit_breaker_window_rolls_and_threshold_is_a_share() -> None:
    breaker = CircuitBreaker(0.5)
    for i in range(10):
        breaker.record(500 if i < 4 else 200, 0.0)  # 40% errors: stays closed
    assert breaker.allows(0.5)
    for _ in range(6):  # errors that old answers no longer dilute, 11 s later
        breaker.record(503, 11.0)
    assert breaker.allows(11.0)  # only 6 answers in the window
    for _ in range(4):
        breaker.record(0, 11.5)  # no answer counts as an error
    assert not breaker.allows(11.6)


def test_circuit_breaker_threshold_zero_still_needs_an_error() -> None:
    breaker = CircuitBreaker(0.0)
    for _ in range(20):
        breaker.record(200, 1.0)
    assert breaker.allows(1.0)
    breaker.record(500, 1.0)
    assert not breaker.allows(1.0)


# Compression, PROXY protocol ------------------------------------------------------------


def test_compression() -> None:
    assert EndpointPolicy.from_opts("https", {"Compression": {}}).compression
    assert refused("https", {"Compression": {"level": 9}}).code == "ERR_NGROK_90301"


def test_proxy_protocol_v1_matches_the_spec_examples() -> None:
    v1 = EndpointPolicy.from_opts("tcp", {"ProxyProto": 1})
    assert v1.proxy_protocol_header(("192.168.0.1", 56324), ("192.168.0.11", 443)) == (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )
    full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    assert v1.proxy_protocol_header((full, 65535), (full, 65535)) == (
        f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    )
    assert v1.proxy_protocol_header(("unix-socket", 0), ("127.0.0.1", 80)) == b"PROXY UNKNOWN\r\n"
    # A dual-stack listener's IPv4-mapped client is written as IPv4; mixed families as IPv6.
    assert (
        v1.proxy_protocol_header(("::ffff:10.0.0.1", 5), ("10.0.0.2", 6))
        == b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n"
    )
    mixed = v1.proxy_protocol_header(("10.0.0.1", 5), ("::1", 6)).split(b" ")
    assert mixed[:2] == [b"PROXY", b"TCP6"] and mixed[3:] == [b"::1", b"5", b"6\r\n"]
    assert IP(mixed[2].decode()) == IP("::ffff:10.0.0.1")
    assert len(v1.proxy_protocol_header((full, 65535), (full, 65535))) <= 107  # the spec's maximum


def test_proxy_protocol_v2_bytes() -> None:
    v2 = EndpointPolicy.from_opts("tls", {"ProxyProto": 2})
    signature = bytes.fromhex("0D0A0D0A000D0A515549540A")
    assert v2.proxy_protocol_header(("192.168.0.1", 56324), ("192.168.0.11", 443)) == (
        signature
        + bytes([0x21, 0x11, 0x00, 0x0C])
        + bytes([192, 168, 0, 1])
        + bytes([192, 168, 0, 11])
        + bytes([0xDC, 0x04, 0x01, 0xBB])
    )
    assert v2.proxy_protocol_header(("2001:db8::1", 1), ("::1", 2)) == (
        signature
        + bytes([0x21, 0x21, 0x00, 0x24])
        + bytes.fromhex("20010db8000000000000000000000001")
        + bytes(15)
        + b"\x01"
        + b"\x00\x01\x00\x02"
    )
    assert v2.proxy_protocol_header(("192.0.2.1", 1), ("192.0.2.2", 2), proto_tcp=False)[13] == 0x12
    # Unknown addresses: the LOCAL command, no address block.
    assert v2.proxy_protocol_header(("?", 0), ("?", 0)) == signature + bytes([0x20, 0x00, 0x00, 0x00])


@pytest.mark.parametrize("value", [3, -1, "1", True, 1.5])
def test_invalid_proxy_proto(value: object) -> None:
    assert refused("tcp", {"ProxyProto": value}).code == "ERR_NGROK_90302"


# Webhook verification -------------------------------------------------------------------


def github_headers(secret: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"X-Hub-Signature-256", b"sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest().encode())
    ]


def slack_headers(secret: bytes, body: bytes, timestamp: int) -> list[tuple[bytes, bytes]]:
    base = b"v0:%d:" % timestamp + body
    signature = b"v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest().encode()
    return [(b"X-Slack-Signature", signature), (b"X-Slack-Request-Timestamp", str(timestamp).encode())]


@dataclasses.dataclass
class AtTime:
    """A webhook-verifying endpoint whose requests come at ``now``."""

    policy: EndpointPolicy
    now: float

    def check_request_body(self, headers: list[tuple[bytes, bytes]], body: bytes) -> Refusal | None:
        return check_request_body(self.policy, headers, body, self.now)


def webhook_policy(provider: str, secret: str, now: float = 1_700_000_000.0) -> AtTime:
    policy = EndpointPolicy.from_opts(
        "https", {"WebhookVerification": {"provider": provider, "secret": secret}}
    )
    return AtTime(policy, now)


def test_github_webhooks() -> None:
    policy = webhook_policy("github", "s3cret")
    assert policy.policy.buffer_body_up_to == 10 * 1024 * 1024
    body = b'{"action":"opened"}'
    assert policy.check_request_body(github_headers(b"s3cret", body), body) is None
    for headers in [
        github_headers(b"other", body),
        github_headers(b"s3cret", body + b" "),
        [],
        [(b"X-Hub-Signature-256", b"sha1=00")],
        [(b"X-Hub-Signature-256", b"sha256=zz")],
    ]:
        refusal = policy.check_request_body(headers, body)
        assert refusal is not None and (refusal.status, refusal.code) == (403, "ERR_NGROK_3204")


def test_slack_webhooks_and_their_time_window() -> None:
    now = 1_700_000_000
    policy = webhook_policy("slack", "slack-secret", now)
    body = b"token=x&team_id=T1"
    assert policy.check_request_body(slack_headers(b"slack-secret", body, now - 299), body) is None
    assert policy.check_request_body(slack_headers(b"slack-secret", body, now - 301), body) is not None
    assert policy.check_request_body(slack_headers(b"slack-secret", body, now + 301), body) is not None
    assert policy.check_request_body(slack_headers(b"wrong", body, now), body) is not None
    assert policy.check_request_body(slack_headers(b"slack-secret", body, now)[:1], body) is not None


def test_stripe_and_shopify_webhooks() -> None:
    now = 1_700_000_000
    stripe = webhook_policy("stripe", "whsec_x", now)
    body = b'{"id":"evt_1"}'
    good = hmac.new(b"whsec_x", b"%d." % now + body, hashlib.sha256).hexdigest()
    header = f"t={now},v1={'0' * 64},v1={good}".encode()
    assert stripe.check_request_body([(b"Stripe-Signature", header)], body) is None
    stale = f"t={now - 400},v1={good}".encode()
    assert stripe.check_request_body([(b"Stripe-Signature", stale)], body) is not None
    shopify = webhook_policy("Shopify", "shp")
    digest = base64.b64encode(hmac.new(b"shp", body, hashlib.sha256).digest())
    assert shopify.check_request_body([(b"X-Shopify-Hmac-Sha256", digest)], body) is None
    assert shopify.check_request_body([(b"X-Shopify-Hmac-Sha256", digest)], body + b"x") is not None


def test_webhook_option_errors_and_the_secret_is_never_shown() -> None:
    error = refused("https", {"WebhookVerification": {"provider": "acme", "secret": "s"}})
    assert error.code == "ERR_NGROK_364" and "acme" in error.message and "github" in error.message
    assert refused("https", {"WebhookVerification": {"provider": "github"}}).code == "ERR_NGROK_15007"
    assert "s3cret" not in repr(webhook_policy("github", "s3cret"))


def test_the_default_clock_is_wall_time() -> None:
    policy = EndpointPolicy.from_opts("https", {"WebhookVerification": {"provider": "slack", "secret": "k"}})
    body = b"x"
    assert check_request_body(policy, slack_headers(b"k", body, int(time.time())), body) is None


# Mutual TLS -----------------------------------------------------------------------------


def certificate_pem(is_ca: bool) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def test_mutual_tls_ca_accepts_base64_of_pem_and_pem() -> None:
    pem = certificate_pem(is_ca=True)
    for sent in [base64.b64encode(pem).decode(), pem.decode()]:
        assert ca_bundle("MutualTLSCA", {"mutual_tls_ca": sent}) == pem
        policy = EndpointPolicy.from_opts("https", {"MutualTLSCA": {"mutual_tls_ca": sent}})
        assert policy.mutual_tls_ca == pem


@pytest.mark.parametrize(
    "sent",
    ["", "bm90IGEgY2VydA==", "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", "%%%", "leaf"],
)
def test_invalid_mutual_tls_cas_refuse_the_bind(sent: str) -> None:
    if sent == "leaf":
        sent = base64.b64encode(certificate_pem(is_ca=False)).decode()
    assert refused("https", {"MutualTLSCA": {"mutual_tls_ca": sent}}).code == "ERR_NGROK_1900"


# The echo -------------------------------------------------------------------------------


def test_the_echoed_opts_carry_no_secret_and_keep_every_key() -> None:
    opts = {
        "Hostname": "h.example",
        "Auth": "user:password1",
        "BasicAuth": {"credentials": [{"username": "alice", "cleartext_password": "correct horse"}]},
        "WebhookVerification": {"provider": "github", "secret": "s3cret"},
        "RequestHeaders": {"add": ["x-a:1"], "remove": []},
        "OIDC": None,
    }
    echoed = redacted_opts(opts)
    assert echoed.keys() == opts.keys()
    assert (
        "correct horse" not in repr(echoed)
        and "s3cret" not in repr(echoed)
        and "password1" not in repr(echoed)
    )
    assert echoed["BasicAuth"] == {"credentials": [{"username": "alice", "cleartext_password": ""}]}
    assert echoed["WebhookVerification"] == {"provider": "github", "secret": ""}
    assert echoed["RequestHeaders"] == opts["RequestHeaders"] and echoed["Auth"] == ""
    assert opts["BasicAuth"]["credentials"][0]["cleartext_password"] == "correct horse"  # type: ignore[index]


def test_a_policy_s_rate_limits_are_bounded_in_number_and_memory() -> None:
    limit = "{type: rate-limit, config: {capacity: 1000000000, rate: 1h}}"
    nine = "on_http_request: [{actions: [" + ", ".join([limit] * 9) + "]}]"
    assert refused("https", {"TrafficPolicy": nine}).code == "ERR_NGROK_90302"
    one = "on_http_request: [{actions: [" + limit + "]}]"
    policy = EndpointPolicy.from_opts("https", {"TrafficPolicy": one})
    assert policy.traffic is not None
    (action,) = policy.traffic.phases["on_http_request"][0].actions
    window = action.window  # type: ignore[attr-defined]
    for n in range(50_000):  # a hit each, from as many keys as a client can make up
        assert window.allow(f"key-{n}", 1.0)
    assert len(window._counts) == window.max_keys == 10_000
    for _ in range(1000):  # one key's hits cost no more than its first
        window.allow("busy", 2.0)
    assert window._counts["busy"] == (0, 1000, 0)
