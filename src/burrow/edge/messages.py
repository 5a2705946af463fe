"""Typed streams and the JSON messages of ngrok's agent protocol, as pure functions.

Every muxado stream starts with a big-endian u32 naming its type. RPC streams then carry
one JSON object each way: the requester writes its object without FIN, the responder
answers with one object and FIN. A Proxy stream (server to agent) carries, after its
type, a little-endian i64 length and a JSON :class:`ProxyHeader`, then raw bytes.

Keys are PascalCase on the wire, but Go agents spell some differently from the SDK
(``Authtoken`` against ``AuthToken``), so every key is read case-insensitively. Decoding
is lenient about missing keys and null values (they mean the default) and strict about
wrong types (:class:`MessageError`). Encoding always writes every key a response has:
the Rust SDK refuses responses that lack one.
"""

from __future__ import annotations

import abc
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Self

TYPE_PREFIX: Final = struct.Struct(">I")
PROXY_HEADER_LENGTH: Final = struct.Struct("<q")  # little-endian, unlike everything else
MAX_MESSAGE_SIZE: Final = 256 * 1024  # an Auth or Bind is a few KiB; this is generous
MAX_PROXY_HEADER_SIZE: Final = 64 * 1024


class StreamType(IntEnum):
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
    HEARTBEAT = 0xFFFFFFFF


class MessageError(ValueError):
    """Bytes that are not the message they should be."""


# Stream types --------------------------------------------------------------------------


def encode_stream_type(stream_type: int) -> bytes:
    if not 0 <= stream_type <= 0xFFFFFFFF:
        raise ValueError(f"stream type {stream_type} does not fit in 32 bits")
    return TYPE_PREFIX.pack(stream_type)


def decode_stream_type(prefix: bytes) -> int:
    """The type in a stream's first 4 bytes: a :class:`StreamType` when known, else the int."""
    if len(prefix) != TYPE_PREFIX.size:
        raise MessageError(f"a stream type is 4 bytes, not {len(prefix)}")
    value: int = TYPE_PREFIX.unpack(prefix)[0]
    try:
        return StreamType(value)
    except ValueError:
        return value


# JSON ----------------------------------------------------------------------------------


def get_field(message: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``message[key]``, whatever the case of the key as sent."""
    if key in message:
        return message[key]
    wanted = key.lower()
    for name, value in message.items():
        if isinstance(name, str) and name.lower() == wanted:
            return value
    return default


def parse_json_object(data: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise MessageError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise MessageError("a message must be a JSON object")
    return value


def encode_json(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


_STRUCTURAL: Final = re.compile(rb'["{}\[\]]')
_STRING_END: Final = re.compile(rb'["\\]')
_WHITESPACE: Final = b" \t\r\n"


class JsonObjectReader:
    """Finds one JSON object in bytes arriving in pieces, without waiting for FIN.

    Requesters send no FIN after their message, so its end is where the top-level
    object's braces balance. :meth:`feed` returns the parsed object once complete, None
    until then; bytes after it are kept in :attr:`remainder`.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self.remainder = b""
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already scanned
        self._depth = 0
        self._in_string = False
        self._done = False

    def feed(self, data: bytes) -> dict[str, Any] | None:
        if self._done:
            raise MessageError("the message was already complete")
        self._buffer += data
        end = self._scan()
        if end is None:
            if len(self._buffer) > self.max_size:
                raise MessageError(f"message longer than {self.max_size} bytes")
            return None
        if end > self.max_size:
            raise MessageError(f"message longer than {self.max_size} bytes")
        self._done = True
        self.remainder = bytes(self._buffer[end:])
        return parse_json_object(bytes(self._buffer[:end]))

    def _scan(self) -> int | None:
        """Where the object ends (exclusive), or None if it has not yet."""
        buffer, position = self._buffer, self._scanned
        while position < len(buffer):
            if self._depth == 0:
                byte = buffer[position]
                if byte in _WHITESPACE:
                    position += 1
                    continue
                if byte != ord("{"):
                    raise MessageError("a message must be a JSON object")
                self._depth = 1
                position += 1
            elif self._in_string:
                match = _STRING_END.search(buffer, position)
                if match is None:
                    position = len(buffer)
                elif match.group() == b"\\":
                    if match.end() == len(buffer):  # the escaped byte has not arrived yet
                        position = match.start()
                        break
                    position = match.end() + 1
                else:
                    self._in_string = False
                    position = match.end()
            else:
                match = _STRUCTURAL.search(buffer, position)
                if match is None:
                    position = len(buffer)
                    continue
                position = match.end()
                token = match.group()
                if token == b'"':
                    self._in_string = True
                elif token in (b"{", b"["):
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 0:
                        self._scanned = position
                        return position
        self._scanned = position
        return None


# Field coercion: lenient about absence, strict about type -----------------------------


def _str(message: Mapping[str, Any], key: str) -> str:
    value = get_field(message, key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MessageError(f"{key} must be a string")
    return value


def _bool(message: Mapping[str, Any], key: str) -> bool:
    value = get_field(message, key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise MessageError(f"{key} must be a boolean")
    return value


def _int(message: Mapping[str, Any], key: str) -> int:
    value = get_field(message, key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{key} must be an integer")
    return value


def _object(message: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = get_field(message, key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(f"{key} must be an object")
    return value


def _string_map(message: Mapping[str, Any], key: str) -> dict[str, str]:
    value = _object(message, key)
    if not all(isinstance(v, str) for v in value.values()):
        raise MessageError(f"{key} must map strings to strings")
    return dict(value)


class Message(abc.ABC):
    """A protocol message: build it from JSON (any key case) and write it back."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self: ...

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Self:
        return cls.from_dict(data if isinstance(data, Mapping) else parse_json_object(data))

    def to_json(self) -> bytes:
        return encode_json(self.to_dict())


# Auth ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthRequest(Message):
    """Agent to server, first RPC. ``Extra`` varies by agent, so it stays a dict."""

    version: tuple[str, ...]  # protocol versions offered, preferred first
    client_id: str = ""  # the previous session's id when reconnecting
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def auth_token(self) -> str:
        """``Extra.AuthToken`` (the SDK) or ``Extra.Authtoken`` (Go agents)."""
        return _str(self.extra, "AuthToken")

    @property
    def heartbeat_interval_ns(self) -> int:
        return _int(self.extra, "HeartbeatInterval")

    @property
    def heartbeat_tolerance_ns(self) -> int:
        return _int(self.extra, "HeartbeatTolerance")

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        versions = get_field(message, "Version")
        if versions is None:
            versions = []
        if not isinstance(versions, list) or not all(isinstance(v, str | int) for v in versions):
            raise MessageError("Version must be a list of versions")
        return cls(
            version=tuple(str(v) for v in versions),
            client_id=_str(message, "ClientId"),
            extra=_object(message, "Extra"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"Version": list(self.version), "ClientId": self.client_id, "Extra": dict(self.extra)}


@dataclass(frozen=True)
class AuthResponseExtra:
    version: str = ""  # the server's version
    region: str = ""
    cookie: str = ""
    account_name: str = ""
    session_duration: int = 0  # seconds
    plan_name: str = ""
    banner: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            version=_str(message, "Version"),
            region=_str(message, "Region"),
            cookie=_str(message, "Cookie"),
            account_name=_str(message, "AccountName"),
            session_duration=_int(message, "SessionDuration"),
            plan_name=_str(message, "PlanName"),
            banner=_str(message, "Banner"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "Version": self.version,
            "Region": self.region,
            "Cookie": self.cookie,
            "AccountName": self.account_name,
            "SessionDuration": self.session_duration,
            "PlanName": self.plan_name,
            "Banner": self.banner,
        }


@dataclass(frozen=True)
class AuthResponse(Message):
    version: str  # one the agent offered
    client_id: str  # the session id
    error: str = ""
    extra: AuthResponseExtra = field(default_factory=AuthResponseExtra)

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            version=_str(message, "Version"),
            client_id=_str(message, "ClientId"),
            error=_str(message, "Error"),
            extra=AuthResponseExtra.from_dict(_object(message, "Extra")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "Version": self.version,
            "ClientId": self.client_id,
            "Error": self.error,
            "Extra": self.extra.to_dict(),
        }


# Bind and friends ----------------------------------------------------------------------


@dataclass(frozen=True)
class BindRequest(Message):
    """``Opts`` depends on ``Proto`` and ``Extra`` on the agent, so both stay dicts."""

    proto: str
    id: str = ""  # empty asks the server to assign one; a rebind sends the old one
    forwards_to: str = ""
    forwards_proto: str = ""
    opts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            proto=_str(message, "Proto"),
            id=_str(message, "Id"),
            forwards_to=_str(message, "ForwardsTo"),
            forwards_proto=_str(message, "ForwardsProto"),
            opts=_object(message, "Opts"),
            extra=_object(message, "Extra"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Proto": self.proto,
            "ForwardsTo": self.forwards_to,
            "ForwardsProto": self.forwards_proto,
            "Opts": dict(self.opts),
            "Extra": dict(self.extra),
        }


@dataclass(frozen=True)
class BindResponse(Message):
    """``Opts`` must parse back into the agent's endpoint struct: echo the request's."""

    id: str = ""
    url: str = ""
    proto: str = ""
    opts: dict[str, Any] = field(default_factory=dict)
    token: str = ""  # Extra.Token
    error: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            id=_str(message, "Id"),
            url=_str(message, "URL"),
            proto=_str(message, "Proto"),
            opts=_object(message, "Opts"),
            token=_str(_object(message, "Extra"), "Token"),
            error=_str(message, "Error"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "URL": self.url,
            "Proto": self.proto,
            "Opts": dict(self.opts),
            "Extra": {"Token": self.token},
            "Error": self.error,
        }


@dataclass(frozen=True)
class StartTunnelWithLabel(Message):
    labels: dict[str, str]
    forwards_to: str = ""
    forwards_proto: str = ""
    metadata: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            labels=_string_map(message, "Labels"),
            forwards_to=_str(message, "ForwardsTo"),
            forwards_proto=_str(message, "ForwardsProto"),
            metadata=_str(message, "Metadata"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "Labels": dict(self.labels),
            "ForwardsTo": self.forwards_to,
            "ForwardsProto": self.forwards_proto,
            "Metadata": self.metadata,
        }


@dataclass(frozen=True)
class StartTunnelWithLabelResponse(Message):
    id: str = ""
    error: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(id=_str(message, "Id"), error=_str(message, "Error"))

    def to_dict(self) -> dict[str, Any]:
        return {"Id": self.id, "Error": self.error}


@dataclass(frozen=True)
class Unbind(Message):
    """May arrive twice for one tunnel: the answer must not depend on which."""

    id: str

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(id=_str(message, "Id"))

    def to_dict(self) -> dict[str, Any]:
        return {"Id": self.id}


@dataclass(frozen=True)
class UnbindResponse(Message):
    error: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(error=_str(message, "Error"))

    def to_dict(self) -> dict[str, Any]:
        return {"Error": self.error}


@dataclass(frozen=True)
class SrvInfo(Message):
    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class SrvInfoResponse(Message):
    region: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(region=_str(message, "Region"))

    def to_dict(self) -> dict[str, Any]:
        return {"Region": self.region}


# Server to agent -----------------------------------------------------------------------


@dataclass(frozen=True)
class StopTunnel(Message):
    """Sent on a StopTunnel stream; the agent does not answer."""

    id: str
    message: str = ""
    error_code: str = ""  # an ERR_NGROK_ code, or empty

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            id=_str(message, "Id"), message=_str(message, "Message"), error_code=_str(message, "ErrorCode")
        )

    def to_dict(self) -> dict[str, Any]:
        return {"Id": self.id, "Message": self.message, "ErrorCode": self.error_code}


@dataclass(frozen=True)
class Update(Message):
    version: str = ""  # empty: the latest
    permit_major_version: bool = False

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            version=_str(message, "Version"), permit_major_version=_bool(message, "PermitMajorVersion")
        )

    def to_dict(self) -> dict[str, Any]:
        return {"Version": self.version, "PermitMajorVersion": self.permit_major_version}


@dataclass(frozen=True)
class CommandResponse(Message):
    """The agent's answer to Stop, Restart or Update (Stop and Restart requests are ``{}``)."""

    error: str = ""

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(error=_str(message, "Error"))

    def to_dict(self) -> dict[str, Any]:
        return {"Error": self.error}


@dataclass(frozen=True)
class ProxyHeader(Message):
    """What the agent learns about a public connection; all five keys are required."""

    id: str  # the tunnel's id
    client_addr: str  # "ip:port" of the public client
    proto: str  # http, https, tcp or tls
    edge_type: str = ""
    passthrough_tls: bool = False

    @classmethod
    def from_dict(cls, message: Mapping[str, Any]) -> Self:
        return cls(
            id=_str(message, "Id"),
            client_addr=_str(message, "ClientAddr"),
            proto=_str(message, "Proto"),
            edge_type=_str(message, "EdgeType"),
            passthrough_tls=_bool(message, "PassthroughTLS"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "ClientAddr": self.client_addr,
            "Proto": self.proto,
            "EdgeType": self.edge_type,
            "PassthroughTLS": self.passthrough_tls,
        }


def encode_proxy_preamble(header: ProxyHeader) -> bytes:
    """The first bytes of a Proxy stream: type 3, the header's i64 LE length, the header."""
    body = header.to_json()
    return encode_stream_type(StreamType.PROXY) + PROXY_HEADER_LENGTH.pack(len(body)) + body


def parse_proxy_header(data: bytes, max_size: int = MAX_PROXY_HEADER_SIZE) -> tuple[ProxyHeader, int] | None:
    """The header at the start of ``data`` (the bytes after the type) and its size in
    bytes, or None until all of it has arrived."""
    if len(data) < PROXY_HEADER_LENGTH.size:
        return None
    (length,) = PROXY_HEADER_LENGTH.unpack_from(data)
    if not 0 <= length <= max_size:
        raise MessageError(f"proxy header length {length} out of range")
    end = PROXY_HEADER_LENGTH.size + length
    if len(data) < end:
        return None
    return ProxyHeader.from_json(data[PROXY_HEADER_LENGTH.size : end]), end
