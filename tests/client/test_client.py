"""burrow.client, sync and async, against a real ``burrow serve`` (and a real 429 server)."""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from burrow.client import ApiKey, AsyncClient, BotUser, Client, Credential, Error, NotFoundError
from tests.harness import BurrowServer, free_port


def test_sync_client_every_operation(burrow_server: BurrowServer) -> None:
    with Client(burrow_server.api_key, base_url=burrow_server.base_url) as client:
        key = client.api_keys.create(description="k", metadata="m")
        assert isinstance(key, ApiKey) and key.token and key.created_at.tzinfo is not None
        got = client.api_keys.get(key.id)
        assert (got.id, got.description, got.metadata, got.token) == (key.id, "k", "m", None)
        assert client.api_keys.update(key.id, description="k2").description == "k2"
        assert key.id in {k.id for k in client.api_keys.list()}
        client.api_keys.delete(key.id)
        with pytest.raises(NotFoundError) as missing:
            client.api_keys.get(key.id)
        assert missing.value.http_status_code == 404 and missing.value.operation_id

        credential = client.credentials.create(description="c", acl=["bind:*.example.com"])
        assert isinstance(credential, Credential) and credential.acl == ("bind:*.example.com",)
        assert client.credentials.update(credential.id, acl=["*"]).acl == ("*",)
        assert client.credentials.get(credential.id).token is None
        client.credentials.delete(credential.id)

        for users in (client.bot_users, client.service_users):
            bot = users.create(name="b")
            assert isinstance(bot, BotUser) and bot.active
            assert users.update(bot.id, active=False).active is False
            assert users.get(bot.id).name == "b"
            assert bot.id in {b.id for b in users.list()}
            users.delete(bot.id)
        assert list(client.tunnel_sessions.list()) == [] and list(client.tunnels.list()) == []


def test_async_client_every_operation(burrow_server: BurrowServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(burrow_server.api_key, base_url=burrow_server.base_url) as client:
            key = await client.api_keys.create(description="async")
            assert (await client.api_keys.get(key.id)).description == "async"
            assert (await client.api_keys.update(key.id, metadata="x")).metadata == "x"
            assert key.id in [k.id async for k in await client.api_keys.list()]
            await client.api_keys.delete(key.id)
            with pytest.raises(NotFoundError):
                await client.api_keys.get(key.id)
            credential = await client.credentials.create(acl=["bind:a.example.com"])
            assert (await client.credentials.update(credential.id, description="d")).description == "d"
            await client.credentials.delete(credential.id)
            bot = await client.bot_users.create(name="ab")
            assert (await client.service_users.get(bot.id)).name == "ab"
            await client.bot_users.delete(bot.id)
            assert [s async for s in await client.tunnel_sessions.list()] == []

    asyncio.run(scenario())


def test_paging_across_pages_both_clients(make_server: object) -> None:
    server = make_server()  # type: ignore[operator]
    with Client(server.api_key, base_url=server.base_url) as client:
        made = [client.credentials.create(description=f"c{i}").id for i in range(7)]
        listing = client.credentials.list(limit=2)
        assert len(listing.items) == 2 and listing.next_page_uri
        assert [c.id for c in listing] == list(reversed(made))  # 4 pages, lazily

    async def scenario() -> list[str]:
        async with AsyncClient(server.api_key, base_url=server.base_url) as client:
            return [c.id async for c in await client.credentials.list(limit="3")]

    assert asyncio.run(scenario()) == list(reversed(made))


def test_each_error_kind(burrow_server: BurrowServer) -> None:
    with Client(burrow_server.api_key, base_url=burrow_server.base_url) as client:
        with pytest.raises(Error) as too_long:
            client.credentials.create(description="x" * 256)
        assert (too_long.value.error_code, too_long.value.http_status_code) == ("ERR_NGROK_604", 400)
        with pytest.raises(Error) as bad_acl:
            client.credentials.create(acl=["nope"])
        assert bad_acl.value.error_code == "ERR_NGROK_600" and bad_acl.value.message
        with pytest.raises(Error) as bad_id:
            client.credentials.get("cr_bad")
        assert bad_id.value.error_code == "ERR_NGROK_223"
        with pytest.raises(NotFoundError):
            client.credentials.get("cr_" + "0" * 27)
    with Client(burrow_server.api_key[:-3] + "abc", base_url=burrow_server.base_url) as wrong:
        with pytest.raises(Error) as unauthorized:
            wrong.credentials.list()
        assert unauthorized.value.http_status_code == 401 and unauthorized.value.error_code == "ERR_NGROK_202"


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[float]]]:
    """A real HTTP server that answers 429 (Retry-After: 1) twice, then 200."""
    seen: list[float] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            import time

            seen.append(time.monotonic())
            if len(seen) <= 2:
                body = json.dumps(
                    {
                        "error_code": "ERR_NGROK_226",
                        "status_code": 429,
                        "msg": "slow down",
                        "details": {"operation_id": "op_x"},
                    }
                ).encode()
                self.send_response(429)
                self.send_header("Retry-After", "1")
            else:
                body = json.dumps(
                    {
                        "id": "bot_1",
                        "uri": "u",
                        "name": "n",
                        "active": True,
                        "created_at": "2026-01-01T00:00:00Z",
                    }
                ).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_retries_429_honouring_retry_after(flaky_server: tuple[str, list[float]]) -> None:
    url, seen = flaky_server
    with Client("key", base_url=url) as client:
        bot = client.bot_users.get("bot_1")
    assert bot.name == "n" and bot.created_at == datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.95 and seen[2] - seen[1] >= 0.95


def test_gives_up_after_max_retries(flaky_server: tuple[str, list[float]]) -> None:
    url, seen = flaky_server

    async def scenario() -> None:
        async with AsyncClient("key", base_url=url, max_retries=1) as client:
            with pytest.raises(Error) as limited:
                await client.bot_users.get("bot_1")
            assert limited.value.http_status_code == 429 and limited.value.error_code == "ERR_NGROK_226"

    asyncio.run(scenario())
    assert len(seen) == 2


class CountingTransport(httpx.HTTPTransport):
    """httpx's own transport, counting the attempts that reach it."""

    attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return super().handle_request(request)


def test_refused_connections_are_retried_then_raised() -> None:
    port = free_port()  # nothing listens here
    transport = CountingTransport()
    client = Client(
        "key", base_url=f"http://127.0.0.1:{port}", max_retries=2, backoff=0.01, transport=transport
    )
    with client, pytest.raises(httpx.ConnectError):
        client.credentials.list()
    assert transport.attempts == 3


def test_a_dropped_connection_is_retried_on_a_new_one() -> None:
    """The listener drops the first connection without answering and serves the second."""
    connections: list[int] = []

    class DropsTheFirst(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            connections.append(self.client_address[1])
            if len(connections) == 1:
                self.close_connection = True  # no answer at all
                return
            body = json.dumps({"credentials": [], "uri": "u", "next_page_uri": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DropsTheFirst)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with Client("key", base_url=url, backoff=0.01) as client:
            assert client.credentials.list().items == []
    finally:
        server.shutdown()
        server.server_close()
    assert len(connections) == 2 and connections[0] != connections[1]


def test_environment_defaults(burrow_server: BurrowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BURROW_API_KEY", burrow_server.api_key)
    monkeypatch.setenv("BURROW_API_URL", burrow_server.base_url)
    with Client() as client:
        assert client.base_url == burrow_server.base_url
        made = client.credentials.create(description="from the environment")
        assert made.id in [item.id for item in client.credentials.list(limit=100).items]
    monkeypatch.delenv("BURROW_API_KEY")
    with pytest.raises(ValueError):
        Client()


def test_the_client_imports_nothing_server_side() -> None:
    code = (
        "import sys, burrow.client; "
        "print(sorted(m for m in sys.modules"
        " if m.startswith('burrow.') and not m.startswith('burrow.client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_list_results_look_like_the_official_clients(burrow_server: BurrowServer) -> None:
    with Client(burrow_server.api_key, base_url=burrow_server.base_url) as client:
        made = client.credentials.create(description="shape")
        listing = client.credentials.list()
        assert made.id in [c.id for c in listing.credentials] and listing.uri.endswith("/credentials")
        assert client.api_keys.list().keys and client.bot_users.list().bot_users is not None
        with pytest.raises(AttributeError):
            _ = listing.keys
        client.credentials.delete(made.id)


def test_ids_cannot_escape_their_path(burrow_server: BurrowServer) -> None:
    with Client(burrow_server.api_key, base_url=burrow_server.base_url) as client:
        with pytest.raises(Error) as escaped:
            client.credentials.get("../api_keys")
        assert escaped.value.error_code in ("ERR_NGROK_223", "ERR_NGROK_90404")
        with pytest.raises(ValueError):
            client.credentials.get("")


def test_errors_take_the_official_argument_order() -> None:
    error = Error("ERR_NGROK_604", "too long", 400, {"operation_id": "op_1"})
    assert (error.error_code, error.message, error.http_status_code, error.operation_id) == (
        "ERR_NGROK_604",
        "too long",
        400,
        "op_1",
    )


def test_objects_update_and_delete_themselves(burrow_server: BurrowServer) -> None:
    with Client(burrow_server.api_key, base_url=burrow_server.base_url) as client:
        credential = client.credentials.create(description="self")
        updated = credential.update(acl=["bind:x.example.com"])
        assert updated.acl == ("bind:x.example.com",) and updated.description == "self"
        listed = next(c for c in client.credentials.list() if c.id == credential.id)
        assert listed.update(metadata="from the list").metadata == "from the list"
        bot = client.bot_users.create(name="self-bot")
        assert bot.update(active=False).active is False
        key = client.api_keys.create(description="self-key")
        assert key.update(description="renamed").description == "renamed"
        for item in (credential, bot, key):
            item.delete()
        with pytest.raises(NotFoundError):
            client.credentials.get(credential.id)
    detached = Credential("cr_x", "u", "", "", datetime.now(), "usr_x", ())
    with pytest.raises(RuntimeError):
        detached.delete()

    async def scenario() -> None:
        async with AsyncClient(burrow_server.api_key, base_url=burrow_server.base_url) as aclient:
            made = await aclient.credentials.create(description="async self")
            assert (await made.update(description="changed")).description == "changed"
            await made.delete()
            with pytest.raises(NotFoundError):
                await aclient.credentials.get(made.id)

    asyncio.run(scenario())
