"""``burrow api-keys|credentials|bot-users|login`` against a real server, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BURROW, BurrowServer

# Runs `burrow` processes (serve, the CLI): the e2e tier.
pytestmark = pytest.mark.e2e


def cli(
    server: BurrowServer | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BURROW_")}
    environment["COLUMNS"] = "200"
    if server is not None:
        environment.update({"BURROW_API_KEY": server.api_key, "BURROW_API_URL": server.base_url})
    environment.update(env or {})
    return subprocess.run([BURROW, *args], capture_output=True, text=True, timeout=60, env=environment)


def data(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_credentials_every_command(burrow_server: BurrowServer) -> None:
    made = data(
        cli(
            burrow_server,
            "credentials",
            "create",
            "--description",
            "cli",
            "--acl",
            "bind:*.example.com",
            "--acl",
            "bind:k=v",
            "--json",
        )
    )
    assert made["acl"] == ["bind:*.example.com", "bind:k=v"] and made["token"]
    shown = cli(burrow_server, "credentials", "get", made["id"])
    assert shown.returncode == 0 and made["id"] in shown.stdout and made["token"] not in shown.stdout
    updated = data(cli(burrow_server, "credentials", "update", made["id"], "--acl", "*", "--json"))
    assert updated["acl"] == ["*"] and updated["token"] is None and updated["description"] == "cli"
    listed = data(cli(burrow_server, "credentials", "list", "--json"))
    assert made["id"] in [c["id"] for c in listed]
    table = cli(burrow_server, "credentials", "list")
    assert made["id"] in table.stdout and "description" in table.stdout
    deleted = cli(burrow_server, "credentials", "delete", made["id"])
    assert deleted.returncode == 0 and made["id"] in deleted.stderr
    missing = cli(burrow_server, "credentials", "get", made["id"])
    assert missing.returncode == 1 and "ERR_NGROK_90404" in missing.stderr and missing.stdout == ""


def test_the_token_is_shown_once_with_a_warning(burrow_server: BurrowServer) -> None:
    made = cli(burrow_server, "api-keys", "create", "--description", "human")
    assert made.returncode == 0 and "token" in made.stdout and "shown only once" in made.stderr
    key_id = next(word for word in made.stdout.split() if word.startswith("ak_"))
    again = cli(burrow_server, "api-keys", "get", key_id)
    assert "token" not in again.stdout and "shown only once" not in again.stderr
    assert (
        data(cli(burrow_server, "api-keys", "update", key_id, "--metadata", "m", "--json"))["metadata"] == "m"
    )
    assert key_id in [k["id"] for k in data(cli(burrow_server, "api-keys", "list", "--json"))]
    assert cli(burrow_server, "api-keys", "delete", key_id).returncode == 0


def test_bot_users_every_command(burrow_server: BurrowServer) -> None:
    bot = data(cli(burrow_server, "bot-users", "create", "--name", "ci", "--json"))
    assert bot["active"] is True
    assert (
        data(cli(burrow_server, "bot-users", "update", bot["id"], "--inactive", "--json"))["active"] is False
    )
    assert data(cli(burrow_server, "bot-users", "get", bot["id"], "--json"))["name"] == "ci"
    assert bot["id"] in [b["id"] for b in data(cli(burrow_server, "bot-users", "list", "--json"))]
    assert cli(burrow_server, "bot-users", "delete", bot["id"]).returncode == 0


def test_paging_with_limit_and_all(make_server: Any) -> None:
    server = make_server()
    made = [
        data(cli(server, "credentials", "create", "--description", f"c{i}", "--json"))["id"] for i in range(7)
    ]
    first = data(cli(server, "credentials", "list", "--limit", "3", "--json"))
    assert [c["id"] for c in first] == made[::-1][:3]
    everything = data(cli(server, "credentials", "list", "--limit", "3", "--all", "--json"))
    assert [c["id"] for c in everything] == made[::-1]  # three pages
    picked = data(cli(server, "credentials", "list", "--filter", 'obj.description in ["c1", "c5"]', "--json"))
    assert [c["id"] for c in picked] == [made[5], made[1]]
    older = data(cli(server, "credentials", "list", "--before-id", made[3], "--json"))
    assert [c["id"] for c in older] == made[:3][::-1]


def test_errors_go_to_stderr_with_their_code(burrow_server: BurrowServer) -> None:
    too_long = cli(burrow_server, "credentials", "create", "--description", "x" * 256)
    assert too_long.returncode == 1 and "ERR_NGROK_604" in too_long.stderr and too_long.stdout == ""
    bad_rule = cli(burrow_server, "credentials", "create", "--acl", "nope", "--json")
    assert bad_rule.returncode == 1 and "ERR_NGROK_600" in bad_rule.stderr and bad_rule.stdout == ""
    filtered = cli(burrow_server, "credentials", "list", "--filter", "obj.description ==")
    assert filtered.returncode == 1 and "ERR_NGROK_250" in filtered.stderr
    no_key = cli(None, "credentials", "list")
    assert no_key.returncode == 2 and "API key" in no_key.stderr
    unreachable = cli(
        None, "credentials", "list", "--api-key", burrow_server.api_key, "--api-url", "http://127.0.0.1:9"
    )
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr


def test_login_saves_a_private_config_used_afterwards(burrow_server: BurrowServer, tmp_path: Path) -> None:
    config = tmp_path / "burrow.json"
    env = {"BURROW_CONFIG": str(config)}
    refused = cli(None, "login", "--api-key", "nonsense", "--api-url", burrow_server.base_url, env=env)
    assert refused.returncode == 1 and not config.exists()
    saved = cli(
        None, "login", "--api-key", burrow_server.api_key, "--api-url", burrow_server.base_url, env=env
    )
    assert saved.returncode == 0 and config.stat().st_mode & 0o777 == 0o600
    assert data(cli(None, "credentials", "list", "--json", env=env)) is not None
    assert burrow_server.api_key not in saved.stdout + saved.stderr


def test_flags_override_the_environment(burrow_server: BurrowServer) -> None:
    wrong = {"BURROW_API_KEY": "wrong", "BURROW_API_URL": "http://127.0.0.1:9"}
    result = cli(
        None,
        "credentials",
        "list",
        "--json",
        "--api-key",
        burrow_server.api_key,
        "--api-url",
        burrow_server.base_url,
        env=wrong,
    )
    assert result.returncode == 0


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion_is_available(shell: str) -> None:
    result = subprocess.run(
        [BURROW, "--show-completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )
    assert result.returncode == 0 and "burrow" in result.stdout.lower()


def test_reserved_names_every_command(burrow_server: BurrowServer) -> None:
    domain = data(cli(burrow_server, "reserved-domains", "create", "cli.example.net", "--json"))
    assert domain["id"].startswith("rd_") and domain["domain"] == "cli.example.net"
    updated = data(
        cli(burrow_server, "reserved-domains", "update", domain["id"], "--metadata", "m", "--json")
    )
    assert updated["metadata"] == "m"
    assert data(cli(burrow_server, "reserved-domains", "get", domain["id"], "--json"))["metadata"] == "m"
    listed = data(cli(burrow_server, "reserved-domains", "list", "--json"))
    assert domain["id"] in [d["id"] for d in listed]
    assert cli(burrow_server, "reserved-domains", "delete", domain["id"]).returncode == 0
    addr = data(cli(burrow_server, "reserved-addrs", "create", "--description", "db", "--json"))
    assert addr["id"].startswith("ra_") and addr["addr"].startswith("127.0.0.1:")
    assert (
        data(cli(burrow_server, "reserved-addrs", "update", addr["id"], "--description", "pg", "--json"))[
            "description"
        ]
        == "pg"
    )
    assert addr["id"] in [a["id"] for a in data(cli(burrow_server, "reserved-addrs", "list", "--json"))]
    assert cli(burrow_server, "reserved-addrs", "delete", addr["id"]).returncode == 0
