"""A reserved domain's certificate_id (docs/certificates.md): an uploaded /tls_certificates
row of the same account whose names cover the domain, never beside a
certificate_management_policy; shown as ``certificate: {id, uri}``; a certificate in use
cannot be deleted. Every refusal is ngrok-style and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.certs import make_certificate
from tests.harness import AppServer

POLICY = {"authority": "letsencrypt", "private_key_type": "ecdsa"}


def upload(http: httpx.Client, *names: str) -> str:
    made = make_certificate(names)
    created = http.post(
        "/tls_certificates",
        json={"certificate_pem": made.certificate_pem, "private_key_pem": made.private_key_pem},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def refused(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code, body
    return body


def test_certificate_id_is_set_shown_changed_and_cleared(app_server: AppServer) -> None:
    with app_server.client() as http:
        exact = upload(http, "shop.example.com")
        wildcard = upload(http, "*.example.com")
        created = http.post("/reserved_domains", json={"domain": "shop.example.com", "certificate_id": exact})
        assert created.status_code == 201, created.text
        domain = created.json()
        assert domain["certificate"]["id"] == exact
        assert domain["certificate"]["uri"].endswith(f"/tls_certificates/{exact}")
        assert domain["certificate_management_policy"] is None
        got = http.get(f"/reserved_domains/{domain['id']}").json()
        assert got["certificate"]["id"] == exact
        # A wildcard covers one label under it.
        changed = http.patch(f"/reserved_domains/{domain['id']}", json={"certificate_id": wildcard})
        assert changed.status_code == 200, changed.text
        assert changed.json()["certificate"]["id"] == wildcard
        # While in use, a certificate cannot be deleted; the other one can.
        body = refused(http.delete(f"/tls_certificates/{wildcard}"), "ERR_NGROK_90451")
        assert "shop.example.com" in body["msg"]
        assert http.get(f"/tls_certificates/{wildcard}").status_code == 200
        assert http.delete(f"/tls_certificates/{exact}").status_code == 204
        # "" clears it; then it is deletable, and a policy may be set.
        cleared = http.patch(f"/reserved_domains/{domain['id']}", json={"certificate_id": ""})
        assert cleared.status_code == 200 and cleared.json()["certificate"] is None
        assert http.delete(f"/tls_certificates/{wildcard}").status_code == 204
        managed = http.patch(
            f"/reserved_domains/{domain['id']}", json={"certificate_management_policy": POLICY}
        )
        assert managed.status_code == 200, managed.text


def test_refusals_change_nothing(app_server: AppServer) -> None:
    other = app_server.new_account("other@example.com")
    with app_server.client() as http, app_server.client(other) as theirs:
        mine = upload(http, "shop.example.com")
        elsewhere = upload(http, "other.example.com")
        deep = upload(http, "*.example.com")
        their_certificate = upload(theirs, "shop.example.com")
        plain = http.post("/reserved_domains", json={"domain": "plain.example.com"}).json()
        managed = http.post(
            "/reserved_domains",
            json={"domain": "managed.example.com", "certificate_management_policy": POLICY},
        ).json()
        uploaded = http.post(
            "/reserved_domains", json={"domain": "shop.example.com", "certificate_id": mine}
        ).json()
        before = app_server.snapshot()
        cases = [
            # Another account's certificate is as unknown as a made-up id.
            (
                http.post(
                    "/reserved_domains", json={"domain": "a.shop.example.com", "certificate_id": "cert_x"}
                ),
                "ERR_NGROK_90448",
            ),
            (
                http.post(
                    "/reserved_domains", json={"domain": "x.example.com", "certificate_id": their_certificate}
                ),
                "ERR_NGROK_90448",
            ),
            (
                http.patch(f"/reserved_domains/{plain['id']}", json={"certificate_id": their_certificate}),
                "ERR_NGROK_90448",
            ),
            # Names that do not cover the domain (a wildcard covers one label only).
            (
                http.post("/reserved_domains", json={"domain": "y.example.com", "certificate_id": elsewhere}),
                "ERR_NGROK_90449",
            ),
            (
                http.post("/reserved_domains", json={"domain": "a.b.example.com", "certificate_id": deep}),
                "ERR_NGROK_90449",
            ),
            (
                http.patch(f"/reserved_domains/{plain['id']}", json={"certificate_id": mine}),
                "ERR_NGROK_90449",
            ),
            # Never with a policy: both given, or one added beside the other.
            (
                http.post(
                    "/reserved_domains",
                    json={
                        "domain": "z.example.com",
                        "certificate_id": deep,
                        "certificate_management_policy": POLICY,
                    },
                ),
                "ERR_NGROK_90450",
            ),
            (
                http.patch(f"/reserved_domains/{managed['id']}", json={"certificate_id": deep}),
                "ERR_NGROK_90450",
            ),
            (
                http.patch(
                    f"/reserved_domains/{uploaded['id']}", json={"certificate_management_policy": POLICY}
                ),
                "ERR_NGROK_90450",
            ),
            (theirs.patch(f"/reserved_domains/{uploaded['id']}", json={"certificate_id": ""}), None),
            (http.delete(f"/tls_certificates/{mine}"), "ERR_NGROK_90451"),
        ]
        for response, code in cases:
            if code is None:
                assert response.status_code == 404, response.text  # another account's domain
            else:
                refused(response, code)
        assert app_server.snapshot() == before
        # Both at once is fine when one of them turns the other off.
        switched = http.patch(
            f"/reserved_domains/{managed['id']}",
            json={"certificate_id": deep, "certificate_management_policy": {}},
        )
        assert switched.status_code == 200, switched.text
        assert switched.json()["certificate"]["id"] == deep
        assert switched.json()["certificate_management_policy"] is None


@pytest.mark.parametrize("value", [5, ["cert_1"], {"id": "cert_1"}])
def test_a_certificate_id_must_be_a_string(app_server: AppServer, value: object) -> None:
    with app_server.client() as http:
        response = http.post("/reserved_domains", json={"domain": "s.example.com", "certificate_id": value})
        refused(response, "ERR_NGROK_215")
        assert http.get("/reserved_domains").json()["reserved_domains"] == []
