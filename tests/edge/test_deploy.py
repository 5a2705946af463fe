"""docs/deploy.md, run: a backup of a running server restored into a new data directory serves
the old API key and the old agent authtoken (the agent verifying the restored CA)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from burrow.domain import names
from burrow.edge.certs import ensure_server_certificate
from tests.edge.conftest import Agent
from tests.harness import BurrowServer, burrow, free_port

pytestmark = pytest.mark.e2e


def test_a_backup_restored_into_a_new_data_directory_serves_the_old_tokens(
    tmp_path: Path, start_agent: Callable[..., Agent]
) -> None:
    old = BurrowServer(tmp_path / "old").start()
    try:
        with old.client() as http:
            made = http.post("/credentials", json={"description": "agent", "acl": ["bind:*.example.com"]})
            assert made.status_code == 201, made.text
        credential = made.json()
        old_ca = (old.data_dir / "ca.pem").read_bytes()
        # While the server runs, as from cron.
        burrow(
            "admin", "backup", "--data-dir", str(old.data_dir), "--output", str(tmp_path / "burrow.backup")
        )
    finally:
        old.stop()
    burrow(
        "admin", "restore", "--data-dir", str(tmp_path / "new"), "--input", str(tmp_path / "burrow.backup")
    )
    new = BurrowServer(tmp_path / "new", api_key=old.api_key).start()
    try:
        with new.client() as http:  # the old API key, against the REST API
            listed = http.get("/credentials")
            assert listed.status_code == 200, listed.text
            assert [item["id"] for item in listed.json()["credentials"]] == [credential["id"]]
        assert (new.data_dir / "ca.pem").read_bytes() == old_ca
        # The old authtoken; the agent trusts the CA it trusted before the restore.
        agent = start_agent(
            new, credential["token"], [{"name": "web", "kind": "http", "domain": "a.example.com"}]
        )
        assert agent.url("web").startswith("http://a.example.com")
    finally:
        new.stop()


def test_an_sdk_agent_connects_by_the_servers_name_and_verifies_it(
    tmp_path: Path, start_agent: Callable[..., Agent]
) -> None:
    # The machine's own name: it resolves (to a local address) without touching the system,
    # unlike *.localhost, which only some resolvers answer.
    name = socket.gethostname().lower()
    try:
        address = socket.gethostbyname(name)
    except OSError as error:
        pytest.fail(f"this machine's name {name!r} does not resolve ({error}): the test needs it to")
    assert "." not in name or names.is_hostname(name), name
    port = free_port()
    server = BurrowServer(tmp_path / "data").start("--agent-addr", f"{address}:{port}", "--agent-name", name)
    try:
        listening = server.wait_log(lambda entry: entry.get("message") == "edge listening")
        assert listening["server_addr"] == f"{name}:{port}"
        certificate = x509.load_pem_x509_certificate((server.data_dir / "server.pem").read_bytes())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in san.get_values_for_type(x509.DNSName)
        with server.client() as http:
            made = http.post("/credentials", json={"acl": ["bind:*.example.com"]}).json()
        endpoint = [{"name": "web", "kind": "http", "domain": "named.example.com"}]
        agent = start_agent(server, made["token"], endpoint, server_addr=f"{name}:{port}")
        assert agent.url("web").startswith("http://named.example.com")
        # It verified: trusting another CA, the same agent is refused at the handshake.
        other = ensure_server_certificate(tmp_path / "other")
        refused = start_agent(server, made["token"], [], server_addr=f"{name}:{port}", ca=str(other.ca_path))
        assert "tls handshake error" in refused.ready.get("error", []), refused.ready
        # No tenant binds the agent's name as a tunnel hostname.
        with server.client() as http:
            taken = http.post("/credentials", json={"acl": []}).json()
        squat = [{"name": "web", "kind": "http", "domain": name}]
        refused_name = start_agent(server, taken["token"], squat, server_addr=f"{name}:{port}")
        assert "ERR_NGROK_326" in refused_name.error("web"), refused_name.ready
    finally:
        server.stop()
