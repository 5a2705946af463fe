"""``burrow serve --workers 2``: two processes sharing the listeners, each a node of the
cluster with its own relay, on SQLite and on PostgreSQL, with real SDK agents."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.edge.conftest import Agent
from tests.harness import BurrowServer, burrow, free_port

# Every test here runs `burrow serve --workers` processes: the e2e tier.
pytestmark = pytest.mark.e2e

LEASE_SECONDS = 3


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BurrowServer]:
    """``burrow serve --workers 2`` on a SQLite file or a PostgreSQL database of its own."""
    env = {}
    if request.param == "postgresql":
        env["BURROW_DATABASE_URL"] = request.getfixturevalue("make_postgres_url")()
    server = BurrowServer(tmp_path / "box", env=env)
    server.metrics_port = two_free_ports()  # type: ignore[attr-defined]
    server.start(
        *("--workers", "2", "--node-name", "box", "--lease-seconds", str(LEASE_SECONDS)),
        *("--shutdown-grace", "1", "--metrics-addr", f"127.0.0.1:{server.metrics_port}"),  # type: ignore[attr-defined]
    )
    yield server
    if server.process is not None:
        server.stop()


def two_free_ports() -> int:
    """A free port whose next one is free too: worker K's metrics listen on PORT+K-1."""
    for _ in range(50):
        port = free_port()
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port + 1))
            return port
    raise AssertionError("no two free ports in a row")


def metric(server: BurrowServer, worker: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{server.metrics_port + worker - 1}/metrics").text  # type: ignore[attr-defined]
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " ")))


def credential(server: BurrowServer) -> str:
    with server.client() as http:
        response = http.post("/credentials", json={"description": "agent", "acl": []})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def holders(server: BurrowServer) -> dict[str, str]:
    """Which node (worker) holds each session, by session id."""
    done = burrow("cluster", "status", "--data-dir", str(server.data_dir), "--json", env=server.env)
    return {session: node["name"] for node in json.loads(done.stdout) for session in node["sessions"]}


def session_of(server: BurrowServer, agent_host: str) -> str:
    with server.client() as http:
        tunnels = http.get("/tunnels").json()["tunnels"]
    return str(next(t["tunnel_session"]["id"] for t in tunnels if agent_host in t["public_url"]))


def public_get(server: BurrowServer, host: str) -> httpx.Response:
    # A new connection each time: whichever worker accepts it serves it, or relays it.
    return httpx.get(f"http://{server.http_addr}/", headers={"Host": host}, timeout=30)


def https_get(server: BurrowServer, host: str) -> bytes:
    """A GET on a new connection to the HTTPS listener, trusting Burrow's CA; the response."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    address, port = server.https_addr.rsplit(":", 1)
    with (
        socket.create_connection((address, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET /tls HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    return response


def workers_pids(server: BurrowServer) -> list[int]:
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


def agents_on_both_workers(
    server: BurrowServer, start_agent: Callable[..., Agent], token: str
) -> dict[str, tuple[Agent, str]]:
    """Agents started until each worker holds one: by worker name, the agent and its host."""
    found: dict[str, tuple[Agent, str]] = {}
    for number in range(16):
        host = f"app{number}.burrow.localhost"
        endpoints = [
            {"name": "web", "kind": "http", "domain": host},
            {"name": "secure", "kind": "http", "domain": host, "scheme": "https"},
        ]
        agent = start_agent(server, token, endpoints)
        worker = holders(server)[session_of(server, host)]
        if worker in found:
            agent.stop()
        else:
            found[worker] = (agent, host)
        if len(found) == 2:
            return found
    pytest.fail(f"16 agents all reached {list(found)}")


def within(seconds: float, condition: Callable[[], bool], what: str) -> None:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, what
        time.sleep(0.1)


def test_public_traffic_reaches_agents_on_either_worker(
    workers: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    status = json.loads(
        burrow("cluster", "status", "--data-dir", str(workers.data_dir), "--json", env=workers.env).stdout
    )
    assert sorted(node["name"] for node in status) == ["box-w1", "box-w2"]
    assert all(node["relay_addr"].startswith("127.0.0.1:") for node in status)
    token = credential(workers)
    found = agents_on_both_workers(workers, start_agent, token)
    assert sorted(found) == ["box-w1", "box-w2"]
    # Each connection lands on one worker; one of the two hosts is held by the other worker,
    # so every pair of requests crosses the relay at least once.
    for _ in range(10):
        for _agent, host in found.values():
            response = public_get(workers, host)
            assert response.status_code == 200, response.text
            assert response.json()["host"] == host
    # HTTPS too: the worker that accepts hands the connection over before the handshake, and
    # the holder answers with the name's certificate.
    for _ in range(6):
        for _agent, host in found.values():
            response = https_get(workers, host)
            assert response.startswith(b"HTTP/1.1 200"), response[:300]
            assert f'"host": "{host}"'.encode() in response or host.encode() in response
    # The worker that accepted a connection for the other's tunnel handed the connection over
    # (edge/handoff.py) rather than relaying it.
    sent = [metric(workers, number, "burrow_handoffs_sent_total") for number in (1, 2)]
    received = [metric(workers, number, "burrow_handoffs_received_total") for number in (1, 2)]
    assert sum(sent) >= 1 and sum(sent) == sum(received), (sent, received)
    # One hostname is bound once, whichever worker the second agent reaches.
    _agent, taken = found["box-w1"]
    again = start_agent(workers, credential(workers), [{"name": "web", "kind": "http", "domain": taken}])
    assert any("ERR_NGROK_334" in part for part in again.error("web"))


def test_a_killed_worker_is_restarted_and_its_agent_serves_again(
    workers: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    found = agents_on_both_workers(workers, start_agent, credential(workers))
    agent, host = found["box-w1"]
    before = workers_pids(workers)
    assert len(before) == 2
    victim = workers.wait_log(lambda entry: entry.get("worker") == 1 and entry.get("pid") in before)["pid"]
    os.kill(victim, signal.SIGKILL)
    within(10, lambda: len(workers_pids(workers)) == 2 and victim not in workers_pids(workers), "no restart")
    assert "worker died; restarting it" in workers.log()
    # The SDK reconnects (to either worker) with its session id and takes its names back.
    assert agent.wait_event(lambda event: event.get("event") == "disconnected", 10) is not None
    returned = lambda: public_get(workers, host).status_code == 200  # noqa: E731
    within(LEASE_SECONDS * 4, returned, "the agent never returned")
    for _ in range(6):
        assert public_get(workers, host).json()["host"] == host
    _other, other_host = found["box-w2"]
    assert public_get(workers, other_host).status_code == 200
    names = {node["name"] for node in json.loads(
        burrow("cluster", "status", "--data-dir", str(workers.data_dir), "--json", env=workers.env).stdout
    ) if node["live"]}  # fmt: skip
    assert names >= {"box-w1", "box-w2"}


def test_sigterm_to_the_parent_stops_every_worker(
    workers: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    found = agents_on_both_workers(workers, start_agent, credential(workers))
    pids = workers_pids(workers)
    assert workers.stop() == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    for agent, _host in found.values():
        assert agent.wait_event(lambda event: event.get("event") == "disconnected", 10) is not None
    # A clean stop removes every worker's node at once (no lease to wait for).
    status = burrow("cluster", "status", "--data-dir", str(workers.data_dir), "--json", env=workers.env)
    assert json.loads(status.stdout) == []
    assert workers.log().count("worker stopped") == 2


def test_workers_that_cannot_start_make_the_parent_fail(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "box")
    bad_cert = tmp_path / "not-a-cert.pem"
    bad_cert.write_text("nothing")
    with pytest.raises(RuntimeError, match="burrow serve exited"):
        server.start("--workers", "2", "--https-cert", str(bad_cert), "--https-key", str(bad_cert))
    assert server.process is not None and server.process.wait(timeout=10) != 0
    server.stop()
    assert "HTTPS certificate" in server.log()


def test_workers_must_be_a_sane_count(tmp_path: Path) -> None:
    done = burrow("serve", "--data-dir", str(tmp_path / "d"), "--workers", "0", check=False)
    assert done.returncode != 0 and "--workers must be between 1 and 64" in done.stderr


def test_one_worker_is_one_process(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "one").start()
    try:
        assert workers_pids(server) == []  # --workers 1: no process but the server
    finally:
        server.stop()
