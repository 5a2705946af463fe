"""The entities Burrow keeps, as plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the owner of the API key that authenticated the request."""

    account_id: str
    owner_id: str  # a user id or a bot user id
    is_admin: bool
    api_key_id: str


@dataclass(frozen=True, slots=True)
class User:
    id: str
    account_id: str
    email: str
    role: str
    active: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class BotUser:
    id: str
    account_id: str
    name: str
    active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    owner_id: str
    description: str
    metadata: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Credential:
    id: str
    account_id: str
    owner_id: str
    description: str
    metadata: str
    acl: tuple[str, ...]
    created_at: datetime


Resource = ApiKey | Credential | BotUser

ROLES = ("admin", "member")


@dataclass(frozen=True, slots=True)
class ReservedDomain:
    id: str
    account_id: str
    owner_id: str
    description: str
    metadata: str
    domain: str  # lowercase
    cname_target: str | None  # for a domain outside --domain: where its CNAME should point
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReservedAddr:
    id: str
    account_id: str
    owner_id: str
    description: str
    metadata: str
    addr: str  # host:port
    created_at: datetime
