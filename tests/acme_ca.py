"""A real ACME CA for tests: Debian's ``pebble``, resolving names through
``pebble-challtestsrv`` (every name is 127.0.0.1) or a DNS server the test starts (DNS-01).

The Debian package ships no certificates for pebble's own HTTPS listener: the fixture makes
them with ``cryptography`` and points pebble at them with its JSON config; Burrow trusts them
with ``--acme-ca-bundle``. Pebble's issuing root (what curl verifies Burrow's certificates
against) is served by its management listener at ``/roots/0``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.certs import make_ca, make_certificate
from tests.harness import free_port

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def write_tls_pair(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signs for localhost and 127.0.0.1: (ca, cert, key) paths."""
    ca = make_ca("pebble test listener CA")
    made = make_certificate(("localhost",), ("127.0.0.1",), issuer=ca)
    paths = directory / "listener-ca.pem", directory / "listener.pem", directory / "listener-key.pem"
    for path, pem in zip(paths, (ca.pem(), made.certificate_pem, made.private_key_pem), strict=True):
        path.write_text(pem)
    return paths


@dataclass
class Pebble:
    directory_url: str
    management_url: str
    listener_ca: Path  # what Burrow trusts for the directory (--acme-ca-bundle)
    work: Path

    def root(self) -> Path:
        """Pebble's issuing root (PEM), which curl verifies Burrow's certificates against."""
        path = self.work / "pebble-root.pem"
        if not path.exists():
            pem = httpx.get(f"{self.management_url}/roots/0", verify=self.trust()).text
            path.write_text(pem)
        return path

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.listener_ca))

    def burrow_args(self) -> list[str]:
        return [
            "--acme-email",
            "ops@example.com",
            "--acme-directory",
            self.directory_url,
            "--acme-ca-bundle",
            str(self.listener_ca),
            "--acme-check-seconds",
            "0.5",
        ]


def _stopped(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class PebbleRun:
    """How to start pebble for one test: Burrow's listener ports are pebble's challenge ports."""

    work: Path
    http_port: int
    tls_port: int
    dns_server: str | None = None  # HOST:PORT; None: a pebble-challtestsrv of its own
    validity_seconds: int | None = None


@contextlib.contextmanager
def start_pebble(run: PebbleRun) -> Iterator[Pebble]:
    for program in (PEBBLE, CHALLTESTSRV):
        if not Path(program).exists():
            pytest.fail(f"{program} is missing: run 'make test' (it installs Debian's pebble)")
    work = run.work
    work.mkdir(parents=True, exist_ok=True)
    listener_ca, cert, key = write_tls_pair(work)
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        dns = run.dns_server
        if dns is None:
            dns_port, management = free_port(), free_port()
            log = open(work / "challtestsrv.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [
                        CHALLTESTSRV,
                        "-management",
                        f"127.0.0.1:{management}",
                        "-dns01",
                        f"127.0.0.1:{dns_port}",
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                        "-defaultIPv6",
                        "",  # names resolve to 127.0.0.1 only, where Burrow listens
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            dns = f"127.0.0.1:{dns_port}"
        port, management_port = free_port(), free_port()
        config: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": run.http_port,
            "tlsPort": run.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if run.validity_seconds is not None:
            config["certificateValidityPeriod"] = run.validity_seconds
        (work / "pebble.json").write_text(json.dumps({"pebble": config}))
        log = open(work / "pebble.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        processes.append(
            subprocess.Popen(
                [PEBBLE, "-config", str(work / "pebble.json"), "-dnsserver", dns],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        pebble = Pebble(
            f"https://127.0.0.1:{port}/dir", f"https://127.0.0.1:{management_port}", listener_ca, work
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(pebble.directory_url, verify=pebble.trust(), timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or processes[-1].poll() is not None:
                    raise RuntimeError(
                        "pebble did not start:\n" + (work / "pebble.log").read_text()
                    ) from None
                time.sleep(0.1)
        yield pebble
    finally:
        for process in reversed(processes):
            _stopped(process)
        for log in logs:
            log.close()


def curl(url: str, cafile: Path, resolve: str) -> subprocess.CompletedProcess[str]:
    """curl verifying against ``cafile`` only, ``resolve`` as curl's HOST:PORT:ADDRESS."""
    program = shutil.which("curl")
    assert program is not None, "curl is missing"
    return subprocess.run(
        [program, "-sS", "--cacert", str(cafile), "--resolve", resolve, url],
        capture_output=True,
        text=True,
        timeout=30,
    )


KNOTD = "/usr/sbin/knotd"
TSIG_NAME = "burrow-update"


@dataclass
class Knot:
    """Debian's knot, authoritative for one zone, taking TSIG-signed RFC 2136 updates."""

    address: str  # 127.0.0.1:PORT
    zone: str
    tsig: str  # NAME:ALGORITHM:SECRET, as --dns-tsig-key takes it


@contextlib.contextmanager
def start_knot(work: Path, zone: str) -> Iterator[Knot]:
    """Knot serving ``zone`` (its apex and every name under it: 127.0.0.1), on a free port."""
    if not Path(KNOTD).exists():
        pytest.fail(f"{KNOTD} is missing: run 'make test' (it installs Debian's knot)")
    import base64
    import secrets

    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    (work / "zones").mkdir(exist_ok=True)
    (work / "zones" / f"{zone}.zone").write_text(
        f"$ORIGIN {zone}.\n$TTL 60\n"
        f"@ SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60\n"
        f"@ NS ns.{zone}.\nns A 127.0.0.1\n@ A 127.0.0.1\n* A 127.0.0.1\n"
    )
    (work / "knot.conf").write_text(
        f"""server:
    listen: 127.0.0.1@{port}
    rundir: {work}
database:
    storage: {work / "db"}
key:
  - id: {TSIG_NAME}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: updates
    key: {TSIG_NAME}
    action: update
zone:
  - domain: {zone}
    storage: {work / "zones"}
    file: {zone}.zone
    acl: updates
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
"""
    )
    log = open(work / "knot.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([KNOTD, "-c", str(work / "knot.conf")], stdout=log, stderr=subprocess.STDOUT)
    try:
        import dns.message
        import dns.query

        deadline = time.monotonic() + 20
        while True:
            try:
                query = dns.message.make_query(f"{zone}.", "SOA")
                if dns.query.udp(query, "127.0.0.1", port=port, timeout=1).answer:
                    break
            except (OSError, dns.exception.Timeout):
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("knot did not start:\n" + (work / "knot.log").read_text())
            time.sleep(0.1)
        yield Knot(f"127.0.0.1:{port}", zone, f"{TSIG_NAME}:hmac-sha256:{secret}")
    finally:
        _stopped(process)
        log.close()
