"""Today's endpoint options (:class:`~burrow.domain.endpoint.EndpointPolicy`) as a traffic policy.

ngrok's SDKs turn the old per-endpoint options into Traffic Policy rules; this does the same,
building the compiled actions directly (the options are already validated, basic-auth
passwords are already digests, and header values are literal: no ``${`` in them is
interpolated). What has no action stays endpoint configuration: the PROXY protocol header,
mutual TLS, the body buffer size.
"""

from __future__ import annotations

from ..endpoint import EndpointPolicy
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


def policy_from_endpoint(endpoint: EndpointPolicy) -> Policy:
    connect: list[Action] = []
    request: list[Action] = []
    response: list[Action] = []
    if endpoint.ip_restriction is not None:
        connect.append(RestrictIps(endpoint.ip_restriction))
        request.append(RestrictIps(endpoint.ip_restriction))
    if endpoint.basic_auth is not None:
        request.append(BasicAuthAction(endpoint.basic_auth))
    if endpoint.webhook is not None:
        request.append(VerifyWebhook(endpoint.webhook))
    if endpoint.circuit_breaker is not None:
        breaker = endpoint.circuit_breaker
        request.append(
            CircuitBreakerAction(
                breaker.error_threshold,
                breaker.volume_threshold,
                breaker.bucket_seconds * breaker.buckets,
                breaker.tripped_seconds,
            )
        )
    if endpoint.host_header is not None:
        host = endpoint.host_header.decode("latin-1")
        request += [RemoveHeaders(("host",)), AddHeaders((("Host", Template.literal(host)),))]
    request += _header_actions(endpoint.request_rules)
    response += _header_actions(endpoint.response_rules)
    if endpoint.compression:
        response.append(CompressResponse(("gzip",)))
    phases = {TCP: connect, REQUEST: request, RESPONSE: response}
    return Policy(
        {
            phase: (Rule("endpoint options", (), tuple(actions)),) if actions else ()
            for phase, actions in phases.items()
        }
    )
