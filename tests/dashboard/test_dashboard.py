"""The dashboard in a real browser against a real server, as a user would use it."""

from __future__ import annotations

import http.server
import os
import re
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.edge.conftest import SDK_PYTHON
from tests.edge.test_agent_binary import NGROK
from tests.harness import BurrowServer, local_http_service

from .conftest import sign_in

pytestmark = pytest.mark.e2e

TOKEN = re.compile(r"^[0-9A-Za-z]{27}_[0-9A-Za-z]{28}$")


def credential_ids(server: BurrowServer) -> set[str]:
    with server.client() as api:
        return {c["id"] for c in api.get("/credentials").json()["credentials"]}


def test_sign_in_refuses_an_invalid_key_then_accepts_a_valid_one(
    server: BurrowServer, page: Page, context: BrowserContext
) -> None:
    page.goto(f"{server.base_url}/dashboard/")
    expect(page).to_have_url(f"{server.base_url}/dashboard/signin")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_202")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # A well-formed key the server never issued: the API's own message, nothing more.
    forged = server.api_key[:-8] + ("A" if server.api_key[-8] != "A" else "B") + server.api_key[-7:]
    page.get_by_label("API key").fill(forged)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_")

    page.get_by_label("API key").fill(server.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("admin", exact=False).first).to_be_visible()

    [cookie] = [c for c in context.cookies() if c["name"] == "burrow_dashboard"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert not cookie["secure"]  # plain http here; https or an https --public-url sets it
    assert server.api_key not in cookie["value"]
    assert server.api_key not in page.url and server.api_key not in page.content()
    assert server.api_key not in server.log()

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("main > .flash")).to_contain_text("Signed out")
    page.goto(f"{server.base_url}/dashboard/credentials")
    expect(page).to_have_url(f"{server.base_url}/dashboard/signin")


def test_credential_acl_is_checked_as_you_type_and_the_token_is_shown_once(
    server: BurrowServer, page: Page
) -> None:
    sign_in(page, server, server.api_key)
    page.get_by_role("link", name="Credentials").click()
    acl = page.get_by_label("ACL rules")
    status = page.locator("#acl-status")
    acl.fill("bind:*.burrow.localhost\nbind:not a host")
    expect(status).to_contain_text("Invalid ACL rule")
    expect(status).to_contain_text("'bind:not a host'")
    expect(acl).to_have_attribute("aria-invalid", "true")
    before = credential_ids(server)
    page.get_by_label("Description").fill("laptop")
    page.get_by_role("button", name="Create credential").click()
    # The API refuses it too; the form keeps what was typed.
    expect(page.get_by_role("alert")).to_contain_text("ERR_NGROK_600")
    expect(page.get_by_label("ACL rules")).to_have_value("bind:*.burrow.localhost\nbind:not a host")
    assert credential_ids(server) == before

    page.get_by_label("ACL rules").fill("bind:*.burrow.localhost")
    expect(status).to_have_text("Valid rules.")
    expect(page.get_by_label("ACL rules")).to_have_attribute("aria-invalid", "false")
    page.get_by_role("button", name="Create credential").click()
    expect(page.get_by_role("heading", name=re.compile("New credential"))).to_be_visible()
    token = page.get_by_label("Token").input_value()
    assert TOKEN.match(token), token
    [new_id] = credential_ids(server) - before
    expect(page.get_by_role("heading", name=re.compile(new_id))).to_be_visible()
    assert token not in page.url

    page.reload()
    expect(page).to_have_url(f"{server.base_url}/dashboard/credentials")
    expect(page.locator("main > .flash")).to_contain_text("shown only once")
    assert token not in page.content()
    expect(page.get_by_role("cell", name=new_id, exact=True)).to_be_visible()


def test_the_agent_snippet_runs_and_its_session_is_stopped_from_the_page(
    server: BurrowServer, page: Page, tmp_path: Path
) -> None:
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/credentials")
    page.get_by_label("Description").fill("snippet")
    page.get_by_label("ACL rules").fill("bind:*.burrow.localhost")
    page.get_by_role("button", name="Create credential").click()
    snippet = page.locator("#snippet-python").inner_text()
    token = page.get_by_label("Token").input_value()
    assert f'.authtoken("{token}")' in snippet
    assert f'.server_addr("{server.agent_addr}")' in snippet
    assert str(server.ca_path.resolve()) in snippet
    yaml = page.locator("#snippet-yaml").inner_text()
    assert (
        f"authtoken: {token}\nserver_addr: {server.agent_addr}\nroot_cas: {server.ca_path.resolve()}" in yaml
    )

    def reply(request: http.server.BaseHTTPRequestHandler) -> str:
        return f"local service saw {request.headers['Host']}{request.path}"

    with local_http_service(reply) as port:
        # The reader fills in their local service's address, as the page says; nothing else changes.
        assert "http://127.0.0.1:3000" in snippet
        code = snippet.replace("http://127.0.0.1:3000", f"http://127.0.0.1:{port}")
        agent = subprocess.Popen(
            [str(SDK_PYTHON), "-u", "-c", code],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
        )
        try:
            assert agent.stdout is not None
            ready, _, _ = select.select([agent.stdout], [], [], 30)
            assert ready, "the snippet printed nothing in 30 s"
            url = agent.stdout.readline().strip()
            # The SDK's default endpoint is https: served by the HTTPS listener, under Burrow's CA.
            https_host, https_port = server.https_addr.rsplit(":", 1)
            assert url == f"https://app.burrow.localhost:{https_port}", agent.stderr
            context = ssl.create_default_context(cafile=str(server.ca_path))
            with (
                socket.create_connection((https_host, int(https_port)), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="app.burrow.localhost") as tls,
            ):
                tls.sendall(
                    f"GET /hello HTTP/1.1\r\nHost: app.burrow.localhost:{https_port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert answer.endswith(f"local service saw app.burrow.localhost:{https_port}/hello".encode())

            page.get_by_role("link", name="Agents").click()
            with server.client() as api:
                [session] = api.get("/tunnel_sessions").json()["tunnel_sessions"]
            row = page.get_by_role("row").filter(has_text=session["id"])
            expect(row).to_contain_text(url)
            page.get_by_role("link", name="Overview").click()
            expect(page.get_by_role("cell", name=url, exact=True)).to_be_visible()

            page.get_by_role("link", name="Agents").click()
            page.get_by_role("button", name=f"Stop session {session['id']}").click()
            expect(page.locator("main > .flash")).to_contain_text(f"Session {session['id']} stopped")
            # That session is over (the SDK may then start a new one: it reconnects by design).
            expect(page.get_by_role("cell", name=session["id"], exact=True)).to_have_count(0)
            with server.client() as api:
                assert api.get(f"/tunnel_sessions/{session['id']}").status_code == 404
        finally:
            agent.kill()
            agent.wait(timeout=10)


def test_posts_without_the_csrf_token_or_from_elsewhere_are_refused(
    server: BurrowServer, page: Page, context: BrowserContext
) -> None:
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/credentials")
    csrf = page.locator("input[name=csrf]").first.input_value()
    cookie = {c["name"]: c["value"] for c in context.cookies()}
    own = {"Origin": server.base_url}
    before = credential_ids(server)
    with httpx.Client(base_url=server.base_url, cookies=cookie) as browser_like:
        refused = [
            browser_like.post("/dashboard/credentials", data={"description": "x"}, headers=own),
            browser_like.post(
                "/dashboard/credentials", data={"description": "x", "csrf": "0" * 43}, headers=own
            ),
            browser_like.post("/dashboard/credentials", data={"description": "x", "csrf": csrf}),
            browser_like.post(
                "/dashboard/credentials",
                data={"description": "x", "csrf": csrf},
                headers={"Origin": "http://evil.example"},
            ),
            browser_like.post(
                "/dashboard/credentials",
                data={"description": "x", "csrf": csrf},
                headers={"Referer": "http://evil.example/dashboard/credentials"},
            ),
            browser_like.post("/dashboard/signout", data={}, headers=own),
        ]
        assert [r.status_code for r in refused] == [403] * len(refused)
        assert credential_ids(server) == before
        # Without the cookie, the token alone is worth nothing either.
        assert (
            httpx.post(
                f"{server.base_url}/dashboard/credentials", data={"csrf": csrf}, headers=own
            ).status_code
            == 403
        )
        # The same request with the token and our origin goes through: the refusals were the checks.
        accepted = browser_like.post(
            "/dashboard/credentials", data={"description": "x", "csrf": csrf}, headers=own
        )
        assert (
            accepted.status_code == 303 and accepted.headers["location"] == "/dashboard/credentials/created"
        )
    assert len(credential_ids(server) - before) == 1


def test_bot_users_are_managed_by_admins_and_members_see_no_admin_actions(
    server: BurrowServer, page: Page, context: BrowserContext
) -> None:
    sign_in(page, server, server.api_key)
    page.get_by_role("link", name="Bot users").click()
    page.get_by_label("Name").fill("ci-bot")
    page.get_by_role("button", name="Create bot user").click()
    expect(page.locator("main > .flash")).to_contain_text("Bot user 'ci-bot' created")
    row = page.get_by_role("row").filter(has_text="ci-bot")
    expect(row).to_contain_text("active")
    page.get_by_role("button", name="Deactivate ci-bot").click()
    expect(page.get_by_role("row").filter(has_text="ci-bot")).to_contain_text("inactive")
    page.get_by_role("button", name="Activate ci-bot").click()
    expect(page.get_by_role("row").filter(has_text="ci-bot")).not_to_contain_text("inactive")
    page.get_by_role("button", name="Create bot user")  # still there for the admin
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_label("Owner")).to_be_visible()
    admin_deletes = page.get_by_role("button", name=re.compile("^Delete API key")).count()
    assert admin_deletes >= 1

    member_key = server.create_user("member@example.com", role="member")
    member = context.browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[union-attr]
    try:
        member_page = member.new_page()
        sign_in(member_page, server, member_key)
        expect(member_page.get_by_text("member", exact=False).first).to_be_visible()
        member_page.get_by_role("link", name="Bot users").click()
        expect(member_page.get_by_role("cell", name="ci-bot", exact=True)).to_be_visible()  # members may read
        expect(member_page.get_by_role("button", name="Create bot user")).to_have_count(0)
        expect(member_page.get_by_role("button", name=re.compile("ctivate|Delete"))).to_have_count(0)
        member_page.get_by_role("link", name="API keys").click()
        expect(member_page.get_by_label("Owner")).to_have_count(0)
        # Only their own key has a delete button; the admin's key is listed without one.
        member_key_id, admin_key_id = (f"ak_{token.split('_')[0]}" for token in (member_key, server.api_key))
        expect(member_page.get_by_role("cell", name=admin_key_id, exact=True)).to_be_visible()
        expect(member_page.get_by_role("button", name=f"Delete API key {admin_key_id}")).to_have_count(0)
        expect(member_page.get_by_role("button", name=f"Delete API key {member_key_id}")).to_have_count(1)
        expect(member_page.get_by_role("button", name=re.compile("^Delete API key"))).to_have_count(1)
        # A member creating an API key sees its token once, as an admin does.
        member_page.get_by_label("Description").fill("member laptop")
        member_page.get_by_role("button", name="Create API key").click()
        assert TOKEN.match(member_page.get_by_label("Token").input_value())
    finally:
        member.close()

    page.get_by_role("link", name="Bot users").click()
    page.get_by_role("button", name="Delete ci-bot").click()
    expect(page.locator("main > .flash")).to_contain_text("deleted")
    expect(page.get_by_role("cell", name="ci-bot", exact=True)).to_have_count(0)


def test_behind_an_https_public_url_the_cookie_is_secure_and_that_origin_is_ours(
    make_server: Callable[..., BurrowServer],
) -> None:
    public = "https://burrow.example.com"
    server = make_server("--public-url", public)
    with httpx.Client(base_url=server.base_url) as http:
        signin = http.get("/dashboard/signin")
        # Framing, foreign scripts and sniffing are refused on every page.
        assert "frame-ancestors 'none'" in signin.headers["content-security-policy"]
        assert "script-src 'self'" in signin.headers["content-security-policy"]
        assert signin.headers["x-frame-options"] == "DENY"
        assert signin.headers["x-content-type-options"] == "nosniff"
        set_cookie = signin.headers["set-cookie"]
        assert "secure" in set_cookie.lower() and "httponly" in set_cookie.lower()
        # A __Host- cookie: only this host sets it, so a page on another host of a shared
        # parent domain (a tenant's tunnel) cannot plant a session the dashboard reads.
        assert set_cookie.startswith("__Host-burrow_dashboard=") and "domain=" not in set_cookie.lower()
        assert "samesite=strict" in set_cookie.lower() and "path=/;" in set_cookie.lower()
        cookie = set_cookie.split(";")[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', signin.text).group(1)  # type: ignore[union-attr]
        form = {"csrf": csrf, "api_key": server.api_key}
        # A Secure cookie is not sent over plain http by clients: pass it by hand, as a proxy would.
        signed_in = http.post("/dashboard/signin", data=form, headers={"Cookie": cookie, "Origin": public})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard/"
        assert "secure" in signed_in.headers["set-cookie"].lower()
        session = signed_in.headers["set-cookie"].split(";")[0]
        assert http.get("/dashboard/", headers={"Cookie": session}).status_code == 200
        # The same sealed session under a name any host can set (Domain=.example.com) is not read.
        planted = session.replace("__Host-burrow_dashboard=", "burrow_dashboard=")
        assert http.get("/dashboard/", headers={"Cookie": planted}).status_code == 303
        elsewhere = http.post(
            "/dashboard/signin", data=form, headers={"Cookie": cookie, "Origin": "https://other.example.com"}
        )
        assert elsewhere.status_code == 403
        assert http.get("/dashboard/no-such-page").status_code == 404
        too_big = http.post(
            "/dashboard/signin",
            content=b"csrf=" + b"x" * 70_000,
            headers={"Cookie": cookie, "Origin": public, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert too_big.status_code == 413


def test_the_v2_agent_config_from_the_page_works_with_the_agent_binary(
    server: BurrowServer, page: Page, tmp_path: Path
) -> None:
    if not NGROK.exists():
        pytest.fail("the ngrok v2 agent binary is missing: run 'make test' (it installs .venvs/ngrok-bin)")
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/credentials")
    page.get_by_label("Description").fill("v2 agent")
    page.get_by_label("ACL rules").fill("bind:v2.burrow.localhost")
    page.get_by_role("button", name="Create credential").click()
    (tmp_path / "burrow-agent.yml").write_text(page.locator("#snippet-yaml").inner_text())
    command = page.locator("#snippet-command").inner_text()
    assert command == "ngrok http -config burrow-agent.yml -hostname v2.burrow.localhost 3000"
    http_port = server.http_addr.rsplit(":", 1)[1]

    def reply(request: http.server.BaseHTTPRequestHandler) -> str:
        return f"v2 saw {request.headers['Host']}"

    with local_http_service(reply) as port:
        args = command.split()
        binary = subprocess.Popen(
            [str(NGROK), *args[1:-1], str(port)],  # the reader's local port instead of 3000
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert binary.poll() is None, "the agent binary exited"
                reached = httpx.get(
                    f"http://{server.http_addr}/", headers={"Host": f"v2.burrow.localhost:{http_port}"}
                )
                if reached.status_code == 200:
                    break
                assert time.monotonic() < deadline, reached.text
                time.sleep(0.3)
            assert reached.text == f"v2 saw v2.burrow.localhost:{http_port}"
        finally:
            binary.terminate()
            binary.wait(timeout=10)


def test_api_keys_and_credentials_are_deleted_from_the_page(server: BurrowServer, page: Page) -> None:
    sign_in(page, server, server.api_key)
    page.goto(f"{server.base_url}/dashboard/api-keys")
    page.get_by_label("Description").fill("short-lived")
    page.get_by_role("button", name="Create API key").click()
    expect(page.get_by_role("heading", name=re.compile("New API key"))).to_be_visible()
    key_token = page.get_by_label("Token").input_value()
    key_id = f"ak_{key_token.split('_')[0]}"
    with server.client(key_token) as api:
        assert api.get("/credentials").status_code == 200
    page.get_by_role("link", name="Done, I have copied it").click()
    page.get_by_role("button", name=f"Delete API key {key_id}").click()
    expect(page.locator("main > .flash")).to_contain_text(f"API key {key_id} deleted")
    with server.client(key_token) as api:
        assert api.get("/credentials").status_code == 401

    page.goto(f"{server.base_url}/dashboard/credentials")
    page.get_by_label("Description").fill("to delete")
    page.get_by_role("button", name="Create credential").click()
    credential_id = (
        page.get_by_role("heading", name=re.compile("New credential")).locator("code").inner_text()
    )
    page.goto(f"{server.base_url}/dashboard/credentials")
    page.get_by_role("button", name=f"Delete credential {credential_id}").click()
    expect(page.locator("main > .flash")).to_contain_text(f"Credential {credential_id} deleted")
    assert credential_id not in credential_ids(server)


def test_the_keyboard_alone_signs_in_and_reaches_every_page(server: BurrowServer, page: Page) -> None:
    page.goto(f"{server.base_url}/dashboard/")
    expect(page.get_by_label("API key")).to_be_focused()  # autofocus
    page.keyboard.type(server.api_key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert reached == [
        "Burrow",
        "Overview",
        "Agents",
        "Credentials",
        "API keys",
        "Bot users",
        "Domains",
        "TCP addresses",
    ]
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Reserved TCP addresses")).to_be_visible()


def test_the_forms_work_without_javascript(server: BurrowServer, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        sign_in(page, server, server.api_key)
        page.goto(f"{server.base_url}/dashboard/credentials")
        page.get_by_label("Description").fill("no js")
        page.get_by_label("ACL rules").fill("bind:nojs.burrow.localhost")
        page.get_by_role("button", name="Create credential").click()
        assert TOKEN.match(page.get_by_label("Token").input_value())
        credential_id = (
            page.get_by_role("heading", name=re.compile("New credential")).locator("code").inner_text()
        )
        page.goto(f"{server.base_url}/dashboard/credentials")
        # No confirm() without JavaScript: the button posts at once.
        page.get_by_role("button", name=f"Delete credential {credential_id}").click()
        expect(page.locator("main > .flash")).to_contain_text(f"Credential {credential_id} deleted")
    finally:
        context.close()


def test_a_refused_sign_in_from_another_site_leaves_the_session_as_it_was(
    server: BurrowServer, page: Page, context: BrowserContext
) -> None:
    sign_in(page, server, server.api_key)
    before = [c["value"] for c in context.cookies() if c["name"] == "burrow_dashboard"]
    attack = (
        f'<form method="post" action="{server.base_url}/dashboard/signin">'
        '<input type="hidden" name="csrf" value="forged"><input type="hidden" name="api_key" value="x">'
        '<button type="submit">Win a prize</button></form>'
    )

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = attack.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        # localhost is another site than 127.0.0.1, where the dashboard is.
        page.goto(f"http://localhost:{evil.server_address[1]}/")
        with page.expect_navigation():
            page.get_by_role("button", name="Win a prize").click()
        assert [c["value"] for c in context.cookies() if c["name"] == "burrow_dashboard"] == before
        expect(page.get_by_role("alert")).to_contain_text("not sent from this dashboard")
    finally:
        evil.shutdown()
        evil.server_close()
    page.goto(f"{server.base_url}/dashboard/credentials")
    expect(page.get_by_role("heading", name="Credentials", exact=True)).to_be_visible()

    # From our own page, with a wrong token: refused, and the session is left as it was too.
    cookie = {c["name"]: c["value"] for c in context.cookies()}
    with httpx.Client(base_url=server.base_url, cookies=cookie) as browser_like:
        refused = browser_like.post(
            "/dashboard/signin",
            data={"csrf": "0" * 43, "api_key": "x"},
            headers={"Origin": server.base_url},
        )
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
    page.reload()
    expect(page.get_by_role("heading", name="Credentials", exact=True)).to_be_visible()


def test_the_agents_page_shows_each_session_s_endpoints_and_their_policy(
    server: BurrowServer, page: Page
) -> None:
    from tests.edge.malicious_agent import MaliciousAgent
    from tests.edge.test_control import go_bind

    with server.client() as api:
        token = api.post("/credentials", json={"acl": []}).json()["token"]
    bind = go_bind("http", "http://shown.burrow.localhost", Name="storefront")
    bind["Opts"]["TrafficPolicy"] = "on_http_request: [{actions: [{type: deny, config: {status_code: 418}}]}]"
    with MaliciousAgent(server.agent_addr, server.ca_path, token, "", bind=bind) as agent:
        sign_in(page, server, server.api_key)
        page.goto(f"{server.base_url}/dashboard/sessions")
        row = page.get_by_role("row").filter(has_text=agent.client_id)
        expect(row).to_contain_text(agent.url)
        expect(row).to_contain_text("storefront")
        policy = row.locator("details")
        expect(policy.locator("pre")).not_to_be_visible()  # folded until asked for
        policy.locator("summary").click()
        expect(policy.locator("pre")).to_contain_text("type: deny, config: {status_code: 418}")
