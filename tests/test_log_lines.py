"""Every line ``burrow serve`` writes, whatever wrote it, is JSON of one shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEAD = ["time", "level", "logger", "message"]


def test_every_line_is_json_with_the_same_leading_keys_and_no_httpx_chatter(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server()
    with server.client() as api:  # the API, the access log
        assert api.get("/credentials").status_code == 200
        assert api.get("/no-such-thing").status_code == 404
    with httpx.Client(base_url=server.base_url, headers={"Origin": server.base_url}) as browser:
        page = browser.get("/dashboard/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        signed_in = browser.post("/dashboard/signin", data={"csrf": csrf, "api_key": server.api_key})
        assert signed_in.status_code == 303
        for path in ("/dashboard/", "/dashboard/credentials", "/dashboard/sessions"):
            assert browser.get(path).status_code == 200  # each calls the API in process
    # The edge: a public request for a name nobody serves (the traffic log).
    http_host, http_port = server.http_addr.rsplit(":", 1)
    missing = httpx.get(f"http://{http_host}:{http_port}/", headers={"Host": "nobody.burrow.localhost"})
    assert missing.status_code == 404
    assert server.stop() == 0  # shutdown's lines too

    lines = server.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line, or this raises
    for entry in entries:
        assert list(entry)[:4] == HEAD, entry
        assert TIME.match(entry["time"]) and entry["level"] in {"debug", "info", "warning", "error"}, entry
        assert isinstance(entry["logger"], str) and isinstance(entry["message"], str), entry
    loggers = {entry["logger"] for entry in entries}
    assert {"burrow.access", "burrow.traffic", "burrow.serve", "uvicorn.error"} <= loggers, loggers
    assert not {name for name in loggers if name.startswith(("httpx", "httpcore"))}, loggers
    assert not [e for e in entries if "burrow.internal" in json.dumps(e)]
