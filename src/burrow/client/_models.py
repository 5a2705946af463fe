"""The resources, as immutable values shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class _Service(Protocol):
    """The service that made an object: sync (answers) or async (awaitables)."""

    def update(self, id: str, *args: Any, **changes: Any) -> Any: ...

    def delete(self, id: str) -> Any: ...


class _Bound:
    """``update``/``delete`` on the object itself, through the client that fetched it.

    From :class:`Client` they return the result; from :class:`AsyncClient`, an awaitable
    (``await credential.delete()``).
    """

    __slots__ = ()
    id: str
    service: _Service | None

    def _service(self) -> _Service:
        if self.service is None:
            raise RuntimeError("this object was not fetched through a client")
        return self.service

    def delete(self) -> Any:
        return self._service().delete(self.id)


def parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Ref:
    id: str
    uri: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ref:
        return cls(id=str(data["id"]), uri=str(data["uri"]))


@dataclass(frozen=True, slots=True)
class ApiKey(_Bound):
    id: str
    uri: str
    description: str
    metadata: str
    created_at: datetime
    owner_id: str
    token: str | None = field(default=None, repr=False)  # only on the create response
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(self, description: str | None = None, metadata: str | None = None) -> Any:
        return self._service().update(self.id, description=description, metadata=metadata)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        return cls(
            id=data["id"],
            uri=data["uri"],
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            created_at=parse_time(data["created_at"]),
            owner_id=data.get("owner_id", ""),
            token=data.get("token"),
        )


@dataclass(frozen=True, slots=True)
class Credential(_Bound):
    id: str
    uri: str
    description: str
    metadata: str
    created_at: datetime
    owner_id: str
    acl: tuple[str, ...]
    token: str | None = field(default=None, repr=False)  # only on the create response
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(
        self, description: str | None = None, metadata: str | None = None, acl: list[str] | None = None
    ) -> Any:
        return self._service().update(self.id, description=description, metadata=metadata, acl=acl)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Credential:
        return cls(
            id=data["id"],
            uri=data["uri"],
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            created_at=parse_time(data["created_at"]),
            owner_id=data.get("owner_id", ""),
            acl=tuple(data.get("acl") or ()),
            token=data.get("token"),
        )


@dataclass(frozen=True, slots=True)
class SshCredential(_Bound):
    id: str
    uri: str
    description: str
    metadata: str
    created_at: datetime
    owner_id: str
    public_key: str
    acl: tuple[str, ...]
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(
        self, description: str | None = None, metadata: str | None = None, acl: list[str] | None = None
    ) -> Any:
        return self._service().update(self.id, description=description, metadata=metadata, acl=acl)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SshCredential:
        return cls(
            id=data["id"],
            uri=data["uri"],
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            created_at=parse_time(data["created_at"]),
            owner_id=data.get("owner_id", ""),
            public_key=data.get("public_key", ""),
            acl=tuple(data.get("acl") or ()),
        )


@dataclass(frozen=True, slots=True)
class BotUser(_Bound):
    id: str
    uri: str
    name: str
    active: bool
    created_at: datetime
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(self, name: str | None = None, active: bool | None = None) -> Any:
        return self._service().update(self.id, name=name, active=active)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BotUser:
        return cls(
            id=data["id"],
            uri=data["uri"],
            name=data["name"],
            active=bool(data["active"]),
            created_at=parse_time(data["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class ReservedDomain(_Bound):
    id: str
    uri: str
    created_at: datetime
    description: str
    metadata: str
    domain: str
    region: str
    cname_target: str | None  # for a domain outside the server's --domain
    # The certificate served (certificate_id's or ACME's); resolves_to and the CNAME target always empty.
    certificate: Ref | None = None
    certificate_management_policy: Mapping[str, Any] | None = None
    certificate_management_status: Mapping[str, Any] | None = None
    acme_challenge_cname_target: str | None = None
    resolves_to: tuple[Mapping[str, Any], ...] = ()
    owner_id: str = ""  # Burrow's addition: the user or bot user that reserved it
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(self, description: str | None = None, metadata: str | None = None) -> Any:
        return self._service().update(self.id, description=description, metadata=metadata)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReservedDomain:
        certificate = data.get("certificate")
        return cls(
            id=data["id"],
            uri=data["uri"],
            created_at=parse_time(data["created_at"]),
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            domain=data["domain"],
            region=data.get("region", ""),
            cname_target=data.get("cname_target"),
            certificate=Ref.from_json(certificate) if certificate else None,
            certificate_management_policy=data.get("certificate_management_policy"),
            certificate_management_status=data.get("certificate_management_status"),
            acme_challenge_cname_target=data.get("acme_challenge_cname_target"),
            resolves_to=tuple(data.get("resolves_to") or ()),
            owner_id=data.get("owner_id", ""),
        )


@dataclass(frozen=True, slots=True)
class ReservedAddr(_Bound):
    id: str
    uri: str
    created_at: datetime
    description: str
    metadata: str
    addr: str
    region: str
    owner_id: str = ""  # Burrow's addition: the user or bot user that reserved it
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(self, description: str | None = None, metadata: str | None = None) -> Any:
        return self._service().update(self.id, description=description, metadata=metadata)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReservedAddr:
        return cls(
            id=data["id"],
            uri=data["uri"],
            created_at=parse_time(data["created_at"]),
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            addr=data["addr"],
            region=data.get("region", ""),
            owner_id=data.get("owner_id", ""),
        )


@dataclass(frozen=True, slots=True)
class SubjectAlternativeNames:
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SubjectAlternativeNames:
        return cls(tuple(data.get("dns_names") or ()), tuple(data.get("ips") or ()))


@dataclass(frozen=True, slots=True)
class TlsCertificate(_Bound):
    """An uploaded certificate as the server parsed it; its private key is never returned."""

    id: str
    uri: str
    created_at: datetime
    description: str
    metadata: str
    certificate_pem: str
    subject_common_name: str
    subject_alternative_names: SubjectAlternativeNames
    issued_at: datetime | None
    not_before: datetime
    not_after: datetime
    key_usages: tuple[str, ...]
    extended_key_usages: tuple[str, ...]
    private_key_type: str
    issuer_common_name: str
    serial_number: str
    subject_organization: str
    subject_organizational_unit: str
    subject_locality: str
    subject_province: str
    subject_country: str
    service: _Service | None = field(default=None, repr=False, compare=False)

    def update(self, description: str | None = None, metadata: str | None = None) -> Any:
        return self._service().update(self.id, description=description, metadata=metadata)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TlsCertificate:
        issued_at = data.get("issued_at")
        return cls(
            id=data["id"],
            uri=data["uri"],
            created_at=parse_time(data["created_at"]),
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            certificate_pem=data["certificate_pem"],
            subject_common_name=data.get("subject_common_name", ""),
            subject_alternative_names=SubjectAlternativeNames.from_json(
                data.get("subject_alternative_names") or {}
            ),
            issued_at=parse_time(issued_at) if issued_at else None,
            not_before=parse_time(data["not_before"]),
            not_after=parse_time(data["not_after"]),
            key_usages=tuple(data.get("key_usages") or ()),
            extended_key_usages=tuple(data.get("extended_key_usages") or ()),
            private_key_type=data.get("private_key_type", ""),
            issuer_common_name=data.get("issuer_common_name", ""),
            serial_number=data.get("serial_number", ""),
            subject_organization=data.get("subject_organization", ""),
            subject_organizational_unit=data.get("subject_organizational_unit", ""),
            subject_locality=data.get("subject_locality", ""),
            subject_province=data.get("subject_province", ""),
            subject_country=data.get("subject_country", ""),
        )


@dataclass(frozen=True, slots=True)
class TunnelSession:
    id: str
    uri: str
    agent_version: str
    credential: Ref
    ip: str
    metadata: str
    os: str
    region: str
    started_at: datetime
    transport: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TunnelSession:
        return cls(
            id=data["id"],
            uri=data["uri"],
            agent_version=data.get("agent_version", ""),
            credential=Ref.from_json(data["credential"]),
            ip=data.get("ip", ""),
            metadata=data.get("metadata", ""),
            os=data.get("os", ""),
            region=data.get("region", ""),
            started_at=parse_time(data["started_at"]),
            transport=data.get("transport", ""),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint online: what one agent's tunnel serves (/endpoints)."""

    id: str
    url: str
    public_url: str
    proto: str
    scheme: str
    host: str
    port: int
    hostport: str
    type: str
    name: str
    description: str
    metadata: str
    traffic_policy: str
    upstream_url: str
    bindings: tuple[str, ...]
    pooling_enabled: bool
    tunnel: Ref
    tunnel_session: Ref
    region: str
    created_at: datetime
    updated_at: datetime
    uri: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(
            id=data["id"],
            url=data.get("url", ""),
            public_url=data.get("public_url", ""),
            proto=data.get("proto", ""),
            scheme=data.get("scheme", ""),
            host=data.get("host", ""),
            port=int(data.get("port") or 0),
            hostport=data.get("hostport", ""),
            type=data.get("type", ""),
            name=data.get("name", ""),
            description=data.get("description", ""),
            metadata=data.get("metadata", ""),
            traffic_policy=data.get("traffic_policy", ""),
            upstream_url=data.get("upstream_url", ""),
            bindings=tuple(data.get("bindings") or ()),
            pooling_enabled=bool(data.get("pooling_enabled")),
            tunnel=Ref.from_json(data["tunnel"]),
            tunnel_session=Ref.from_json(data["tunnel_session"]),
            region=data.get("region", ""),
            created_at=parse_time(data["created_at"]),
            updated_at=parse_time(data["updated_at"]),
            uri=data.get("uri", ""),
        )


@dataclass(frozen=True, slots=True)
class Tunnel:
    id: str
    public_url: str
    started_at: datetime
    metadata: str
    proto: str
    region: str
    tunnel_session: Ref
    endpoint: Ref | None
    labels: Mapping[str, str]
    backends: tuple[Ref, ...]
    forwards_to: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tunnel:
        endpoint = data.get("endpoint")
        return cls(
            id=data["id"],
            public_url=data.get("public_url", ""),
            started_at=parse_time(data["started_at"]),
            metadata=data.get("metadata", ""),
            proto=data.get("proto", ""),
            region=data.get("region", ""),
            tunnel_session=Ref.from_json(data["tunnel_session"]),
            endpoint=Ref.from_json(endpoint) if endpoint else None,
            labels=dict(data.get("labels") or {}),
            backends=tuple(Ref.from_json(backend) for backend in data.get("backends") or ()),
            forwards_to=data.get("forwards_to", ""),
        )


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One write in the audit trail (admins only): who, what, when, from where."""

    id: str
    uri: str
    created_at: datetime
    actor_id: str
    actor_owner_id: str
    operation: str
    resource: str
    resource_id: str
    client_ip: str
    operation_id: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEvent:
        return cls(
            id=data["id"],
            uri=data["uri"],
            created_at=parse_time(data["created_at"]),
            actor_id=data["actor_id"],
            actor_owner_id=data["actor_owner_id"],
            operation=data["operation"],
            resource=data["resource"],
            resource_id=data["resource_id"],
            client_ip=data["client_ip"],
            operation_id=data["operation_id"],
        )
