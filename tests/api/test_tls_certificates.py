"""/tls_certificates: uploads checked (PEM, matching key, validity), parsed fields shown
as ngrok shows them, the private key never returned and kept sealed in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.api.test_official_client import run_official
from tests.certs import make_certificate
from tests.harness import AppServer, BurrowServer


def test_upload_shows_parsed_fields_and_never_the_key(app_server: AppServer) -> None:
    made = make_certificate(("app.example.com", "www.example.com"), ips=("192.0.2.7",), key_type="rsa")
    with app_server.client() as http:
        created = http.post(
            "/tls_certificates",
            json={
                "certificate_pem": made.certificate_pem,
                "private_key_pem": made.private_key_pem,
                "description": "web",
            },
        )
        assert created.status_code == 201, created.text
        cert = created.json()
        assert cert["id"].startswith("cert_") and cert["description"] == "web"
        assert cert["subject_common_name"] == "app.example.com"
        assert cert["subject_alternative_names"] == {
            "dns_names": ["app.example.com", "www.example.com"],
            "ips": ["192.0.2.7"],
        }
        assert cert["private_key_type"] == "rsa" and cert["subject_organization"] == "Burrow Tests"
        assert cert["extended_key_usages"] == ["server_auth"]
        assert "digital_signature" in cert["key_usages"] and "key_encipherment" in cert["key_usages"]
        assert cert["issuer_common_name"] == "app.example.com" and cert["subject_country"] == "NZ"
        assert "private_key_pem" not in cert
        secret_part = made.private_key_pem.splitlines()[1]
        for response in (http.get(f"/tls_certificates/{cert['id']}"), http.get("/tls_certificates")):
            assert secret_part not in response.text
        updated = http.patch(f"/tls_certificates/{cert['id']}", json={"metadata": "m"}).json()
        assert updated["metadata"] == "m" and updated["not_after"] == cert["not_after"]
        refused = http.patch(
            f"/tls_certificates/{cert['id']}", json={"certificate_pem": made.certificate_pem}
        )
        assert refused.json()["error_code"] == "ERR_NGROK_90447"
        listed = http.get(
            "/tls_certificates", params={"filter": 'obj.subject_common_name == "app.example.com"'}
        )
        assert [c["id"] for c in listed.json()["tls_certificates"]] == [cert["id"]]
        # Sealed in the database: the stored column is not the key; the store opens it.
        with app_server.store.engine.connect() as connection:
            sealed = connection.execute(
                text("SELECT private_key_sealed FROM tls_certificates WHERE id = :id"), {"id": cert["id"]}
            ).scalar_one()
        assert secret_part not in sealed and "PRIVATE KEY" not in sealed
        opened = app_server.store.tls_certificate_key(app_server.account_id, cert["id"])
        assert opened is not None and opened[1].decode() == made.private_key_pem
        assert http.delete(f"/tls_certificates/{cert['id']}").status_code == 204
        assert http.get(f"/tls_certificates/{cert['id']}").status_code == 404


def _other_key() -> str:
    return make_certificate().private_key_pem


NOW = datetime.now(UTC)
BAD_KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"certificate_pem": "not a certificate"}, "ERR_NGROK_90440"),
        (
            {"private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "ERR_NGROK_90441",
        ),
        ({"private_key_pem": None}, "ERR_NGROK_90446"),
        ({"private_key_pem": "mismatch"}, "ERR_NGROK_90442"),
        ({"expired": True}, "ERR_NGROK_90443"),
        ({"future": True}, "ERR_NGROK_90444"),
    ],
)
def test_bad_uploads_are_refused(app_server: AppServer, change: dict[str, object], code: str) -> None:
    if change.get("expired"):
        made = make_certificate(not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    elif change.get("future"):
        made = make_certificate(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=30))
    else:
        made = make_certificate()
    body: dict[str, object] = {
        "certificate_pem": made.certificate_pem,
        "private_key_pem": made.private_key_pem,
    }
    for name in ("certificate_pem", "private_key_pem"):
        if name in change:
            body[name] = _other_key() if change[name] == "mismatch" else change[name]
    with app_server.client() as http:
        response = http.post("/tls_certificates", json=body)
        assert response.status_code == 400 and response.json()["error_code"] == code, response.text
        assert made.private_key_pem.splitlines()[1] not in response.text
        assert http.get("/tls_certificates").json()["tls_certificates"] == []


@pytest.mark.e2e
def test_official_client_uploads_reads_and_is_refused(burrow_server: BurrowServer) -> None:
    made = make_certificate(("official.example.com",))
    expired = make_certificate(not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    out = run_official(
        burrow_server,
        f"""
        cert = client.tls_certificates.create(certificate_pem={made.certificate_pem!r},
                                              private_key_pem={made.private_key_pem!r}, description="up")
        out["created"] = [cert.id, cert.subject_common_name, cert.private_key_type,
                          list(cert.subject_alternative_names.dns_names)]
        out["got"] = client.tls_certificates.get(cert.id).description
        out["updated"] = client.tls_certificates.update(cert.id, metadata="m").metadata
        out["listed"] = [c.id for c in client.tls_certificates.list()]
        try:
            client.tls_certificates.create(certificate_pem={expired.certificate_pem!r},
                                           private_key_pem={expired.private_key_pem!r})
        except ngrok.Error as error:
            out["refused"] = [error.http_status_code, error.error_code]
        client.tls_certificates.delete(cert.id)
        """,
    )
    assert out["created"][1:] == ["official.example.com", "ecdsa", ["official.example.com"]]
    assert out["got"] == "up" and out["updated"] == "m" and out["created"][0] in out["listed"]
    assert out["refused"] == [400, "ERR_NGROK_90443"]
