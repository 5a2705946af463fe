"""The dashboard with many items, edits, the audit page and a phone's width, in Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.harness import BurrowServer, burrow

from .conftest import sign_in

pytestmark = pytest.mark.e2e

SEEDED = 1000


@pytest.fixture(scope="module")
def seeded(server: BurrowServer) -> BurrowServer:
    """The module's server with 1,000 credentials: ten of the API's pages."""
    account = ["--account", "admin@example.com", "--data-dir", str(server.data_dir)]
    burrow("admin", "seed", *account, "--credentials", str(SEEDED))
    return server


def shown_ids(page: Page) -> list[str]:
    return page.locator("tbody td:first-child code").all_inner_texts()


def test_the_overview_counts_every_credential_and_the_list_pages_through_them(
    seeded: BurrowServer, page: Page
) -> None:
    sign_in(page, seeded, seeded.api_key)
    count = page.locator(".counts li").filter(has_text="Credentials")
    expect(count.locator(".count")).to_have_text(str(SEEDED))
    page.get_by_role("link", name="Credentials", exact=True).click()
    first = shown_ids(page)
    assert len(first) == 100
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)
    seen = list(first)
    for _ in range(SEEDED // 100 - 1):
        page.get_by_role("link", name="Next page").click()
        ids = shown_ids(page)
        assert len(ids) == 100 and not set(ids) & set(seen)
        seen += ids
    expect(page.get_by_role("link", name="Next page")).to_have_count(0)  # the last page
    with seeded.client() as api:
        every = {c["id"] for c in api.get("/credentials", params={"limit": 100}).json()["credentials"]}
    assert set(seen) >= every and len(set(seen)) == SEEDED
    page.get_by_role("link", name="Previous page").click()
    assert shown_ids(page) == seen[-200:-100]
    for _ in range(SEEDED // 100 - 2):
        page.get_by_role("link", name="Previous page").click()
    assert shown_ids(page) == first
    expect(page.get_by_role("link", name="Previous page")).to_have_count(0)


def test_descriptions_acls_and_names_are_edited_from_the_page(seeded: BurrowServer, page: Page) -> None:
    sign_in(page, seeded, seeded.api_key)
    page.get_by_role("link", name="Credentials", exact=True).click()
    credential_id = shown_ids(page)[0]
    page.get_by_role("link", name=f"Edit credential {credential_id}").click()
    expect(page.get_by_label("Description")).to_have_value(re.compile("^seed "))
    page.get_by_label("Description").fill("the build machine")
    page.get_by_label("Metadata").fill('{"team": "ci"}')
    page.get_by_label("ACL rules").fill("bind:*.ci.example\nbind:ci.example")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("main > .flash")).to_contain_text(f"{credential_id} saved")
    expect(page.get_by_role("row").filter(has_text=credential_id)).to_contain_text("the build machine")
    # A refused edit says why and changes nothing.
    page.get_by_role("link", name=f"Edit credential {credential_id}").click()
    page.get_by_label("ACL rules").fill("bind:not a host")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("main > .flash")).to_contain_text("ERR_NGROK_")

    page.get_by_role("link", name="API keys", exact=True).click()
    key_id = f"ak_{seeded.api_key.split('_')[0]}"
    page.get_by_role("link", name=f"Edit API key {key_id}").click()
    page.get_by_label("Description").fill("the admin's laptop")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row").filter(has_text=key_id)).to_contain_text("the admin's laptop")

    with seeded.client() as api:
        bot = api.post("/bot_users", json={"name": "deployer"}).json()
    page.get_by_role("link", name="Bot users", exact=True).click()
    page.get_by_role("link", name="Edit deployer").click()
    page.get_by_label("Name").fill("release-bot")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="release-bot", exact=True)).to_be_visible()

    with seeded.client() as api:  # what the API stores now, not just what the page shows
        credential = api.get(f"/credentials/{credential_id}").json()
        assert credential["description"] == "the build machine"
        assert credential["metadata"] == '{"team": "ci"}'
        assert credential["acl"] == ["bind:*.ci.example", "bind:ci.example"]
        assert api.get(f"/api_keys/{key_id}").json()["description"] == "the admin's laptop"
        assert api.get(f"/bot_users/{bot['id']}").json()["name"] == "release-bot"


def test_owners_are_shown_by_email(seeded: BurrowServer, page: Page) -> None:
    sign_in(page, seeded, seeded.api_key)
    expect(page.locator(".who")).to_contain_text("admin@example.com")
    page.get_by_role("link", name="Credentials", exact=True).click()
    owners = page.locator("tbody tr td:nth-child(4)").all_inner_texts()
    assert owners and set(owners) == {"admin@example.com"}
    assert "usr_" not in page.locator("main").inner_text()


def test_the_audit_page_lists_events_for_admins_and_refuses_members(
    seeded: BurrowServer, page: Page, browser: Browser
) -> None:
    with seeded.client() as api:
        made = api.post("/credentials", json={"description": "audited"}).json()
    sign_in(page, seeded, seeded.api_key)
    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Audit")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=made["id"])
    expect(row).to_contain_text("admin@example.com")
    expect(row).to_contain_text("credential")

    member_key = seeded.create_user("auditee@example.com", role="member")
    member = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        member_page = member.new_page()
        sign_in(member_page, seeded, member_key)
        expect(member_page.get_by_role("link", name="Audit")).to_have_count(0)
        response = member_page.goto(f"{seeded.base_url}/dashboard/audit")
        assert response is not None and response.status == 403
        expect(member_page.get_by_role("alert")).to_contain_text("Only admins")
        assert made["id"] not in member_page.content()
    finally:
        member.close()


PAGES = ["/", "/sessions", "/credentials", "/api-keys", "/bot-users", "/reserved-domains"]
PAGES += ["/reserved-addrs", "/audit"]


def test_at_a_phones_width_nothing_overflows_and_every_link_is_reachable(
    seeded: BurrowServer, browser: Browser
) -> None:
    phone = browser.new_context(viewport={"width": 375, "height": 740})
    phone.set_default_timeout(15_000)
    try:
        page = phone.new_page()
        sign_in(page, seeded, seeded.api_key)
        for path in PAGES:
            page.goto(f"{seeded.base_url}/dashboard{path}")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
            links = page.locator("header nav a")
            assert links.count() == 8  # with Audit, for admins
            for index in range(links.count()):
                box = links.nth(index).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, (path, index)
            expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
        page.get_by_role("link", name="TCP addresses").click()  # the last of the links, tapped
        expect(page.get_by_role("heading", name=re.compile("TCP address"))).to_be_visible()
    finally:
        phone.close()
