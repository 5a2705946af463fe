"""Traffic policy actions: each ``{type, config}`` as a frozen, validated dataclass.

Strings that may carry ``${expr}`` are :class:`Template` fields; the evaluator hands the edge
copies with them resolved (``template.text``). Pure semantics live here as methods; what needs
the network (fetching JWKS, forwarding to an internal endpoint) stays a typed config for the edge.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

from .. import errors
from ..basic_auth import BasicAuth
from ..circuit import CircuitBreaker
from ..ip_restriction import IPAddress, IPRestriction
from ..webhooks import PROVIDERS, WebhookVerifier
from .expressions import CelType, Env, Template, compile_template
from .jwt import ConfigError as JwtConfigError
from .jwt import Failure as JwtFailure
from .jwt import JwtSettings, compile_jwt
from .regex import Match, Regex, compile_regex

TCP: Final = "on_tcp_connect"
REQUEST: Final = "on_http_request"
RESPONSE: Final = "on_http_response"
PHASES: Final = (TCP, REQUEST, RESPONSE)
HeaderList: TypeAlias = Sequence[tuple[str, str]]


_EMPTY: Final = Template(())


class Invalid(Exception):
    """A config mistake: ``path: reason``; the policy compiler turns it into ERR_NGROK_9026."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")


class ConfigReader:
    """Reads one action's config: typed getters that name the path, and refuses unknown fields."""

    def __init__(self, path: str, config: object, variables: Mapping[str, CelType]) -> None:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise Invalid(path, "expected a mapping")
        self.path, self._config, self._variables = path, config, variables
        self._read: set[str] = set()

    def _get(self, key: str, required: bool) -> object:
        self._read.add(key)
        if key not in self._config or self._config[key] is None:
            if required:
                raise Invalid(f"{self.path}.{key}", "is required")
            return None
        return self._config[key]

    def template(self, key: str, default: str | None = None) -> Template:
        value = self._get(key, default is None)
        if value is None:
            return Template.literal(default or "")
        return self._compile(f"{self.path}.{key}", value)

    def _compile(self, path: str, value: object) -> Template:
        if not isinstance(value, str):
            raise Invalid(path, "expected a string")
        try:
            return compile_template(value, self._variables)
        except ValueError as error:
            raise Invalid(path, str(error)) from None

    def string(self, key: str, default: str | None = None, choices: Sequence[str] = ()) -> str:
        value = self._get(key, default is None)
        if value is None:
            return default or ""
        if not isinstance(value, str):
            raise Invalid(f"{self.path}.{key}", "expected a string")
        if choices and value not in choices:
            raise Invalid(f"{self.path}.{key}", f"expected one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: int | None = None, low: int = 0, high: int = 2**31) -> int:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{self.path}.{key}", "expected an integer")
        if not low <= value <= high:
            raise Invalid(f"{self.path}.{key}", f"expected an integer from {low} to {high}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            raise Invalid(f"{self.path}.{key}", f"expected a number from {low} to {high}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise Invalid(f"{self.path}.{key}", "expected true or false")
        return value

    def strings(self, key: str, required: bool = False, limit: int = 1024) -> tuple[str, ...]:
        value = self._get(key, required)
        if value is None:
            return ()
        if not isinstance(value, list) or len(value) > limit:
            raise Invalid(f"{self.path}.{key}", f"expected a list of at most {limit} strings")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise Invalid(f"{self.path}.{key}[{index}]", "expected a string")
        return tuple(value)

    def template_map(self, key: str, required: bool = False) -> tuple[tuple[str, Template], ...]:
        value = self._get(key, required)
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise Invalid(f"{self.path}.{key}", "expected a mapping of strings")
        pairs = []
        for name, item in value.items():
            if not isinstance(name, str) or not name:
                raise Invalid(f"{self.path}.{key}", "expected non-empty string keys")
            pairs.append((name, self._compile(f"{self.path}.{key}.{name}", item)))
        return tuple(pairs)

    def duration(self, key: str, default: float | None = None) -> float:
        """Seconds, from ``"30s"``, ``"1m"``, ``"1h"`` or ``"500ms"``."""
        text = self.string(key, None if default is None else "")
        if text == "" and default is not None:
            return default
        match = re.fullmatch(r"(\d{1,9})(ms|s|m|h)", text)
        if match is None:
            raise Invalid(f"{self.path}.{key}", 'expected a duration such as "30s", "1m" or "500ms"')
        unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match[2]]
        return int(match[1]) * unit

    def done(self) -> None:
        unknown = sorted(str(key) for key in self._config if key not in self._read)
        if unknown:
            raise Invalid(f"{self.path}.{unknown[0]}", "unknown field")


def _value_resolver(value: Any) -> Callable[[Env], Any] | None:
    """A function giving ``value`` with its templates resolved, or None when it has none
    (built once per action, so that a request walks only the fields that change)."""
    if isinstance(value, Template):
        return value.resolve if value.dynamic else None
    if isinstance(value, tuple):
        items = [(item, _value_resolver(item)) for item in value]
        if not any(resolver for _, resolver in items):
            return None
        return lambda env: tuple(resolver(env) if resolver else item for item, resolver in items)
    return None


_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def _init_fields(kind: type) -> tuple[str, ...]:
    names = _INIT_FIELDS.get(kind)
    if names is None:
        names = _INIT_FIELDS[kind] = tuple(item.name for item in dataclasses.fields(kind) if item.init)
    return names


class Action:
    """The base of every action; ``kind`` is its ``type`` in the document."""

    kind: ClassVar[str]
    phases: ClassVar[frozenset[str]]

    def resolve(self, env: Env) -> Action:
        """A copy with every template resolved against ``env`` (itself if it has none)."""
        resolver = self.resolver()
        return self if resolver is None else resolver(env)

    def resolver(self) -> Callable[[Env], Action] | None:
        """:meth:`resolve` compiled: a function of the variables, None when nothing changes."""
        fields = [
            (name, resolver)
            for name in _init_fields(type(self))
            if (resolver := _value_resolver(getattr(self, name))) is not None
        ]
        if not fields:
            return None
        kind, state = type(self), self.__dict__

        def resolve(env: Env) -> Action:
            resolved = object.__new__(kind)  # a shallow copy, made without __init__ (per request)
            copied = resolved.__dict__
            copied.update(state)
            for name, resolver in fields:
                copied[name] = resolver(env)  # frozen: set on the fresh copy only
            return resolved

        return resolve


@dataclass(frozen=True)
class Response:
    """A response the edge sends instead of proxying."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""


@dataclass(frozen=True)
class Deny(Action):
    kind: ClassVar[str] = "deny"
    phases: ClassVar[frozenset[str]] = frozenset(PHASES)
    status_code: int = 403

    def response(self) -> Response:
        return Response(self.status_code)


@dataclass(frozen=True)
class CustomResponse(Action):
    kind: ClassVar[str] = "custom-response"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE})
    status_code: int
    headers: tuple[tuple[str, Template], ...] = ()
    body: Template = _EMPTY

    def response(self) -> Response:
        return Response(self.status_code, tuple((k, v.text) for k, v in self.headers), self.body.text)


def _substitute(to: str, match: Match) -> str:
    """``to`` with ``$1``..``$9`` replaced by the groups of ``match`` (unmatched groups: "")."""
    return re.sub(r"\$(\d)", lambda ref: match.group(int(ref[1])) or "", to)


@dataclass(frozen=True)
class Redirect(Action):
    """``from`` (RE2, optional: everything) matched against the URL; ``to`` with ``$1``..``$9``."""

    kind: ClassVar[str] = "redirect"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE})
    to: Template
    pattern: Regex | None = None
    status_code: int = 302
    headers: tuple[tuple[str, Template], ...] = ()

    def response(self, url: str) -> Response | None:
        """The redirect for ``url``, or None when ``from`` does not match it."""
        if self.pattern is None:
            return Response(self.status_code, (("location", self.to.text), *self._headers()))
        match = self.pattern.search(url)
        if match is None:
            return None
        return Response(self.status_code, (("location", _substitute(self.to.text, match)), *self._headers()))

    def _headers(self) -> tuple[tuple[str, str], ...]:
        return tuple((k, v.text) for k, v in self.headers)


@dataclass(frozen=True)
class UrlRewrite(Action):
    kind: ClassVar[str] = "url-rewrite"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST})
    to: Template
    pattern: Regex | None = None

    def rewrite(self, url: str) -> str:
        """The URL the upstream gets (``url`` itself when ``from`` does not match)."""
        if self.pattern is None:
            return self.to.text
        match = self.pattern.search(url)
        if match is None:
            return url
        return url[: match.start()] + _substitute(self.to.text, match) + url[match.end() :]


@dataclass(frozen=True)
class AddHeaders(Action):
    kind: ClassVar[str] = "add-headers"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE})
    headers: tuple[tuple[str, Template], ...]

    def apply(self, headers: HeaderList) -> list[tuple[str, str]]:
        return [*headers, *((name, value.text) for name, value in self.headers)]


@dataclass(frozen=True)
class RemoveHeaders(Action):
    kind: ClassVar[str] = "remove-headers"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST, RESPONSE})
    headers: tuple[str, ...]

    def apply(self, headers: HeaderList) -> list[tuple[str, str]]:
        doomed = {name.lower() for name in self.headers}
        return [(name, value) for name, value in headers if name.lower() not in doomed]


@dataclass(frozen=True)
class SetVars(Action):
    kind: ClassVar[str] = "set-vars"
    phases: ClassVar[frozenset[str]] = frozenset(PHASES)
    vars: tuple[tuple[str, Template], ...]


@dataclass(frozen=True)
class RestrictIps(Action):
    kind: ClassVar[str] = "restrict-ips"
    phases: ClassVar[frozenset[str]] = frozenset({TCP, REQUEST})
    restriction: IPRestriction
    error_page: bool = False  # refused with ngrok's error page (the IPRestriction option)

    def allows(self, client: IPAddress) -> bool:
        return self.restriction.allows(client)


@dataclass(frozen=True)
class BasicAuthAction(Action):
    kind: ClassVar[str] = "basic-auth"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST})
    auth: BasicAuth
    realm: str = "ngrok"
    enforce: bool = True
    error_page: bool = False  # refused with ngrok's error page (the BasicAuth option)

    def challenge(self, authorization: bytes | None) -> Response | None:
        """None when the credentials are good (or not enforced), else the 401 to send."""
        if self.auth.allows(authorization) or not self.enforce:
            return None
        return Response(401, (("www-authenticate", f'Basic realm="{self.realm}"'),))


@dataclass(frozen=True)
class RateLimit(Action):
    """A sliding window per bucket key; the limiter state is a :class:`SlidingWindow` the edge keeps."""

    kind: ClassVar[str] = "rate-limit"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST})
    name: str
    capacity: int
    rate_seconds: float
    bucket_key: tuple[Template, ...] = ()
    # The window's state, one per compiled action; a resolved copy shares it.
    window: SlidingWindow = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", SlidingWindow(self.capacity, self.rate_seconds))


@dataclass(frozen=True)
class CompressResponse(Action):
    kind: ClassVar[str] = "compress-response"
    phases: ClassVar[frozenset[str]] = frozenset({RESPONSE})
    algorithms: tuple[str, ...] = ("gzip", "deflate", "br", "compress")


@dataclass(frozen=True)
class VerifyWebhook(Action):
    kind: ClassVar[str] = "verify-webhook"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST})
    verifier: WebhookVerifier
    enforce: bool = True


@dataclass(frozen=True)
class JwtValidation(Action):
    """Tokens checked against the issuer's keys (jwt.py); the edge fetches the key sets of
    ``settings.keyring.urls`` into the keyring (edge/jwt_check.py)."""

    kind: ClassVar[str] = "jwt-validation"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST})
    settings: JwtSettings

    def check(self, headers: Sequence[tuple[bytes, bytes]], now: float) -> JwtFailure | None:
        """None when the request's tokens are good, else why they are not."""
        return self.settings.check(headers, now)


@dataclass(frozen=True)
class ForwardInternal(Action):
    kind: ClassVar[str] = "forward-internal"
    phases: ClassVar[frozenset[str]] = frozenset({TCP, REQUEST})
    url: Template
    on_error: str = "halt"


@dataclass(frozen=True)
class Log(Action):
    kind: ClassVar[str] = "log"
    phases: ClassVar[frozenset[str]] = frozenset(PHASES)
    metadata: tuple[tuple[str, Template], ...] = ()


@dataclass(frozen=True)
class CloseConnection(Action):
    kind: ClassVar[str] = "close-connection"
    phases: ClassVar[frozenset[str]] = frozenset(PHASES)


@dataclass(frozen=True)
class CircuitBreakerAction(Action):
    """Settings for a :class:`burrow.domain.circuit.CircuitBreaker` the edge keeps per endpoint."""

    kind: ClassVar[str] = "circuit-breaker"
    phases: ClassVar[frozenset[str]] = frozenset({REQUEST})
    error_threshold: float = 0.5
    volume_threshold: int = 10
    window_seconds: float = 10.0
    tripped_seconds: float = 10.0
    # The breaker's state, one per compiled action (per endpoint); a resolved copy shares it.
    breaker: CircuitBreaker = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        breaker = CircuitBreaker(
            self.error_threshold,
            volume_threshold=self.volume_threshold,
            window_seconds=self.window_seconds,
            tripped_seconds=self.tripped_seconds,
        )
        object.__setattr__(self, "breaker", breaker)


def _pattern(reader: ConfigReader) -> Regex | None:
    text = reader.string("from", "")
    if not text:
        return None
    try:
        return compile_regex(text)
    except ValueError as error:
        raise Invalid(f"{reader.path}.from", f"invalid regular expression: {error}") from None


def _from_to(reader: ConfigReader) -> tuple[Template, Regex | None]:
    """``to`` and ``from``, where every ``$N`` in ``to`` names a group ``from`` has."""
    to, pattern = reader.template("to"), _pattern(reader)
    groups = 0 if pattern is None else pattern.groups
    for part in to.parts:
        for reference in re.findall(r"\$(\d)", part) if isinstance(part, str) else ():
            if int(reference) > groups:
                raise Invalid(f"{reader.path}.to", f"${reference} names a group 'from' does not have")
    return to, pattern


def _redirect_status(reader: ConfigReader) -> int:
    status = reader.integer("status_code", 302, 300, 399)
    return status


def _restrict_ips(reader: ConfigReader) -> RestrictIps:
    allow, deny = reader.strings("allow"), reader.strings("deny")
    if not allow and not deny:
        raise Invalid(reader.path, "needs allow or deny")
    try:
        return RestrictIps(IPRestriction.of(allow, deny))
    except errors.BurrowError as error:
        raise Invalid(reader.path, error.message) from None


def _basic_auth(reader: ConfigReader) -> BasicAuthAction:
    pairs = []
    for index, credential in enumerate(reader.strings("credentials", required=True)):
        username, colon, password = credential.partition(":")
        if not colon:
            raise Invalid(f"{reader.path}.credentials[{index}]", 'expected "username:password"')
        pairs.append((username, password))
    try:
        auth = BasicAuth.of(pairs)
    except errors.BurrowError as error:
        raise Invalid(f"{reader.path}.credentials", error.message) from None
    return BasicAuthAction(auth, reader.string("realm", "ngrok"), reader.boolean("enforce", True))


def _set_vars(reader: ConfigReader) -> SetVars:
    raw = reader._get("vars", True)
    if not isinstance(raw, list):
        raise Invalid(f"{reader.path}.vars", "expected a list of one-entry mappings")
    pairs = []
    for index, item in enumerate(raw):
        path = f"{reader.path}.vars[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise Invalid(path, "expected a mapping with exactly one entry")
        ((name, value),) = item.items()
        if not isinstance(name, str) or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name) is None:
            raise Invalid(path, "expected a variable name (letters, digits, _)")
        pairs.append((name, reader._compile(f"{path}.{name}", value)))
    return SetVars(tuple(pairs))


def _rate_limit(reader: ConfigReader) -> RateLimit:
    reader.string("algorithm", "sliding_window", ("sliding_window",))
    return RateLimit(
        reader.string("name", ""),
        reader.integer("capacity", low=1, high=10**9),
        reader.duration("rate"),
        tuple(reader._compile(f"{reader.path}.bucket_key", key) for key in reader.strings("bucket_key")),
    )


class SlidingWindow:
    """At most about ``capacity`` hits per key in any ``rate_seconds``; the caller passes
    the clock. The sliding-window counter: each key keeps two counts (this fixed window's
    and the last one's, weighted by how much of it the sliding window still covers), so a
    key costs the same few bytes whatever the capacity, and at most ``max_keys`` are kept
    (the oldest is forgotten past that): a policy cannot make the edge hold a timestamp per
    request."""

    def __init__(self, capacity: int, rate_seconds: float, max_keys: int = 10_000) -> None:
        self.capacity, self.rate_seconds, self.max_keys = capacity, rate_seconds, max_keys
        self._counts: dict[str, tuple[int, int, int]] = {}  # key -> (window, count, previous count)

    def allow(self, key: str, now: float) -> bool:
        window = int(now // self.rate_seconds)
        start, count, previous = self._counts.get(key, (window, 0, 0))
        if start != window:
            previous, count = (count if start == window - 1 else 0), 0
        covered = 1.0 - (now / self.rate_seconds - window)  # of the last window, still inside
        allowed = previous * covered + count < self.capacity
        if key not in self._counts and len(self._counts) >= self.max_keys:
            self._counts.pop(next(iter(self._counts)))
        self._counts[key] = (window, count + 1 if allowed else count, previous)
        return allowed


def _jwt_validation(reader: ConfigReader) -> JwtValidation:
    config = reader._config
    reader._read.update(config)  # compile_jwt refuses unknown fields itself
    try:
        return JwtValidation(compile_jwt(config, reader.path))
    except JwtConfigError as error:
        raise Invalid(error.path, error.reason) from None


def _verify_webhook(reader: ConfigReader) -> VerifyWebhook:
    provider = reader.string("provider", choices=tuple(sorted(PROVIDERS)))
    secret = reader.string("secret")
    return VerifyWebhook(WebhookVerifier(provider, secret.encode()), reader.boolean("enforce", True))


BUILDERS: Final[dict[str, Callable[[ConfigReader], Action]]] = {
    "deny": lambda r: Deny(r.integer("status_code", 403, 100, 599)),
    "custom-response": lambda r: CustomResponse(
        r.integer("status_code", low=100, high=599), r.template_map("headers"), r.template("body", "")
    ),
    "redirect": lambda r: Redirect(*_from_to(r), _redirect_status(r), r.template_map("headers")),
    "url-rewrite": lambda r: UrlRewrite(*_from_to(r)),
    "add-headers": lambda r: AddHeaders(r.template_map("headers", required=True)),
    "remove-headers": lambda r: RemoveHeaders(r.strings("headers", required=True)),
    "set-vars": _set_vars,
    "restrict-ips": _restrict_ips,
    "basic-auth": _basic_auth,
    "rate-limit": lambda r: _rate_limit(r),
    "compress-response": lambda r: CompressResponse(
        r.strings("algorithms") or ("gzip", "deflate", "br", "compress")
    ),
    "verify-webhook": _verify_webhook,
    "jwt-validation": lambda r: _jwt_validation(r),
    "forward-internal": lambda r: ForwardInternal(
        r.template("url"), r.string("on_error", "halt", ("halt", "continue"))
    ),
    "log": lambda r: Log(r.template_map("metadata")),
    "close-connection": lambda r: CloseConnection(),
    "circuit-breaker": lambda r: CircuitBreakerAction(
        r.number("error_threshold", 0.5, 0.0, 1.0),
        r.integer("volume_threshold", 10, 1, 10**6),
        r.duration("window_duration", 10.0),
        r.duration("tripped_duration", 10.0),
    ),
}
KINDS: Final = {
    kind.kind: kind
    for kind in (
        Deny,
        CustomResponse,
        Redirect,
        UrlRewrite,
        AddHeaders,
        RemoveHeaders,
        SetVars,
        RestrictIps,
        BasicAuthAction,
        RateLimit,
        CompressResponse,
        VerifyWebhook,
        JwtValidation,
        ForwardInternal,
        Log,
        CloseConnection,
        CircuitBreakerAction,
    )
}
