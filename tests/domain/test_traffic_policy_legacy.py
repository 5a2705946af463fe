"""Legacy endpoint options and the traffic policy made of them decide alike on a table of requests."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from burrow.domain.endpoint import EndpointPolicy
from burrow.domain.traffic_policy.actions import (
    AddHeaders,
    BasicAuthAction,
    CircuitBreakerAction,
    CompressResponse,
    RemoveHeaders,
    RestrictIps,
)
from burrow.domain.traffic_policy.legacy import policy_from_endpoint

OPTS = {
    "IPRestriction": {"allow_cidrs": ["10.0.0.0/8", "2001:db8::/32"], "deny_cidrs": ["10.9.0.0/16"]},
    "BasicAuth": {"credentials": [{"username": "ann", "cleartext_password": "correct-horse"}]},
    "RequestHeaders": {"add": ["x-added: yes ${not.interpolated}"], "remove": ["x-secret"]},
    "ResponseHeaders": {"add": ["x-served-by: burrow"], "remove": ["server"]},
    "Compression": {},
}
GOOD = b"Basic " + base64.b64encode(b"ann:correct-horse")
BAD = b"Basic " + base64.b64encode(b"ann:wrong")


def legacy_decision(endpoint: EndpointPolicy, ip: str, headers: list[tuple[bytes, bytes]]) -> object:
    """What the options themselves say (their parsed objects, asked directly)."""
    assert endpoint.ip_restriction is not None and endpoint.basic_auth is not None
    if not endpoint.ip_restriction.allows(ipaddress.ip_address(ip)):
        return 403
    authorization = next((v for n, v in headers if n.lower() == b"authorization"), None)
    if not endpoint.basic_auth.allows(authorization):
        return 401
    assert endpoint.request_rules is not None
    return [(n.decode().lower(), v.decode()) for n, v in endpoint.request_rules.apply(headers)]


def policy_decision(endpoint: EndpointPolicy, ip: str, headers: list[tuple[bytes, bytes]]) -> object:
    """The edge's job, done the simplest way: run the request phase's actions in order."""
    current = [(n.decode(), v.decode()) for n, v in headers]
    authorization = next((v.encode() for n, v in current if n.lower() == "authorization"), None)
    for action in policy_from_endpoint(endpoint).run("on_http_request", {"conn.client_ip": ip}):
        if isinstance(action, RestrictIps) and not action.allows(ipaddress.ip_address(ip)):
            return 403
        if isinstance(action, BasicAuthAction) and action.challenge(authorization) is not None:
            return 401
        if isinstance(action, RemoveHeaders | AddHeaders):
            current = action.apply(current)
    return [(n.lower(), v) for n, v in current]


@pytest.mark.parametrize(
    ("ip", "headers"),
    [
        ("10.1.2.3", [(b"Authorization", GOOD), (b"X-Secret", b"s"), (b"Accept", b"*/*")]),
        ("10.1.2.3", [(b"Authorization", BAD)]),
        ("10.1.2.3", []),
        ("10.9.0.1", [(b"Authorization", GOOD)]),
        ("192.0.2.1", [(b"Authorization", GOOD)]),
        ("2001:db8::1", [(b"authorization", GOOD), (b"x-added", b"forged")]),
        ("::ffff:10.1.2.3", [(b"Authorization", GOOD)]),
    ],
)
def test_both_decide_the_same(ip: str, headers: list[tuple[bytes, bytes]]) -> None:
    endpoint = EndpointPolicy.from_opts("https", OPTS)
    assert policy_decision(endpoint, ip, headers) == legacy_decision(endpoint, ip, headers)


def test_response_phase_and_other_options() -> None:
    endpoint = EndpointPolicy.from_opts("https", {**OPTS, "CircuitBreaker": {"error_threshold": 0.3}})
    policy = policy_from_endpoint(endpoint)
    remove, add, compress = policy.run("on_http_response", {})
    assert isinstance(remove, RemoveHeaders) and isinstance(add, AddHeaders)
    assert isinstance(compress, CompressResponse)
    served = add.apply(remove.apply([("Server", "x"), ("content-type", "text/plain")]))
    assert endpoint.response_rules is not None
    expected = endpoint.response_rules.apply([(b"Server", b"x"), (b"content-type", b"text/plain")])
    assert served == [(n.decode(), v.decode()) for n, v in expected]
    breaker = next(a for a in policy.run("on_http_request", {}) if isinstance(a, CircuitBreakerAction))
    assert breaker.error_threshold == 0.3
    # An HTTP endpoint's IP restriction answers each request (a 403 page); a TCP endpoint's
    # refuses the connection.
    assert policy.run("on_tcp_connect", {}) == []
    (restrict, *_) = policy.run("on_http_request", {})
    assert isinstance(restrict, RestrictIps) and restrict.error_page
    assert not restrict.allows(ipaddress.ip_address("192.0.2.1"))
    tcp = policy_from_endpoint(
        EndpointPolicy.from_opts("tcp", {"IPRestriction": OPTS["IPRestriction"]}), True
    )
    (restrict,) = tcp.run("on_tcp_connect", {})
    assert isinstance(restrict, RestrictIps) and tcp.run("on_http_request", {}) == []


def test_the_options_run_around_the_endpoint_s_own_policy() -> None:
    document = (
        '{"on_http_request": [{"actions": [{"type": "add-headers", "config": {"headers": {"x-doc": "1"}}}]}]}'
    )
    endpoint = EndpointPolicy.from_opts(
        "https", {**OPTS, "CircuitBreaker": {"error_threshold": 0.3}, "TrafficPolicy": document}
    )
    assert endpoint.enforced is not None
    names = [rule.name for rule in endpoint.enforced.phases["on_http_request"]]
    assert names == ["endpoint options", "", "endpoint circuit breaker"]  # the document's rule has no name
    patched = endpoint.with_traffic_policy("https", "")
    assert patched.enforced is not None and [r.name for r in patched.enforced.phases["on_http_request"]] == [
        "endpoint options",
        "endpoint circuit breaker",
    ]
    assert EndpointPolicy.from_opts("https", {"ProxyProto": 1}).enforced is None
    assert policy_from_endpoint(EndpointPolicy()).run("on_http_request", {}) == []
