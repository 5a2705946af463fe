"""The read cache (store/fastpath.py): hit while nothing changes, never stale after a change."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from burrow.domain import ids, tokens
from burrow.store.fastpath import PointReader
from burrow.store.store import API_KEYS, CREDENTIALS, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path)
    yield store
    store.close()


def _past_the_recheck() -> None:
    time.sleep(PointReader.RECHECK_SECONDS * 5)


def test_reads_are_cached_while_nothing_changes(store: Store) -> None:
    user, _ = store.create_account("a@example.com")
    made, _ = store.create_credential(user.account_id, user.id, "first", "", [])
    first = store.get(CREDENTIALS, user.account_id, made.id)
    _past_the_recheck()  # the data_version check finds nothing new
    assert first is not None and store.get(CREDENTIALS, user.account_id, made.id) is first


def test_a_commit_through_the_store_clears_the_cache(store: Store) -> None:
    user, _ = store.create_account("a@example.com")
    made, _ = store.create_credential(user.account_id, user.id, "first", "", [])
    assert store.get(CREDENTIALS, user.account_id, made.id).description == "first"  # type: ignore[union-attr]
    store.update(CREDENTIALS, user.account_id, made.id, {"description": "second"})
    # Read at once, inside the recheck window: only the commit hook can have cleared it.
    store._reader._checked_at = time.monotonic() + 60
    assert store.get(CREDENTIALS, user.account_id, made.id).description == "second"  # type: ignore[union-attr]
    assert store.delete(CREDENTIALS, user.account_id, made.id)
    assert store.get(CREDENTIALS, user.account_id, made.id) is None


def test_another_connections_write_is_seen_through_data_version(store: Store, tmp_path: Path) -> None:
    user, token = store.create_account("a@example.com")
    made, _ = store.create_credential(user.account_id, user.id, "first", "", [])
    key_id = tokens.resource_id(token, ids.API_KEY)
    assert isinstance(key_id, str)
    assert store.authenticate_api_key(key_id, token) is not None
    assert store.cached_principal(token) is not None
    assert store.get(CREDENTIALS, user.account_id, made.id).description == "first"  # type: ignore[union-attr]
    # As `burrow admin` or a second server would: another connection, no commit hook here.
    with contextlib.closing(sqlite3.connect(tmp_path / "burrow.db")) as other, other:
        other.execute("UPDATE credentials SET description = 'changed elsewhere' WHERE id = ?", (made.id,))
        other.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
    _past_the_recheck()
    assert store.get(CREDENTIALS, user.account_id, made.id).description == "changed elsewhere"  # type: ignore[union-attr]
    assert store.cached_principal(token) is None
    assert store.get(API_KEYS, user.account_id, key_id) is None
