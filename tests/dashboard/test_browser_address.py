"""The dashboard counts and records the browser's address, not its own (it calls the API in
process): two Chromium browsers behind a trusted proxy (``--trusted-proxies``), each with its
own ``X-Forwarded-For``, against a real ``burrow serve``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.harness import BurrowServer

from .conftest import VIEWPORT, sign_in

pytestmark = pytest.mark.e2e

GUESSER = "198.51.100.66"
USER = "198.51.100.7"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("proxied") / "data").start(
        "--trusted-proxies", "127.0.0.1/32", "--auth-failure-limit", "3/minute"
    )
    yield server
    server.stop()


def behind_the_proxy(browser: Browser, address: str) -> BrowserContext:
    """A browser whose requests reach Burrow through the trusted proxy, as ``address``."""
    context = browser.new_context(viewport=VIEWPORT, extra_http_headers={"X-Forwarded-For": address})  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    return context


def test_a_guessing_browser_is_limited_alone_and_writes_are_audited_with_the_browser_s_address(
    proxied: BurrowServer, browser: Browser
) -> None:
    guesser = behind_the_proxy(browser, GUESSER)
    user = behind_the_proxy(browser, USER)
    try:
        page = guesser.new_page()
        page.goto(f"{proxied.base_url}/dashboard/signin")
        for attempt in range(6):
            page.get_by_label("API key").fill(f"{attempt}" * 20 + "_" + "x" * 28)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_90429")

        # Another browser signs in at once (before, every sign-in counted as 127.0.0.1,
        # the dashboard's own calls, and this one waited behind the guesser).
        mine = user.new_page()
        sign_in(mine, proxied, proxied.api_key)
        mine.get_by_role("link", name="Credentials", exact=True).click()
        mine.get_by_label("Description").fill("made in the browser")
        mine.get_by_label("ACL rules").fill("bind:audited.burrow.localhost")
        mine.get_by_role("button", name="Create credential").click()
        credential_id = (
            mine.get_by_role("heading", name=re.compile("New credential")).locator("code").inner_text()
        )
        mine.get_by_role("link", name="Audit").click()
        row = mine.get_by_role("row").filter(has_text=credential_id)
        expect(row).to_contain_text(USER)
    finally:
        guesser.close()
        user.close()
    with proxied.client() as api:  # a REST client on 127.0.0.1 is not held back by the guesser either
        events = api.get("/audit_events").json()["audit_events"]
    made = [e for e in events if e["resource_id"] == credential_id]
    assert [e["client_ip"] for e in made] == [USER], made
    assert not [e for e in events if e["client_ip"] == "127.0.0.1" and e["resource_id"] == credential_id]
