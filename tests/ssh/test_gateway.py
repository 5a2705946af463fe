"""The SSH tunnel gateway with Debian's OpenSSH client (``ssh``, installed by ``make test``)
against a real ``burrow serve --ssh-addr``: keys registered under /ssh_credentials, tunnels
reached through Burrow's public listeners, the edge's ACL, policy, revocation and limits."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.edge.test_cluster import cluster  # noqa: F401 - the fixture
from tests.harness import BurrowServer, free_port, local_http_service

pytestmark = pytest.mark.e2e

SSH = shutil.which("ssh") or "/usr/bin/ssh"


@dataclass
class Key:
    path: Path
    public: str


def make_key(directory: Path, name: str = "id_ed25519") -> Key:
    key = ed25519.Ed25519PrivateKey.generate()
    path = directory / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return Key(path, public.decode())


class SshTunnel:
    """One ``ssh -R ... v2@host command`` process and what it printed."""

    def __init__(
        self,
        server: BurrowServer,
        ssh_port: int,
        key: Key,
        forward: str,
        *command: str,
        user: str = "v2",
        options: tuple[str, ...] = (),
    ) -> None:
        if not Path(SSH).exists():
            pytest.fail("OpenSSH's client is missing: run 'make test' (it installs openssh-client)")
        known_hosts = key.path.parent / "known_hosts"
        self.process = subprocess.Popen(
            [
                SSH,
                "-F",
                "/dev/null",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                f"UserKnownHostsFile={known_hosts}",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "PreferredAuthentications=publickey",
                "-i",
                str(key.path),
                "-p",
                str(ssh_port),
                *options,
                "-R",
                forward,
                f"{user}@127.0.0.1",
                *command,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.stdout = b""
        self.stderr = b""

    def read_until(self, text: str, timeout: float = 15) -> str:
        """Output (stdout and stderr) until ``text`` shows, or the process ends."""
        deadline = time.monotonic() + timeout
        streams = [s for s in (self.process.stdout, self.process.stderr) if s is not None]
        while text not in self.output and time.monotonic() < deadline:
            ready, _, _ = select.select(streams, [], [], 0.1)
            for stream in ready:
                data = os.read(stream.fileno(), 65536)
                if stream is self.process.stdout:
                    self.stdout += data
                else:
                    self.stderr += data
            if not ready and self.process.poll() is not None:
                break
        return self.output

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).decode(errors="replace")

    def url(self) -> str:
        output = self.read_until("Forwarding")
        for line in output.splitlines():
            if line.startswith("Forwarding"):
                return line.split()[1]
        raise AssertionError(f"no URL in the session's output:\n{output}")

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self.read_until("\0", timeout=0.5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def gateway(make_server: object) -> tuple[BurrowServer, int]:
    ssh_port = free_port()
    server = make_server("--ssh-addr", f"127.0.0.1:{ssh_port}")  # type: ignore[operator]
    return server, ssh_port


@pytest.fixture
def tunnels() -> Iterator[list[SshTunnel]]:
    started: list[SshTunnel] = []
    yield started
    for tunnel in started:
        tunnel.close()


def register(server: BurrowServer, key: Key, acl: list[str] | None = None) -> str:
    with server.client() as http:
        answer = http.post("/ssh_credentials", json={"public_key": key.public, "acl": acl or []})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def get_through(server: BurrowServer, url: str, **options: object) -> httpx.Response:
    host = httpx.URL(url).host
    return httpx.get(
        f"http://{server.http_addr}/hello",
        headers={"Host": host},
        timeout=10,
        **options,  # type: ignore[arg-type]
    )


def test_random_http_tunnel_reaches_the_local_service_and_is_listed(
    gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    credential_id = register(server, key)
    with local_http_service(lambda request: f"hi from {request.path}") as port:
        tunnel = SshTunnel(server, ssh_port, key, f"0:localhost:{port}", "http")
        tunnels.append(tunnel)
        url = tunnel.url()
        http_port = server.http_addr.split(":")[1]
        assert url.startswith("http://") and url.endswith(f".burrow.localhost:{http_port}")
        answer = get_through(server, url)
        assert answer.status_code == 200 and answer.text == "hi from /hello"
        with server.client() as http:
            sessions = http.get("/tunnel_sessions").json()["tunnel_sessions"]
            listed = http.get("/tunnels").json()["tunnels"]
            endpoints = http.get("/endpoints").json()["endpoints"]
        assert [s["credential"]["id"] for s in sessions] == [credential_id]
        assert sessions[0]["agent_version"].startswith("SSH-2.0-OpenSSH")
        assert sessions[0]["transport"] == "ssh"  # ngrok's value for its SSH gateway's sessions
        assert [t["public_url"] for t in listed] == [url]
        assert [e["url"] for e in endpoints] == [url]
        assert listed[0]["tunnel_session"]["id"] == sessions[0]["id"]
        # The client leaving ends the session.
        tunnel.close()
        deadline = time.monotonic() + 5
        with server.client() as http:
            while http.get("/tunnel_sessions").json()["tunnel_sessions"]:
                assert time.monotonic() < deadline, "the session outlived its ssh client"
                time.sleep(0.1)
        assert get_through(server, url).status_code == 404


def test_fixed_hostname_inside_the_acl_and_outside_it(
    gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    credential_id = register(server, key, ["bind:*.allowed.burrow.localhost"])
    with local_http_service(lambda request: "fixed") as port:
        inside = SshTunnel(server, ssh_port, key, f"app.allowed.burrow.localhost:80:localhost:{port}", "http")
        tunnels.append(inside)
        url = inside.url()
        assert httpx.URL(url).host == "app.allowed.burrow.localhost"
        assert get_through(server, url).text == "fixed"
        outside = SshTunnel(server, ssh_port, key, f"app.other.burrow.localhost:80:localhost:{port}", "http")
        tunnels.append(outside)
        assert outside.wait(15) != 0
        assert "ERR_NGROK_316" in outside.output
        assert "does not permit binding this name: app.other.burrow.localhost" in outside.output
        # The refused session is gone; the allowed one still serves.
        assert get_through(server, url).text == "fixed"
        with server.client() as http:
            assert len(http.get("/tunnel_sessions").json()["tunnel_sessions"]) == 1
            # An ACL that no longer allows the name stops the tunnel, and so the session.
            narrowed = http.patch(
                f"/ssh_credentials/{credential_id}", json={"acl": ["bind:x.burrow.localhost"]}
            )
            assert narrowed.status_code == 200
        assert inside.wait(5) != 0 and "ERR_NGROK_316" in inside.output
        assert get_through(server, url).status_code == 404


def test_tcp_tunnel(gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    register(server, key)
    with echo_service() as port:
        tunnel = SshTunnel(server, ssh_port, key, f"0:localhost:{port}", "tcp")
        tunnels.append(tunnel)
        url = tunnel.url()
        assert url == f"tcp://127.0.0.1:{server.tcp_port}"
        with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=10) as client:
            client.sendall(b"ping over ssh")
            assert client.recv(100) == b"PING OVER SSH"


def test_tls_tunnel_is_not_decrypted(
    gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    register(server, key)
    with echo_service() as port:
        tunnel = SshTunnel(server, ssh_port, key, f"secure.burrow.localhost:443:localhost:{port}", "tls")
        tunnels.append(tunnel)
        url = tunnel.url()
        assert url.startswith("tls://secure.burrow.localhost")
        # The local service gets the client's TLS bytes as sent: here it echoes the ClientHello back.
        host, tls_port = server.tls_addr.split(":")
        with socket.create_connection((host, int(tls_port)), timeout=10) as raw:
            context = ssl.create_default_context()
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = context.wrap_bio(incoming, outgoing, server_hostname="secure.burrow.localhost")
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            hello = outgoing.read()
            raw.sendall(hello)
            echoed = b""
            while len(echoed) < len(hello):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                echoed += chunk
        assert echoed == hello.upper()


def test_basic_auth_is_enforced(
    gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    register(server, key)
    with local_http_service(lambda request: "secret page") as port:
        tunnel = SshTunnel(
            server, ssh_port, key, f"0:localhost:{port}", "http", "--basic-auth", "'alice:correct horse'"
        )
        tunnels.append(tunnel)
        url = tunnel.url()
        assert get_through(server, url).status_code == 401
        assert get_through(server, url, auth=("alice", "wrong")).status_code == 401
        allowed = get_through(server, url, auth=("alice", "correct horse"))
        assert allowed.status_code == 200 and allowed.text == "secret page"
        unsupported = SshTunnel(server, ssh_port, key, f"0:localhost:{port}", "http", "--oauth", "google")
        tunnels.append(unsupported)
        assert unsupported.wait(15) != 0 and "'--oauth' is not supported" in unsupported.output


def test_deleting_the_ssh_credential_ends_the_session_within_a_second(
    gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    credential_id = register(server, key)
    with local_http_service(lambda request: "soon gone") as port:
        tunnel = SshTunnel(server, ssh_port, key, f"0:localhost:{port}", "http")
        tunnels.append(tunnel)
        url = tunnel.url()
        assert get_through(server, url).status_code == 200
        with server.client() as http:
            assert http.delete(f"/ssh_credentials/{credential_id}").status_code == 204
        deleted_at = time.monotonic()
        tunnel.wait(5)
        assert time.monotonic() - deleted_at < 1.0
        assert f"credential {credential_id} revoked" in tunnel.output
        assert get_through(server, url).status_code == 404
        with server.client() as http:
            assert http.get("/tunnel_sessions").json()["tunnel_sessions"] == []
        # The key no longer authenticates.
        again = SshTunnel(server, ssh_port, key, f"0:localhost:{port}", "http")
        tunnels.append(again)
        assert again.wait(15) == 255 and "Permission denied (publickey)" in again.output


def test_an_unknown_key_is_refused_and_guessing_is_throttled(
    make_server: object, tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    ssh_port = free_port()
    server: BurrowServer = make_server(  # type: ignore[operator]
        "--ssh-addr", f"127.0.0.1:{ssh_port}", "--auth-failure-limit", "3/minute"
    )
    known = make_key(tmp_path, "known")
    register(server, known)
    for attempt in range(4):
        guess = make_key(tmp_path, f"guess{attempt}")
        refused = SshTunnel(server, ssh_port, guess, "0:localhost:9", "http")
        tunnels.append(refused)
        assert refused.wait(15) == 255
        assert "Permission denied (publickey)" in refused.output
    # Past the limit, the address's keys are checked at a crawl: a guess now is refused
    # without being checked, and says why.
    throttled = SshTunnel(server, ssh_port, make_key(tmp_path, "late"), "0:localhost:9", "http")
    tunnels.append(throttled)
    assert throttled.wait(15) == 255
    assert "ERR_NGROK_90429" in throttled.output
    with server.client() as http:
        assert http.get("/tunnel_sessions").json()["tunnel_sessions"] == []


def test_https_endpoint_stop_through_the_api_and_the_user_v2(
    gateway: tuple[BurrowServer, int], tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    server, ssh_port = gateway
    key = make_key(tmp_path)
    register(server, key)
    with local_http_service(lambda request: f"over https {request.headers['Host']}") as port:
        tunnel = SshTunnel(server, ssh_port, key, f"web.burrow.localhost:443:localhost:{port}", "http")
        tunnels.append(tunnel)
        url = tunnel.url()
        https_port = int(server.https_addr.split(":")[1])
        assert url == f"https://web.burrow.localhost:{https_port}"
        context = ssl.create_default_context(cafile=str(server.ca_path))
        raw = socket.create_connection(("127.0.0.1", https_port), timeout=10)
        with context.wrap_socket(raw, server_hostname="web.burrow.localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: web.burrow.localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while data := tls.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"over https web.burrow.localhost")
        with server.client() as http:
            (session,) = http.get("/tunnel_sessions").json()["tunnel_sessions"]
            assert http.post(f"/tunnel_sessions/{session['id']}/stop").status_code == 204
        stopped_at = time.monotonic()
        assert tunnel.wait(5) != 0
        assert time.monotonic() - stopped_at < 1.5  # the bridge answers the Stop command at once
        with server.client() as http:
            assert http.get("/tunnel_sessions").json()["tunnel_sessions"] == []
    other_user = SshTunnel(server, ssh_port, key, "0:localhost:9", "http", user="root")
    tunnels.append(other_user)
    assert other_user.wait(15) == 255 and "ERR_NGROK_90468" in other_user.output


@contextlib.contextmanager
def echo_service() -> Iterator[int]:
    """A local TCP service answering each read upper-cased; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data.upper())

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(2)


def test_connections_per_address_and_the_authentication_timeout(make_server: object) -> None:
    ssh_port = free_port()
    make_server(  # type: ignore[operator]
        "--ssh-addr",
        f"127.0.0.1:{ssh_port}",
        "--agent-max-connections-per-client",
        "2",
        "--agent-auth-timeout",
        "1",
    )
    held = [socket.create_connection(("127.0.0.1", ssh_port), timeout=5) for _ in range(2)]
    try:
        for connection in held:
            assert connection.recv(64).startswith(b"SSH-2.0-Burrow")
        third = socket.create_connection(("127.0.0.1", ssh_port), timeout=5)
        with third:
            assert b"SSH-2.0" not in _read_to_end(third, 2)  # closed at once, before any greeting
        # Connections that do not authenticate within the timeout are closed.
        started = time.monotonic()
        for connection in held:
            _read_to_end(connection, 5)
        assert time.monotonic() - started < 3
        # Their slots are free again.
        with socket.create_connection(("127.0.0.1", ssh_port), timeout=5) as again:
            assert again.recv(64).startswith(b"SSH-2.0-Burrow")
    finally:
        for connection in held:
            connection.close()


def _read_to_end(connection: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes the connection (fails if it does not in time)."""
    connection.settimeout(timeout)
    received = b""
    while data := connection.recv(65536):
        received += data
    return received


def test_the_gateway_runs_with_one_worker_only(tmp_path: Path) -> None:
    from tests.harness import burrow, edge_args

    refused = burrow(
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--api-addr",
        f"127.0.0.1:{free_port()}",
        *edge_args(),
        "--ssh-addr",
        f"127.0.0.1:{free_port()}",
        "--workers",
        "2",
        check=False,
    )
    assert refused.returncode != 0
    assert "--ssh-addr runs with one worker" in refused.stderr + refused.stdout


def test_a_session_without_a_command_ends(
    make_server: object, tunnels: list[SshTunnel], tmp_path: Path
) -> None:
    ssh_port = free_port()
    server: BurrowServer = make_server(  # type: ignore[operator]
        "--ssh-addr", f"127.0.0.1:{ssh_port}", "--agent-auth-timeout", "1"
    )
    key = make_key(tmp_path)
    register(server, key)
    silent = SshTunnel(server, ssh_port, key, "0:localhost:9", options=("-N",))
    tunnels.append(silent)
    assert silent.wait(10) == 255
    assert "no command: give http, tcp or tls" in silent.output
    with server.client() as http:
        assert http.get("/tunnel_sessions").json()["tunnel_sessions"] == []


def test_a_cluster_treats_an_ssh_session_as_an_agent_session(
    cluster: Callable[..., list[BurrowServer]],  # noqa: F811 - the fixture
    tunnels: list[SshTunnel],
    tmp_path: Path,
) -> None:
    ssh_port = free_port()
    a, b = cluster(2, relay=True, extra=[["--ssh-addr", f"127.0.0.1:{ssh_port}"], []])
    key = make_key(tmp_path)
    credential_id = register(a, key)
    with local_http_service(lambda request: "served from the ssh client of node0") as port:
        tunnel = SshTunnel(a, ssh_port, key, f"far.burrow.localhost:80:localhost:{port}", "http")
        tunnels.append(tunnel)
        url = tunnel.url()
        # The other node lists the session and relays public traffic to the node holding it.
        with b.client() as http:
            (session,) = http.get("/tunnel_sessions").json()["tunnel_sessions"]
        assert session["credential"]["id"] == credential_id
        assert get_through(b, url).text == "served from the ssh client of node0"
        # Deleting the key through the other node ends the session within a second.
        with b.client() as http:
            assert http.delete(f"/ssh_credentials/{credential_id}").status_code == 204
        deleted_at = time.monotonic()
        tunnel.wait(5)
        assert time.monotonic() - deleted_at < 1.0 and "revoked" in tunnel.output
