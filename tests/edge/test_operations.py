"""Operating the edge: /metrics while an agent serves traffic, /version, and a SIGTERM that
lets a slow request through a tunnel finish."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

import burrow
from tests.edge.conftest import Agent
from tests.edge.test_sdk import credential, public_get
from tests.harness import BurrowServer, free_port

pytestmark = pytest.mark.e2e


def scrape(addr: str) -> dict[str, float]:
    """Every sample of /metrics by its name and labels, e.g. 'burrow_tunnels{proto="http"}'."""
    text = httpx.get(f"http://{addr}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_move_while_an_agent_serves_traffic(
    make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    metrics_addr = f"127.0.0.1:{free_port()}"
    server = make_server("--metrics-addr", metrics_addr)
    before = scrape(metrics_addr)
    assert before["burrow_agent_sessions"] == 0
    assert before['burrow_public_requests_total{listener="http"}'] == 0
    token = credential(server, ["bind:*.metrics.example"])["token"]
    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "app.metrics.example"}])
    for _ in range(3):
        assert public_get(server, "app.metrics.example", "/bytes/1000").status_code == 200
    upload = httpx.post(
        f"http://{server.http_addr}/",
        headers={"Host": "app.metrics.example"},
        content=b"u" * 5000,
        timeout=30,
    )
    assert upload.status_code == 200
    with server.bare_client() as http:
        assert (
            http.get(
                "/credentials", headers={"Authorization": "Bearer nope", "Ngrok-Version": "2"}
            ).status_code
            == 401
        )
    refused = start_agent(server, "not-a-token", [])
    assert "ERR_NGROK_105" in refused.ready["error"]
    after = scrape(metrics_addr)
    assert after["burrow_agent_sessions"] == 1
    assert after["burrow_agent_sessions_started_total"] == 1
    assert after["burrow_agent_auth_failures_total"] == 1
    assert after['burrow_tunnels{proto="http"}'] == 1
    assert after['burrow_public_requests_total{listener="http"}'] == 4
    assert after['burrow_public_connections_total{listener="http"}'] >= 1
    assert after['burrow_public_sent_bytes_total{listener="http"}'] >= 3000
    assert after['burrow_public_received_bytes_total{listener="http"}'] >= 5000
    assert after["burrow_api_auth_failures_total"] == 1
    created = 'burrow_api_request_duration_seconds_count{method="POST",route="/credentials",status="201"}'
    assert after[created] == 1
    # Route templates, never ids: a label set per route, whatever the ids asked for.
    with server.client() as http:
        for _ in range(2):
            http.get(f"/credentials/cr_{'x' * 27}")
    labels = [name for name in scrape(metrics_addr) if "request_duration_seconds_count" in name]
    assert not any("cr_" in name for name in labels)
    assert any('route="/credentials/{id}"' in name for name in labels), labels


def test_metrics_are_off_unless_asked_and_version_is_served(burrow_server: BurrowServer) -> None:
    with burrow_server.bare_client() as http:
        version = http.get("/version").json()
    assert version["version"] == burrow.__version__ and version["ngrok_api_version"] == "2"
    assert re.fullmatch(r"3\.\d+\.\d+\S*", version["python"])
    with burrow_server.client() as http:
        assert http.get("/metrics").status_code == 404  # not on the API's address


def test_sigterm_lets_a_slow_request_through_a_tunnel_finish(
    make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    server = make_server("--shutdown-grace", "10")
    assert server.process is not None
    token = credential(server, ["bind:*.slow.example"])["token"]
    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "app.slow.example"}])
    answers: list[httpx.Response | Exception] = []

    def slow_request() -> None:
        try:
            answers.append(public_get(server, "app.slow.example", "/sleep/3"))
        except Exception as error:
            answers.append(error)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1)  # the request is at the agent's service now
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    host, port = server.http_addr.rsplit(":", 1)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection((host, int(port)), timeout=2).close()
    thread.join(timeout=20)
    assert len(answers) == 1 and isinstance(answers[0], httpx.Response), answers
    assert answers[0].status_code == 200 and answers[0].json()["path"] == "/sleep/3"
    assert server.process.wait(timeout=15) == 0
    assert time.monotonic() - started < 9  # it left once the request was done, not at the grace's end


def test_sigusr1_writes_every_thread_s_stack_and_changes_nothing(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server()
    assert server.process is not None
    server.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while "Current thread" not in server.log():
        assert time.monotonic() < deadline, "no stack written"
        time.sleep(0.05)
    assert "asyncio/runners.py" in server.log()  # the event loop's thread, running
    with server.client() as http:
        assert http.get("/healthz").status_code == 200
