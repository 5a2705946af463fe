"""The entities Burrow keeps, as plain immutable values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from burrow.domain.certificates import CertificateFields


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


@dataclass(frozen=True, slots=True)
class SshCredential:
    """An SSH public key that may start tunnels through the SSH gateway (docs/ssh.md)."""

    id: str
    account_id: str
    owner_id: str
    description: str
    metadata: str
    public_key: str  # "<type> <base64>" (domain/ssh_keys.py)
    fingerprint: str  # "SHA256:...", what the gateway finds the key by
    acl: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a write, for the audit trail: an API key, or an operator on the command line."""

    actor_id: str  # the API key's id, or "cli:<local user name>"
    owner_id: str  # the API key's owner (a user or bot user id); "" on the command line
    client_ip: str  # the client's address; "local" on the command line
    operation_id: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One write, as the audit trail keeps it: never a token, never a body."""

    id: str
    account_id: str
    created_at: datetime
    actor_id: str
    actor_owner_id: str
    operation: str  # create, update, delete, stop
    resource: str  # api_key, credential, bot_user, tunnel_session, user, account
    resource_id: str
    client_ip: str
    operation_id: str


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
    # ACME (docs/certificates.md): the policy as accepted, the status the ACME worker
    # writes ({"renews_at", "provisioning_job"}), the /tls_certificates row it issued.
    certificate_management_policy: dict[str, str] | None = None
    certificate_management_status: dict[str, Any] | None = None
    managed_certificate_id: str | None = None
    # An uploaded /tls_certificates row chosen for the domain (never with a policy).
    certificate_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReservedAddr:
    id: str
    account_id: str
    owner_id: str
    description: str
    metadata: str
    addr: str  # host:port
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    id: str
    account_id: str
    description: str
    metadata: str
    certificate_pem: str  # the chain, re-serialised when it was checked
    created_at: datetime
    fields: CertificateFields  # read from the leaf; the private key is never in a model
