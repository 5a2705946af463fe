"""``burrow reserved-domains create --managed-certificate``: the policy of ACME
(docs/certificates.md) from the command line; a bad key type refused by the server. And
``--certificate-id``: an uploaded certificate chosen for the domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.certs import make_certificate
from tests.client.test_cli_resources import cli, data
from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e


def test_a_managed_certificate_from_the_command_line(burrow_server: BurrowServer) -> None:
    made = data(
        cli(
            burrow_server,
            "reserved-domains",
            "create",
            "acme-cli.example.net",
            "--managed-certificate",
            "rsa",
            "--json",
        )
    )
    assert made["certificate_management_policy"] == {"authority": "letsencrypt", "private_key_type": "rsa"}
    assert made["certificate_management_status"] == {"renews_at": None, "provisioning_job": None}
    refused = cli(
        burrow_server, "reserved-domains", "create", "acme-bad.example.net", "--managed-certificate", "dsa"
    )
    assert refused.returncode != 0 and "ERR_NGROK_215" in refused.stderr + refused.stdout
    listed = data(cli(burrow_server, "reserved-domains", "list", "--json"))
    assert "acme-bad.example.net" not in [d["domain"] for d in listed["reserved_domains"]]
    assert cli(burrow_server, "reserved-domains", "delete", made["id"]).returncode == 0


def test_an_uploaded_certificate_for_a_domain_from_the_command_line(
    burrow_server: BurrowServer, tmp_path: Path
) -> None:
    made = make_certificate(("cli-upload.example.net",))
    (tmp_path / "cert.pem").write_text(made.certificate_pem)
    (tmp_path / "key.pem").write_text(made.private_key_pem)
    cert = data(
        cli(
            burrow_server,
            "tls-certificates",
            "create",
            str(tmp_path / "cert.pem"),
            str(tmp_path / "key.pem"),
            "--json",
        )
    )
    domain = data(
        cli(
            burrow_server,
            "reserved-domains",
            "create",
            "cli-upload.example.net",
            "--certificate-id",
            cert["id"],
            "--json",
        )
    )
    assert domain["certificate"]["id"] == cert["id"]
    refused = cli(
        burrow_server, "reserved-domains", "create", "cli-other.example.net", "--certificate-id", cert["id"]
    )
    assert refused.returncode != 0 and "ERR_NGROK_90449" in refused.stderr + refused.stdout
    in_use = cli(burrow_server, "tls-certificates", "delete", cert["id"])
    assert in_use.returncode != 0 and "ERR_NGROK_90451" in in_use.stderr + in_use.stdout
    assert cli(burrow_server, "reserved-domains", "delete", domain["id"]).returncode == 0
    assert cli(burrow_server, "tls-certificates", "delete", cert["id"]).returncode == 0
