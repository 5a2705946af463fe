"""What the API counts for ``/metrics``: requests by route template, method and status, with
latency; refusals. Labels are bounded: a route template, never a path, id, token or host."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.requests = Histogram(
            "burrow_api_request_duration_seconds",
            "API requests by route template, method and status, and how long they took.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Plain integers, read at scrape time: anything may add to them without a registry.
        self.auth_failures = 0  # 401s
        self.rate_limited = 0  # 429s: the rate limiter adds one per refusal
        self.database_errors = 0  # requests that failed in the database
        # labels() validates and locks on every call; the children are few (bounded labels).
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        if status == 401:
            self.auth_failures += 1
        elif status == 429:
            self.rate_limited += 1
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(route, method, str(status))
        child.observe(seconds)
