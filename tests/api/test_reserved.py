"""/reserved_domains and /reserved_addrs: ngrok's shapes, uniqueness across accounts, members' rights."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.api.test_official_client import run_official
from tests.harness import AppServer, BurrowServer


def test_reserved_domains_lifecycle_and_shape(app_server: AppServer) -> None:
    with app_server.client() as http:
        created = http.post("/reserved_domains", json={"domain": "App.Example.COM", "description": "web"})
        assert created.status_code == 201, created.text
        domain = created.json()
        assert domain["id"].startswith("rd_") and domain["domain"] == "app.example.com"
        assert domain["cname_target"] == "burrow.localhost"  # a custom domain: outside --domain
        assert domain["certificate"] is None and domain["resolves_to"] == [] and domain["region"] == "local"
        # A single label is a subdomain of --domain, which needs no CNAME.
        short = http.post("/reserved_domains", json={"domain": "laptop"}).json()
        assert short["domain"] == "laptop.burrow.localhost" and short["cname_target"] is None
        updated = http.patch(f"/reserved_domains/{domain['id']}", json={"metadata": "m", "resolves_to": []})
        assert updated.json()["metadata"] == "m" and updated.json()["description"] == "web"
        listed = http.get("/reserved_domains", params={"filter": 'obj.domain.startsWith("app.")'}).json()
        assert [d["id"] for d in listed["reserved_domains"]] == [domain["id"]]
        again = http.post("/reserved_domains", json={"domain": "app.example.com"})
        assert again.status_code == 400 and again.json()["error_code"] == "ERR_NGROK_413"
        assert http.delete(f"/reserved_domains/{domain['id']}").status_code == 204
        assert http.get(f"/reserved_domains/{domain['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "ERR_NGROK_90416"),
        ({"domain": "bad_name.example.com"}, "ERR_NGROK_326"),
        ({"domain": "a.example.com", "certificate_id": "cert_1"}, "ERR_NGROK_90448"),
        ({"domain": "a.example.com", "resolves_to": [{"value": "x"}]}, "ERR_NGROK_90216"),
        ({"domain": "a.example.com", "region": "eu"}, "ERR_NGROK_90216"),
    ],
)
def test_reserved_domain_refusals(app_server: AppServer, body: dict[str, object], code: str) -> None:
    with app_server.client() as http:
        response = http.post("/reserved_domains", json=body)
    assert response.status_code == 400 and response.json()["error_code"] == code, response.text


def test_two_accounts_cannot_reserve_the_same_name(app_server: AppServer) -> None:
    other = app_server.new_account("other@example.com")
    with app_server.client() as http, app_server.client(other) as theirs:
        assert http.post("/reserved_domains", json={"domain": "mine.example.com"}).status_code == 201
        refused = theirs.post("/reserved_domains", json={"domain": "MINE.example.com"})
        assert refused.status_code == 400 and refused.json()["error_code"] == "ERR_NGROK_414"
        assert theirs.get("/reserved_domains").json()["reserved_domains"] == []
        addr = http.post("/reserved_addrs", json={}).json()["addr"]
        taken = theirs.post("/reserved_addrs", json={"addr": addr})
        assert taken.status_code == 400 and taken.json()["error_code"] == "ERR_NGROK_90414"


def test_reserved_addrs_are_assigned_within_the_tcp_ports(app_server: AppServer) -> None:
    with app_server.client() as http:
        assigned = http.post("/reserved_addrs", json={"description": "db"}).json()
        assert assigned["id"].startswith("ra_") and assigned["region"] == "local"
        host, _, port = assigned["addr"].rpartition(":")
        assert host == "127.0.0.1" and 20000 <= int(port) <= 20099  # the default --tcp-ports
        chosen = http.post("/reserved_addrs", json={"addr": "127.0.0.1:20100"})
        assert chosen.json()["error_code"] == "ERR_NGROK_307"
        other_port = 20000 if port != "20000" else "20001"
        fixed = http.post("/reserved_addrs", json={"addr": f"127.0.0.1:{other_port}"}).json()
        assert fixed["addr"] == f"127.0.0.1:{other_port}"
        addrs = {a["addr"] for a in http.get("/reserved_addrs").json()["reserved_addrs"]}
        assert addrs == {assigned["addr"], fixed["addr"]}


def test_members_change_only_their_own_reservations(app_server: AppServer) -> None:
    member = app_server.create_user("member@example.com")
    with app_server.client() as admin, app_server.client(member) as http:
        admins = admin.post("/reserved_domains", json={"domain": "admins.example.com"}).json()
        own = http.post("/reserved_domains", json={"domain": "members.example.com"})
        assert own.status_code == 201
        listed = http.get("/reserved_domains").json()["reserved_domains"]
        assert len(listed) == 2  # reads everything
        # Who holds each is shown (Burrow's addition, as on credentials): what a member may change.
        member_id = http.get(f"/api_keys/ak_{member.split('_')[0]}").json()["owner_id"]
        admin_id = admin.get(f"/api_keys/ak_{app_server.api_key.split('_')[0]}").json()["owner_id"]
        owners = {d["domain"]: d["owner_id"] for d in listed}
        assert owners == {"admins.example.com": admin_id, "members.example.com": member_id}
        assert member_id != admin_id
        addr = http.post("/reserved_addrs", json={}).json()
        assert addr["owner_id"] == member_id
        mine = http.get("/reserved_domains", params={"filter": f'obj.owner_id == "{member_id}"'}).json()
        assert [d["domain"] for d in mine["reserved_domains"]] == ["members.example.com"]
        refused = http.delete(f"/reserved_domains/{admins['id']}")
        assert refused.status_code == 403 and refused.json()["error_code"] == "ERR_NGROK_635"
        assert http.delete(f"/reserved_domains/{own.json()['id']}").status_code == 204
        assert admin.delete(f"/reserved_domains/{admins['id']}").status_code == 204


@pytest.mark.e2e
def test_official_client_manages_reserved_names(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server()
    out = run_official(
        server,
        """
        domain = client.reserved_domains.create(domain="api.example.org", description="api")
        out["created"] = {"id": domain.id, "domain": domain.domain, "cname": domain.cname_target}
        out["got"] = client.reserved_domains.get(domain.id).description
        out["updated"] = client.reserved_domains.update(domain.id, metadata="m").metadata
        out["listed"] = [d.domain for d in client.reserved_domains.list()]
        client.reserved_domains.delete(domain.id)
        out["after"] = [d.domain for d in client.reserved_domains.list()]
        addr = client.reserved_addrs.create(description="db")
        out["addr"] = addr.addr
        out["addrs"] = [a.id for a in client.reserved_addrs.list()]
        out["addr_updated"] = client.reserved_addrs.update(addr.id, description="pg").description
        client.reserved_addrs.delete(addr.id)
        """,
    )
    assert out["created"]["id"].startswith("rd_") and out["created"]["domain"] == "api.example.org"
    assert out["created"]["cname"] == "burrow.localhost"
    assert out["got"] == "api" and out["updated"] == "m"
    assert out["listed"] == ["api.example.org"] and out["after"] == []
    tcp_port = server.edge[server.edge.index("--tcp-ports") + 1].split("-")[0]
    assert out["addr"] == f"127.0.0.1:{tcp_port}" and len(out["addrs"]) == 1
    assert out["addr_updated"] == "pg"


def test_deleting_a_bot_user_frees_its_reservations(app_server: AppServer) -> None:
    with app_server.client() as admin:
        bot = admin.post("/bot_users", json={"name": "deployer"}).json()
        bot_key = admin.post("/api_keys", json={"owner_id": bot["id"]}).json()["token"]
        with app_server.client(bot_key) as http:
            assert http.post("/reserved_domains", json={"domain": "bot.example.com"}).status_code == 201
        assert admin.delete(f"/bot_users/{bot['id']}").status_code == 204
        assert admin.get("/reserved_domains").json()["reserved_domains"] == []
        assert admin.post("/reserved_domains", json={"domain": "bot.example.com"}).status_code == 201


def test_the_server_s_own_names_are_reserved_by_no_tenant(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server("--public-url", "https://api.example.com")
    refused = [
        "api.example.com",
        "a.api.example.com",
        "127.0.0.1",
        "127.1",
        "x.localhost",  # a single label is a subdomain of --domain: "localhost" is fine
        "burrow.localhost",
    ]
    with server.client() as http:
        for name in refused:
            answer = http.post("/reserved_domains", json={"domain": name})
            assert answer.status_code == 400, (name, answer.text)
            assert answer.json()["error_code"] == "ERR_NGROK_326" and "never an endpoint's" in answer.text, (
                name
            )
        assert http.get("/reserved_domains").json()["reserved_domains"] == []
        assert http.post("/reserved_domains", json={"domain": "www.example.com"}).status_code == 201
