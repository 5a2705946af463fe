"""The reserved domains and TCP addresses pages in a real browser against a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.edge.conftest import Agent, start_agent  # noqa: F401 - a fixture
from tests.harness import BurrowServer

from .conftest import VIEWPORT, sign_in

pytestmark = pytest.mark.e2e


def listed(server: BurrowServer, path: str) -> list[dict[str, Any]]:
    with server.client() as api:
        response = api.get(f"/{path}")
        assert response.status_code == 200, response.text
        return response.json()[path]  # type: ignore[no-any-return]


def credential(server: BurrowServer, api_key: str, acl: list[str]) -> str:
    with server.client(api_key) as api:
        response = api.post("/credentials", json={"acl": acl})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def test_a_domain_reserved_from_the_page_keeps_other_accounts_out_until_deleted(
    server: BurrowServer,
    page: Page,
    start_agent: Callable[..., Agent],  # noqa: F811
) -> None:
    sign_in(page, server, server.api_key)
    page.get_by_role("link", name="Domains").click()
    expect(page.get_by_role("heading", name="Reserved domains")).to_be_visible()
    expect(page.get_by_role("cell", name="No reserved domains.")).to_be_visible()
    page.get_by_label("Domain name").fill("shop")  # one label: a name under --domain
    page.get_by_label("Description").fill("storefront")
    page.get_by_label("Metadata").fill('{"team": "web"}')
    page.get_by_role("button", name="Reserve domain").click()
    expect(page.locator("main > .flash")).to_contain_text("Domain shop.burrow.localhost reserved")
    [reserved] = listed(server, "reserved_domains")
    assert reserved["domain"] == "shop.burrow.localhost" and reserved["description"] == "storefront"
    assert reserved["metadata"] == '{"team": "web"}' and reserved["cname_target"] is None
    row = page.get_by_role("row").filter(has_text=reserved["id"])
    expect(row).to_contain_text("shop.burrow.localhost")
    expect(row).to_contain_text("storefront")
    expect(row).to_contain_text('{"team": "web"}')
    expect(row).to_contain_text("admin@example.com")  # owners are shown by email
    expect(row).not_to_contain_text("CNAME")

    # Edited from the page: the API stores what was saved.
    page.get_by_role("link", name="Edit reserved domain shop.burrow.localhost").click()
    page.get_by_label("Description").fill("the shop")
    page.get_by_label("Metadata").fill('{"team": "shop"}')
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row").filter(has_text=reserved["id"])).to_contain_text("the shop")
    [edited] = listed(server, "reserved_domains")
    assert edited["description"] == "the shop" and edited["metadata"] == '{"team": "shop"}'

    # The API's refusals, shown as the API words them; the form keeps what was typed.
    for typed, code in (
        ("SHOP.burrow.localhost", "ERR_NGROK_413"),
        ("bad_name.example.com", "ERR_NGROK_326"),
    ):
        page.get_by_label("Domain name").fill(typed)
        page.get_by_label("Description").fill("again")
        page.get_by_role("button", name="Reserve domain").click()
        expect(page.get_by_role("alert")).to_contain_text(code)
        expect(page.get_by_label("Domain name")).to_have_value(typed)
        expect(page.get_by_label("Description")).to_have_value("again")
    assert [d["id"] for d in listed(server, "reserved_domains")] == [reserved["id"]]

    # A custom domain outside --domain: the page says where its DNS must point.
    page.get_by_label("Domain name").fill("api.example.org")
    page.get_by_label("Description").fill("")
    page.get_by_role("button", name="Reserve domain").click()
    expect(page.get_by_role("row").filter(has_text="api.example.org")).to_contain_text(
        "CNAME to burrow.localhost"
    )

    # Another account's credential may bind anything by its ACL; the reservation still wins.
    other_key = server.new_account("shop-rival@example.com")
    endpoint = [{"name": "web", "kind": "http", "domain": "shop.burrow.localhost"}]
    refused = start_agent(server, credential(server, other_key, ["bind:*"]), endpoint)
    assert "ERR_NGROK_320" in refused.error("web"), refused.ready
    refused.stop()

    page.get_by_role("button", name="Delete reserved domain shop.burrow.localhost").click()
    expect(page.locator("main > .flash")).to_contain_text(f"Reserved domain {reserved['id']} deleted")
    expect(page.get_by_role("cell", name="shop.burrow.localhost", exact=True)).to_have_count(0)
    assert "shop.burrow.localhost" not in {d["domain"] for d in listed(server, "reserved_domains")}
    # Free again: the same credential of the other account now binds it.
    bound = start_agent(server, credential(server, other_key, ["bind:*"]), endpoint)
    assert "shop.burrow.localhost" in bound.url("web")

    page.get_by_role("button", name="Delete reserved domain api.example.org").click()
    expect(page.get_by_role("cell", name="No reserved domains.")).to_be_visible()


def test_an_address_is_reserved_and_deleted_from_the_page(server: BurrowServer, page: Page) -> None:
    sign_in(page, server, server.api_key)
    page.get_by_role("link", name="TCP addresses").click()
    expect(page.get_by_role("heading", name="Reserved TCP addresses")).to_be_visible()
    page.get_by_label("Description").fill("postgres")
    page.get_by_label("Metadata").fill("db=main")
    page.get_by_role("button", name="Reserve address").click()
    [reserved] = listed(server, "reserved_addrs")
    tcp_port = server.edge[server.edge.index("--tcp-ports") + 1].split("-")[0]
    assert reserved["addr"] == f"127.0.0.1:{tcp_port}"  # the test server's only TCP port
    assert reserved["description"] == "postgres" and reserved["metadata"] == "db=main"
    expect(page.locator("main > .flash")).to_contain_text(f"Address {reserved['addr']} reserved")
    row = page.get_by_role("row").filter(has_text=reserved["id"])
    expect(row).to_contain_text(reserved["addr"])
    expect(row).to_contain_text("postgres")
    expect(row).to_contain_text("db=main")

    # Its description and metadata are edited from the page, as the API stores them.
    page.get_by_role("link", name=f"Edit reserved address {reserved['addr']}").click()
    expect(page.get_by_label("Description")).to_have_value("postgres")
    page.get_by_label("Description").fill("postgres primary")
    page.get_by_label("Metadata").fill("db=primary")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("main > .flash")).to_contain_text(f"{reserved['id']} saved")
    expect(page.get_by_role("row").filter(has_text=reserved["id"])).to_contain_text("postgres primary")
    [edited] = listed(server, "reserved_addrs")
    assert edited["description"] == "postgres primary" and edited["metadata"] == "db=primary"

    # No port is left: the API's error, on the page, with the form as it was typed.
    page.get_by_label("Description").fill("a second one")
    page.get_by_role("button", name="Reserve address").click()
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_90415")
    expect(page.get_by_label("Description")).to_have_value("a second one")
    assert len(listed(server, "reserved_addrs")) == 1

    page.get_by_role("button", name=f"Delete reserved address {reserved['addr']}").click()
    expect(page.locator("main > .flash")).to_contain_text(f"Reserved address {reserved['id']} deleted")
    expect(page.get_by_role("cell", name="No reserved TCP addresses.")).to_be_visible()
    assert listed(server, "reserved_addrs") == []


def test_reservation_posts_without_the_csrf_token_or_from_elsewhere_are_refused(
    server: BurrowServer, page: Page, context: BrowserContext
) -> None:
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/reserved-domains")
    csrf = page.locator("input[name=csrf]").first.input_value()
    cookie = {c["name"]: c["value"] for c in context.cookies()}
    with server.client() as api:
        kept = api.post("/reserved_domains", json={"domain": "kept"}).json()
    own = {"Origin": server.base_url}
    elsewhere = {"Origin": "http://evil.example"}
    forms = [
        ("/dashboard/reserved-domains", {"domain": "forged"}),
        ("/dashboard/reserved-addrs", {"description": "forged"}),
        (f"/dashboard/reserved-domains/{kept['id']}/delete", {}),
    ]
    with httpx.Client(base_url=server.base_url, cookies=cookie) as browser_like:
        for path, data in forms:
            for body, headers in (
                (data, own),  # no token
                ({**data, "csrf": "0" * 43}, own),  # a wrong one
                ({**data, "csrf": csrf}, elsewhere),  # the right one, from another site
                ({**data, "csrf": csrf}, {}),  # no Origin or Referer at all
            ):
                response = browser_like.post(path, data=body, headers=headers)
                assert response.status_code == 403, (path, headers, response.text)
        assert [d["id"] for d in listed(server, "reserved_domains")] == [kept["id"]]
        assert listed(server, "reserved_addrs") == []
        # With the token and our origin the same requests go through: the refusals were the checks.
        for path, data in forms:
            accepted = browser_like.post(path, data={**data, "csrf": csrf}, headers=own)
            assert accepted.status_code == 303, accepted.text
    assert {d["domain"] for d in listed(server, "reserved_domains")} == {"forged.burrow.localhost"}
    [addr] = listed(server, "reserved_addrs")
    with server.client() as api:
        for path, item in (
            ("reserved_domains", listed(server, "reserved_domains")[0]),
            ("reserved_addrs", addr),
        ):
            assert api.delete(f"/{path}/{item['id']}").status_code == 204


def test_a_member_reserves_names_and_may_delete_only_their_own(
    server: BurrowServer, page: Page, context: BrowserContext
) -> None:
    with server.client() as api:
        admins = api.post("/reserved_domains", json={"domain": "admins"}).json()
        admins_addr = api.post("/reserved_addrs", json={"description": "admin's"}).json()
    member_key = server.create_user("reserver@example.com", role="member", account="admin@example.com")
    member = context.browser.new_context(viewport=VIEWPORT)  # type: ignore[union-attr, arg-type]
    try:
        member_page = member.new_page()
        member_page.on("dialog", lambda dialog: dialog.accept())
        sign_in(member_page, server, member_key)
        member_page.get_by_role("link", name="Domains").click()
        # Members read all of their account's reservations, and reserve names themselves.
        expect(member_page.get_by_role("cell", name=admins["domain"], exact=True)).to_be_visible()
        member_page.get_by_label("Domain name").fill("members")
        member_page.get_by_role("button", name="Reserve domain").click()
        expect(member_page.locator("main > .flash")).to_contain_text(
            "Domain members.burrow.localhost reserved"
        )
        mine = member_page.get_by_role("row").filter(has_text="members.burrow.localhost")
        expect(mine).to_contain_text("reserver@example.com")
        # A delete button on their own reservation only; the API refuses the rest anyway.
        expect(member_page.get_by_role("button", name=re.compile("^Delete reserved domain"))).to_have_count(1)
        expect(
            member_page.get_by_role("button", name=f"Delete reserved domain {admins['domain']}")
        ).to_have_count(0)
        with server.client(member_key) as api:
            assert api.delete(f"/reserved_domains/{admins['id']}").status_code == 403
        member_page.get_by_role("button", name="Delete reserved domain members.burrow.localhost").click()
        expect(member_page.locator("main > .flash")).to_contain_text("deleted")
        expect(member_page.get_by_role("cell", name="members.burrow.localhost")).to_have_count(0)

        member_page.get_by_role("link", name="TCP addresses").click()
        expect(member_page.get_by_role("cell", name=admins_addr["addr"], exact=True)).to_be_visible()
        expect(member_page.get_by_role("button", name=re.compile("^Delete reserved address"))).to_have_count(
            0
        )
    finally:
        member.close()

    # The admin has the delete buttons for everyone's.
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/reserved-addrs")
    page.get_by_role("button", name=f"Delete reserved address {admins_addr['addr']}").click()
    expect(page.locator("main > .flash")).to_contain_text(f"Reserved address {admins_addr['id']} deleted")
    page.goto(f"{server.base_url}/dashboard/reserved-domains")
    page.get_by_role("button", name=f"Delete reserved domain {admins['domain']}").click()
    expect(page.get_by_role("cell", name="No reserved domains.")).to_be_visible()


def test_the_overview_counts_reservations(server: BurrowServer, page: Page) -> None:
    with server.client() as api:
        reserved = api.post("/reserved_domains", json={"domain": "counted"}).json()
    try:
        sign_in(page, server, server.api_key)
        counts = page.locator(".counts li")
        expect(counts.filter(has_text="Reserved domains").locator(".count")).to_have_text("1")
        expect(counts.filter(has_text="Reserved TCP addresses").locator(".count")).to_have_text("0")
        expect(page.locator(".activity")).to_contain_text("Domain reserved: counted.burrow.localhost")
    finally:
        with server.client() as api:
            assert api.delete(f"/reserved_domains/{reserved['id']}").status_code == 204


def test_a_refused_form_too_big_to_keep_still_shows_the_error_and_keeps_the_session(
    server: BurrowServer, page: Page
) -> None:
    # The refused values come back through the session cookie, which browsers cap at 4 KB:
    # what does not fit is left out rather than losing the session with it.
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/reserved-domains")
    page.get_by_label("Domain name").fill("bad_name.example.com")
    page.get_by_label("Metadata").fill("m" * 4000)
    page.get_by_role("button", name="Reserve domain").click()
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_326")
    expect(page.get_by_label("Domain name")).to_have_value("bad_name.example.com")
    expect(page.get_by_label("Metadata")).to_have_value("")
    page.goto(f"{server.base_url}/dashboard/credentials")
    rules = [f"bind:host{i}.{'x' * 40}.example.com" for i in range(60)]
    page.get_by_label("ACL rules").fill("\n".join([*rules, "bind:not a host"]))
    page.get_by_role("button", name="Create credential").click()
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_600")
    expect(page.get_by_role("heading", name="Credentials")).to_be_visible()  # still signed in
