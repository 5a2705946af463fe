"""Two ``burrow serve`` on one PostgreSQL, each with its own data directory: one identity."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.edge.conftest import Agent
from tests.harness import BurrowServer, burrow

pytestmark = pytest.mark.e2e  # burrow serve and the CLI, as processes


def test_nodes_sharing_the_secret_share_tokens_and_the_agent_ca(
    postgres_url: str, make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    first = make_server(env={"BURROW_DATABASE_URL": postgres_url})
    # The second node gets, in the environment, exactly what the first node's secret.key holds.
    key = (first.data_dir / "secret.key").read_text()
    second = make_server(
        admin_email="second@example.com",
        env={"BURROW_DATABASE_URL": postgres_url, "BURROW_SECRET_KEY": key},
    )
    assert not (second.data_dir / "secret.key").exists()
    with first.client() as http:
        made_key = http.post("/api_keys", json={"description": "made on the first node"}).json()
        made_credential = http.post("/credentials", json={"description": "agent", "acl": []}).json()
    with second.client(made_key["token"]) as http:
        listed = http.get("/credentials")
        assert listed.status_code == 200, listed.text
        assert [c["id"] for c in listed.json()["credentials"]] == [made_credential["id"]]

    # One CA: an agent that trusts the first node's ca.pem connects to the second node.
    assert first.ca_path.read_bytes() == second.ca_path.read_bytes()
    agent = start_agent(
        second,
        made_credential["token"],
        [{"name": "web", "kind": "http", "domain": "shared.burrow.localhost"}],
        ca=str(first.ca_path),
    )
    assert agent.url("web").startswith("http://shared.burrow.localhost")
    served = httpx.get(f"http://{second.http_addr}/", headers={"Host": "shared.burrow.localhost"}, timeout=30)
    assert served.status_code == 200 and served.json()["service"] == "http"
    # Each node its own server certificate, from the shared CA.
    assert (first.data_dir / "server.pem").read_bytes() != (second.data_dir / "server.pem").read_bytes()


def said(process: subprocess.CompletedProcess[str]) -> str:
    return " ".join(process.stderr.split())  # the terminal wraps lines


def test_a_node_with_another_secret_refuses_to_start(
    postgres_url: str, make_server: Callable[..., BurrowServer], tmp_path: Path
) -> None:
    make_server("--no-edge", env={"BURROW_DATABASE_URL": postgres_url})
    own_secret_file = {"BURROW_DATABASE_URL": postgres_url}  # a fresh data dir makes its own secret.key
    another_key = {**own_secret_file, "BURROW_SECRET_KEY": secrets.token_hex(32)}
    for env, data_dir in ((own_secret_file, "fresh"), (another_key, "keyed")):
        for command in (["init", "--admin-email", "x@example.com"], ["serve", "--api-addr", "127.0.0.1:0"]):
            path = str(tmp_path / f"refused-{data_dir}-{command[0]}")
            refused = burrow(*command, "--data-dir", path, env=env, check=False)
            assert refused.returncode == 2, refused.stderr
            assert "secret key differs from the one this database was first used with" in said(refused)
            assert "set BURROW_SECRET_KEY to the cluster's key" in said(refused)


def test_a_secret_in_another_format_is_refused(tmp_path: Path) -> None:
    raw = {"BURROW_SECRET_KEY": "correct horse battery staple"}
    refused = burrow(
        "init", "--data-dir", str(tmp_path), "--admin-email", "x@example.com", env=raw, check=False
    )
    assert refused.returncode == 2
    assert "BURROW_SECRET_KEY must be 64 hexadecimal digits" in said(refused)
    assert not (tmp_path / "burrow.db").exists() and not (tmp_path / "secret.key").exists()
