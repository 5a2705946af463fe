"""The ``jwt-validation`` action's semantics (pure: no I/O): its config read and checked at
bind, a JWKS document turned into verification keys, and a request's tokens checked
against the keys the edge has (``Keyring``: inline keys, plus the key sets the edge fetched
from the ``additional_jkus`` URLs; the fetching is edge/jwt_check.py's).

Only asymmetric signatures are accepted (RSA, RSA-PSS, ECDSA, EdDSA): ``none`` never, and
no HMAC either (its key would be a shared secret kept in the policy document).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError

from .. import errors

ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES256K",
    "ES384",
    "ES512",
    "EdDSA",
)
TOKEN_TYPES: Final = ("id_token", "access_token", "at+jwt", "it+jwt", "plain", "jwt")
LEEWAY_SECONDS: Final = 30.0  # clock skew allowed on exp, nbf and iat
MAX_TOKEN_BYTES: Final = 16 * 1024
MAX_KEYS: Final = 64  # per key set: a JWKS with more is cut to its first 64 usable keys
MAX_JKUS: Final = 8  # URLs per action
_KEY_TYPES: Final = {"RSA": ("RS", "PS"), "EC": ("ES",), "OKP": ("EdDSA",)}


class ConfigError(ValueError):
    """A config mistake: ``path`` names the field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Key:
    """One verification key of a JWKS."""

    kid: str | None
    kty: str
    alg: str | None  # the JWK's own ``alg``, when it names one
    key: Any  # a cryptography public key

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        return any(alg.startswith(prefix) for prefix in _KEY_TYPES.get(self.kty, ()))


def parse_jwks(document: object) -> tuple[Key, ...]:
    """The usable public keys of a JWKS (``{"keys": [...]}``), in order; ValueError when it
    is no JWKS or has no usable key. Symmetric (``oct``) and private parts are never kept."""
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError:
            raise ValueError("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS (expected {"keys": [...]})')
    keys: list[Key] = []
    for item in document["keys"]:
        if len(keys) >= MAX_KEYS:
            break
        if not isinstance(item, dict) or item.get("kty") not in _KEY_TYPES:
            continue  # oct (a shared secret) and unknown kinds are ignored
        if item.get("use") not in (None, "sig"):
            continue
        public = {
            name: value for name, value in item.items() if name not in ("d", "p", "q", "dp", "dq", "qi")
        }
        try:
            parsed = jwt.PyJWK(public)
        except (PyJWKError, jwt.exceptions.InvalidKeyError, ValueError, TypeError):
            continue
        kid, alg = item.get("kid"), item.get("alg")
        keys.append(
            Key(
                kid if isinstance(kid, str) else None,
                item["kty"],
                alg if isinstance(alg, str) else None,
                parsed.key,
            )
        )
    if not keys:
        raise ValueError("the JWKS has no usable signing key (RSA, EC or OKP)")
    return tuple(keys)


@dataclass(frozen=True)
class TokenSource:
    """Where a token is: a header (``name``), after ``prefix``."""

    type: str
    name: str
    prefix: str = ""


@dataclass
class Keyring:
    """The keys a JWT check may use: the inline ones, and per URL what the edge last fetched
    (None: the fetch failed). The edge writes ``fetched`` before the request phase runs."""

    urls: tuple[str, ...]
    inline: tuple[Key, ...] = ()
    fetched: dict[str, tuple[Key, ...] | None] = field(default_factory=dict)

    def keys(self) -> tuple[tuple[Key, ...], bool]:
        """Every key known now, and whether some URL's keys are missing."""
        keys, missing = list(self.inline), False
        for url in self.urls:
            found = self.fetched.get(url)
            if found is None:
                missing = True
            else:
                keys.extend(found)
        return tuple(keys), missing


# What a refused request gets: (status, code, reason). ngrok answers a missing or invalid
# token with 401 ERR_NGROK_3401 and a token its issuer's keys cannot vouch for with 403
# ERR_NGROK_3403; keys that cannot be had are Burrow's 503 (the request never goes through).
UNAUTHORIZED: Final = (errors.JWT_UNAUTHORIZED.status, errors.JWT_UNAUTHORIZED.code)
FORBIDDEN: Final = (errors.JWT_FORBIDDEN.status, errors.JWT_FORBIDDEN.code)
KEYS_UNAVAILABLE: Final = (errors.JWT_KEYS_UNAVAILABLE.status, errors.JWT_KEYS_UNAVAILABLE.code)


@dataclass(frozen=True)
class Failure:
    status: int
    code: str
    reason: str


@dataclass(frozen=True)
class JwtSettings:
    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    tokens: tuple[TokenSource, ...]
    algorithms: tuple[str, ...]
    keyring: Keyring = field(compare=False)

    def check(self, headers: Sequence[tuple[bytes, bytes]], now: float) -> Failure | None:
        """None when every configured token is present and valid, else why not."""
        for source in self.tokens:
            failure = self._check_one(source, headers, now)
            if failure is not None:
                return failure
        return None

    def _check_one(
        self, source: TokenSource, headers: Sequence[tuple[bytes, bytes]], now: float
    ) -> Failure | None:
        wanted = source.name.lower().encode("latin-1", "replace")
        values = [value for name, value in headers if name.lower() == wanted]
        if not values:
            return Failure(*UNAUTHORIZED, f"no token in the {source.name} header")
        if len(values) > 1:
            return Failure(*UNAUTHORIZED, f"more than one {source.name} header")
        text = values[0].decode("latin-1").strip()
        prefix = source.prefix
        if prefix and not text.lower().startswith(prefix.lower()):
            return Failure(*UNAUTHORIZED, f"the {source.name} header does not start with {prefix.strip()!r}")
        return self.verify(text[len(prefix) :].strip(), now)

    def verify(self, token: str, now: float) -> Failure | None:
        """One token's signature (an allowed algorithm, a known key), times and claims."""
        if not token or len(token) > MAX_TOKEN_BYTES:
            return Failure(*UNAUTHORIZED, "the token is empty or too long")
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            return Failure(*UNAUTHORIZED, "the token is not a JWT")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            return Failure(*UNAUTHORIZED, f"the token's algorithm {str(alg)[:20]!r} is not allowed")
        kid = header.get("kid")
        keys, missing = self.keyring.keys()
        candidates = [key for key in keys if key.fits(alg) and (kid is None or key.kid in (None, kid))]
        claims = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    options={
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                        "verify_aud": False,
                    },
                )
                break
            except jwt.exceptions.InvalidSignatureError:
                continue
            except (InvalidTokenError, jwt.exceptions.InvalidKeyError, ValueError, TypeError):
                return Failure(*UNAUTHORIZED, "the token is malformed")
        if claims is None:
            if missing:
                return Failure(*KEYS_UNAVAILABLE, "the issuer's signing keys cannot be fetched now")
            return Failure(*UNAUTHORIZED, "the token's signature does not verify")
        return self._claims(claims, now)

    def _claims(self, claims: Mapping[str, Any], now: float) -> Failure | None:
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _number(exp):
            return Failure(*UNAUTHORIZED, "the token has no expiry (exp)")
        if now > exp + LEEWAY_SECONDS:
            return Failure(*UNAUTHORIZED, "the token has expired")
        if nbf is not None and (not _number(nbf) or now < nbf - LEEWAY_SECONDS):
            return Failure(*UNAUTHORIZED, "the token is not valid yet (nbf)")
        if claims.get("iss") not in self.issuers:
            return Failure(*FORBIDDEN, "the token's issuer is not allowed")
        if self.audiences:
            aud = claims.get("aud")
            given = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not any(isinstance(item, str) and item in self.audiences for item in given):
                return Failure(*FORBIDDEN, "the token's audience is not allowed")
        return None


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(
    config: Mapping[str, Any], key: str, path: str, required: bool, known: set[str]
) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{path}.{key}", "is required")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}.{key}", "expected a mapping")
    for name in value:
        if name not in known:
            raise ConfigError(f"{path}.{key}.{name}", "unknown field")
    return value


def _list(value: object, path: str, limit: int) -> list[Any]:
    if not isinstance(value, list) or not value or len(value) > limit:
        raise ConfigError(path, f"expected a list of 1 to {limit} entries")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(path, "expected a non-empty string")
    if "${" in value:
        raise ConfigError(path, "CEL interpolation is not supported here: give the value itself")
    return value


def _allow_list(config: Mapping[str, Any], key: str, path: str, required: bool) -> tuple[str, ...]:
    section = _mapping(config, key, path, required, {"allow_list"})
    if not section:
        return ()
    raw = _list(section.get("allow_list"), f"{path}.{key}.allow_list", 64)
    values = []
    for index, item in enumerate(raw):
        where = f"{path}.{key}.allow_list[{index}]"
        if not isinstance(item, dict) or set(item) != {"value"}:
            raise ConfigError(where, "expected a mapping with just 'value'")
        values.append(_string(item["value"], f"{where}.value"))
    return tuple(values)


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")


def _tokens(config: Mapping[str, Any], path: str) -> tuple[TokenSource, ...]:
    section = _mapping(config, "http", path, True, {"tokens"})
    raw = _list(section.get("tokens"), f"{path}.http.tokens", 8)
    tokens = []
    for index, item in enumerate(raw):
        where = f"{path}.http.tokens[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "expected a mapping")
        for name in item:
            if name not in ("type", "method", "name", "prefix"):
                raise ConfigError(f"{where}.{name}", "unknown field")
        kind = item.get("type")
        if kind not in TOKEN_TYPES:
            raise ConfigError(f"{where}.type", f"expected one of {', '.join(TOKEN_TYPES)}")
        method = item.get("method")
        if method == "body":
            raise ConfigError(f"{where}.method", "body is not carried out by Burrow: use header")
        if method != "header":
            raise ConfigError(f"{where}.method", "expected header")
        name = _string(item.get("name"), f"{where}.name")
        if _HEADER_NAME.fullmatch(name) is None:
            raise ConfigError(f"{where}.name", "expected a header name")
        prefix = item.get("prefix", "")
        if not isinstance(prefix, str) or "${" in prefix or len(prefix) > 64:
            raise ConfigError(f"{where}.prefix", "expected a string of at most 64 characters")
        tokens.append(TokenSource(kind, name, prefix))
    return tuple(tokens)


def _jku(value: object, path: str) -> str:
    url = _string(value, path)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise ConfigError(path, "expected an https:// URL (without credentials)")
    return url


def compile_jwt(config: object, path: str) -> JwtSettings:
    """The action's config as ngrok documents it (``issuer.allow_list``, ``audience.allow_list``,
    ``http.tokens``, ``jws.allowed_algorithms``, ``jws.keys.sources.additional_jkus``) plus
    Burrow's ``jws.keys.sources.inline_jwks`` (a JWKS given in the policy); ConfigError
    naming the field otherwise."""
    if not isinstance(config, dict):
        raise ConfigError(path, "expected a mapping")
    for name in config:
        if name not in ("issuer", "audience", "http", "jws"):
            raise ConfigError(f"{path}.{name}", "unknown field")
    issuers = _allow_list(config, "issuer", path, True)
    audiences = _allow_list(config, "audience", path, False)
    tokens = _tokens(config, path)
    jws = _mapping(config, "jws", path, True, {"allowed_algorithms", "keys"})
    algorithms = []
    for index, alg in enumerate(_list(jws.get("allowed_algorithms"), f"{path}.jws.allowed_algorithms", 16)):
        where = f"{path}.jws.allowed_algorithms[{index}]"
        if alg not in ALGORITHMS:
            shown = "none" if isinstance(alg, str) and alg.lower() == "none" else repr(alg)[:40]
            raise ConfigError(where, f"{shown} is not allowed: expected one of {', '.join(ALGORITHMS)}")
        algorithms.append(alg)
    keys = _mapping(jws, "keys", f"{path}.jws", True, {"sources"})
    sources = _mapping(keys, "sources", f"{path}.jws.keys", True, {"additional_jkus", "inline_jwks"})
    where = f"{path}.jws.keys.sources"
    urls: tuple[str, ...] = ()
    if sources.get("additional_jkus") is not None:
        raw = _list(sources["additional_jkus"], f"{where}.additional_jkus", MAX_JKUS)
        urls = tuple(_jku(url, f"{where}.additional_jkus[{index}]") for index, url in enumerate(raw))
    inline: tuple[Key, ...] = ()
    if sources.get("inline_jwks") is not None:
        try:
            inline = parse_jwks(sources["inline_jwks"])
        except ValueError as error:
            raise ConfigError(f"{where}.inline_jwks", str(error)) from None
    if not urls and not inline:
        raise ConfigError(where, "needs additional_jkus or inline_jwks")
    return JwtSettings(issuers, audiences, tokens, tuple(algorithms), Keyring(urls, inline))
