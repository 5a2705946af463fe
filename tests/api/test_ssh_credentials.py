"""/ssh_credentials: ngrok's shape, keys parsed strictly, one credential per key, owner
rules and the bind ACL grammar as on /credentials; managed by the official client."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, rsa

from tests.api.test_official_client import run_official
from tests.harness import AppServer, BurrowServer


def openssh_public(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | dsa.DSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def new_key() -> str:
    return openssh_public(ed25519.Ed25519PrivateKey.generate())


def test_create_get_update_list_delete(app_server: AppServer) -> None:
    key = new_key()
    with app_server.client() as http:
        created = http.post(
            "/ssh_credentials",
            json={
                "public_key": key + " laptop@example",
                "description": "laptop",
                "acl": ["bind:*.example.com"],
            },
        )
        assert created.status_code == 201, created.text
        item = created.json()
        assert item["id"].startswith("sshcr_")
        assert item["uri"] == f"http://testserver/ssh_credentials/{item['id']}"
        assert item["public_key"] == key  # the comment dropped
        assert item["acl"] == ["bind:*.example.com"] and item["description"] == "laptop"
        assert set(item) == {
            "id",
            "uri",
            "created_at",
            "description",
            "metadata",
            "public_key",
            "acl",
            "owner_id",
        }
        assert http.get(f"/ssh_credentials/{item['id']}").json() == item
        updated = http.patch(f"/ssh_credentials/{item['id']}", json={"acl": ["bind:a.example.com"]}).json()
        assert updated["acl"] == ["bind:a.example.com"] and updated["public_key"] == key
        permanent = http.patch(f"/ssh_credentials/{item['id']}", json={"public_key": new_key()})
        assert permanent.status_code == 400 and permanent.json()["error_code"] == "ERR_NGROK_90463"
        second = http.post("/ssh_credentials", json={"public_key": new_key(), "metadata": "m"}).json()
        listed = http.get("/ssh_credentials", params={"limit": "1"}).json()
        assert [c["id"] for c in listed["ssh_credentials"]] == [second["id"]] and listed["next_page_uri"]
        filtered = http.get("/ssh_credentials", params={"filter": 'obj.metadata == "m"'}).json()
        assert [c["id"] for c in filtered["ssh_credentials"]] == [second["id"]]
        assert http.delete(f"/ssh_credentials/{item['id']}").status_code == 204
        assert http.get(f"/ssh_credentials/{item['id']}").status_code == 404


def test_garbage_and_weak_keys_are_refused_and_change_nothing(app_server: AppServer) -> None:
    key = new_key()
    kind, blob = key.split()
    weak_rsa = openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    refused = [
        "",
        "not a key",
        f"{kind} {blob[:-4]}",  # three bytes short of an Ed25519 key
        f"{kind} !!!!",
        f"ssh-dss {blob}",
        f"ssh-rsa {blob}",  # the blob is an Ed25519 key's
        weak_rsa,
        f"{key}\n{new_key()}",
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
    ]
    before = app_server.snapshot()
    with app_server.client() as http:
        for text in refused:
            answer = http.post("/ssh_credentials", json={"public_key": text})
            assert answer.status_code == 400, (text, answer.text)
            assert answer.json()["error_code"] in {"ERR_NGROK_90460", "ERR_NGROK_90461"}, text
        bad_acl = http.post("/ssh_credentials", json={"public_key": key, "acl": ["bind:"]})
        assert bad_acl.status_code == 400
    assert app_server.snapshot() == before


def test_one_credential_per_key_across_accounts(app_server: AppServer) -> None:
    key = new_key()
    other = app_server.new_account("other@example.com")
    with app_server.client() as http:
        assert http.post("/ssh_credentials", json={"public_key": key}).status_code == 201
    with app_server.client(other) as http:
        taken = http.post("/ssh_credentials", json={"public_key": key + " same key"})
        assert taken.status_code == 409 and taken.json()["error_code"] == "ERR_NGROK_90462"
        assert http.get("/ssh_credentials").json()["ssh_credentials"] == []


def test_owner_rules_as_on_credentials(app_server: AppServer) -> None:
    member = app_server.create_user("member@example.com")
    with app_server.client() as http:
        mine = http.post("/ssh_credentials", json={"public_key": new_key()}).json()
    with app_server.client(member) as http:
        named = http.post("/ssh_credentials", json={"public_key": new_key(), "owner_id": "admin@example.com"})
        assert named.status_code == 403
        assert http.patch(f"/ssh_credentials/{mine['id']}", json={"description": "x"}).status_code == 403
        assert http.delete(f"/ssh_credentials/{mine['id']}").status_code == 403
        own = http.post("/ssh_credentials", json={"public_key": new_key()}).json()
        assert own["owner_id"] != mine["owner_id"]
        moved = http.patch(f"/ssh_credentials/{own['id']}", json={"owner_id": mine["owner_id"]})
        assert moved.status_code == 400 and moved.json()["error_code"] == "ERR_NGROK_90464"


def test_official_client_manages_ssh_credentials(burrow_server: BurrowServer) -> None:
    key = new_key()
    out = run_official(
        burrow_server,
        f"""
        made = client.ssh_credentials.create(public_key={key!r}, description="ci", acl=["bind:*.example.com"])
        out["created"] = made._props
        out["got"] = client.ssh_credentials.get(made.id)._props
        out["updated"] = client.ssh_credentials.update(made.id, metadata="m", acl=[])._props
        out["listed"] = [c.id for c in client.ssh_credentials.list()]
        out["garbage"] = error(lambda: client.ssh_credentials.create(public_key="ssh-ed25519 garbage"))
        client.ssh_credentials.delete(made.id)
        out["after_delete"] = error(lambda: client.ssh_credentials.get(made.id))
        """,
    )
    created = out["created"]
    assert created["id"].startswith("sshcr_") and created["public_key"] == key
    assert created["acl"] == ["bind:*.example.com"] and out["got"] == created
    assert out["updated"]["metadata"] == "m" and out["updated"]["acl"] == []
    assert created["id"] in out["listed"]
    assert out["garbage"]["status"] == 400 and out["garbage"]["code"] == "ERR_NGROK_90460"
    assert out["after_delete"]["type"] == "NotFoundError"
