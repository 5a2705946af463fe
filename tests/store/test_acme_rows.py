"""ACME's rows (store/acme.py): one node at a time holds a name's order lock; challenges and
keys are sealed; an HTTP-01 token answers only for its own name."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from burrow.store import schema
from burrow.store.acme import HTTP_01, AcmeRows
from burrow.store.store import Store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def rows(request: pytest.FixtureRequest, tmp_path: Path) -> AcmeRows:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    store = Store.open(tmp_path / "data", url)
    request.addfinalizer(store.close)
    return AcmeRows(store.engine, store.secret)


def test_one_node_holds_a_names_order_lock_until_it_lets_go_or_its_time_runs_out(rows: AcmeRows) -> None:
    assert rows.lock("a.example.com", "ecdsa", "node_a", 60)
    assert not rows.lock("a.example.com", "ecdsa", "node_b", 60)
    assert rows.lock("b.example.com", "ecdsa", "node_b", 60)  # names are locked one by one
    rows.unlock("a.example.com", "node_b")  # not B's to release
    assert not rows.lock("a.example.com", "ecdsa", "node_b", 60)
    rows.unlock("a.example.com", "node_a")
    assert rows.lock("a.example.com", "ecdsa", "node_b", 60)
    # A node that died holding the lock: it is free once its time has run out.
    assert rows.lock("c.example.com", "ecdsa", "node_a", -5)  # a lock whose time is over already
    assert rows.lock("c.example.com", "ecdsa", "node_b", 60)
    assert not rows.lock("c.example.com", "ecdsa", "node_a", 60)


def test_challenges_answer_for_their_own_name_and_keys_are_sealed(rows: AcmeRows) -> None:
    rows.put_challenge(HTTP_01, "a.example.com", "tok", "tok.thumb")
    assert rows.http_challenge("a.example.com", "tok") == "tok.thumb"
    assert rows.http_challenge("b.example.com", "tok") is None
    assert rows.http_challenge("a.example.com", "other") is None
    rows.put_alpn_challenge("a.example.com", "CERT", b"-----BEGIN PRIVATE KEY-----secret")
    assert rows.alpn_challenge("a.example.com") == ("CERT", b"-----BEGIN PRIVATE KEY-----secret")
    with rows.engine.connect() as connection:
        stored = [row.content for row in connection.execute(select(schema.acme_challenges.c.content))]
    assert not any("secret" in content for content in stored)
    assert "CERT" in json.loads(next(c for c in stored if c.startswith("{")))["cert"]
    rows.drop_challenges("a.example.com")
    assert rows.http_challenge("a.example.com", "tok") is None
    assert rows.alpn_challenge("a.example.com") is None


def test_the_account_key_is_made_once_and_kept_sealed(rows: AcmeRows) -> None:
    first = rows.account_key(lambda: b"KEY-ONE")
    assert first == b"KEY-ONE"
    assert rows.account_key(lambda: b"KEY-TWO") == b"KEY-ONE"
    with rows.engine.connect() as connection:
        values = [row.value for row in connection.execute(select(schema.cluster_identity.c.value))]
    assert not any("KEY-ONE" in value for value in values)


def test_old_challenges_are_not_answered(rows: AcmeRows) -> None:
    rows.put_challenge(HTTP_01, "a.example.com", "tok", "tok.thumb")
    table = schema.acme_challenges
    with rows.engine.begin() as connection:
        connection.execute(update(table).values(created_at=table.c.created_at - datetime.timedelta(hours=1)))
    assert rows.http_challenge("a.example.com", "tok") is None


def test_names_no_longer_managed_are_forgotten_unless_being_ordered(rows: AcmeRows) -> None:
    for name in ("keep.example.com", "gone.example.com", "busy.example.com"):
        assert rows.lock(name, "ecdsa", "node_a", 60)
    rows.unlock("keep.example.com", "node_a")
    rows.unlock("gone.example.com", "node_a")
    rows.forget_except({"keep.example.com"})
    assert rows.state("keep.example.com") is not None
    assert rows.state("gone.example.com") is None
    assert rows.state("busy.example.com") is not None  # a node holds its lock: left alone
