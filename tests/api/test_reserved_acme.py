"""A reserved domain's certificate_management_policy (ACME, docs/certificates.md): accepted
in ngrok's shape, defaults filled in, anything else refused with nothing changed; the status
is ngrok's shape before any certificate exists."""

from __future__ import annotations

import pytest

from tests.harness import AppServer

POLICY = {"authority": "letsencrypt", "private_key_type": "rsa"}


def test_policy_accepted_shown_updated_and_turned_off(app_server: AppServer) -> None:
    with app_server.client() as http:
        created = http.post(
            "/reserved_domains", json={"domain": "shop.example.com", "certificate_management_policy": POLICY}
        )
        assert created.status_code == 201, created.text
        domain = created.json()
        assert domain["certificate_management_policy"] == POLICY
        assert domain["certificate_management_status"] == {"renews_at": None, "provisioning_job": None}
        assert domain["certificate"] is None  # nothing issued yet
        got = http.get(f"/reserved_domains/{domain['id']}").json()
        assert got["certificate_management_policy"] == POLICY
        # Defaults: letsencrypt, ecdsa.
        patched = http.patch(f"/reserved_domains/{domain['id']}", json={"certificate_management_policy": {}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["certificate_management_policy"] is None
        assert patched.json()["certificate_management_status"] is None
        again = http.patch(
            f"/reserved_domains/{domain['id']}",
            json={"certificate_management_policy": {"authority": "letsencrypt"}},
        ).json()
        assert again["certificate_management_policy"] == {
            "authority": "letsencrypt",
            "private_key_type": "ecdsa",
        }


@pytest.mark.parametrize(
    "policy",
    [
        {"authority": "zerossl", "private_key_type": "ecdsa"},
        {"authority": "letsencrypt", "private_key_type": "dsa"},
        {"authority": "letsencrypt", "extra": "x"},
        "letsencrypt",
        ["letsencrypt"],
    ],
)
def test_bad_policies_are_refused_and_change_nothing(app_server: AppServer, policy: object) -> None:
    with app_server.client() as http:
        refused = http.post(
            "/reserved_domains", json={"domain": "bad.example.com", "certificate_management_policy": policy}
        )
        assert refused.status_code == 400
        assert refused.json()["error_code"] == "ERR_NGROK_215"
        assert "certificate_management_policy" in refused.json()["msg"]
        assert http.get("/reserved_domains").json()["reserved_domains"] == []
        domain = http.post("/reserved_domains", json={"domain": "ok.example.com"}).json()
        patched = http.patch(
            f"/reserved_domains/{domain['id']}", json={"certificate_management_policy": policy}
        )
        assert patched.status_code == 400
        assert http.get(f"/reserved_domains/{domain['id']}").json()["certificate_management_policy"] is None
