"""The command line: first run, init, operator commands, help, graceful shutdown."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from burrow.domain import ids, tokens
from tests.harness import BURROW, BurrowServer, burrow, edge_args, free_port

# Runs `burrow` processes (serve, the CLI): the e2e tier.
pytestmark = pytest.mark.e2e


def wait_until_healthy(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.05)


def test_init_prints_only_the_token(tmp_path: Path) -> None:
    result = burrow("init", "--data-dir", str(tmp_path / "d"), "--admin-email", "ops@example.com")
    token = result.stdout
    assert token.endswith("\n") and token.count("\n") == 1
    assert isinstance(tokens.resource_id(token.strip(), ids.API_KEY), str)
    second = burrow(
        "init", "--data-dir", str(tmp_path / "d"), "--admin-email", "dev@example.com"
    ).stdout.strip()
    assert second != token.strip()
    accounts = burrow("admin", "accounts", "list", "--data-dir", str(tmp_path / "d")).stdout
    assert len(re.findall(r"acct_\w{27}", accounts)) == 2


def test_init_refuses_a_bad_email(tmp_path: Path) -> None:
    result = burrow("init", "--data-dir", str(tmp_path / "d"), "--admin-email", "not an email", check=False)
    assert result.returncode != 0 and result.stdout == "" and "email" in result.stderr


def test_serve_on_an_empty_data_dir_creates_the_first_account(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            BURROW,
            "serve",
            "--data-dir",
            str(tmp_path / "fresh"),
            "--api-addr",
            f"127.0.0.1:{port}",
            *edge_args(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    # Off a terminal the key is alone on stdout; stderr has JSON lines only, and no key.
    assert re.fullmatch(r"\w{27}_\w{28}\n", out), out
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(line.get("admin") == "admin@localhost" for line in lines)
    assert out.strip() not in err
    users = json.loads(
        burrow("admin", "users", "list", "--json", "--data-dir", str(tmp_path / "fresh")).stdout
    )
    assert [(u["email"], u["role"]) for u in users] == [("admin@localhost", "admin")]


def test_first_run_token_works(make_server: Callable[..., BurrowServer], tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            BURROW,
            "serve",
            "--data-dir",
            str(tmp_path / "first"),
            "--api-addr",
            f"127.0.0.1:{port}",
            *edge_args(),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        token = None
        assert process.stdout is not None
        for line in process.stdout:
            found = re.search(r"\b(\w{27}_\w{28})\b", line)
            if found:
                token = found.group(1)
                break
        assert token
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/credentials",
                    headers={"Authorization": f"Bearer {token}", "Ngrok-Version": "2"},
                )
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    # A second start on the same directory creates nothing and shows no token.
    port_of_again = free_port()
    again = subprocess.Popen(
        [
            BURROW,
            "serve",
            "--data-dir",
            str(tmp_path / "first"),
            "--api-addr",
            f"127.0.0.1:{port_of_again}",
            *edge_args(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_healthy(port_of_again)  # it is up, so it has said whatever it says at start
    finally:
        again.send_signal(signal.SIGTERM)
    out, err = again.communicate(timeout=15)
    assert not re.search(r"\b\w{27}_\w{28}\b", out + err) and "first run" not in (out + err).lower()


def test_admin_users_create_adds_a_member_with_a_working_key(burrow_server: BurrowServer) -> None:
    token = burrow_server.create_user("member@example.com")
    assert "\n" not in token and len(token) == tokens.TOKEN_LENGTH
    with burrow_server.client(token) as http:
        assert http.get("/credentials").status_code == 200
    duplicate = burrow(
        "admin",
        "users",
        "create",
        "--data-dir",
        str(burrow_server.data_dir),
        "--email",
        "member@example.com",
        check=False,
    )
    assert duplicate.returncode != 0 and duplicate.stdout == ""
    bad_role = burrow(
        "admin",
        "users",
        "create",
        "--data-dir",
        str(burrow_server.data_dir),
        "--email",
        "x@example.com",
        "--role",
        "owner",
        check=False,
    )
    assert bad_role.returncode != 0 and "role" in bad_role.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["init"],
        ["serve"],
        ["admin"],
        ["admin", "users"],
        ["admin", "users", "create"],
        ["admin", "users", "list"],
        ["admin", "accounts", "list"],
        ["admin", "seed"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = burrow(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout
    assert len(result.stdout.strip().splitlines()) > 3


def test_serve_help_names_the_script_contract() -> None:
    out = burrow("serve", "--help").stdout
    assert "--data-dir" in out and "--api-addr" in out and "--database-url" in out


def test_sigterm_lets_in_flight_requests_finish(make_server: Callable[..., BurrowServer]) -> None:
    """A request whose body is still arriving when SIGTERM comes is answered, then the server exits."""
    server = make_server()
    assert server.process is not None
    body = json.dumps({"description": "in flight"}).encode()
    head = (
        "POST /credentials HTTP/1.1\r\nHost: burrow\r\n"
        f"Authorization: Bearer {server.api_key}\r\nNgrok-Version: 2\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + body[:5])  # the handler is now waiting for the rest of the body
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert server.process.poll() is None  # shutting down, but waiting for the request
        sock.sendall(body[5:])
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after answering
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 201 Created", answer
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["description"] == "in flight"
    assert server.process.wait(timeout=15) == 0
    assert "Shutting down" in server.log()


@pytest.mark.parametrize(("option", "value"), [("--api-max-headers", "0"), ("--agent-auth-timeout", "-1")])
def test_serve_refuses_a_limit_that_is_not_positive(tmp_path: Path, option: str, value: str) -> None:
    result = burrow("serve", "--data-dir", str(tmp_path / "data"), option, value, check=False)
    assert result.returncode == 2
    assert f"{option} must be positive" in result.stderr


@pytest.mark.parametrize(
    "clash",
    [
        ["--api-addr", "127.0.0.1:14766", "--tcp-ports", "14766-14766"],
        ["--http-addr", "0.0.0.0:14767", "--tls-addr", "127.0.0.1:14767"],
    ],
)
def test_serve_refuses_two_listeners_on_one_port(tmp_path: Path, clash: list[str]) -> None:
    result = burrow("serve", "--data-dir", str(tmp_path / "data"), *clash, check=False)
    port = clash[1].rsplit(":", 1)[1]
    assert result.returncode == 2 and f"both listen on port {port}" in result.stderr, result.stderr
    assert clash[0] in result.stderr and clash[2] in result.stderr


def test_limits_are_read_from_the_environment(tmp_path: Path) -> None:
    env = {"BURROW_API_MAX_CONNECTIONS": "0"}
    result = burrow("serve", "--data-dir", str(tmp_path / "data"), env=env, check=False)
    assert result.returncode == 2 and "--api-max-connections must be positive" in result.stderr


def test_admin_seed_fills_an_account(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server()
    other_key = server.new_account("other@example.com")
    result = burrow(
        "admin", "seed", "--data-dir", str(server.data_dir), "--account", "admin@example.com",
        "--credentials", "250", "--api-keys", "3", "--bot-users", "2",
    )  # fmt: skip
    assert "added 250 credentials, 3 API keys and 2 bot users" in result.stderr
    with server.client() as http:
        first = http.get("/credentials", params={"limit": "100"}).json()
        rest = http.get(first["next_page_uri"]).json()
        last = http.get(rest["next_page_uri"]).json()
        assert len(first["credentials"]) + len(rest["credentials"]) + len(last["credentials"]) == 250
        assert len(http.get("/api_keys").json()["keys"]) == 1 + 3
        assert len(http.get("/bot_users").json()["bot_users"]) == 2
        # Seeded rows are ordinary rows: filters find them, and their owner is the admin.
        found = http.get("/credentials", params={"filter": 'obj.description == "seed 7"'}).json()
        assert [c["description"] for c in found["credentials"]] == ["seed 7"]
    with server.client(other_key) as theirs:
        assert theirs.get("/credentials").json()["credentials"] == []


def errors_in(stderr: str) -> list[dict[str, str]]:
    """The error lines of a stderr whose every line is JSON (json.loads fails otherwise)."""
    return [entry for entry in map(json.loads, stderr.splitlines()) if entry["level"] == "error"]


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = burrow(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--api-addr",
            f"127.0.0.1:{port}",
            *edge_args(),
            check=False,
        )
        assert result.returncode == 2
        [entry] = errors_in(result.stderr)
        assert entry["level"] == "error" and f"--api-addr 127.0.0.1:{port}" in entry["message"]
        assert "in use" in entry["message"]
        edge = edge_args()
        edge[edge.index("--http-addr") + 1] = f"127.0.0.1:{port}"
        result = burrow(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--api-addr",
            f"127.0.0.1:{free_port()}",
            *edge,
            check=False,
        )
        assert result.returncode == 2
        [entry] = errors_in(result.stderr)
        assert f"{port}" in entry["message"] and "in use" in entry["message"]


def test_every_setting_has_a_variable_and_the_config_file_holds_them(tmp_path: Path) -> None:
    from burrow.cli import settings

    usage = burrow("serve", "--help", env={"COLUMNS": "300"}).stdout
    for setting in settings.SETTINGS:
        assert setting.envvar in usage, setting.name
    # The file fills what neither an option nor the environment gave; both win over it.
    config = tmp_path / "burrow.toml"
    config.write_text('api-max-headers = 0\nagent-auth-timeout = 5.0\nlabel-route = ["a=b=c"]\n')
    result = burrow("serve", "--data-dir", str(tmp_path / "d"), "--config", str(config), check=False)
    assert result.returncode == 2 and "--api-max-headers must be positive" in result.stderr
    result = burrow(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--config",
        str(config),
        "--api-max-headers",
        "-1",
        check=False,
    )
    assert "--api-max-headers must be positive" in result.stderr
    result = burrow(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--config",
        str(config),
        env={"BURROW_API_MAX_HEADERS": "10", "BURROW_API_MAX_CONNECTIONS": "0"},
        check=False,
    )
    assert "--api-max-connections must be positive" in result.stderr
    for text, problem in [
        ("api-max-headers = 'ten'\n", "api-max-headers must be int"),
        ("no-such-thing = 1\n", "unknown setting 'no-such-thing'"),
        ("api_addr = '127.0.0.1:1'\n", "unknown setting 'api_addr'"),
        ("edge = 1\n", "edge must be bool"),
        ("[[", "not TOML"),
    ]:
        config.write_text(text)
        result = burrow("serve", "--data-dir", str(tmp_path / "d"), "--config", str(config), check=False)
        assert result.returncode == 2 and problem in result.stderr, (text, result.stderr)


def test_a_config_file_starts_a_server(tmp_path: Path) -> None:
    api = free_port()
    edge = edge_args()
    pairs = dict(zip(edge[0::2], edge[1::2], strict=True))
    config = tmp_path / "burrow.toml"
    config.write_text(
        f'data-dir = "{tmp_path / "d"}"\napi-addr = "127.0.0.1:{api}"\n'
        + "".join(f'{flag[2:]} = "{value}"\n' for flag, value in pairs.items())
    )
    process = subprocess.Popen([BURROW, "serve", "--config", str(config)], stdout=subprocess.PIPE, text=True)
    try:
        wait_until_healthy(api)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert (tmp_path / "d" / "burrow.db").exists()


def test_the_readme_configuration_table_is_the_settings(tmp_path: Path) -> None:
    from burrow.cli import settings

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings.markdown_table() in readme, (
        "run: python -m burrow.cli.settings, and paste it in the README"
    )


def test_first_run_on_a_terminal_prints_the_next_steps(tmp_path: Path) -> None:
    import os
    import pty

    controller, terminal = pty.openpty()
    port = free_port()
    edge = edge_args()
    process = subprocess.Popen(
        [
            *[BURROW, "serve", "--data-dir", str(tmp_path / "d"), "--api-addr", f"127.0.0.1:{port}", *edge],
            *["--agent-name", "connect.tunnels.example.com"],
        ],
        stdout=terminal,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    try:
        wait_until_healthy(port)
        shown = b""
        while b"dashboard" not in shown:
            shown += os.read(controller, 65536)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        os.close(controller)
    text = shown.decode()
    [token] = re.findall(r"\b\w{27}_\w{28}\b", text.split("Next steps")[0])
    assert f"export BURROW_API_KEY={token} BURROW_API_URL=http://127.0.0.1:{port}" in text
    # How to run the CLI: by the path it is installed at, as it is not necessarily on PATH.
    assert f"{BURROW} credentials create" in text or "burrow credentials create" in text
    agent_port = edge[edge.index("--agent-addr") + 1].rsplit(":", 1)[1]
    # The server_addr agents use: the agent listener's name (on its certificate), its port.
    assert f"server_addr connect.tunnels.example.com:{agent_port}" in text
    assert str(tmp_path / "d" / "ca.pem") in text
    assert token not in err and all(json.loads(line) for line in err.splitlines())
