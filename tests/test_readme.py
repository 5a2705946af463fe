"""Every command and snippet in README.md runs as written.

"As written" means byte for byte, except for what a reader fills in or what must differ for
tests to run side by side: placeholders (``<credential token>``) and the default addresses
(``127.0.0.1:4080``, ``:4443``, ``:8444``, ``:3000``), which become the test server's free
ports. Every replacement is asserted to be present, so a README edit cannot silently turn a
test into a no-op, and ``test_every_block_is_covered`` fails when a block is added without one.

``make test`` is the one command not run here (it runs this file); CI runs it on a fresh clone.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.edge.conftest import SDK_PYTHON
from tests.edge.test_agent_binary import NGROK
from tests.harness import (
    BIN,
    DEFAULT_PORTS,
    OFFICIAL_CLIENT_PYTHON,
    ROOT,
    BurrowServer,
    free_port,
    local_http_service,
    occupied,
)

# Runs `burrow` processes (serve, the CLI): the e2e tier.
pytestmark = pytest.mark.e2e

README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def block(language: str, containing: str) -> str:
    found = [text for text in blocks(language) if containing in text]
    assert len(found) == 1, f"expected one {language} block containing {containing!r}, found {len(found)}"
    return found[0]


def filled(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"{old!r} is no longer in the README block:\n{text}"
        text = text.replace(old, new)
    return text


def port(addr: str) -> str:
    return addr.rsplit(":", 1)[1]


COVERED = {
    "sh": ["make serve", "curl -H", "burrow init", "ngrok http", "ssh -R"],
    "python": ["ngrok.Client(", "ngrok.SessionBuilder()"],
    "yaml": ["server_addr:"],
}


def test_every_block_is_covered() -> None:
    fences = re.findall(r"^```(\w*)$", README.read_text(), flags=re.M)
    opening = fences[0::2]
    assert sorted(opening) == sorted(lang for lang, marks in COVERED.items() for _ in marks)
    for language, marks in COVERED.items():
        for mark in marks:
            block(language, mark)


def test_a_new_user_is_told_what_the_agents_need_and_where_the_binary_is() -> None:
    text = README.read_text()
    sdk = text.index("ngrok.SessionBuilder()")
    assert text.index("python3 -m http.server 3000") < sdk  # a service on :3000, before the snippet
    said = re.search(r"puts the binary at\s+`DIR/([^`]+)`", text)
    assert said is not None and NGROK.as_posix().endswith(said.group(1)), (said, NGROK)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reader's current directory: the server's data lives in ./.burrow as in the README."""
    return tmp_path_factory.mktemp("readme")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[BurrowServer]:
    with occupied(DEFAULT_PORTS):  # as if `make serve` ran: the README's tests must not need them
        server = BurrowServer(workdir / ".burrow").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local_service() -> Iterator[int]:
    """What the README calls the local service on port 3000."""

    def reply(request: http.server.BaseHTTPRequestHandler) -> str:
        return f"local service saw {request.headers['Host']}{request.path}"

    with local_http_service(reply) as port:
        yield port


def shell_env(server: BurrowServer) -> dict[str, str]:
    return {**os.environ, "BURROW_API_KEY": server.api_key, "PATH": f"{BIN}:{os.environ['PATH']}"}


def bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_serve_starts_burrow_and_prints_the_first_key_once(tmp_path: Path) -> None:
    command = block("sh", "make serve").splitlines()[0].split("#")[0].strip()
    assert command == "make serve"
    api = free_port()
    env = {
        **os.environ,
        # The README's configuration table: every listener moved to a free port.
        "BURROW_DATA_DIR": str(tmp_path / "data"),
        "BURROW_API_ADDR": f"127.0.0.1:{api}",
        "BURROW_AGENT_ADDR": f"127.0.0.1:{free_port()}",
        "BURROW_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        "BURROW_TLS_ADDR": f"127.0.0.1:{free_port()}",
        "BURROW_HTTPS_ADDR": f"127.0.0.1:{free_port()}",
        "BURROW_TCP_PORTS": "{0}-{0}".format(free_port()),
    }

    # The default ports taken, as by a `make serve` running already: the test must not need them.
    with occupied(DEFAULT_PORTS):
        first_out, first_err = serve_once(command, env, api)
        second_out, second_err = serve_once(command, env, api)
    assert "admin@localhost" in first_err
    keys = re.findall(r"\b[0-9A-Za-z]{27}_[0-9A-Za-z]{28}\b", first_out + first_err)
    assert len(keys) == 1 and keys[0] in first_out, (first_out, first_err)
    assert keys[0] not in second_out + second_err and "admin@localhost" not in second_out + second_err


def serve_once(command: str, env: dict[str, str], api: int) -> tuple[str, str]:
    """Run the README's `make serve` until it answers /healthz, then SIGTERM it: its output."""
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120  # make may first have to build .venv
        while True:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "make serve never answered /healthz"
            try:
                health = httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=1)
                assert health.json() == {"status": "ok", "database": "ok"}
                break
            except httpx.HTTPError:
                time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    return out, err


def test_official_client_snippet_then_agents_then_curl(
    server: BurrowServer, workdir: Path, local_service: int
) -> None:
    """The README's path: create a credential, start an agent with its token, curl the URL."""
    https_port = port(server.https_addr)
    snippet = filled(
        block("python", "ngrok.Client("),
        {
            '"<your Burrow API key>"': repr(server.api_key),
            "http://127.0.0.1:4080": server.base_url,
        },
    )
    made = subprocess.run(
        [str(OFFICIAL_CLIENT_PYTHON), "-c", snippet], capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    token = lines[0]
    assert re.fullmatch(r"[0-9A-Za-z]{27}_[0-9A-Za-z]{28}", token), made.stdout
    assert any("['bind:*.burrow.localhost']" in line for line in lines[1:]), made.stdout

    # The agent SDK snippet, in the directory holding .burrow/ca.pem.
    agent_snippet = filled(
        block("python", "ngrok.SessionBuilder()"),
        {
            '"<credential token>"': repr(token),
            "127.0.0.1:4443": server.agent_addr,
            "http://127.0.0.1:3000": f"http://127.0.0.1:{local_service}",
        },
    )
    printed_url = filled("https://laptop.burrow.localhost:8444", {":8444": f":{https_port}"})
    assert f"# {'https://laptop.burrow.localhost:8444'}" in block("python", "ngrok.SessionBuilder()")
    curl = filled(
        re.search(r"Then `(curl [^`]+)`", README.read_text()).group(1),  # type: ignore[union-attr]
        {":8444": f":{https_port}"},
    )
    agent = subprocess.Popen(
        [str(SDK_PYTHON), "-u", "-c", agent_snippet],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        ready, _, _ = select.select([agent.stdout], [], [], 30)
        assert ready, "the SDK snippet printed nothing in 30 s"
        assert agent.stdout.readline().strip() == printed_url, agent.stderr
        reached = bash(curl, workdir, shell_env(server))
        assert reached.returncode == 0, reached.stderr
        assert reached.stdout == "local service saw laptop.burrow.localhost:" + https_port + "/"
    finally:
        agent.terminate()
        agent.wait(timeout=10)

    # The same token with the agent binary, its YAML config and the command shown.
    config = filled(
        block("yaml", "server_addr:"),
        {
            "<credential token>": token,
            "127.0.0.1:4443": server.agent_addr,
            "/path/to/.burrow/ca.pem": str(workdir / ".burrow" / "ca.pem"),
        },
    )
    (workdir / "burrow-agent.yml").write_text(config)
    command = filled(
        block("sh", "ngrok http").strip(), {"ngrok http": f"{NGROK} http", " 3000": f" {local_service}"}
    )
    assert "laptop" not in command  # its own name: both agents can run at once
    desk_curl = filled(
        re.search(r"\(`(curl [^`]+)` reaches this one", README.read_text()).group(1),  # type: ignore[union-attr]
        {":8444": f":{https_port}"},
    )
    binary = subprocess.Popen(
        ["bash", "-c", command],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert binary.poll() is None, "the agent binary exited"
            reached = bash(desk_curl, workdir, shell_env(server))
            if reached.returncode == 0 and reached.stdout.startswith("local service saw"):
                assert reached.stdout == "local service saw desk.burrow.localhost:" + https_port + "/"
                break
            assert time.monotonic() < deadline, reached.stdout + reached.stderr
            time.sleep(0.3)
    finally:
        os.killpg(binary.pid, signal.SIGTERM)
        binary.wait(timeout=10)


def test_curl_lists_credentials(server: BurrowServer, workdir: Path) -> None:
    command = filled(block("sh", "curl -H"), {"http://127.0.0.1:4080": server.base_url})
    result = bash(command, workdir, shell_env(server))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) >= {"credentials", "uri", "next_page_uri"}


def test_account_setup_commands(server: BurrowServer, workdir: Path) -> None:
    result = bash(block("sh", "burrow init"), workdir, shell_env(server))
    assert result.returncode == 0, result.stderr
    # The last command's JSON document ends the output.
    accounts = json.loads(result.stdout[result.stdout.rindex("\n[") :])
    emails = json.dumps(accounts)
    assert "ops@example.com" in emails and "dev@example.com" in emails
    # Each init and the users create print one API key (ops, dev, carol): each works.
    keys = re.findall(r"^[0-9A-Za-z]{27}_[0-9A-Za-z]{28}$", result.stdout, flags=re.M)
    assert len(keys) == 3
    for key in keys:
        with server.client(key) as http:
            assert http.get("/api_keys").status_code == 200


def test_ssh_starts_a_tunnel_with_a_registered_key(tmp_path: Path, local_service: int) -> None:
    from tests.ssh.test_gateway import SSH, make_key

    ssh_port = free_port()
    with occupied(DEFAULT_PORTS):
        server = BurrowServer(tmp_path / ".burrow").start("--ssh-addr", f"127.0.0.1:{ssh_port}")
    key = make_key(tmp_path)
    (tmp_path / "id_ed25519.pub").write_text(key.public + "\n")
    options = (
        f"-F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i {key.path} "
        f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={tmp_path / 'known_hosts'}"
    )
    command = filled(
        block("sh", "ssh -R"),
        {
            "~/.ssh/id_ed25519.pub": str(tmp_path / "id_ed25519.pub"),
            "ssh -R": f"{SSH} {options} -R",
            ":3000": f":{local_service}",
            "-p 2222": f"-p {ssh_port}",
        },
    )
    env = {**shell_env(server), "BURROW_API_URL": server.base_url}
    process = subprocess.Popen(
        ["bash", "-e", "-c", command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        shown = b""
        deadline = time.monotonic() + 30
        while b"Forwarding" not in shown:
            assert time.monotonic() < deadline and process.poll() is None, shown.decode(errors="replace")
            if select.select([process.stdout], [], [], 0.2)[0]:
                shown += os.read(process.stdout.fileno(), 65536)
        url = next(line for line in shown.decode().splitlines() if line.startswith("Forwarding")).split()[1]
        host = httpx.URL(url).host
        assert host.endswith(".burrow.localhost")
        answer = httpx.get(f"http://{server.http_addr}/readme", headers={"Host": host}, timeout=10)
        assert answer.text == f"local service saw {host}/readme"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        server.stop()
