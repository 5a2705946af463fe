"""OpenSSH reverse port forwarding (``ssh -R``) on loopback: the peer bench/edge.py compares
Burrow's tunnel with.

Everything is made per run in a directory of its own: a host key, a client key, an sshd
configuration that lets that one key do remote forwarding to the listed loopback ports and
nothing else. sshd runs in the foreground (``-D -e``) on a free loopback port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from common import free_port, need, wait_for_port

CIPHER = "aes128-gcm@openssh.com"  # AES-GCM, like the agent's TLS (TLS_AES_256_GCM_SHA384): both on AES-NI

SSHD_CONFIG = """\
ListenAddress 127.0.0.1:{port}
HostKey {work}/host_key
AuthorizedKeysFile {work}/authorized_keys
PidFile none
UsePAM no
PermitRootLogin prohibit-password
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding remote
PermitListen {listen}
GatewayPorts no
AllowAgentForwarding no
AllowStreamLocalForwarding no
X11Forwarding no
PermitTTY no
PermitTunnel no
StrictModes no
UseDNS no
LogLevel ERROR
Ciphers {cipher}
"""


def wait_for_sshd(port: int) -> None:
    """Until sshd answers with its banner. The probe says its own version line before closing:
    a bare connect and close would make sshd log a key-exchange error."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                if probe.recv(256).startswith(b"SSH-"):
                    probe.sendall(b"SSH-2.0-burrow-bench-probe\r\n")
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd on port {port} did not answer")


def start_ssh_forwarding(
    work: Path, forwards: dict[int, int]
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """sshd, and an ``ssh -N -R`` client whose session forwards each remote loopback port
    (key) to a local loopback port (value); returns once every remote port accepts
    connections. The caller stops both processes."""
    sshd = need("sshd", "openssh-server")
    ssh = need("ssh", "openssh-client")
    keygen = need("ssh-keygen", "openssh-client")
    work.mkdir(mode=0o700)
    for key in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(work / key)], check=True)
    shutil.copy(work / "client_key.pub", work / "authorized_keys")
    port = free_port()
    listen = " ".join(f"127.0.0.1:{remote}" for remote in forwards)
    (work / "sshd_config").write_text(SSHD_CONFIG.format(port=port, work=work, listen=listen, cipher=CIPHER))
    # sshd's privilege-separation directory; Debian's init script makes it, a bare run must.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(work / "sshd_config")])
    wait_for_sshd(port)
    command = [
        ssh, "-N", "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes",
        "-i", str(work / "client_key"), "-c", CIPHER, "-o", "Compression=no", "-p", str(port),
    ]  # fmt: skip
    for remote, local in forwards.items():
        command += ["-R", f"127.0.0.1:{remote}:127.0.0.1:{local}"]
    client = subprocess.Popen([*command, "root@127.0.0.1"])
    try:
        for remote in forwards:
            wait_for_port(remote)
    except RuntimeError:
        for process in (client, server):
            process.terminate()
            process.wait()
        raise
    return server, client
