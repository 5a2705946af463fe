"""The dashboard's session cookie (AES-GCM under the server secret) and its CSRF checks, in process."""

from __future__ import annotations

import base64
from dataclasses import replace

from burrow.dashboard.session import (
    ABSOLUTE_SECONDS,
    IDLE_SECONDS,
    Session,
    SessionCodec,
    csrf_matches,
    same_origin,
)

SECRET = b"s" * 32
KEY = "2bY0bF3xJ8Qe0m3kq9TnTz1QvHc_3kq9TnTz1QvHc2bY0bF3xJ8Qe0m3"
T0 = 1_800_000_000


def test_a_sealed_session_opens_to_itself_and_never_shows_the_key() -> None:
    codec = SessionCodec(SECRET)
    session = replace(Session.new(T0, KEY), flash={"kind": "token", "token": "secret-token"})
    value = codec.seal(session)
    assert KEY not in value and "secret-token" not in value
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    assert KEY.encode() not in raw and b"secret-token" not in raw
    assert codec.open(value, T0 + 1) == session


def test_sealing_twice_gives_different_values() -> None:
    codec = SessionCodec(SECRET)
    session = Session.new(T0, KEY)
    assert codec.seal(session) != codec.seal(session)


def test_another_secret_cannot_open_it() -> None:
    value = SessionCodec(SECRET).seal(Session.new(T0, KEY))
    assert SessionCodec(b"t" * 32).open(value, T0) is None


def test_any_altered_byte_is_refused() -> None:
    codec = SessionCodec(SECRET)
    value = codec.seal(Session.new(T0, KEY))
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    for index in (0, 12, len(raw) // 2, len(raw) - 1):
        altered = bytearray(raw)
        altered[index] ^= 1
        assert codec.open(base64.urlsafe_b64encode(bytes(altered)).decode(), T0) is None


def test_garbage_missing_and_oversized_values_are_refused() -> None:
    codec = SessionCodec(SECRET)
    for value in (None, "", "x", "!!!!", "A" * 10_000, base64.urlsafe_b64encode(b"\0" * 40).decode()):
        assert codec.open(value, T0) is None


def test_idle_expiry_and_sliding_refresh() -> None:
    codec = SessionCodec(SECRET)
    session = Session.new(T0, KEY)
    assert codec.open(codec.seal(session), T0 + IDLE_SECONDS) is not None
    assert codec.open(codec.seal(session), T0 + IDLE_SECONDS + 1) is None
    # Each request re-seals the session as seen now, which keeps an active session alive...
    later = session.touched(T0 + IDLE_SECONDS)
    assert codec.open(codec.seal(later), T0 + IDLE_SECONDS + 60) is not None


def test_absolute_expiry_however_active() -> None:
    codec = SessionCodec(SECRET)
    session = Session.new(T0, KEY).touched(T0 + ABSOLUTE_SECONDS + 1)
    assert codec.open(codec.seal(session), T0 + ABSOLUTE_SECONDS + 1) is None


def test_a_session_from_the_future_is_refused() -> None:
    codec = SessionCodec(SECRET)
    assert codec.open(codec.seal(Session.new(T0 + 3600, KEY)), T0) is None


def test_csrf_token_must_match_exactly() -> None:
    session = Session.new(T0, KEY)
    assert csrf_matches(session, session.csrf)
    assert not csrf_matches(session, None)
    assert not csrf_matches(session, "")
    assert not csrf_matches(session, session.csrf[:-1])
    assert not csrf_matches(session, Session.new(T0, KEY).csrf)
    assert len(session.csrf) >= 40


def test_origin_or_referer_must_be_ours() -> None:
    ours = {"http://127.0.0.1:4080"}
    assert same_origin({"origin": "http://127.0.0.1:4080"}, ours)
    assert not same_origin({"origin": "http://evil.example"}, ours)
    assert not same_origin({"origin": "null"}, ours)
    # Origin decides when present, even if Referer is ours.
    assert not same_origin({"origin": "http://evil.example", "referer": "http://127.0.0.1:4080/x"}, ours)
    assert same_origin({"referer": "http://127.0.0.1:4080/dashboard/credentials"}, ours)
    assert not same_origin({"referer": "http://127.0.0.1:4081/dashboard/"}, ours)
    assert not same_origin({"referer": "https://127.0.0.1:4080/dashboard/"}, ours)
    assert not same_origin({}, ours)
