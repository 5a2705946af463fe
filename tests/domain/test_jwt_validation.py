"""The jwt-validation action's config and token checks (domain/traffic_policy/jwt.py), pure:
keys made here, tokens signed here, checked without the network."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from burrow.domain import errors
from burrow.domain.traffic_policy import compile_policy
from burrow.domain.traffic_policy.actions import JwtValidation
from burrow.domain.traffic_policy.document import REDACTED, redacted
from burrow.domain.traffic_policy.jwt import (
    ConfigError,
    Failure,
    JwtSettings,
    compile_jwt,
    parse_jwks,
)

ISSUER, AUDIENCE = "https://issuer.example/", "urn:burrow:api"
RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(65537, 2048)


def jwk(key: Any, kid: str, private: bool = False) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
    )
    made: dict[str, Any] = json.loads(algorithm.to_jwk(key if private else key.public_key()))
    made["kid"] = kid
    return made


JWKS = {"keys": [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")]}


def config(**changes: Any) -> dict[str, Any]:
    made: dict[str, Any] = {
        "issuer": {"allow_list": [{"value": ISSUER}]},
        "audience": {"allow_list": [{"value": AUDIENCE}]},
        "http": {
            "tokens": [{"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "}]
        },
        "jws": {"allowed_algorithms": ["RS256", "ES256"], "keys": {"sources": {"inline_jwks": JWKS}}},
    }
    made.update(changes)
    return made


def token(key: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(
        {k: v for k, v in body.items() if v is not None},
        key,
        algorithm=alg,
        headers={"kid": kid} if kid else None,
    )


def check(settings: JwtSettings, value: str | None, name: bytes = b"authorization") -> Failure | None:
    headers = [(b"host", b"api.example")] + ([(name, value.encode())] if value is not None else [])
    return settings.check(headers, time.time())


def test_a_good_token_passes_by_rsa_and_by_ec_key() -> None:
    settings = compile_jwt(config(), "jwt")
    assert check(settings, "Bearer " + token()) is None
    assert check(settings, "bearer " + token(EC_KEY, "ES256", "ec-1")) is None  # the scheme is case-blind
    assert check(settings, "Bearer " + token(kid=None)) is None  # no kid: every key that fits is tried
    assert check(settings, "Bearer " + token(aud=["other", AUDIENCE])) is None  # one of several audiences


def refused(settings: JwtSettings, value: str | None) -> tuple[int, str, str]:
    failure = check(settings, value)
    assert failure is not None, value
    return failure.status, failure.code, failure.reason


def test_bad_tokens_are_refused_with_ngrok_s_codes() -> None:
    settings = compile_jwt(config(), "jwt")
    now = int(time.time())
    unauthorized = {
        None: "no token",
        "Basic dXNlcjpwYXNz": "does not start with 'Bearer'",
        "Bearer not-a-jwt": "not a JWT",
        "Bearer " + token(exp=now - 120): "expired",
        "Bearer " + token(nbf=now + 600): "not valid yet",
        "Bearer " + token(exp=None): "no expiry",
        "Bearer " + token(OTHER_KEY): "signature does not verify",  # signed by a key not in the set
        "Bearer " + token(kid="unknown"): "signature does not verify",
        "Bearer " + jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}, None, algorithm="none"): (
            "'none' is not allowed"
        ),
        "Bearer " + token(alg="RS512"): "'RS512' is not allowed",  # a real RSA signature, not allowed here
    }
    for value, reason in unauthorized.items():
        status, code, why = refused(settings, value)
        assert (status, code) == (401, "ERR_NGROK_3401") and reason in why, (value, why)
    forbidden = {
        "Bearer " + token(iss="https://evil.example/"): "issuer",
        "Bearer " + token(iss=ISSUER.rstrip("/")): "issuer",  # exact: the trailing slash counts
        "Bearer " + token(aud="urn:other"): "audience",
        "Bearer " + token(aud=None): "audience",
    }
    for value, reason in forbidden.items():
        status, code, why = refused(settings, value)
        assert (status, code) == (403, "ERR_NGROK_3403") and reason in why, (value, why)


def test_leeway_is_small_and_two_headers_are_refused() -> None:
    settings = compile_jwt(config(), "jwt")
    assert check(settings, "Bearer " + token(exp=int(time.time()) - 10)) is None  # within 30 s of skew
    good = "Bearer " + token()
    failure = settings.check(
        [(b"authorization", good.encode()), (b"Authorization", good.encode())], time.time()
    )
    assert failure is not None and "more than one" in failure.reason


def test_an_hmac_token_made_with_the_public_key_is_refused() -> None:
    """The classic key confusion: HS256 with the RSA public key's PEM as the secret."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signed = (
        part({"alg": "HS256", "kid": "rsa-1"}) + b"." + part({"iss": ISSUER, "aud": AUDIENCE, "exp": 2**40})
    )
    mac = base64.urlsafe_b64encode(hmac.new(pem, signed, hashlib.sha256).digest()).rstrip(b"=")
    forged = (signed + b"." + mac).decode()
    assert refused(compile_jwt(config(), "jwt"), "Bearer " + forged)[:2] == (401, "ERR_NGROK_3401")


def test_keys_that_could_not_be_fetched_fail_closed() -> None:
    sources = {"additional_jkus": ["https://issuer.example/jwks"]}
    settings = compile_jwt(config(jws={"allowed_algorithms": ["RS256"], "keys": {"sources": sources}}), "jwt")
    assert refused(settings, "Bearer " + token())[:2] == (503, "ERR_NGROK_90508")  # never fetched
    settings.keyring.fetched["https://issuer.example/jwks"] = None  # the fetch failed
    assert refused(settings, "Bearer " + token())[:2] == (503, "ERR_NGROK_90508")
    settings.keyring.fetched["https://issuer.example/jwks"] = parse_jwks(JWKS)
    assert check(settings, "Bearer " + token()) is None
    assert refused(settings, "Bearer " + token(OTHER_KEY))[:2] == (401, "ERR_NGROK_3401")


def test_a_jwks_keeps_public_keys_only() -> None:
    keys = parse_jwks(
        json.dumps({"keys": [jwk(RSA_KEY, "private", private=True), {"kty": "oct", "k": "c2VjcmV0"}]})
    )
    assert len(keys) == 1 and keys[0].kid == "private"
    assert isinstance(keys[0].key, rsa.RSAPublicKey)  # the private part is never kept
    for bad in ("[]", "{}", '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "not json"):
        with pytest.raises(ValueError):
            parse_jwks(bad)


@pytest.mark.parametrize(
    ("changes", "path", "reason"),
    [
        ({"issuer": None}, "jwt.issuer", "is required"),
        ({"issuer": {"allow_list": []}}, "jwt.issuer.allow_list", "1 to 64"),
        ({"issuer": {"allow_list": ["https://x"]}}, "jwt.issuer.allow_list[0]", "'value'"),
        ({"audiences": {}}, "jwt.audiences", "unknown field"),
        (
            {"http": {"tokens": [{"type": "jwt", "method": "body", "name": "t"}]}},
            "http.tokens[0].method",
            "body",
        ),
        (
            {"http": {"tokens": [{"type": "jwt", "method": "query", "name": "t"}]}},
            "tokens[0].method",
            "header",
        ),
        ({"http": {"tokens": [{"type": "x", "method": "header", "name": "a"}]}}, "tokens[0].type", "one of"),
        (
            {"http": {"tokens": [{"type": "jwt", "method": "header", "name": "a b"}]}},
            "tokens[0].name",
            "header",
        ),
        (
            {"jws": {"allowed_algorithms": ["none"], "keys": {}}},
            "allowed_algorithms[0]",
            "none is not allowed",
        ),
        ({"jws": {"allowed_algorithms": ["HS256"], "keys": {}}}, "allowed_algorithms[0]", "not allowed"),
        ({"jws": {"allowed_algorithms": ["RS256"], "keys": {"sources": {}}}}, "keys.sources", "needs"),
        (
            {
                "jws": {
                    "allowed_algorithms": ["RS256"],
                    "keys": {"sources": {"additional_jkus": ["http://x/k"]}},
                }
            },
            "additional_jkus[0]",
            "https://",
        ),
        (
            {
                "jws": {
                    "allowed_algorithms": ["RS256"],
                    "keys": {"sources": {"additional_jkus": ["https://${x}"]}},
                }
            },
            "additional_jkus[0]",
            "CEL interpolation",
        ),
        (
            {"jws": {"allowed_algorithms": ["RS256"], "keys": {"sources": {"inline_jwks": {"keys": []}}}}},
            "inline_jwks",
            "no usable signing key",
        ),
    ],
)
def test_a_malformed_config_is_refused_naming_the_field(
    changes: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        compile_jwt({k: v for k, v in config(**changes).items() if v is not None}, "jwt")
    assert path in raised.value.path and reason in raised.value.reason, str(raised.value)


def test_the_policy_compiler_takes_the_action_and_names_its_mistakes() -> None:
    document = json.dumps(
        {"on_http_request": [{"actions": [{"type": "jwt-validation", "config": config()}]}]}
    )
    (rule,) = compile_policy(document).phases["on_http_request"]
    (action,) = rule.actions
    assert isinstance(action, JwtValidation) and action.settings.issuers == (ISSUER,)
    bad = config(jws={"allowed_algorithms": ["none"], "keys": {"sources": {"inline_jwks": JWKS}}})
    document = json.dumps({"on_http_request": [{"actions": [{"type": "jwt-validation", "config": bad}]}]})
    with pytest.raises(errors.BurrowError) as raised:
        compile_policy(document)
    assert raised.value.code == "ERR_NGROK_9026"
    assert "on_http_request[0].actions[0].config.jws.allowed_algorithms[0]" in raised.value.message


def test_private_key_material_in_an_inline_jwks_is_never_kept() -> None:
    """A tenant pasting a private JWK: Burrow verifies with its public half and keeps (and
    shows, in /endpoints' traffic_policy) the document without the private members."""
    private = jwk(RSA_KEY, "rsa-1", private=True)
    assert "d" in private
    document = {
        "on_http_request": [
            {
                "actions": [
                    {
                        "type": "jwt-validation",
                        "config": config(
                            jws={
                                "allowed_algorithms": ["RS256"],
                                "keys": {"sources": {"inline_jwks": {"keys": [private]}}},
                            }
                        ),
                    }
                ]
            }
        ]
    }
    (rule,) = compile_policy(json.dumps(document)).phases["on_http_request"]
    (action,) = rule.actions
    assert isinstance(action, JwtValidation)
    assert action.check([(b"authorization", f"Bearer {token()}".encode())], time.time()) is None
    kept = json.loads(redacted(json.dumps(document)))
    (key,) = kept["on_http_request"][0]["actions"][0]["config"]["jws"]["keys"]["sources"]["inline_jwks"][
        "keys"
    ]
    assert key["d"] == REDACTED and key["p"] == REDACTED and key["n"] == private["n"]
    assert private["d"] not in json.dumps(kept)
