"""The agent protocol's messages as typed values, parsed once and serialised once.

Every JSON message the edge receives from an agent, or sends to one, is a frozen dataclass
here. ``parse`` takes the object :class:`~burrow.edge.messages.MessageScanner` found: keys
match whatever their case (Go agents and the Rust SDK spell them differently), and a value
of the wrong type is refused with an ngrok-style error naming the field, before anything
acts on it. ``to_json`` is the one place a message becomes JSON again; a refusal travels as
a :class:`Refusal` (code and message) and becomes the wire's ``Error`` string only there.

A Bind's ``Opts`` are typed for what names the endpoint (``Hostname``, ``Addr``, ``URL``,
...) and carried whole in ``raw`` as well: the protections in them (``BasicAuth``,
``IPRestriction``, ...) are parsed by :mod:`burrow.domain.endpoint`, and the Bind response
echoes them back with the agent's own spelling of every key.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from burrow.domain import errors


class StreamType(enum.IntEnum):
    """The u32 (big-endian) written first on every stream."""

    AUTH = 0
    BIND = 1
    UNBIND = 2
    PROXY = 3
    RESTART = 4
    STOP = 5
    UPDATE = 6
    START_TUNNEL_WITH_LABEL = 7
    SRV_INFO = 8
    STOP_TUNNEL = 9
    PATCH_TUNNEL_STATE = 10
    HEARTBEAT = 0xFFFFFFFF

    def prefix(self) -> bytes:
        return struct.pack(">I", self)


@dataclass(frozen=True)
class Refusal:
    """An RPC's error as the agent sees it; the wire form is ``message\\n\\nCODE\\n`` (the SDK
    splits out a line starting ``ERR_NGROK_`` as the error code)."""

    code: str
    message: str

    @classmethod
    def of(cls, error: errors.BurrowError) -> Refusal:
        return cls(error.code, error.message)

    def wire(self) -> str:
        return f"{self.message}\n\n{self.code}\n" if self.code else self.message

    @classmethod
    def from_wire(cls, text: str) -> Refusal | None:
        if not text:
            return None
        message, _, code = text.rstrip("\n").rpartition("\n\n")
        if not code.startswith("ERR_NGROK_") or "\n" in code:
            return cls("", text)  # an agent's free-form error (answers to Stop, Update, ...)
        return cls(code, message)


def _error_text(refusal: Refusal | None) -> str:
    return "" if refusal is None else refusal.wire()


# Reading fields ---------------------------------------------------------------------------


class _Fields:
    """One JSON object's fields by lower-cased key; each read checks the value's type and
    names the field (``Bind.Opts.Hostname``) in the refusal."""

    def __init__(self, value: object, where: str, invalid: errors.ErrorKind) -> None:
        self.where = where
        self.invalid = invalid
        if not isinstance(value, Mapping):
            raise self._refusal(where, "must be an object")
        self.as_sent: dict[str, Any] = dict(value)  # the keys as the agent spelled them
        self.fields: dict[str, Any] = {}
        for key, item in value.items():
            lowered = str(key).lower()
            if lowered in self.fields:
                # Which spelling wins would be a guess: refuse rather than pick one.
                raise self._refusal(f"{where}.{key}", "is given twice (keys match whatever their case)")
            self.fields[lowered] = item

    def _refusal(self, name: str, problem: str) -> errors.BurrowError:
        return self.invalid(reason=f"{name} {problem}")

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}"

    def present(self, key: str) -> bool:
        return key.lower() in self.fields

    def any(self, key: str) -> Any:
        return self.fields.get(key.lower())

    def string(self, key: str) -> str:
        """A string; absent or null reads as ""."""
        value = self.fields.get(key.lower())
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._refusal(self._name(key), "must be a string")
        return value

    def boolean(self, key: str) -> bool:
        value = self.fields.get(key.lower())
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._refusal(self._name(key), "must be true or false")
        return value

    def integer(self, key: str) -> int:
        value = self.fields.get(key.lower())
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refusal(self._name(key), "must be an integer")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        """A list of strings; null (or absent) is None, which is not the same as []."""
        value = self.fields.get(key.lower())
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._refusal(self._name(key), "must be a list of strings")
        return tuple(value)

    def object(self, key: str) -> _Fields:
        """A nested object; absent or null reads as an empty one."""
        value = self.fields.get(key.lower())
        return _Fields({} if value is None else value, self._name(key), self.invalid)

    def raw_object(self, key: str) -> dict[str, Any] | None:
        value = self.fields.get(key.lower())
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._refusal(self._name(key), "must be an object")
        return dict(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.fields.get(key.lower())
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(item, str) for item in value.values()):
            raise self._refusal(self._name(key), "must be an object of strings")
        return dict(value)


# Refusals of a message that does not parse: Auth's have their own code, an RPC's are ngrok's
# "bind payload is not valid".
AUTH_INVALID = errors.ErrorKind("ERR_NGROK_90300", 400, "The Auth message is not valid: {reason}.")
RPC_INVALID = errors.BIND_INVALID


# Auth ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthExtra:
    auth_token: str = ""  # "AuthToken" (SDK) and "Authtoken" (Go agents) are one key here
    os: str = ""
    arch: str = ""
    version: str = ""
    hostname: str = ""
    user_agent: str = ""
    metadata: str = ""
    cookie: str = ""
    heartbeat_interval: int = 0  # nanoseconds; 0: the agent's default
    heartbeat_tolerance: int = 0
    client_type: str = ""
    proxy_type: str = ""
    config_version: str = ""
    mutual_tls: bool = False
    service_run: bool = False
    custom_interface: bool = False
    custom_cas: bool = False
    leg_number: int = 0
    update_unsupported_error: str = ""
    stop_unsupported_error: str = ""
    restart_unsupported_error: str = ""

    _STRINGS = (
        ("auth_token", "AuthToken"),
        ("os", "OS"),
        ("arch", "Arch"),
        ("version", "Version"),
        ("hostname", "Hostname"),
        ("user_agent", "UserAgent"),
        ("metadata", "Metadata"),
        ("cookie", "Cookie"),
        ("client_type", "ClientType"),
        ("proxy_type", "ProxyType"),
        ("config_version", "ConfigVersion"),
        ("update_unsupported_error", "UpdateUnsupportedError"),
        ("stop_unsupported_error", "StopUnsupportedError"),
        ("restart_unsupported_error", "RestartUnsupportedError"),
    )
    _INTEGERS = (
        ("heartbeat_interval", "HeartbeatInterval"),
        ("heartbeat_tolerance", "HeartbeatTolerance"),
        ("leg_number", "LegNumber"),
    )
    _BOOLEANS = (
        ("mutual_tls", "MutualTLS"),
        ("service_run", "ServiceRun"),
        ("custom_interface", "CustomInterface"),
        ("custom_cas", "CustomCAs"),
    )

    @classmethod
    def parse(cls, fields: _Fields) -> AuthExtra:
        token = fields.any("AuthToken")
        if token is not None and not isinstance(token, str):
            raise errors.AGENT_TOKEN_MALFORMED()  # what an unusable token has always been
        values: dict[str, Any] = {}
        for name, key in cls._STRINGS:
            values[name] = fields.string(key)
        for name, key in cls._INTEGERS:
            values[name] = fields.integer(key)
        for name, key in cls._BOOLEANS:
            values[name] = fields.boolean(key)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, name) for name, key in (*self._STRINGS, *self._INTEGERS, *self._BOOLEANS)}


@dataclass(frozen=True)
class Auth:
    versions: tuple[str, ...] = ()
    client_id: str = ""  # on a reconnect, the previous session's id
    extra: AuthExtra = field(default_factory=AuthExtra)

    @classmethod
    def parse(cls, message: object) -> Auth:
        fields = _Fields(message, "Auth", AUTH_INVALID)
        versions = fields.any("Version")
        # Versions are strings on the wire; a number is read as its text, as before.
        if versions is not None and (
            not isinstance(versions, list)
            or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in versions)
        ):
            raise AUTH_INVALID(reason="Auth.Version must be a list of strings")
        return cls(
            versions=tuple(str(v) for v in versions or ()),
            client_id=fields.string("ClientId"),
            extra=AuthExtra.parse(fields.object("Extra")),
        )

    def to_json(self) -> dict[str, Any]:
        return {"Version": list(self.versions), "ClientId": self.client_id, "Extra": self.extra.to_json()}


@dataclass(frozen=True)
class AuthRespExtra:
    version: str = ""
    region: str = ""
    cookie: str = ""
    account_name: str = ""
    session_duration: int = 0
    plan_name: str = ""
    banner: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "Version": self.version,
            "Region": self.region,
            "Cookie": self.cookie,
            "AccountName": self.account_name,
            "SessionDuration": self.session_duration,
            "PlanName": self.plan_name,
            "Banner": self.banner,
        }

    @classmethod
    def parse(cls, fields: _Fields) -> AuthRespExtra:
        return cls(
            fields.string("Version"),
            fields.string("Region"),
            fields.string("Cookie"),
            fields.string("AccountName"),
            fields.integer("SessionDuration"),
            fields.string("PlanName"),
            fields.string("Banner"),
        )


@dataclass(frozen=True)
class AuthResp:
    version: str = ""
    client_id: str = ""
    extra: AuthRespExtra = field(default_factory=AuthRespExtra)
    error: Refusal | None = None

    def to_json(self) -> dict[str, Any]:
        extra = {} if self.error is not None else self.extra.to_json()
        return {
            "Version": self.version,
            "ClientId": self.client_id,
            "Error": _error_text(self.error),
            "Extra": extra,
        }

    @classmethod
    def parse(cls, message: object) -> AuthResp:
        fields = _Fields(message, "AuthResp", AUTH_INVALID)
        error = Refusal.from_wire(fields.string("Error"))
        extra = AuthRespExtra() if error is not None else AuthRespExtra.parse(fields.object("Extra"))
        return cls(fields.string("Version"), fields.string("ClientId"), extra, error)


# Bind ---------------------------------------------------------------------------------------

PROTOS = ("http", "https", "tcp", "tls")


@dataclass(frozen=True)
class BindOpts:
    """What names the endpoint, typed; everything the agent sent, in ``raw``.

    ``hostname``, ``subdomain`` and ``domain`` are HTTP(S) and TLS fields, ``addr`` TCP's;
    ``url`` is how current-generation agents name the endpoint instead (``https://host``,
    ``tcp://``, ...; the control reads it into the same checks). ``traffic_policy`` (a YAML
    or JSON document) and ``policy`` (the older object form) are parsed and carried for
    Burrow to decide on: today :mod:`burrow.domain.endpoint` refuses them as unsupported.
    """

    raw: Mapping[str, Any] = field(default_factory=dict)
    hostname: str = ""
    subdomain: str = ""
    domain: str = ""
    addr: str = ""
    url: str = ""
    local_url_scheme: str = ""
    traffic_policy: str = ""
    policy: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, fields: _Fields, proto: str) -> BindOpts:
        raw = fields.as_sent
        named = ("Addr",) if proto == "tcp" else ("Hostname", "Subdomain", "Domain")
        values = {key.lower(): fields.string(key) for key in named}
        return cls(
            raw=raw,
            hostname=values.get("hostname", ""),
            subdomain=values.get("subdomain", ""),
            domain=values.get("domain", ""),
            addr=values.get("addr", ""),
            url=fields.string("URL"),
            local_url_scheme=fields.string("LocalURLScheme") if proto in ("http", "https") else "",
            traffic_policy=fields.string("TrafficPolicy"),
            policy=fields.raw_object("Policy"),
        )

    def key(self, name: str) -> str:
        """The key ``name`` as the agent spelled it, so an echo parses back into its struct."""
        for key in self.raw:
            if key.lower() == name.lower():
                return key
        return name

    def to_json(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(frozen=True)
class BindExtra:
    token: str = ""
    ip_policy_ref: str = ""
    metadata: str = ""
    name: str = ""
    description: str = ""
    bindings: tuple[str, ...] | None = None  # None: the default, ["public"]
    pooling_enabled: bool = False

    @classmethod
    def parse(cls, fields: _Fields) -> BindExtra:
        return cls(
            fields.string("Token"),
            fields.string("IPPolicyRef"),
            fields.string("Metadata"),
            fields.string("Name"),
            fields.string("Description"),
            fields.strings("Bindings"),
            fields.boolean("PoolingEnabled"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "Token": self.token,
            "IPPolicyRef": self.ip_policy_ref,
            "Metadata": self.metadata,
            "Name": self.name,
            "Description": self.description,
            "Bindings": None if self.bindings is None else list(self.bindings),
            "PoolingEnabled": self.pooling_enabled,
        }


@dataclass(frozen=True)
class Bind:
    proto: str
    id: str = ""  # empty: the server assigns one; a rebind after reconnecting sends the old one
    forwards_to: str = ""
    forwards_proto: str = ""
    opts: BindOpts = field(default_factory=BindOpts)
    extra: BindExtra = field(default_factory=BindExtra)

    @classmethod
    def parse(cls, message: object) -> Bind:
        fields = _Fields(message, "Bind", RPC_INVALID)
        proto = fields.string("Proto")
        if proto not in PROTOS:
            raise errors.UNSUPPORTED_PROTO(proto=proto)
        opts = fields.any("Opts")
        return cls(
            proto=proto,
            id=fields.string("Id"),
            forwards_to=fields.string("ForwardsTo"),
            forwards_proto=fields.string("ForwardsProto"),
            opts=BindOpts.parse(_Fields({} if opts is None else opts, "Bind.Opts", RPC_INVALID), proto),
            extra=BindExtra.parse(fields.object("Extra")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Proto": self.proto,
            "ForwardsTo": self.forwards_to,
            "ForwardsProto": self.forwards_proto,
            "Opts": self.opts.to_json(),
            "Extra": self.extra.to_json(),
        }


@dataclass(frozen=True)
class BindResp:
    """All keys are required by the agents; ``opts`` echo the request's with the assigned
    name filled in (the agent parses them back into its endpoint struct)."""

    id: str = ""
    url: str = ""
    proto: str = ""
    opts: Mapping[str, Any] = field(default_factory=dict)
    token: str = ""
    error: Refusal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "URL": self.url,
            "Proto": self.proto,
            "Opts": dict(self.opts),
            "Extra": {"Token": self.token},
            "Error": _error_text(self.error),
        }

    @classmethod
    def parse(cls, message: object) -> BindResp:
        fields = _Fields(message, "BindResp", RPC_INVALID)
        return cls(
            fields.string("Id"),
            fields.string("URL"),
            fields.string("Proto"),
            fields.raw_object("Opts") or {},
            fields.object("Extra").string("Token"),
            Refusal.from_wire(fields.string("Error")),
        )


@dataclass(frozen=True)
class StartTunnelWithLabel:
    labels: Mapping[str, str] = field(default_factory=dict)
    forwards_to: str = ""
    forwards_proto: str = ""
    metadata: str = ""

    @classmethod
    def parse(cls, message: object) -> StartTunnelWithLabel:
        fields = _Fields(message, "StartTunnelWithLabel", RPC_INVALID)
        return cls(
            fields.string_map("Labels"),
            fields.string("ForwardsTo"),
            fields.string("ForwardsProto"),
            fields.string("Metadata"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "Labels": dict(self.labels),
            "ForwardsTo": self.forwards_to,
            "ForwardsProto": self.forwards_proto,
            "Metadata": self.metadata,
        }


@dataclass(frozen=True)
class StartTunnelWithLabelResp:
    id: str = ""
    error: Refusal | None = None

    def to_json(self) -> dict[str, Any]:
        return {"Id": self.id, "Error": _error_text(self.error)}

    @classmethod
    def parse(cls, message: object) -> StartTunnelWithLabelResp:
        fields = _Fields(message, "StartTunnelWithLabelResp", RPC_INVALID)
        return cls(fields.string("Id"), Refusal.from_wire(fields.string("Error")))


@dataclass(frozen=True)
class Unbind:
    id: str = ""

    @classmethod
    def parse(cls, message: object) -> Unbind:
        return cls(_Fields(message, "Unbind", RPC_INVALID).string("Id"))

    def to_json(self) -> dict[str, Any]:
        return {"Id": self.id}


@dataclass(frozen=True)
class ErrorResp:
    """The answer that is only an ``Error``: Unbind's and PatchTunnelState's from the edge,
    and the agent's to Stop, Restart and Update."""

    error: Refusal | None = None

    def to_json(self) -> dict[str, Any]:
        return {"Error": _error_text(self.error)}

    @classmethod
    def parse(cls, message: object) -> ErrorResp:
        return cls(Refusal.from_wire(_Fields(message, "Response", RPC_INVALID).string("Error")))


UnbindResp = ErrorResp
CommandResp = ErrorResp


@dataclass(frozen=True)
class PatchTunnelState:
    """Stream type 10: update a bound endpoint in place (current-generation agents)."""

    tunnel_id: str = ""
    name: str | None = None
    description: str | None = None
    metadata: str | None = None
    pooling_enabled: bool | None = None
    traffic_policy: str | None = None

    @classmethod
    def parse(cls, message: object) -> PatchTunnelState:
        fields = _Fields(message, "PatchTunnelStateReq", RPC_INVALID)

        def optional_string(key: str) -> str | None:
            return fields.string(key) if fields.any(key) is not None else None

        return cls(
            fields.string("TunnelId"),
            optional_string("Name"),
            optional_string("Description"),
            optional_string("Metadata"),
            fields.boolean("PoolingEnabled") if fields.any("PoolingEnabled") is not None else None,
            optional_string("TrafficPolicy"),
        )

    def to_json(self) -> dict[str, Any]:
        optional = {
            "Name": self.name,
            "Description": self.description,
            "Metadata": self.metadata,
            "PoolingEnabled": self.pooling_enabled,
            "TrafficPolicy": self.traffic_policy,
        }
        return {"TunnelId": self.tunnel_id} | {k: v for k, v in optional.items() if v is not None}


@dataclass(frozen=True)
class SrvInfo:
    @classmethod
    def parse(cls, message: object) -> SrvInfo:
        _Fields(message, "SrvInfo", RPC_INVALID)
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class SrvInfoResp:
    region: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"Region": self.region}

    @classmethod
    def parse(cls, message: object) -> SrvInfoResp:
        return cls(_Fields(message, "SrvInfoResp", RPC_INVALID).string("Region"))


# Server-initiated ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StopTunnel:
    id: str
    message: str = ""
    error_code: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"Id": self.id, "Message": self.message, "ErrorCode": self.error_code}

    @classmethod
    def parse(cls, message: object) -> StopTunnel:
        fields = _Fields(message, "StopTunnel", RPC_INVALID)
        return cls(fields.string("Id"), fields.string("Message"), fields.string("ErrorCode"))


@dataclass(frozen=True)
class Stop:
    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def parse(cls, message: object) -> Stop:
        _Fields(message, "Stop", RPC_INVALID)
        return cls()


@dataclass(frozen=True)
class Restart:
    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def parse(cls, message: object) -> Restart:
        _Fields(message, "Restart", RPC_INVALID)
        return cls()


@dataclass(frozen=True)
class Update:
    version: str = ""
    permit_major_version: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"Version": self.version, "PermitMajorVersion": self.permit_major_version}

    @classmethod
    def parse(cls, message: object) -> Update:
        fields = _Fields(message, "Update", RPC_INVALID)
        return cls(fields.string("Version"), fields.boolean("PermitMajorVersion"))


Command = Stop | Restart | Update | StopTunnel
COMMAND_TYPES: Mapping[type[Any], StreamType] = {
    Stop: StreamType.STOP,
    Restart: StreamType.RESTART,
    Update: StreamType.UPDATE,
    StopTunnel: StreamType.STOP_TUNNEL,
}


@dataclass(frozen=True)
class ProxyHeader:
    """What the edge writes first on a proxy stream, after the stream type: an i64
    little-endian length, then this JSON (all five keys required)."""

    id: str
    client_addr: str
    proto: str
    edge_type: str = ""
    passthrough_tls: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "ClientAddr": self.client_addr,
            "Proto": self.proto,
            "EdgeType": self.edge_type,
            "PassthroughTLS": self.passthrough_tls,
        }

    @classmethod
    def parse(cls, message: object) -> ProxyHeader:
        fields = _Fields(message, "ProxyHeader", RPC_INVALID)
        return cls(
            fields.string("Id"),
            fields.string("ClientAddr"),
            fields.string("Proto"),
            fields.string("EdgeType"),
            fields.boolean("PassthroughTLS"),
        )


@dataclass(frozen=True)
class Heartbeat:
    """A heartbeat: 4 random bytes the peer echoes (no JSON)."""

    nonce: bytes

    SIZE = 4

    def encode(self) -> bytes:
        return self.nonce

    @classmethod
    def decode(cls, data: bytes) -> Self:
        if len(data) != cls.SIZE:
            raise ValueError(f"a heartbeat is {cls.SIZE} bytes")
        return cls(bytes(data))
