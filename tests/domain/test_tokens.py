"""Ids and tokens: format, ordering, checksums, keyed hashes."""

from __future__ import annotations

import re
import time

from hypothesis import given
from hypothesis import strategies as st

from burrow.domain import ids, tokens

KEY = b"k" * 32


def test_ids_have_a_prefix_and_27_base62_characters() -> None:
    for prefix in (ids.API_KEY, ids.CREDENTIAL, ids.BOT_USER, ids.USER):
        value = ids.new_id(prefix)
        assert re.fullmatch(rf"{prefix}_[0-9A-Za-z]{{27}}", value)
        assert ids.split_id(value) == (prefix, value.split("_", 1)[1])


def test_ids_increase_strictly_and_carry_their_time() -> None:
    before = time.time_ns() // 1000
    made = [ids.new_id(ids.CREDENTIAL) for _ in range(5000)]
    after = time.time_ns() // 1000
    assert made == sorted(made) and len(set(made)) == len(made)
    assert before <= ids.created_micros(made[0]) <= ids.created_micros(made[-1]) <= after + 5000


@given(st.integers(0, (1 << 160) - 1))
def test_base62_round_trips_and_keeps_order(value: int) -> None:
    encoded = ids.b62encode(value, ids.BODY_LENGTH)
    assert len(encoded) == ids.BODY_LENGTH and ids.b62decode(encoded) == value
    assert ids.is_valid_body(encoded)


@given(st.integers(0, (1 << 160) - 2))
def test_string_order_is_numeric_order(value: int) -> None:
    assert ids.b62encode(value, 27) < ids.b62encode(value + 1, 27)


def test_malformed_ids() -> None:
    for bad in (
        "",
        "cr",
        "cr_",
        "cr_short",
        "CR_" + "0" * 27,
        "cr_" + "0" * 26 + "!",
        "cr_" + "z" * 27,
        "_" + "0" * 27,
    ):
        assert ids.split_id(bad) is None


def test_token_shape_and_resource_id() -> None:
    issued = tokens.issue(ids.API_KEY)
    body = issued.id.split("_", 1)[1]
    assert issued.token.startswith(body + "_") and len(issued.token) == tokens.TOKEN_LENGTH
    assert tokens.resource_id(issued.token, ids.API_KEY) == issued.id


def test_tokens_carry_128_random_bits() -> None:
    secrets_seen = {tokens.issue(ids.API_KEY).token[28:50] for _ in range(2000)}
    assert len(secrets_seen) == 2000
    assert 62**22 > 2**128


def test_every_single_character_typo_is_caught_without_a_lookup() -> None:
    issued = tokens.issue(ids.CREDENTIAL)
    for position in range(len(issued.token)):
        for replacement in "0aZ_":
            if issued.token[position] == replacement:
                continue
            typo = issued.token[:position] + replacement + issued.token[position + 1 :]
            assert tokens.resource_id(typo, ids.CREDENTIAL) == tokens.TokenProblem.MALFORMED, typo


def test_kinds_are_told_apart() -> None:
    credential = tokens.issue(ids.CREDENTIAL)
    assert (
        tokens.resource_id(credential.token, ids.API_KEY, (ids.CREDENTIAL,)) is tokens.TokenProblem.OTHER_KIND
    )
    assert tokens.resource_id(credential.token, ids.API_KEY) is tokens.TokenProblem.MALFORMED
    assert tokens.resource_id(credential.id, ids.CREDENTIAL) is tokens.TokenProblem.ID_NOT_TOKEN


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_a_token(text: str) -> None:
    assert isinstance(tokens.resource_id(text, ids.API_KEY, (ids.CREDENTIAL,)), tokens.TokenProblem)


def test_digests_are_keyed_and_compared_exactly() -> None:
    issued = tokens.issue(ids.API_KEY)
    stored = tokens.digest(KEY, issued.token)
    assert issued.token not in stored and len(stored) == 64
    assert tokens.matches(KEY, issued.token, stored)
    assert not tokens.matches(b"other key", issued.token, stored)
    assert not tokens.matches(KEY, tokens.issue(ids.API_KEY).token, stored)
