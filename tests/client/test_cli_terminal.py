"""What ``burrow`` lists and help look like to a person: on an 80-column pseudo-terminal, and
in a pipe, against a real server with real agents."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
from collections.abc import Callable
from typing import Any

import pytest
import typer

from burrow.cli.main import app
from tests.client.test_cli_resources import cli, data
from tests.edge.conftest import Agent, start_agent  # noqa: F401  (a fixture)
from tests.harness import BURROW, BurrowServer, burrow

pytestmark = pytest.mark.e2e

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(server: BurrowServer | None, *args: str, columns: int = 80) -> tuple[list[str], str]:
    """``burrow args`` with stdout on a pseudo-terminal ``columns`` wide: its lines as seen
    (colours removed) and its stderr."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BURROW_")}
    environment.update({"COLUMNS": str(columns), "TERM": "xterm-256color"})
    if server is not None:
        environment.update({"BURROW_API_KEY": server.api_key, "BURROW_API_URL": server.base_url})
    process = subprocess.Popen(
        [BURROW, *args], stdout=follower, stderr=subprocess.PIPE, env=environment, close_fds=True
    )
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        assert ready, "burrow wrote nothing for 30 s"
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.stderr is not None
    error = process.stderr.read().decode()
    assert process.wait(timeout=30) == 0, error
    text = ANSI.sub("", shown.decode()).replace("\r\n", "\n")
    return text.rstrip("\n").split("\n"), error


def fits(lines: list[str], columns: int = 80) -> None:
    too_wide = [line for line in lines if len(line.rstrip()) > columns]
    assert not too_wide, too_wide


def test_lists_fit_80_columns_with_every_id_whole(
    make_server: Callable[..., BurrowServer],
    start_agent: Callable[..., Agent],  # noqa: F811
) -> None:
    server = make_server()
    burrow(
        "admin",
        "seed",
        "--account",
        "admin@example.com",
        "--credentials",
        "5",
        "--data-dir",
        str(server.data_dir),
    )
    long = "the staging agent on the build machine in the basement, " * 2
    made = data(
        cli(server, "credentials", "create", "--description", long, "--acl", "bind:*.cli.example", "--json")
    )
    start_agent(
        server,
        made["token"],
        [
            {"name": "web", "kind": "http", "domain": "app.cli.example"},
            {"name": "api", "kind": "http", "domain": "api.cli.example"},
        ],
    )
    credentials = data(cli(server, "credentials", "list", "--json"))["credentials"]
    sessions = data(cli(server, "tunnel-sessions", "list", "--json"))["tunnel_sessions"]
    tunnels = data(cli(server, "tunnels", "list", "--json"))["tunnels"]
    assert len(credentials) == 6 and len(sessions) == 1 and len(tunnels) == 2

    lines, _ = on_terminal(server, "credentials", "list")
    fits(lines)
    # A header and a line a row, but for the long description, folded over a few lines.
    assert len(lines) <= 1 + 6 + 3, lines
    for credential in credentials:
        [line] = [line for line in lines if credential["id"] in line]
        if credential["description"].startswith("seed"):
            assert credential["description"] in line and credential["created_at"] in line
    assert "description" in lines[0] and "acl" in lines[0]

    lines, _ = on_terminal(server, "tunnel-sessions", "list")
    fits(lines)
    assert len(lines) == 2, lines
    assert sessions[0]["id"] in lines[1] and sessions[0]["ip"] in lines[1]

    lines, _ = on_terminal(server, "tunnels", "list")
    fits(lines)
    assert len(lines) == 3, lines
    for tunnel in tunnels:
        [line] = [line for line in lines if tunnel["id"] in line]
        assert tunnel["public_url"] in line

    endpoints = data(cli(server, "endpoints", "list", "--json"))["endpoints"]
    assert sorted(e["tunnel"]["id"] for e in endpoints) == sorted(t["id"] for t in tunnels)
    lines, _ = on_terminal(server, "endpoints", "list")
    fits(lines)
    assert len(lines) == 3, lines
    for endpoint in endpoints:
        [line] = [line for line in lines if endpoint["id"] in line]
        assert endpoint["url"] in line
    shown = data(cli(server, "endpoints", "get", endpoints[0]["id"], "--json"))
    assert shown["id"] == endpoints[0]["id"] and shown["type"] == "agent"

    # The columns left out at 80 are there when the terminal is wide enough, and in JSON.
    lines, error = on_terminal(server, "credentials", "list", columns=200)
    assert "owner_id" in lines[0] and "Not shown" not in error
    lines, error = on_terminal(server, "credentials", "list")
    assert "owner_id" not in lines[0] and "owner_id" in error and "-o json" in error


def test_an_empty_list_says_so_on_stderr_and_more_pages_say_how(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server()
    for command in ("tunnels", "tunnel-sessions", "endpoints", "credentials"):
        empty = cli(server, command, "list")  # in a pipe
        assert empty.returncode == 0 and empty.stdout == ""
        assert empty.stderr.strip() == f"No {command.replace('-', ' ')} found."
    assert data(cli(server, "tunnels", "list", "--json"))["tunnels"] == []  # JSON says so itself

    burrow(
        "admin",
        "seed",
        "--account",
        "admin@example.com",
        "--credentials",
        "5",
        "--data-dir",
        str(server.data_dir),
    )
    seen: list[str] = []
    arguments = ["credentials", "list", "--limit", "2"]
    for _ in range(3):
        page = cli(server, *arguments)
        assert page.returncode == 0
        ids = [line.split("\t")[0] for line in page.stdout.splitlines()]
        seen += ids
        if len(seen) == 5:
            assert "More" not in page.stderr  # the last page
            break
        hint = re.search(r"--before-id (\S+)", page.stderr)
        assert hint and hint.group(1) == ids[-1] and "--all" in page.stderr, page.stderr
        arguments = ["credentials", "list", "--limit", "2", "--before-id", hint.group(1)]
    assert len(set(seen)) == 5
    every = cli(server, "credentials", "list", "--all", "--limit", "2")
    assert len(every.stdout.splitlines()) == 5 and "More" not in every.stderr


def _option_names(command: Any) -> list[str]:
    return [name for param in command.params for name in (*param.opts, *param.secondary_opts)]


def test_help_at_80_columns_shows_every_option_name_whole() -> None:
    group: Any = typer.main.get_command(app)  # typer's own click
    for path in (["serve"], ["credentials", "list"], ["admin", "seed"]):
        command: Any = group
        for name in path:
            command = command.commands[name]
        lines, _ = on_terminal(None, *path, "--help")
        fits(lines)
        text = "\n".join(lines)
        assert "…" not in text
        words = set(re.findall(r"--?[\w-]+", text))
        missing = [name for name in _option_names(command) if name not in words]
        assert not missing, (path, missing)
