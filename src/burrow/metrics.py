"""``/metrics``: Prometheus exposition of the API's and the edge's counters.

The edge keeps plain integers on its own objects (connections, requests, bytes per public
listener; sessions, auth failures, revocations); :class:`EdgeCollector` reads them at
scrape time, so the tunnels' hot path pays one integer addition and never a lock or a
label lookup. Served on ``--metrics-addr``, apart from the public API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp

from burrow.api.metrics import ApiMetrics
from burrow.edge.server import Edge
from burrow.edge.traffic import LISTENERS


class EdgeCollector(Collector):
    def __init__(self, edge: Edge | None, api: ApiMetrics) -> None:
        self.edge = edge
        self.api = api

    def collect(self) -> Iterator[Metric]:
        api = self.api
        yield _counter(
            "burrow_api_auth_failures", "API requests refused for their API key (401).", api.auth_failures
        )
        yield _counter(
            "burrow_api_rate_limited", "API requests refused by the rate limit (429).", api.rate_limited
        )
        yield _counter(
            "burrow_api_database_errors", "API requests that failed in the database.", api.database_errors
        )
        edge = self.edge
        if edge is None:
            return
        agents = list(edge.agents.values())
        yield GaugeMetricFamily("burrow_agent_sessions", "Agent sessions online.", value=len(agents))
        yield GaugeMetricFamily(
            "burrow_agent_streams_open",
            "Muxado streams open to agents (proxy and typed streams), all sessions together.",
            value=sum(agent.connection.open_stream_count for agent in agents),
        )
        control = edge.control
        yield _counter(
            "burrow_agent_sessions_started", "Agent sessions authenticated.", control.sessions_started
        )
        yield _counter("burrow_agent_auth_failures", "Agents refused at Auth.", control.auth_failures)
        yield _counter(
            "burrow_revocations", "Agent sessions ended by a revoked credential.", edge.revocations
        )
        yield _counter(
            "burrow_edge_database_errors",
            "Revocation checks that failed in the database.",
            edge.database_errors,
        )
        by_proto = Counter(
            tunnel.proto
            for session in list(edge.registry.sessions.values())
            for tunnel in session.tunnels.values()
        )
        tunnels = GaugeMetricFamily("burrow_tunnels", "Tunnels online, by protocol.", labels=["proto"])
        for proto, count in sorted(by_proto.items()):
            tunnels.add_metric([str(proto)], count)
        yield tunnels
        admission = edge.public.admission
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "open": GaugeMetricFamily(
                "burrow_public_connections_open", "Open public connections.", labels=["listener"]
            ),
            "accepted": CounterMetricFamily(
                "burrow_public_connections", "Public connections accepted.", labels=["listener"]
            ),
            "refused": CounterMetricFamily(
                "burrow_public_connections_refused",
                "Public connections refused over a cap.",
                labels=["listener"],
            ),
            "requests": CounterMetricFamily(
                "burrow_public_requests", "Public HTTP(S) requests answered.", labels=["listener"]
            ),
            "bytes_in": CounterMetricFamily(
                "burrow_public_received_bytes",
                "Bytes from public clients, as the traffic log counts them (TCP/TLS: at the close).",
                labels=["listener"],
            ),
            "bytes_out": CounterMetricFamily(
                "burrow_public_sent_bytes",
                "Bytes to public clients, as the traffic log counts them (TCP/TLS: at the close).",
                labels=["listener"],
            ),
        }
        for listener in LISTENERS:
            traffic = edge.public.traffic[listener]
            families["open"].add_metric([listener], admission.open(listener))
            families["accepted"].add_metric([listener], admission.accepted[listener])
            families["refused"].add_metric([listener], admission.refused[listener])
            for name in ("requests", "bytes_in", "bytes_out"):
                families[name].add_metric([listener], getattr(traffic, name))
        yield from families.values()
        handoff = edge.public.handoff
        if handoff is not None:  # a worker of burrow serve --workers (edge/handoff.py)
            yield _counter(
                "burrow_handoffs_sent",
                "Public connections handed to the worker holding their tunnel.",
                handoff.handed,
            )
            yield _counter(
                "burrow_handoffs_received",
                "Public connections handed over by another worker.",
                handoff.received,
            )


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class Metrics:
    """The registry ``--metrics-addr`` serves, and the API's part of it."""

    def __init__(self, edge: Edge | None) -> None:
        self.registry = CollectorRegistry()
        self.api = ApiMetrics(self.registry)
        self.registry.register(EdgeCollector(edge, self.api))

    def asgi_app(self) -> ASGIApp:
        app: ASGIApp = make_asgi_app(self.registry)
        return app
