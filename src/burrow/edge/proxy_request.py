"""One request on a public HTTP(S) connection, from its head to its answer: what the
proxy decided about it, what it has sent, and the traffic-log line written at its end."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from burrow.domain.endpoint import Headers
from burrow.domain.tunnels import Tunnel

from . import traffic
from .http1 import RequestHead
from .pages import BODY_TOO_LARGE
from .traffic_phases import Env, RequestPlan


class ProxyRequest:
    __slots__ = (
        "accepts_gzip",
        "acme_checked",
        "answer",
        "body",
        "bytes_in",
        "bytes_out",
        "chunked",
        "complete",
        "head",
        "headers",
        "host",
        "internal_elsewhere",
        "keep_alive",
        "method",
        "noted",
        "plain",
        "plan",
        "policy_env",
        "relay_to",
        "routing",
        "start",
        "started",
        "status",
        "target",
        "tunnel",
        "upgrade",
        "version",
        "whole_body",
    )

    def __init__(self, head: RequestHead | None = None) -> None:
        self.start = time.monotonic()
        self.head = head  # None for a request refused before its head was parsed
        self.target = b""
        self.headers: Headers = []
        self.noted: dict[bytes, list[bytes]] = {}  # raw values of the fields http1.fields.NOTED names
        self.plain = True  # the endpoint has no options: no hook changes anything
        self.plan: RequestPlan | None = None  # what the endpoint's Traffic Policy decided
        self.policy_env: Env = {}  # the policy's variables, for its response phase
        self.routing = False  # waiting for the relay route lookup
        self.acme_checked = False  # looked up as an ACME HTTP-01 challenge already (http_proxy.py)
        self.method = b""
        self.version = "1.1"
        self.host = ""
        self.tunnel: Tunnel | None = None
        # forward-internal to an endpoint not on this node: (host, on_error continue, hops)
        self.internal_elsewhere: tuple[str, bool, int] | None = None
        self.relay_to: str | None = None  # the node holding that internal endpoint (its relay address)
        self.answer: bytes | None = None  # answered here instead of forwarded
        self.body = bytearray()  # received before the request could be forwarded
        self.complete = False
        self.started = False
        self.chunked = False
        self.whole_body = 0  # buffer the whole body (at most this much) before forwarding
        self.keep_alive = True
        self.upgrade = False
        self.accepts_gzip = False
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        if head is not None:
            self.method, self.target = head.method, head.target
            self.version = "1.1" if head.version == b"1.1" else "1.0"
            self.keep_alive, self.upgrade = head.keep_alive, head.upgrade
            self.headers, self.noted = head.headers, head.noted

    def keep(self, body: bytes) -> bool:
        """Keep ``body`` until the request goes; False (and answered 413) once it passes
        the most the endpoint takes whole."""
        self.body += body
        if self.whole_body and len(self.body) > self.whole_body:
            self.answer = BODY_TOO_LARGE
            self.body.clear()
            return False
        return True


def record_outcome(status: int, plan: RequestPlan | None) -> None:
    """Tell the endpoint's circuit breakers (its option's, its policy's) how the request ended."""
    now = time.monotonic()
    for breaker in plan.breakers if plan is not None else ():
        breaker.record(status, now)


def log_request(request: ProxyRequest, counts: traffic.TrafficCounts, listener: str, client: str) -> None:
    """Count the request (read by the metrics at scrape time) and write its traffic-log line."""
    counts.requests += 1
    counts.bytes_in += request.bytes_in
    counts.bytes_out += request.bytes_out
    if traffic.traffic_log.isEnabledFor(logging.INFO):  # (traffic.enabled(), one call less)
        tunnel = request.tunnel
        target = request.target
        query = target.find(b"?")
        traffic.record_line(
            {
                "time": None,
                "listener": listener,
                "tunnel": tunnel.id if tunnel is not None else None,
                "host": request.host,
                "method": request.method.decode("latin-1"),
                "path": (target if query < 0 else target[:query]).decode("latin-1"),
                "status": request.status,
                "bytes_in": request.bytes_in,
                "bytes_out": request.bytes_out,
                "duration_ms": round((time.monotonic() - request.start) * 1000, 3),
                "client": client,
            }
        )


def pauses_reading(waiting: Sequence[ProxyRequest], answering: bool) -> bool:
    """Whether requests waiting to go pause the client's reading: they do, unless the one
    waiting is first in line (``answering``: none is in progress) and only waits for the
    rest of a body it must have whole before going."""
    if not waiting:
        return False
    first = waiting[0]
    buffering = (
        len(waiting) == 1
        and not answering
        and first.whole_body > 0
        and first.answer is None
        and not first.complete
    )
    return not buffering
