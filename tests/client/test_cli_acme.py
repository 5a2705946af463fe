"""``burrow reserved-domains create --managed-certificate``: the policy of ACME
(docs/certificates.md) from the command line; a bad key type refused by the server."""

from __future__ import annotations

import pytest

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
