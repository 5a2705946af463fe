"""Traffic policies: parsing and its refusals, phases, interpolation and each action's pure semantics."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re
from pathlib import Path

import pytest

from burrow.domain.circuit import CircuitBreaker
from burrow.domain.errors import BurrowError
from burrow.domain.traffic_policy import compile_policy
from burrow.domain.traffic_policy.actions import (
    AddHeaders,
    BasicAuthAction,
    CircuitBreakerAction,
    CloseConnection,
    CustomResponse,
    Deny,
    ForwardInternal,
    JwtValidation,
    Log,
    RateLimit,
    Redirect,
    RemoveHeaders,
    Response,
    RestrictIps,
    SetVars,
    SlidingWindow,
    UrlRewrite,
    VerifyWebhook,
)
from burrow.domain.traffic_policy.document import MAX_DOCUMENT_BYTES

DOCS = Path(__file__).resolve().parents[2] / "docs"
REQUEST = {
    "conn.client_ip": "203.0.113.7",
    "conn.client_port": 50000,
    "conn.server_ip": "192.0.2.1",
    "conn.server_port": 443,
    "endpoint.url": "https://app.example.com",
    "endpoint.host": "app.example.com",
    "endpoint.port": 443,
    "endpoint.protocol": "https",
    "req.method": "GET",
    "req.url": "https://app.example.com/old/page?x=1",
    "req.url.path": "/old/page",
    "req.url.query": "x=1",
    "req.url.host": "app.example.com",
    "req.url.scheme": "https",
    "req.host": "app.example.com",
    "req.headers": {"user-agent": ("curl/8",), "x-tenant": ("blue", "green")},
    "req.query_params": {"x": ("1",)},
    "req.content_length": 0,
}


def refusal(text: str) -> str:
    with pytest.raises(BurrowError) as caught:
        compile_policy(text)
    return f"{caught.value.code} {caught.value.message}"


def one(text: str, phase: str = "on_http_request", env: dict[str, object] | None = None) -> list[object]:
    return list(compile_policy(text).run(phase, env if env is not None else REQUEST))  # type: ignore[arg-type]


# --- Parsing and refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on_http_request: [", "ERR_NGROK_2236 The traffic policy was not able to be parsed"),
        ("a: &x [1]\nb: *x", "aliases"),
        ("on_http_requests: []", "ERR_NGROK_9026 .*on_http_requests: unknown field"),
        (
            "on_http_request: [{actions: [{type: deny}], when: x}]",
            r"on_http_request\[0\]\.when: unknown field",
        ),
        (
            "on_http_request: [{actions: [{type: deny}, {type: custom-response, config: {status_code: x}}]}]",
            r"on_http_request\[0\]\.actions\[1\]\.config\.status_code: expected an integer",
        ),
        (
            "on_http_request: [{actions: [{type: deny, config: {status: 403}}]}]",
            r"actions\[0\]\.config\.status: unknown field",
        ),
        (
            "on_http_request: [{expressions: ['req.method == 1'], actions: [{type: deny}]}]",
            r"expressions\[0\]: cannot compare string with int using '=='",
        ),
        (
            "on_http_request: [{expressions: ['conn.geo.country_code == \"FR\"'], actions: [{type: deny}]}]",
            "unknown variable conn.geo.country_code",
        ),
        (
            "on_tcp_connect: [{expressions: ['req.method == \"GET\"'], actions: [{type: deny}]}]",
            "unknown variable req.method",
        ),
        (
            "on_http_request: [{expressions: ['res.status_code == 200'], actions: [{type: deny}]}]",
            "unknown variable res.status_code",
        ),
        ("on_http_request: [{actions: [{type: oauth}]}]", "the action 'oauth' is not supported"),
        ("on_http_request: [{actions: [{type: owasp-crs-request}]}]", "'owasp-crs-request' is not supported"),
        ("on_http_request: [{actions: [{type: teleport}]}]", "'teleport' is not supported"),
        ("on_http_request: [{actions: []}]", "expected a list of 1 to 64 actions"),
        (
            "on_http_request: [{expressions: ['req.method'], actions: [{type: deny}]}]",
            "must be bool, not string",
        ),
        (
            "on_http_request: [{expressions: ['req.url.path.matches(\"(\")'], actions: [{type: deny}]}]",
            "regular",
        ),
        (
            "on_http_request: [{actions: [{type: custom-response, "
            "config: {status_code: 200, body: '${req.nope}'}}]}]",
            r"config\.body: unknown variable req\.nope",
        ),
        ("on_http_request: [{actions: [{type: restrict-ips, config: {allow: [300.1.1.1/8]}}]}]", "CIDR"),
        (
            "on_http_request: [{actions: [{type: redirect, config: {from: '/(a)', to: '/$2'}}]}]",
            r"config\.to: \$2 names a group 'from' does not have",
        ),
        (
            "on_http_request: [{actions: [{type: basic-auth, config: {credentials: [nocolon]}}]}]",
            "username:password",
        ),
        (
            "on_http_request: [{actions: [{type: verify-webhook, config: {provider: x, secret: s}}]}]",
            "one of",
        ),
    ],
)
def test_refusals_name_the_path_and_problem(text: str, expected: str) -> None:
    assert re.search(expected, refusal(text)), refusal(text)


@pytest.mark.parametrize(
    ("phase", "action", "allowed"),
    [
        ("on_tcp_connect", "{type: url-rewrite, config: {to: /x}}", "on_http_request"),
        (
            "on_http_response",
            "{type: basic-auth, config: {credentials: ['a:passwordpassword']}}",
            "on_http_request",
        ),
        ("on_http_request", "{type: compress-response}", "on_http_response"),
        (
            "on_tcp_connect",
            "{type: custom-response, config: {status_code: 200}}",
            "on_http_request, on_http_response",
        ),
    ],
)
def test_actions_are_refused_outside_their_phases(phase: str, action: str, allowed: str) -> None:
    assert f"is not allowed in {phase} (only in {allowed})" in refusal(f"{phase}: [{{actions: [{action}]}}]")


def test_a_document_over_the_size_limit_is_refused_before_parsing() -> None:
    huge = "on_http_request: []\n#" + "x" * (1024 * 1024)
    assert f"over the limit of {MAX_DOCUMENT_BYTES}" in refusal(huge)


@pytest.mark.parametrize("depth", [17, 2000])
def test_deep_nesting_is_refused(depth: int) -> None:
    assert "nests deeper than 16 levels" in refusal("[" * depth + "]" * depth)


def test_json_documents_are_accepted() -> None:
    document = {"on_http_request": [{"expressions": ["req.method == 'GET'"], "actions": [{"type": "deny"}]}]}
    assert one(json.dumps(document)) == [Deny(403)]


# --- Evaluation ------------------------------------------------------------------------------------


def test_rules_run_in_order_only_when_every_expression_holds() -> None:
    policy = """
on_http_request:
  - expressions: ["req.method == 'POST'"]
    actions: [{type: deny, config: {status_code: 405}}]
  - expressions: ["req.url.path.startsWith('/old')", "'x-tenant' in req.headers"]
    actions: [{type: log, config: {metadata: {tenant: "${req.headers['x-tenant'][1]}"}}}]
  - actions: [{type: deny}]
  - actions: [{type: log}]
"""
    actions = one(policy)
    assert [type(action) for action in actions] == [Log, Deny]  # deny ends the list
    assert isinstance(actions[0], Log) and actions[0].metadata[0][1].text == "green"


def test_an_expression_that_cannot_be_evaluated_does_not_match() -> None:
    policy = (
        "on_http_request: [{expressions: [\"req.headers['x-missing'][0] == 'a'\"], actions: [{type: deny}]}]"
    )
    assert one(policy) == []
    # ...but CEL's commutative || lets a true side decide.
    policy = policy.replace("== 'a'", "== 'a' || true")
    assert one(policy) == [Deny(403)]


def test_macros_and_operators() -> None:
    compiled = compile_policy(
        """
on_http_request:
  - expressions:
      - "inCidrRange(conn.client_ip, '203.0.113.0/24')"
      - "inCidrRanges(conn.client_ip, ['10.0.0.0/8', '203.0.113.7'])"
      - "has(req.headers.x) == false && size(req.headers) == 2 && req.headers['x-tenant'].size() == 2"
      - "req.url.path.matches('^/old/[a-z]+$') && req.host.endsWith('.com') && req.url.contains('x=1')"
      - "(conn.server_port == 443 ? 'tls' : 'plain') == 'tls' && 'x' in req.query_params"
      - "req.method in ['GET', 'HEAD'] && !(req.content_length > 0)"
    actions: [{type: deny}]
"""
    )
    assert compiled.run("on_http_request", REQUEST) == [Deny(403)]  # type: ignore[arg-type]
    elsewhere = {**REQUEST, "conn.client_ip": "198.51.100.1"}
    assert compiled.run("on_http_request", elsewhere) == []  # type: ignore[arg-type]


def test_set_vars_feed_later_expressions_and_interpolation() -> None:
    policy = """
on_http_request:
  - actions:
      - type: set-vars
        config: {vars: [{tenant: "${req.headers['x-tenant'][0]}"}, {port: "${conn.server_port}"}]}
  - expressions: ["vars.tenant == 'blue'"]
    actions:
      - type: custom-response
        config:
          status_code: 200
          headers: {content-type: text/plain}
          body: "tenant ${vars.tenant} on ${vars.port} via ${req.method}; literal $ and ${'}'}"
"""
    actions = one(policy)
    assert isinstance(actions[0], SetVars)
    response = actions[1]
    assert isinstance(response, CustomResponse)
    assert response.response() == Response(
        200, (("content-type", "text/plain"),), "tenant blue on 443 via GET; literal $ and }"
    )


def test_redirect_and_url_rewrite_use_capture_groups() -> None:
    policy = """
on_http_request:
  - actions:
      - type: url-rewrite
        config: {from: "/old/([a-z]+)", to: "/new/$1"}
      - type: redirect
        config:
          {from: "^https://app.example.com/old/(.*)$", to: "https://${req.host}/v2/$1", status_code: 301}
"""
    rewrite, redirect = one(policy)
    assert isinstance(rewrite, UrlRewrite) and isinstance(redirect, Redirect)
    assert rewrite.rewrite("/old/page?x=1") == "/new/page?x=1"
    assert rewrite.rewrite("/other") == "/other"
    assert redirect.response(str(REQUEST["req.url"])) == Response(
        301, (("location", "https://app.example.com/v2/page?x=1"),)
    )
    assert redirect.response("https://app.example.com/fresh") is None


def test_add_and_remove_headers_on_a_header_list() -> None:
    policy = """
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [Server, x-powered-by]}
      - type: add-headers
        config: {headers: {x-status: "${string(res.status_code) == '' ? 'a' : 'b'}"}}
"""
    with pytest.raises(BurrowError, match="unknown function 'string'"):
        compile_policy(policy)
    policy = policy.replace("${string(res.status_code) == '' ? 'a' : 'b'}", "${res.status_code}")
    remove, add = one(policy, "on_http_response", {**REQUEST, "res.status_code": 201, "res.headers": {}})
    assert isinstance(remove, RemoveHeaders) and isinstance(add, AddHeaders)
    headers = remove.apply([("server", "x"), ("X-Powered-By", "y"), ("content-type", "z")])
    assert add.apply(headers) == [("content-type", "z"), ("x-status", "201")]


def test_restrict_ips() -> None:
    (action,) = one(
        "on_tcp_connect: [{actions: [{type: restrict-ips, "
        "config: {allow: [10.0.0.0/8], deny: [10.1.0.0/16]}}]}]",
        "on_tcp_connect",
    )
    assert isinstance(action, RestrictIps)
    assert action.allows(ipaddress.ip_address("10.2.3.4"))
    assert not action.allows(ipaddress.ip_address("10.1.3.4"))
    assert not action.allows(ipaddress.ip_address("192.0.2.1"))
    assert action.allows(ipaddress.ip_address("::ffff:10.2.3.4"))


def test_basic_auth() -> None:
    (action,) = one(
        "on_http_request: [{actions: [{type: basic-auth, "
        "config: {credentials: ['ann:correcthorse'], realm: r}}]}]"
    )
    assert isinstance(action, BasicAuthAction)
    good = b"Basic " + base64.b64encode(b"ann:correcthorse")
    assert action.challenge(good) is None
    assert action.challenge(b"Basic " + base64.b64encode(b"ann:wrong")) == Response(
        401, (("www-authenticate", 'Basic realm="r"'),)
    )
    assert action.challenge(None) is not None
    with pytest.raises(BurrowError, match="Password must be between"):
        compile_policy(
            "on_http_request: [{actions: [{type: basic-auth, config: {credentials: ['ann:short']}}]}]"
        )


def test_rate_limit_sliding_window() -> None:
    (action,) = one(
        "on_http_request: [{actions: [{type: rate-limit, config: {name: api, capacity: 2, rate: 10s, "
        "bucket_key: ['${conn.client_ip}']}}]}]"
    )
    assert isinstance(action, RateLimit)
    assert (action.capacity, action.rate_seconds, action.bucket_key[0].text) == (2, 10.0, "203.0.113.7")
    window = SlidingWindow(action.capacity, action.rate_seconds)
    assert [window.allow("a", t) for t in (0.0, 1.0, 2.0)] == [True, True, False]
    assert window.allow("b", 2.0)  # keys are separate
    assert window.allow("a", 10.5)  # the hit at 0.0 has left the window
    assert not window.allow("a", 10.6)
    assert "expected a duration" in refusal(
        "on_http_request: [{actions: [{type: rate-limit, config: {capacity: 2, rate: soon}}]}]"
    )


def test_circuit_breaker_settings_build_the_domain_breaker() -> None:
    (action,) = one(
        "on_http_request: [{actions: [{type: circuit-breaker, config: {error_threshold: 0.25, "
        "volume_threshold: 4, window_duration: 20s, tripped_duration: 1m}}]}]"
    )
    assert action == CircuitBreakerAction(0.25, 4, 20.0, 60.0)
    breaker = CircuitBreaker(
        action.error_threshold,
        volume_threshold=action.volume_threshold,
        window_seconds=action.window_seconds,
        tripped_seconds=action.tripped_seconds,
    )
    for moment in range(4):
        breaker.record(502, float(moment))
    assert not breaker.allows(5.0)
    assert "error_threshold: expected a number from 0.0 to 1.0" in refusal(
        "on_http_request: [{actions: [{type: circuit-breaker, config: {error_threshold: 2}}]}]"
    )


def test_verify_webhook_with_the_domain_verifier() -> None:
    (action,) = one(
        "on_http_request: [{actions: [{type: verify-webhook, config: {provider: github, secret: s3cret}}]}]"
    )
    assert isinstance(action, VerifyWebhook)
    body = b'{"a":1}'
    signature = b"sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest().encode()
    assert action.verifier.verify([(b"x-hub-signature-256", signature)], body, 0.0)
    assert not action.verifier.verify([(b"x-hub-signature-256", signature)], b"{}", 0.0)


def test_network_actions_stay_typed_configs() -> None:
    policy = """
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer: {allow_list: [{value: "https://issuer.example"}]}
          audience: {allow_list: [{value: api}]}
          http: {tokens: [{type: jwt, method: header, name: Authorization, prefix: "Bearer "}]}
          jws: {allowed_algorithms: [RS256], keys: {sources: {additional_jkus: ["https://issuer.example/jwks"]}}}
      - type: forward-internal
        config: {url: "https://${req.headers['x-tenant'][0]}.internal", on_error: continue}
      - type: close-connection
"""
    jwt, forward, close = one(policy)
    assert isinstance(jwt, JwtValidation) and jwt.settings.issuers == ("https://issuer.example",)
    assert jwt.settings.audiences == ("api",) and jwt.settings.algorithms == ("RS256",)
    assert jwt.settings.keyring.urls == ("https://issuer.example/jwks",)
    assert isinstance(forward, ForwardInternal) and forward.url.text == "https://blue.internal"
    assert forward.on_error == "continue" and close == CloseConnection()


def test_every_yaml_example_in_the_docs_compiles() -> None:
    text = (DOCS / "traffic-policy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        compile_policy(block)


def test_long_chains_are_refused_so_evaluation_cannot_recurse_deeply() -> None:
    chain = "1 < 2" + " == true" * 32
    rule = f"on_http_request: [{{expressions: ['{chain}'], actions: [{{type: deny}}]}}]"
    assert "chains more than 32 operations" in refusal(rule)
    assert one(rule.replace(" == true" * 32, " == true" * 31)) == [Deny(403)]
