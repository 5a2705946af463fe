"""An endpoint's Traffic Policy carried out at the proxy's phases (pure: no sockets).

The domain compiles the policy and says, per phase, which actions run
(:meth:`~burrow.domain.traffic_policy.Policy.run`); this module gives it the variables the
edge knows and turns the actions into what the proxy does: an answer instead of
forwarding, a closed connection, a rewritten target, header edits. Only the actions
:data:`~burrow.domain.endpoint.CARRIED_OUT` lists reach here (binds with others are
refused). Header names and values an action produces are checked as strictly as the
parser checks a client's: a name that is no token or a value with a control character is
dropped, never written (an interpolated ``${...}`` must not split a head).
"""

from __future__ import annotations

import functools
import http
import logging
import re
import time
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from burrow.domain.circuit import CircuitBreaker
from burrow.domain.endpoint import BASIC_AUTH_REQUIRED, CIRCUIT_OPEN, IP_RESTRICTED, IPAddress
from burrow.domain.traffic_policy import Policy
from burrow.domain.traffic_policy.actions import (
    REQUEST,
    RESPONSE,
    TCP,
    Action,
    AddHeaders,
    BasicAuthAction,
    CircuitBreakerAction,
    CloseConnection,
    CompressResponse,
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
    UrlRewrite,
    VerifyWebhook,
)
from burrow.domain.traffic_policy.expressions import Value
from burrow.domain.tunnels import Tunnel

from .http1 import CHUNKED, LENGTH, RequestHead
from .http1.fields import TOKEN
from .jwt_check import refusal as jwt_refusal
from .pages import refusal_page
from .peers import Peers

log = logging.getLogger("burrow.edge")

Headers = list[tuple[bytes, bytes]]
Env = dict[str, Value]
CLOSE = b""  # ProxyRequest.answer for "close the connection, answer nothing"

_NAME = re.compile(TOKEN)
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})  # the edge's own


@functools.lru_cache(maxsize=4096)
def _endpoint(url: str, proto: str) -> tuple[tuple[str, Value], ...]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443, "tls": 443}.get(parts.scheme, 0)
    return (
        ("endpoint.url", url),
        ("endpoint.host", parts.hostname or ""),
        ("endpoint.port", parts.port or default),
        ("endpoint.protocol", proto),
    )


def connection_env(peers: Peers, tunnel: Tunnel) -> Env:
    """The ``conn.*`` and ``endpoint.*`` variables of a connection to ``tunnel``."""
    env: Env = {
        "conn.client_ip": str(peers.client_ip),
        "conn.client_port": peers.client[1],
        "conn.server_ip": peers.server[0],
        "conn.server_port": peers.server[1],
    }
    env.update(_endpoint(tunnel.url, tunnel.proto))
    return env


def on_tcp_connect(policy: Policy, env: Env, client_ip: IPAddress) -> bool:
    """Whether the connection may go on (False: close it, answering nothing)."""
    if not policy.phases.get(TCP):
        return True
    for action in policy.run(TCP, env):
        if isinstance(action, Deny | CloseConnection):
            return False
        if isinstance(action, RestrictIps) and not action.allows(client_ip):
            return False
        if isinstance(action, Log):
            _log(TCP, action, env)
    return True


def request_env(policy: Policy, base: Env, head: RequestHead, scheme: str, host: str) -> Env:
    """``base`` with the ``req.*`` variables of a request (the maps of headers and query
    parameters only if the policy reads them)."""
    target = head.target.decode("latin-1")
    path, _, query = target.partition("?")
    length = head.length if head.framing == LENGTH else (-1 if head.framing == CHUNKED else 0)
    host_header = head.host.decode("latin-1")
    env = dict(base)
    env["req.method"] = head.method.decode("latin-1")
    env["req.url"] = f"{scheme}://{host_header}{target}"
    env["req.url.path"] = path
    env["req.url.query"] = query
    env["req.url.host"] = host
    env["req.url.scheme"] = scheme
    env["req.host"] = host_header
    env["req.content_length"] = length
    reads = policy.reads
    if "req.headers" in reads.get(REQUEST, ()) or "req.headers" in reads.get(RESPONSE, ()):
        env["req.headers"] = _multimap(head.headers)
    if "req.query_params" in reads.get(REQUEST, ()) or "req.query_params" in reads.get(RESPONSE, ()):
        params: dict[str, list[str]] = {}
        for key, item in parse_qsl(query, keep_blank_values=True):
            params.setdefault(key, []).append(item)
        env["req.query_params"] = {name: tuple(values) for name, values in params.items()}
    return env


class RequestPlan:
    """What the request phase decided: an answer (or CLOSE) instead of forwarding, else
    the target to forward and the header edits, in order, for the forwarded head; or an
    internal endpoint to forward to (``forward``: its URL and what to do if it is offline)."""

    __slots__ = ("answer", "breakers", "edits", "forward", "target", "verify")

    def __init__(self, target: bytes, edits: Sequence[Action] = ()) -> None:
        self.answer: bytes | None = None
        self.target = target
        self.edits: list[Action] = list(edits)
        self.forward: ForwardInternal | None = None
        self.verify: list[VerifyWebhook] = []  # checked once the whole body is here
        self.breakers: list[CircuitBreaker] = []  # told how the request ended


def on_http_request(
    policy: Policy,
    env: Env,
    head: RequestHead,
    client_ip: IPAddress,
    authorization: bytes | None,
    prior: RequestPlan | None = None,
) -> RequestPlan:
    """``prior``: the plan of the endpoint that forwarded here (forward-internal), which
    this one continues: its rewrite and header edits stay, and so do the checks it left for
    later (webhook signatures, once the body is whole) and the breakers to tell the outcome."""
    plan = RequestPlan(prior.target, prior.edits) if prior is not None else RequestPlan(head.target)
    if prior is not None:
        plan.verify, plan.breakers = list(prior.verify), list(prior.breakers)
    url = str(env["req.url"])
    for action in policy.run(REQUEST, env):
        if isinstance(action, CloseConnection):
            plan.answer = CLOSE
        elif isinstance(action, Deny | CustomResponse):
            plan.answer = answer(action.response())
        elif isinstance(action, Redirect):
            redirect = action.response(url)
            if redirect is not None:
                plan.answer = answer(redirect)
        elif isinstance(action, RestrictIps):
            if not action.allows(client_ip):
                refused = Response(403, (), "The client's address is not allowed.\n")
                plan.answer = refusal_page(IP_RESTRICTED) if action.error_page else answer(refused)
        elif isinstance(action, BasicAuthAction):
            challenge = action.challenge(authorization)
            if challenge is not None:
                plan.answer = refusal_page(BASIC_AUTH_REQUIRED) if action.error_page else answer(challenge)
        elif isinstance(action, UrlRewrite):
            url = action.rewrite(url)
            plan.target = _target(url, plan.target)
        elif isinstance(action, AddHeaders | RemoveHeaders):
            plan.edits.append(action)
        elif isinstance(action, Log):
            _log(REQUEST, action, env)
        elif isinstance(action, ForwardInternal):
            plan.forward = action
        elif isinstance(action, RateLimit):
            key = "\x00".join(part.text for part in action.bucket_key) or str(client_ip)
            if not action.window.allow(key, time.monotonic()):
                retry = str(max(1, round(action.rate_seconds)))
                plan.answer = answer(Response(429, (("retry-after", retry),), "Too many requests.\n"))
        elif isinstance(action, VerifyWebhook):
            plan.verify.append(action)
        elif isinstance(action, JwtValidation):
            failure = action.check(head.headers, time.time())
            if failure is not None:
                plan.answer = jwt_refusal(failure)
        elif isinstance(action, CircuitBreakerAction):
            if action.breaker.allows(time.monotonic()):
                plan.breakers.append(action.breaker)
            else:
                plan.answer = refusal_page(CIRCUIT_OPEN)
        if plan.answer is not None or plan.forward is not None:
            break
    return plan


def compresses(policy: Policy) -> bool:
    """Whether the response phase may compress (so the edge notes what the client accepts)."""
    rules = policy.phases.get(RESPONSE, ())
    return any(isinstance(action, CompressResponse) for rule in rules for action in rule.actions)


def on_http_response(policy: Policy, env: Env, status: int, fields: Headers) -> tuple[Headers, bool]:
    """The response head's fields after the policy's response phase, and whether it asks
    for the body compressed."""
    if not policy.phases.get(RESPONSE):
        return fields, False
    response_env = dict(env)
    response_env["res.status_code"] = status
    if "res.headers" in policy.reads.get(RESPONSE, ()):
        response_env["res.headers"] = _multimap(fields)
    edits: list[Action] = []
    compress = False
    for action in policy.run(RESPONSE, response_env):
        if isinstance(action, AddHeaders | RemoveHeaders):
            edits.append(action)
        elif isinstance(action, CompressResponse):
            compress = True
        elif isinstance(action, Log):
            _log(RESPONSE, action, response_env)
    return edited(fields, edits), compress


def edited(fields: Headers, edits: Sequence[Action]) -> Headers:
    """``fields`` with the header actions applied in order (as ``AddHeaders.apply`` and
    ``RemoveHeaders.apply`` would, on the raw fields); what they add is checked."""
    for action in edits:
        if isinstance(action, RemoveHeaders):
            doomed = {name.lower().encode("latin-1", "replace") for name in action.headers}
            fields = [field for field in fields if field[0].lower() not in doomed]
        elif isinstance(action, AddHeaders):
            added = (_field(name, value.text) for name, value in action.headers)
            fields = [*fields, *(field for field in added if field is not None)]
    return fields


def answer(response: Response) -> bytes:
    """A response the edge sends instead of forwarding; the connection closes after it."""
    body = response.body.encode()
    try:
        reason = http.HTTPStatus(response.status).phrase.encode()
    except ValueError:
        reason = b""
    lines = [b"HTTP/1.1 %d %b\r\n" % (response.status, reason)]
    named = {name.lower() for name, _ in response.headers}
    for name, value in response.headers:
        field = _field(name, value)
        if field is not None and field[0].lower() not in _FRAMING:
            lines.append(b"%b: %b\r\n" % field)
    if "content-type" not in named and body:
        lines.append(b"Content-Type: text/plain; charset=utf-8\r\n")
    lines.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    return b"".join(lines) + body


def _field(name: str, value: str) -> tuple[bytes, bytes] | None:
    try:
        raw_name, raw_value = name.encode("latin-1"), value.strip(" \t").encode("latin-1")
    except UnicodeEncodeError:
        return None
    if _NAME.fullmatch(raw_name) is None or _VALUE.fullmatch(raw_value) is None:
        log.info("traffic policy header dropped", extra={"fields": {"name": name[:100]}})
        return None
    return raw_name, raw_value


def _target(url: str, current: bytes) -> bytes:
    """The origin-form target of a rewritten URL (a full URL keeps only its path and
    query); the current one when the rewrite is no valid target."""
    parts = urlsplit(url)
    text = url if url.startswith("/") else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        target = text.encode("ascii")
    except UnicodeEncodeError:
        return current
    return target if _TARGET.fullmatch(target) else current


def _multimap(fields: Headers) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    for name, value in fields:
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return {name: tuple(values) for name, values in headers.items()}


# A policy's log lines go to the operator's log: bounded, so that no tenant floods it.
MAX_LOG_FIELDS = 16
MAX_LOG_VALUE = 256


def _log(phase: str, action: Log, env: Env) -> None:
    fields = action.metadata[:MAX_LOG_FIELDS]
    metadata = {name[:64]: template.text[:MAX_LOG_VALUE] for name, template in fields}
    log.info(
        "traffic policy log",
        extra={"fields": {"phase": phase, "endpoint": env.get("endpoint.url"), "metadata": metadata}},
    )
