"""Screenshots of every page at 1280x800, as docs/images/ shows them.

They land in a temporary directory; ``BURROW_SCREENSHOTS=docs/images`` writes the
documentation's copies. Either way each page must render and the PNGs stay small.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.edge.conftest import Agent, start_agent  # noqa: F401 - a fixture
from tests.harness import BurrowServer

from .conftest import sign_in

pytestmark = pytest.mark.e2e

MAX_PNG_BYTES = 150_000


def test_screenshots_of_every_page(
    make_server: Callable[..., BurrowServer],
    page: Page,
    start_agent: Callable[..., Agent],  # noqa: F811
    tmp_path: Path,
) -> None:
    out = Path(os.environ.get("BURROW_SCREENSHOTS") or tmp_path)
    server = make_server(admin_email="ops@example.com")
    base = f"{server.base_url}/dashboard"
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = out / f"dashboard-{name}.png"
        page.screenshot(path=str(path))
        shots.append(path)

    page.goto(f"{base}/")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    shot("signin")
    sign_in(page, server, server.api_key)

    page.goto(f"{base}/bot-users")
    for name in ("ci-deploy", "nightly-backup"):
        page.get_by_label("Name").fill(name)
        page.get_by_role("button", name="Create bot user").click()
    page.get_by_role("button", name="Deactivate nightly-backup").click()
    expect(page.locator("main > .flash")).to_contain_text("deactivated")
    page.goto(f"{base}/bot-users")
    shot("bot-users")

    page.goto(f"{base}/api-keys")
    page.get_by_label("Description").fill("deploy pipeline")
    owner = page.get_by_label("Owner").locator("option", has_text="ci-deploy").get_attribute("value")
    page.get_by_label("Owner").select_option(owner)
    page.get_by_role("button", name="Create API key").click()
    page.goto(f"{base}/api-keys")
    shot("api-keys")

    page.goto(f"{base}/credentials")
    for description, rules in (("staging agents", "bind:*.staging.burrow.localhost"), ("any", "")):
        page.get_by_label("Description").fill(description)
        page.get_by_label("ACL rules").fill(rules)
        page.get_by_role("button", name="Create credential").click()
        page.goto(f"{base}/credentials")
    page.get_by_label("Description").fill("laptop")
    page.get_by_label("ACL rules").fill(
        "bind:laptop.burrow.localhost\nbind:team=web\nbind:db.burrow.localhost:http"
    )
    expect(page.locator("#acl-status")).to_contain_text("Invalid ACL rule")
    shot("credentials")

    page.get_by_label("ACL rules").fill("bind:laptop.burrow.localhost\nbind:team=web")
    expect(page.locator("#acl-status")).to_have_text("Valid rules.")
    page.get_by_role("button", name="Create credential").click()
    token = page.get_by_label("Token").input_value()
    shot("token-once")

    page.goto(f"{base}/reserved-domains")
    for name, description in (("laptop", "Ada's laptop"), ("shop.example.org", "storefront"), ("laptop", "")):
        page.get_by_label("Domain name").fill(name)
        page.get_by_label("Description").fill(description)
        page.get_by_role("button", name="Reserve domain").click()
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_413")  # laptop is ours already
    shot("reserved-domains")

    page.goto(f"{base}/reserved-addrs")
    page.get_by_label("Description").fill("postgres")
    page.get_by_label("Metadata").fill('{"team": "data"}')
    page.get_by_role("button", name="Reserve address").click()
    expect(page.get_by_role("cell", name="postgres")).to_be_visible()
    shot("reserved-addrs")

    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "laptop.burrow.localhost"}])
    page.goto(f"{base}/sessions")
    expect(page.get_by_role("button", name=re.compile("^Stop session"))).to_have_count(1)
    shot("agents")
    page.goto(f"{base}/")
    expect(page.get_by_role("cell", name=re.compile("laptop.burrow.localhost"))).to_be_visible()
    shot("overview")

    for path in shots:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < MAX_PNG_BYTES, (path, len(data))
