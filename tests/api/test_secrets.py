"""Tokens are shown once and stored nowhere: not in the database, its WAL, or the log."""

from __future__ import annotations

from collections.abc import Callable

from burrow.domain import ids, tokens
from tests.harness import AppServer, BurrowServer


def test_tokens_appear_nowhere_on_disk_or_in_logs(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server("--log-level", "debug")
    issued = [server.api_key]
    with server.client() as http:
        for i in range(5):
            key = http.post("/api_keys", json={"description": f"k{i}"}).json()
            credential = http.post("/credentials", json={"description": f"c{i}", "acl": ["*"]}).json()
            issued += [key["token"], credential["token"]]
            # Use each token so that it passes through the request path and its logging.
            with server.client(key["token"]) as as_key:
                assert as_key.get(f"/credentials/{credential['id']}").json()["token"] is None
            assert http.get(f"/api_keys/{key['id']}").json()["token"] is None
        listed = http.get("/credentials").json()["credentials"]
        assert all(item["token"] is None for item in listed)
        # A refused request echoes nothing either.
        refused = http.get("/credentials", headers={"Authorization": f"Bearer {issued[1][:-2]}xx"})
        assert issued[1][:-2] not in refused.text
    assert all(len(token) == tokens.TOKEN_LENGTH for token in issued)

    stored = b"".join(
        path.read_bytes()
        for path in server.data_dir.iterdir()
        if path.name.startswith("burrow.db")  # the database, its -wal and -shm
    )
    assert (server.data_dir / "burrow.db-wal").exists()
    server.wait_log(lambda entry: entry.get("message") == "request")  # the access log did run
    log = server.log()
    for token in issued:
        secret = token.split("_", 1)[1]
        assert token.encode() not in stored and secret.encode() not in stored
        assert token not in log and secret not in log


def test_server_secret_file_is_private(app_server: AppServer) -> None:
    mode = (app_server.data_dir / "secret.key").stat().st_mode & 0o777
    assert mode == 0o600


def test_well_formed_but_wrong_token_is_invalid(app_server: AppServer) -> None:
    with app_server.client() as http:
        key_id = http.get("/api_keys").json()["keys"][0]["id"]
    body = key_id.split("_", 1)[1]
    # A token with a valid checksum for an existing key, but not its secret.
    forged = tokens.issue(ids.API_KEY).token.split("_", 1)[1]
    random_part = forged[:22]
    checksum = tokens._checksum(ids.API_KEY, body, random_part)
    candidate = f"{body}_{random_part}{checksum}"
    assert tokens.resource_id(candidate, ids.API_KEY) == key_id
    with app_server.client(candidate) as http:
        response = http.get("/credentials")
    assert response.status_code == 401 and response.json()["error_code"] == "ERR_NGROK_203"
    # And one for a key that does not exist.
    with app_server.client(tokens.issue(ids.API_KEY).token) as http:
        assert http.get("/credentials").json()["error_code"] == "ERR_NGROK_203"
