"""docs/deploy.md, run: a production install serving deploy/burrow.toml, the systemd unit
verified, an agent dialling the server by name, a backup of a running server restored into
a new data directory serving the old API key and agent authtoken."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from burrow.domain import names
from burrow.edge.certs import ensure_server_certificate
from tests.edge.conftest import Agent
from tests.harness import ROOT, BurrowServer, burrow, edge_args, free_port, snapshot

pytestmark = pytest.mark.e2e
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"  # Debian's systemd package (make test installs it)
DEV_TOOLS = ("pytest", "ruff", "mypy", "hypothesis", "playwright")


@pytest.fixture(scope="module")
def production_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """docs/deploy.md, step 1: the package (from a copy of the source, as from an archive)
    installed into a new virtual environment, without extras; its bin directory."""
    base = tmp_path_factory.mktemp("install")
    source = base / "burrow-src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = base / "opt-burrow"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-5000:]
    yield venv / "bin"


def test_a_production_install_serves_the_example_config(tmp_path: Path, production_install: Path) -> None:
    bin_dir = production_install
    version = subprocess.run(
        [str(bin_dir / "burrow"), "--version"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"burrow \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout
    listed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "burrow==" in listed
    for tool in DEV_TOOLS:
        assert f"\n{tool}==" not in "\n" + listed, f"a dev tool came with the production install: {tool}"
    # deploy/burrow.toml, its listeners moved to free loopback ports (options win over the file).
    api, metrics = free_port(), free_port()
    edge = edge_args()
    agent_port = edge[edge.index("--agent-addr") + 1].rsplit(":", 1)[1]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                *[str(bin_dir / "burrow"), "serve", "--config", str(ROOT / "deploy" / "burrow.toml")],
                *["--data-dir", str(tmp_path / "data"), "--api-addr", f"127.0.0.1:{api}", *edge],
                *["--tcp-host", "127.0.0.1", "--metrics-addr", f"127.0.0.1:{metrics}"],
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={key: value for key, value in os.environ.items() if not key.startswith("BURROW_")},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        text = log_path.read_text()
        # The file's settings took effect: the agent name, the domain, the public URL.
        assert f'"server_addr":"connect.tunnels.example.com:{agent_port}"' in text, text
        certificate = x509.load_pem_x509_certificate((tmp_path / "data" / "server.pem").read_bytes())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "connect.tunnels.example.com" in san.get_values_for_type(x509.DNSName)
        token = re.findall(r"\b\w{27}_\w{28}\b", text)[0]  # the first run's key, on stdout
        reserved = httpx.post(
            f"http://127.0.0.1:{api}/reserved_domains",
            json={"domain": "app.tunnels.example.com"},
            headers={"Authorization": f"Bearer {token}", "Ngrok-Version": "2"},
        )
        assert reserved.status_code == 201, reserved.text
        assert reserved.json()["uri"].startswith("https://api.tunnels.example.com/reserved_domains/")
        # Every family the server exposes is in docs/deploy.md's table (the fast tier checks
        # the table against the code).
        scraped = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        typed = re.findall(r"^# TYPE (burrow_\w+) (\w+)$", scraped, re.MULTILINE)
        # Counters are exposed as NAME_total; the guide's table names the family.
        families = {name.removesuffix("_total") if kind == "counter" else name for name, kind in typed}
        guide = (ROOT / "docs" / "deploy.md").read_text()
        assert len(families) >= 15
        for family in families:
            if family.endswith("_created") and "`_created`" in guide:  # prometheus_client's, per histogram
                family = family.removesuffix("_created")
            assert f"| `{family}` |" in guide, family
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path, production_install: Path) -> None:
    # verify checks that ExecStart's program exists: the test's production install stands in
    # for /opt/burrow.
    text = (ROOT / "deploy" / "burrow.service").read_text()
    assert "ExecStart=/opt/burrow/bin/burrow serve" in text
    unit = tmp_path / "burrow.service"
    unit.write_text(text.replace("/opt/burrow/bin/", f"{production_install}/"))
    verified = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0 and verified.stderr == "" and verified.stdout == "", verified
    # verify does fail: an unknown key is a warning, which the check above refuses.
    broken = tmp_path / "broken" / "burrow.service"
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("[Service]\n", "[Service]\nNoSuchKey=1\n"))
    warned = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True, text=True, timeout=120
    )
    assert "NoSuchKey" in warned.stderr


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


def test_an_older_burrow_serve_refuses_a_newer_schema_with_a_clear_error(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "data")  # burrow init: the schema at this Burrow's newest
    with contextlib.closing(sqlite3.connect(server.data_dir / "burrow.db")) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    before = snapshot(server.data_dir / "burrow.db")
    refused = burrow(
        "serve", "--data-dir", str(server.data_dir), "--api-addr", f"127.0.0.1:{free_port()}", *edge_args(),
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr  # the unit's RestartPreventExitStatus
    [line] = [json.loads(text) for text in refused.stderr.splitlines() if "9999_future" in text]
    assert line["level"] == "error" and "a newer Burrow migrated it" in line["message"]
    assert "Traceback" not in refused.stderr
    assert snapshot(server.data_dir / "burrow.db") == before  # no migration, no first-run account
