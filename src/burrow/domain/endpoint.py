"""What an endpoint asks the edge to do with its traffic, read from a Bind's ``Opts``.

Pure: :meth:`EndpointPolicy.from_opts` runs once per bind, validates every option it
enforces (with ngrok's error codes) and refuses, naming it, every option Burrow does not
enforce, so an agent never believes an endpoint is protected when it is not. The public
listeners then ask the policy about each connection and each request.

This module is the contract between the bind (``edge/control.py``) and the public
listeners (``edge/public.py`` and the HTTP proxy): the listeners call only what is
declared here. docs/edge.md has the table of options per protocol.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from . import errors, proxy_protocol, webhooks
from .basic_auth import CHALLENGE, BasicAuth
from .circuit import CircuitBreaker
from .header_rules import HeaderRules, field_value
from .ip_restriction import IPRestriction
from .traffic_policy import Policy, compile_policy
from .traffic_policy.actions import (
    KINDS,
    REQUEST,
    RESPONSE,
    TCP,
    Action,
    CloseConnection,
    CompressResponse,
    CustomResponse,
    Deny,
    ForwardInternal,
    RateLimit,
    Redirect,
)
from .traffic_policy.legacy import policy_from_endpoint

__all__ = [
    "CircuitBreaker",
    "EndpointPolicy",
    "Headers",
    "IPAddress",
    "Refusal",
    "ca_bundle",
    "options_set",
    "redacted_opts",
]

# Header fields as the proxy holds them: (name, value) pairs of raw bytes, in order,
# names as received (compare case-insensitively).
Headers = list[tuple[bytes, bytes]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Refusal:
    """An answer the edge gives instead of forwarding a request."""

    status: int
    code: str  # ERR_NGROK_...
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()  # e.g. WWW-Authenticate

    @classmethod
    def of(cls, kind: errors.ErrorKind, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Refusal:
        return cls(kind.status, kind.code, kind.template, headers)


IP_RESTRICTED = Refusal.of(errors.IP_RESTRICTED)
BASIC_AUTH_REQUIRED = Refusal.of(errors.BASIC_AUTH_FAILED, (CHALLENGE,))
WEBHOOK_REFUSED = Refusal.of(errors.WEBHOOK_VERIFICATION_FAILED)
# What the proxy answers while ``circuit_breaker.allows(now)`` is False.
CIRCUIT_OPEN = Refusal.of(errors.CIRCUIT_BREAKER_OPEN)


@dataclass(frozen=True)
class EndpointPolicy:
    """The enforced options of one endpoint. The default enforces nothing: no options."""

    # PROXY protocol header (0 none, 1 text, 2 binary) the edge writes on every proxy
    # stream of this endpoint before the client's bytes.
    proxy_proto: int = 0
    # Compress responses (gzip) for clients that accept it.
    compression: bool = False
    # The request body must be whole before forwarding (webhook verification); a body
    # larger than this many bytes is refused with 413.
    buffer_body_up_to: int = 0
    # PEM bundle of the CAs client certificates must chain to (mutual TLS at the edge,
    # for endpoints whose TLS the edge terminates).
    mutual_tls_ca: bytes | None = None
    circuit_breaker: CircuitBreaker | None = None
    ip_restriction: IPRestriction | None = None
    basic_auth: BasicAuth | None = None
    webhook: webhooks.WebhookVerifier | None = None
    request_rules: HeaderRules | None = None
    response_rules: HeaderRules | None = None
    # HostHeaderRewrite: the Host the local service is addressed by ("host:port").
    host_header: bytes | None = None
    # The endpoint's Traffic Policy document, compiled.
    traffic: Policy | None = None
    # A TCP or TLS endpoint: its options apply to connections, not requests.
    tcp: bool = field(default=False, compare=False)
    # What the edge runs, one engine for everything: the options above as Traffic Policy
    # rules around the endpoint's own document (traffic_policy.legacy); None when neither.
    enforced: Policy | None = field(init=False, compare=False, repr=False)
    # No option set: the proxy takes its fast path.
    plain: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        options = [getattr(self, f.name) for f in fields(self) if f.name not in _DERIVED]
        object.__setattr__(self, "plain", not any(options))
        enforced = None
        if any(getattr(self, name) is not None and getattr(self, name) is not False for name in _RULED):
            enforced = policy_from_endpoint(self, self.tcp)
        object.__setattr__(self, "enforced", enforced)

    @classmethod
    def from_opts(cls, proto: str, opts: Mapping[str, Any], *, forwards_to: str = "") -> EndpointPolicy:
        """The policy for a bind of ``proto`` ("http", "https", "tcp", "tls") with these Opts.

        ``forwards_to`` is the Bind's ``ForwardsTo`` (needed only by HostHeaderRewrite).
        Raises BurrowError for any option that is set and not enforced, or invalid.
        """
        allowed = _OPTIONS.get(proto, frozenset())
        settings: dict[str, Any] = {}
        for name in options_set(opts):
            key = name.lower()
            if key not in allowed:
                raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=_shown(name, proto))
            _PARSERS[key](name, opts[name], settings, proto, forwards_to)
        return cls(**settings, tcp=proto in ("tcp", "tls"))

    def with_traffic_policy(self, proto: str, document: str) -> EndpointPolicy:
        """This policy with its Traffic Policy replaced by ``document`` ("" for none), checked
        as a bind's is (PatchTunnelState); raises, changing nothing, if it is refused."""
        settings: dict[str, Any] = {}
        if document:
            _traffic_policy("TrafficPolicy", document, settings, proto, "")
        return dataclasses.replace(self, traffic=settings.get("traffic"))

    # Per connection (TCP, TLS) -----------------------------------------------------------

    def proxy_protocol_header(
        self, client: tuple[str, int], server: tuple[str, int], proto_tcp: bool = True
    ) -> bytes:
        """The PROXY protocol header to write first on a proxy stream (b"" when off)."""
        if not self.proxy_proto:
            return b""
        return proxy_protocol.header(self.proxy_proto, client, server, proto_tcp)


# Fields derived from the others; and the options the Traffic Policy engine carries out.
_DERIVED = frozenset({"tcp", "enforced", "plain"})
_RULED = (
    "ip_restriction",
    "basic_auth",
    "webhook",
    "host_header",
    "request_rules",
    "response_rules",
    "compression",
    "circuit_breaker",
    "traffic",
)


def options_set(opts: Mapping[str, Any]) -> list[str]:
    """The keys of ``opts`` that ask for something (set, and not naming the endpoint)."""
    return [name for name, value in opts.items() if name.lower() not in _IDENTITY_KEYS and not _unset(value)]


def redacted_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    """``opts`` as the Bind response echoes them: same keys (the agent parses them back into
    its endpoint struct), secrets blanked, since the agent has no use for them back."""
    echoed = dict(opts)
    for name, value in opts.items():
        key = name.lower()
        if key == "auth" and isinstance(value, str) and value:
            echoed[name] = ""
        elif key == "basicauth" and isinstance(value, Mapping):
            credentials = _field(value, "credentials")
            blanked = [
                {k: ("" if k.lower() == "cleartext_password" else v) for k, v in entry.items()}
                if isinstance(entry, Mapping)
                else entry
                for entry in (credentials if isinstance(credentials, list) else [])
            ]
            echoed[name] = {k: (blanked if k.lower() == "credentials" else v) for k, v in value.items()}
        elif key == "webhookverification" and isinstance(value, Mapping):
            echoed[name] = {k: ("" if k.lower() == "secret" else v) for k, v in value.items()}
    return echoed


# Parsing ---------------------------------------------------------------------------------

# Keys of Opts that name the endpoint rather than ask for a protection.
_IDENTITY_KEYS = frozenset({"hostname", "subdomain", "addr", "domain", "url", "localurlscheme"})

_HTTP = frozenset(
    {
        "auth",
        "basicauth",
        "iprestriction",
        "requestheaders",
        "responseheaders",
        "hostheaderrewrite",
        "circuitbreaker",
        "compression",
        "webhookverification",
        "proxyproto",
        "mutualtlsca",
        "trafficpolicy",
        "policy",
    }
)
_OPTIONS = {
    "http": _HTTP,
    "https": _HTTP,
    "tcp": frozenset({"iprestriction", "proxyproto", "trafficpolicy", "policy"}),
    "tls": frozenset({"iprestriction", "proxyproto", "trafficpolicy", "policy"}),
}
_HTTP_ONLY = _HTTP - _OPTIONS["tcp"]


def _unset(value: object) -> bool:
    # An empty object is not "unset": ``"Compression": {}`` turns compression on.
    return value is None or value is False or value == "" or value == 0


def _shown(name: str, proto: str) -> str:
    if name.lower() in _HTTP_ONLY or (name.lower() == "mutualtlsca" and proto == "http"):
        return f"{name} (on {proto} endpoints)"
    return name


def _field(value: Mapping[str, Any], key: str) -> Any:
    for name, item in value.items():
        if isinstance(name, str) and name.lower() == key:
            return item
    return None


def _object(option: str, value: object, known: set[str]) -> Mapping[str, Any]:
    """An option's object; a set field Burrow does not know refuses the bind (fail closed)."""
    if not isinstance(value, Mapping):
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="expected an object")
    for name, item in value.items():
        if str(name).lower() not in known and not _unset(item) and item != []:
            raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=f"{option}.{name}")
    return value


def _strings(option: str, value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="expected a list of strings")
    return value


_Parser = Callable[[str, Any, dict[str, Any], str, str], None]


def _basic_auth(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    credentials: list[tuple[str, str]] = []
    if option.lower() == "auth":  # the v2 agent binary: "user:password"
        if not isinstance(value, str) or ":" not in value:
            raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="expected 'username:password'")
        username, _, password = value.partition(":")
        credentials.append((username, password))
    else:
        entries = _field(_object(option, value, {"credentials"}), "credentials")
        if not isinstance(entries, list) or not entries:
            raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="at least one credential is needed")
        for entry in entries:
            fields = _object(option, entry, {"username", "cleartext_password"})
            username, password = _field(fields, "username"), _field(fields, "cleartext_password")
            if not isinstance(username, str) or not isinstance(password, str):
                raise errors.ENDPOINT_OPTION_INVALID(
                    option=option, reason="a credential has a string username and cleartext_password"
                )
            credentials.append((username, password))
    if "basic_auth" in settings:  # both Auth and BasicAuth: enforce both lists as one
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="give Auth or BasicAuth, not both")
    settings["basic_auth"] = BasicAuth.of(credentials)


def _ip_restriction(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    fields = _object(option, value, {"allow_cidrs", "deny_cidrs"})
    settings["ip_restriction"] = IPRestriction.of(
        _strings(option, _field(fields, "allow_cidrs")), _strings(option, _field(fields, "deny_cidrs"))
    )


def _headers(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    fields = _object(option, value, {"add", "remove"})
    rules = HeaderRules.of(
        option, _strings(option, _field(fields, "add")), _strings(option, _field(fields, "remove"))
    )
    settings["request_rules" if option.lower() == "requestheaders" else "response_rules"] = rules


def _host_header_rewrite(
    option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str
) -> None:
    if value is not True:
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="expected true or false")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in forwards_to):
        # urlsplit would quietly drop line breaks; a Host built from them is refused instead.
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="ForwardsTo is not a URL or host:port")
    target = urlsplit(forwards_to if "://" in forwards_to else f"//{forwards_to}")
    try:
        host, port = target.hostname, target.port
    except ValueError:
        host, port = None, None
    if not host:
        # The agent did not say where it forwards (the v2 agent binary never does).
        raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=f"{option} (the agent sent no ForwardsTo)")
    shown = f"[{host}]" if ":" in host else host
    settings["host_header"] = field_value(b"Host", shown if port is None else f"{shown}:{port}")


def _circuit_breaker(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    threshold = _field(_object(option, value, {"error_threshold"}), "error_threshold")
    if threshold is None:
        threshold = 0.5  # ngrok's default
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise errors.CIRCUIT_BREAKER_THRESHOLD(value=threshold)
    settings["circuit_breaker"] = CircuitBreaker(float(threshold))


def _compression(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    if value is not True:
        _object(option, value, set())
    settings["compression"] = True


def _webhook(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    fields = _object(option, value, {"provider", "secret"})
    provider, secret = _field(fields, "provider"), _field(fields, "secret")
    if not isinstance(provider, str) or provider.lower() not in webhooks.PROVIDERS:
        raise errors.WEBHOOK_PROVIDER_UNSUPPORTED(
            provider=provider, supported=", ".join(sorted(webhooks.PROVIDERS))
        )
    if not isinstance(secret, str) or not secret:
        raise errors.WEBHOOK_SECRET_MISSING()
    settings["webhook"] = webhooks.WebhookVerifier(provider.lower(), secret.encode())
    settings["buffer_body_up_to"] = webhooks.MAX_BODY


def _proxy_proto(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    if isinstance(value, bool) or value not in (1, 2):
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="PROXY protocol version 1 or 2")
    settings["proxy_proto"] = int(value)


def _mutual_tls_ca(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    if proto != "https":  # only the HTTPS listener terminates TLS at the edge
        raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=_shown(option, proto))
    settings["mutual_tls_ca"] = ca_bundle(option, value)


def ca_bundle(option: str, value: Any) -> bytes:
    """The PEM of the CA certificates a ``MutualTLSCA`` option carries, or ngrok's error."""
    encoded = _field(_object(option, value, {"mutual_tls_ca"}), "mutual_tls_ca")
    if not isinstance(encoded, str) or not encoded:
        raise errors.MUTUAL_TLS_CA_INVALID(reason="no certificate was sent")
    pem = encoded.encode()
    if b"-----BEGIN" not in pem:  # the SDK sends base64 of the PEM
        try:
            pem = base64.b64decode(pem, validate=True)
        except binascii.Error:
            raise errors.MUTUAL_TLS_CA_INVALID(reason="neither PEM nor base64 of PEM") from None
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise errors.MUTUAL_TLS_CA_INVALID(reason=str(error)) from None
    for certificate in certificates:
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise errors.MUTUAL_TLS_CA_INVALID(
                reason=f"{certificate.subject.rfc4514_string()} is not a CA certificate"
            )
    return pem


# The Traffic Policy actions the edge carries out, by phase: every action in the phases it
# belongs to, but these. A policy with one of them (a JWT check, a response replaced after
# the agent answered...) is refused at bind, naming it: a policy never half-applies.
NOT_CARRIED_OUT: dict[str, frozenset[type[Action]]] = {
    TCP: frozenset({ForwardInternal}),  # a connection handed to another endpoint: not done yet
    REQUEST: frozenset(),
    # A response replaced after the agent has answered: not done yet.
    RESPONSE: frozenset({Deny, CustomResponse, Redirect, CloseConnection}),
}
CARRIED_OUT: dict[str, frozenset[type[Action]]] = {
    phase: frozenset(kind for kind in KINDS.values() if phase in kind.phases) - NOT_CARRIED_OUT[phase]
    for phase in (TCP, REQUEST, RESPONSE)
}


MAX_RATE_LIMITS = 8  # per policy: each keeps up to 10,000 keys' counts in the edge's memory


def _traffic_policy(option: str, value: Any, settings: dict[str, Any], proto: str, forwards_to: str) -> None:
    if "traffic" in settings:
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="give TrafficPolicy or Policy, not both")
    if option.lower() == "policy":
        value = _legacy_policy(option, value, proto)
    if not isinstance(value, str):
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="expected a YAML or JSON document")
    policy = compile_policy(value)
    actions = [action for rules in policy.phases.values() for rule in rules for action in rule.actions]
    if sum(isinstance(action, RateLimit) for action in actions) > MAX_RATE_LIMITS:
        reason = f"more than {MAX_RATE_LIMITS} rate-limit actions"
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason=reason)
    phases = (TCP,) if proto in ("tcp", "tls") else (TCP, REQUEST, RESPONSE)
    for phase, rules in policy.phases.items():
        for rule in rules:
            for action in rule.actions:
                if phase not in phases or type(action) not in CARRIED_OUT[phase]:
                    raise errors.ENDPOINT_OPTION_UNSUPPORTED(
                        option=f"{option}: {action.kind} in {phase} (on {proto} endpoints)"
                    )
                if isinstance(action, CompressResponse) and "gzip" not in action.algorithms:
                    raise errors.ENDPOINT_OPTION_UNSUPPORTED(
                        option=f"{option}: compress-response without gzip (the one Burrow writes)"
                    )
    settings["traffic"] = policy


def _legacy_policy(option: str, value: Any, proto: str) -> str:
    """The older object form, ``{"Inbound": [rules], "Outbound": [rules]}``, as the document
    it stands for (ngrok's SDKs do the same): inbound rules run on the request (on a TCP or
    TLS endpoint, the connection), outbound ones on the response."""
    if not isinstance(value, Mapping):
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="expected an object")
    known = _object(option, value, {"inbound", "outbound"})
    inbound = _field(known, "inbound") or []
    outbound = _field(known, "outbound") or []
    document = {(TCP if proto in ("tcp", "tls") else REQUEST): inbound, RESPONSE: outbound}
    return json.dumps({phase: rules for phase, rules in document.items() if rules})


_PARSERS: dict[str, _Parser] = {
    "auth": _basic_auth,
    "basicauth": _basic_auth,
    "iprestriction": _ip_restriction,
    "requestheaders": _headers,
    "responseheaders": _headers,
    "hostheaderrewrite": _host_header_rewrite,
    "circuitbreaker": _circuit_breaker,
    "compression": _compression,
    "webhookverification": _webhook,
    "proxyproto": _proxy_proto,
    "mutualtlsca": _mutual_tls_ca,
    "trafficpolicy": _traffic_policy,
    "policy": _traffic_policy,
}
