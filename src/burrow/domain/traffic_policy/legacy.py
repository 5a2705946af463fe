"""Today's endpoint options (:class:`~burrow.domain.endpoint.EndpointPolicy`) as a traffic policy.

ngrok's SDKs turn the old per-endpoint options into Traffic Policy rules; this does the same,
building the compiled actions directly (the options are already validated, basic-auth
passwords are already digests, and header values are literal: no ``${`` in them is
interpolated), so the edge enforces options and Traffic Policy by one path. The options'
rule runs first, then the endpoint's own document; the circuit breaker last, so that
clients refused by either neither use up its probe nor learn its state. What has no action
stays endpoint configuration: the PROXY protocol header, mutual TLS, the body buffer size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..header_rules import HeaderRules
from .actions import (
    REQUEST,
    RESPONSE,
    TCP,
    Action,
    AddHeaders,
    BasicAuthAction,
    CircuitBreakerAction,
    CompressResponse,
    RemoveHeaders,
    RestrictIps,
    VerifyWebhook,
)
from .expressions import Template
from .policy import Policy, Rule

if TYPE_CHECKING:
    from ..endpoint import EndpointPolicy

OPTIONS_RULE = "endpoint options"
BREAKER_RULE = "endpoint circuit breaker"


def _header_actions(rules: HeaderRules | None) -> list[Action]:
    if rules is None:
        return []
    actions: list[Action] = []
    if rules.remove:
        actions.append(RemoveHeaders(tuple(sorted(name.decode("latin-1") for name in rules.remove))))
    if rules.add:
        added = tuple(
            (name.decode("latin-1"), Template.literal(value.decode("latin-1"))) for name, value in rules.add
        )
        actions.append(AddHeaders(added))
    return actions


def policy_from_endpoint(endpoint: EndpointPolicy, tcp: bool = False) -> Policy:
    """The policy the edge runs for ``endpoint``: its options' rules around its Traffic
    Policy document (``tcp``: a TCP or TLS endpoint, whose only phase is the connection's)."""
    connect: list[Action] = []
    request: list[Action] = []
    response: list[Action] = []
    if endpoint.ip_restriction is not None:
        # An HTTP endpoint refuses with a 403 page per request; a TCP one closes the connection.
        (connect if tcp else request).append(RestrictIps(endpoint.ip_restriction, error_page=True))
    if endpoint.basic_auth is not None:
        request.append(BasicAuthAction(endpoint.basic_auth, error_page=True))
    if endpoint.webhook is not None:
        request.append(VerifyWebhook(endpoint.webhook))
    if endpoint.host_header is not None:
        host = endpoint.host_header.decode("latin-1")
        request += [RemoveHeaders(("host",)), AddHeaders((("Host", Template.literal(host)),))]
    request += _header_actions(endpoint.request_rules)
    response += _header_actions(endpoint.response_rules)
    if endpoint.compression:
        response.append(CompressResponse(("gzip",)))
    breaker: list[Action] = []
    if endpoint.circuit_breaker is not None:
        option = endpoint.circuit_breaker
        window = option.bucket_seconds * option.buckets
        breaker.append(
            CircuitBreakerAction(
                option.error_threshold, option.volume_threshold, window, option.tripped_seconds
            )
        )
    document = endpoint.traffic
    phases: dict[str, tuple[Rule, ...]] = {}
    for phase, actions in ((TCP, connect), (REQUEST, request), (RESPONSE, response)):
        rules = [Rule(OPTIONS_RULE, (), tuple(actions))] if actions else []
        rules += document.phases.get(phase, ()) if document is not None else ()
        if phase == REQUEST and breaker:
            rules.append(Rule(BREAKER_RULE, (), tuple(breaker)))
        phases[phase] = tuple(rules)
    reads = dict(document.reads) if document is not None else {}
    return Policy(phases, reads)
