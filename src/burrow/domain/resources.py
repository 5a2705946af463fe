"""Every REST resource described once: what it shows, what a request may set, and the rules.

A :class:`Resource` lists its output fields (name, value kind, how to read it from the
model), which of them a list filter may use, the fields a create or an update accepts,
and its write rules. The API derives from it the JSON it serves (:meth:`Resource.represent`),
the filter field table, request validation, and the OpenAPI request and response schemas,
so a field added here appears everywhere at once; docs/design.md walks through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit

from burrow.domain import errors, ids
from burrow.domain.fields import (
    ACL,
    ACTIVE,
    ADDR,
    CERTIFICATE_ID,
    CERTIFICATE_MANAGEMENT_POLICY,
    CERTIFICATE_PEM,
    DESCRIPTION,
    DOMAIN,
    METADATA,
    NAME,
    OWNER_ID,
    PRIVATE_KEY_PEM,
    PUBLIC_KEY,
    RESOLVES_TO,
    Field,
    ValueKind,
    validate,
)
from burrow.domain.fields import (
    REGION as REGION_FIELD,
)
from burrow.domain.filter import FILTERABLE_KINDS
from burrow.domain.tunnels import AgentSession, Tunnel

REGION = "local"


class Operation(StrEnum):
    LIST = "list"
    GET = "get"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    STOP = "stop"  # POST /<path>/{id}/stop


CRUD = frozenset({Operation.LIST, Operation.GET, Operation.CREATE, Operation.UPDATE, Operation.DELETE})


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with whole seconds; naive times are UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


@dataclass(frozen=True, slots=True)
class View:
    """What shaping an item needs besides the item: the base of ``uri`` fields, and the
    token, which only a create response carries."""

    base: str
    token: str | None = None


Reader = Callable[[Any, View], Any]


@dataclass(frozen=True)
class Shown:
    """One field of a resource's JSON."""

    name: str
    kind: ValueKind
    read: Reader
    nullable: bool = False
    filterable: bool = True  # when its kind is one filters can read
    uri: bool = False  # a string holding an absolute URI (OpenAPI's format)

    @property
    def in_filters(self) -> bool:
        return self.filterable and self.kind in FILTERABLE_KINDS


_CONVERT: dict[ValueKind, Callable[[Any], Any]] = {
    ValueKind.TIMESTAMP: timestamp,
    ValueKind.STRING_LIST: list,
    ValueKind.STRING_MAP: dict,
}


def attribute(name: str, kind: ValueKind = ValueKind.STRING, source: str | None = None) -> Shown:
    """A field read from the model's attribute ``source`` (default: the same name)."""
    key = source or name
    convert = _CONVERT.get(kind)
    if convert is None:
        return Shown(name, kind, lambda item, view: getattr(item, key))
    return Shown(name, kind, lambda item, view: convert(getattr(item, key)))


def reference(name: str, path: str, id_attribute: str) -> Shown:
    """``{"id", "uri"}`` of another resource, whose id is the model's ``id_attribute``."""

    def read(item: Any, view: View) -> dict[str, str]:
        target = getattr(item, id_attribute)
        return {"id": target, "uri": f"{view.base}{path}/{target}"}

    return Shown(name, ValueKind.REF, read)


def self_uri(path: str) -> Shown:
    return Shown("uri", ValueKind.STRING, lambda item, view: f"{view.base}{path}/{item.id}", uri=True)


def constant(name: str, kind: ValueKind, value: Any, nullable: bool = False) -> Shown:
    if isinstance(value, list | dict):
        raise TypeError("a constant must be immutable; each response gets its own copy otherwise")
    return Shown(name, kind, lambda item, view: value, nullable=nullable)


def _no_owner(item: Any) -> str | None:
    return None


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Resource:
    name: str  # "credential": also the store's name for its table
    title: str  # "tunnel credential", for messages and the OpenAPI tags
    path: str  # "/credentials"
    list_key: str  # the list body's key: "credentials"
    id_prefix: str
    fields: tuple[Shown, ...]
    operations: frozenset[Operation] = CRUD
    create_fields: tuple[Field, ...] = ()
    update_fields: tuple[Field, ...] = ()
    create_defaults: Mapping[str, Any] = field(default_factory=dict)
    # Fields that must not be blank: on create (where missing counts as blank) and when updated.
    required_text: Mapping[str, errors.ErrorKind] = field(default_factory=dict)
    # Fields fixed at creation, and the error an update naming them gets.
    permanent: Mapping[str, errors.ErrorKind] = field(default_factory=dict)
    admin_only_writes: bool = False  # bot users: only admins manage them
    admin_only: bool = False  # the audit trail: only admins may even read it
    owner_of: Callable[[Any], str | None] = _no_owner  # who may write it besides admins
    # Create picks the owner from ``owner_id`` (default: the caller); members may name only themselves.
    owned: bool = False

    def __post_init__(self) -> None:
        names = [shown.name for shown in self.fields]
        if len(set(names)) != len(names) or "id" not in names:
            raise ValueError(f"{self.name}: output field names must be unique and include id")

    @functools.cached_property
    def _readers(self) -> tuple[tuple[str, Reader], ...]:
        # represent() runs on every response: the fields' names and readers, unpacked once.
        return tuple((shown.name, shown.read) for shown in self.fields)

    @property
    def filter_fields(self) -> dict[str, ValueKind]:
        return {shown.name: shown.kind for shown in self.fields if shown.in_filters}

    def represent(self, item: Any, base: str, token: str | None = None) -> dict[str, Any]:
        """The JSON shape ngrok's clients read: every field present."""
        view = View(base, token)
        return {name: read(item, view) for name, read in self._readers}

    def create_values(self, body: object) -> dict[str, Any]:
        """A create body, validated, with the defaults filled in."""
        return {**self.create_defaults, **validate(body, self.create_fields)}

    def check_required(self, values: Mapping[str, Any], creating: bool) -> None:
        for name, error in self.required_text.items():
            if (creating or name in values) and not str(values.get(name) or "").strip():
                raise error()

    def update_values(self, body: object) -> dict[str, Any]:
        """An update body, validated: at least one change, nothing permanent, nothing blank."""
        if isinstance(body, Mapping):
            for name, error in self.permanent.items():
                if name in body:
                    raise error()
        values = validate(body, self.update_fields)
        if not values:
            raise errors.NOTHING_TO_UPDATE()
        self.check_required(values, creating=False)
        return values


_ID = attribute("id")
_CREATED_AT = attribute("created_at", ValueKind.TIMESTAMP)
# The token is shown in the create response only; null everywhere else.
_TOKEN = Shown("token", ValueKind.STRING, lambda item, view: view.token, nullable=True, filterable=False)


def _owner_id(item: Any) -> str | None:
    return item.owner_id  # type: ignore[no-any-return]


API_KEYS = Resource(
    name="api_key",
    title="API key",
    path="/api_keys",
    list_key="keys",
    id_prefix=ids.API_KEY,
    fields=(
        _ID,
        self_uri("/api_keys"),
        _CREATED_AT,
        attribute("description"),
        attribute("metadata"),
        _TOKEN,
        attribute("owner_id"),
    ),
    create_fields=(DESCRIPTION, METADATA, OWNER_ID),
    update_fields=(DESCRIPTION, METADATA),
    create_defaults={"description": "", "metadata": ""},
    permanent={"owner_id": errors.OWNER_IS_PERMANENT_KEY},
    owner_of=_owner_id,
    owned=True,
)
CREDENTIALS = Resource(
    name="credential",
    title="tunnel credential",
    path="/credentials",
    list_key="credentials",
    id_prefix=ids.CREDENTIAL,
    fields=(
        _ID,
        self_uri("/credentials"),
        _CREATED_AT,
        attribute("description"),
        attribute("metadata"),
        _TOKEN,
        attribute("acl", ValueKind.STRING_LIST),
        attribute("owner_id"),
    ),
    create_fields=(DESCRIPTION, METADATA, ACL, OWNER_ID),
    update_fields=(DESCRIPTION, METADATA, ACL),
    create_defaults={"description": "", "metadata": "", "acl": []},
    permanent={"owner_id": errors.OWNER_IS_PERMANENT_CREDENTIAL},
    owner_of=_owner_id,
    owned=True,
)

SSH_CREDENTIALS = Resource(
    name="ssh_credential",
    title="SSH credential",
    path="/ssh_credentials",
    list_key="ssh_credentials",
    id_prefix=ids.SSH_CREDENTIAL,
    fields=(
        _ID,
        self_uri("/ssh_credentials"),
        _CREATED_AT,
        attribute("description"),
        attribute("metadata"),
        attribute("public_key"),
        attribute("acl", ValueKind.STRING_LIST),
        attribute("owner_id"),
    ),
    create_fields=(DESCRIPTION, METADATA, ACL, PUBLIC_KEY, OWNER_ID),
    update_fields=(DESCRIPTION, METADATA, ACL),
    create_defaults={"description": "", "metadata": "", "acl": []},
    required_text={"public_key": errors.SSH_PUBLIC_KEY_REQUIRED},
    permanent={
        "owner_id": errors.OWNER_IS_PERMANENT_SSH_CREDENTIAL,
        "public_key": errors.SSH_PUBLIC_KEY_IS_PERMANENT,
    },
    owner_of=_owner_id,
    owned=True,
)


def _bot_users(path: str, list_key: str, title: str) -> Resource:
    return Resource(
        name="bot_user",
        title=title,
        path=path,
        list_key=list_key,
        id_prefix=ids.BOT_USER,
        fields=(
            _ID,
            self_uri(path),
            attribute("name"),
            attribute("active", ValueKind.BOOLEAN),
            _CREATED_AT,
        ),
        create_fields=(NAME, ACTIVE),
        update_fields=(NAME, ACTIVE),
        create_defaults={"active": True},
        required_text={"name": errors.BOT_NAME_REQUIRED},
        admin_only_writes=True,
    )


BOT_USERS = _bot_users("/bot_users", "bot_users", "bot user")
SERVICE_USERS = _bot_users("/service_users", "service_users", "service user")  # ngrok's newer name


def _ip(session: AgentSession, view: View) -> str:
    return session.client_addr.rpartition(":")[0].strip("[]")


def _transport(session: AgentSession, view: View) -> str:
    """ngrok's two: an agent's session, or one started through the SSH gateway."""
    return "ssh" if session.credential_id.startswith(f"{ids.SSH_CREDENTIAL}_") else "ngrok/v2"


def _proto(tunnel: Tunnel, view: View) -> str:
    return "" if tunnel.proto == "labeled" else tunnel.proto


TUNNEL_SESSIONS = Resource(
    name="tunnel_session",
    title="tunnel session",
    path="/tunnel_sessions",
    list_key="tunnel_sessions",
    id_prefix=ids.TUNNEL_SESSION,
    fields=(
        _ID,
        self_uri("/tunnel_sessions"),
        attribute("agent_version"),
        reference("credential", "/credentials", "credential_id"),
        Shown("ip", ValueKind.STRING, _ip),
        attribute("metadata"),
        attribute("os"),
        constant("region", ValueKind.STRING, REGION),
        attribute("started_at", ValueKind.TIMESTAMP),
        Shown("transport", ValueKind.STRING, _transport),
    ),
    operations=frozenset({Operation.LIST, Operation.GET, Operation.STOP}),
    owner_of=_owner_id,
)
TUNNELS = Resource(
    name="tunnel",
    title="tunnel",
    path="/tunnels",
    list_key="tunnels",
    id_prefix=ids.TUNNEL,
    fields=(
        _ID,
        attribute("public_url", source="url"),
        attribute("started_at", ValueKind.TIMESTAMP, source="created_at"),
        attribute("metadata"),
        Shown("proto", ValueKind.STRING, _proto),
        constant("region", ValueKind.STRING, REGION),
        reference("tunnel_session", "/tunnel_sessions", "session_id"),
        constant("endpoint", ValueKind.REF, None, nullable=True),
        attribute("labels", ValueKind.STRING_MAP),
        Shown("backends", ValueKind.REF_LIST, lambda tunnel, view: []),
        attribute("forwards_to"),
    ),
    operations=frozenset({Operation.LIST}),
)

AUDIT_EVENTS = Resource(
    name="audit_event",
    title="audit event",
    path="/audit_events",
    list_key="audit_events",
    id_prefix=ids.AUDIT_EVENT,
    fields=(
        _ID,
        self_uri("/audit_events"),
        _CREATED_AT,
        attribute("actor_id"),  # the API key, or "cli:<user>" for burrow admin and init
        attribute("actor_owner_id"),  # the key's user or bot user; "" on the command line
        attribute("operation"),
        attribute("resource"),
        attribute("resource_id"),
        attribute("client_ip"),
        attribute("operation_id"),
    ),
    operations=frozenset({Operation.LIST, Operation.GET}),  # recorded by writes, never written
    admin_only=True,
)


def _managed_certificate(item: Any, view: View) -> dict[str, str] | None:
    # The uploaded certificate chosen by certificate_id, else the one ACME issued.
    certificate_id = item.certificate_id
    if not certificate_id and item.certificate_management_policy:
        certificate_id = item.managed_certificate_id
    if not certificate_id:
        return None
    return {"id": certificate_id, "uri": f"{view.base}/tls_certificates/{certificate_id}"}


def _management_status(item: Any, view: View) -> dict[str, Any] | None:
    if not item.certificate_management_policy:
        return None
    status = item.certificate_management_status or {}
    job = status.get("provisioning_job")
    return {"renews_at": status.get("renews_at"), "provisioning_job": dict(job) if job else None}


RESERVED_DOMAINS = Resource(
    name="reserved_domain",
    title="reserved domain",
    path="/reserved_domains",
    list_key="reserved_domains",
    id_prefix=ids.RESERVED_DOMAIN,
    fields=(
        _ID,
        self_uri("/reserved_domains"),
        _CREATED_AT,
        attribute("description"),
        attribute("metadata"),
        attribute("domain"),
        constant("region", ValueKind.STRING, REGION),
        Shown("cname_target", ValueKind.STRING, lambda item, view: item.cname_target, nullable=True),
        # The certificate served (certificate_id's, or the one ACME issued), the policy, its status.
        Shown("certificate", ValueKind.REF, _managed_certificate, nullable=True),
        Shown(
            "certificate_management_policy",
            ValueKind.STRING_MAP,
            lambda item, view: (
                dict(item.certificate_management_policy) if item.certificate_management_policy else None
            ),
            nullable=True,
        ),
        Shown("certificate_management_status", ValueKind.STRING_MAP, _management_status, nullable=True),
        # Burrow serves no DNS: no CNAME target for DNS-01 delegation.
        constant("acme_challenge_cname_target", ValueKind.STRING, None, nullable=True),
        Shown("resolves_to", ValueKind.REF_LIST, lambda item, view: []),
        attribute("owner_id"),  # Burrow's addition, as on credentials: members change only their own
    ),
    create_fields=(
        DOMAIN,
        REGION_FIELD,
        DESCRIPTION,
        METADATA,
        CERTIFICATE_ID,
        CERTIFICATE_MANAGEMENT_POLICY,
        RESOLVES_TO,
    ),
    update_fields=(DESCRIPTION, METADATA, CERTIFICATE_ID, CERTIFICATE_MANAGEMENT_POLICY, RESOLVES_TO),
    create_defaults={"description": "", "metadata": ""},
    required_text={"domain": errors.DOMAIN_REQUIRED},
    owner_of=_owner_id,
    owned=True,
)
RESERVED_ADDRS = Resource(
    name="reserved_addr",
    title="reserved address",
    path="/reserved_addrs",
    list_key="reserved_addrs",
    id_prefix=ids.RESERVED_ADDR,
    fields=(
        _ID,
        self_uri("/reserved_addrs"),
        _CREATED_AT,
        attribute("description"),
        attribute("metadata"),
        attribute("addr"),
        constant("region", ValueKind.STRING, REGION),
        attribute("owner_id"),  # Burrow's addition, as on reserved domains
    ),
    create_fields=(DESCRIPTION, METADATA, REGION_FIELD, ADDR),
    update_fields=(DESCRIPTION, METADATA),
    create_defaults={"description": "", "metadata": ""},
    owner_of=_owner_id,
    owned=True,
)


def _parsed(name: str, kind: ValueKind = ValueKind.STRING) -> Shown:
    """A field read from the certificate itself (``TlsCertificate.fields``)."""
    convert = _CONVERT.get(kind)
    if convert is None:
        return Shown(name, kind, lambda item, view: getattr(item.fields, name))
    return Shown(name, kind, lambda item, view: convert(getattr(item.fields, name)))


def _subject_names(item: Any, view: View) -> dict[str, list[str]]:
    return {"dns_names": list(item.fields.dns_names), "ips": list(item.fields.ips)}


TLS_CERTIFICATES = Resource(
    name="tls_certificate",
    title="TLS certificate",
    path="/tls_certificates",
    list_key="tls_certificates",
    id_prefix=ids.TLS_CERTIFICATE,
    fields=(
        _ID,
        self_uri("/tls_certificates"),
        _CREATED_AT,
        attribute("description"),
        attribute("metadata"),
        attribute("certificate_pem"),
        _parsed("subject_common_name"),
        Shown("subject_alternative_names", ValueKind.SUBJECT_NAMES, _subject_names),
        # ngrok's issued_at is when ngrok issued it (managed certificates): null for uploads.
        constant("issued_at", ValueKind.TIMESTAMP, None, nullable=True),
        _parsed("not_before", ValueKind.TIMESTAMP),
        _parsed("not_after", ValueKind.TIMESTAMP),
        _parsed("key_usages", ValueKind.STRING_LIST),
        _parsed("extended_key_usages", ValueKind.STRING_LIST),
        _parsed("private_key_type"),
        _parsed("issuer_common_name"),
        _parsed("serial_number"),
        _parsed("subject_organization"),
        _parsed("subject_organizational_unit"),
        _parsed("subject_locality"),
        _parsed("subject_province"),
        _parsed("subject_country"),
    ),
    create_fields=(DESCRIPTION, METADATA, CERTIFICATE_PEM, PRIVATE_KEY_PEM),
    update_fields=(DESCRIPTION, METADATA),
    create_defaults={"description": "", "metadata": ""},
    required_text={
        "certificate_pem": errors.CERTIFICATE_REQUIRED,
        "private_key_pem": errors.CERTIFICATE_REQUIRED,
    },
    permanent={
        "certificate_pem": errors.CERTIFICATE_IS_PERMANENT,
        "private_key_pem": errors.CERTIFICATE_IS_PERMANENT,
    },
    admin_only_writes=True,  # a certificate serves every domain that selects it
)


def _url(tunnel: Tunnel) -> SplitResult:
    return urlsplit(tunnel.url)


def _port(tunnel: Tunnel) -> int:
    url = _url(tunnel)
    return url.port or (80 if url.scheme == "http" else 443)


def _updated_at(tunnel: Tunnel, view: View) -> str:
    return timestamp(tunnel.updated_at or tunnel.created_at)


ENDPOINTS = Resource(
    name="endpoint",
    title="endpoint",
    path="/endpoints",
    list_key="endpoints",
    id_prefix=ids.ENDPOINT,
    fields=(
        attribute("id", source="endpoint_id"),
        constant("region", ValueKind.STRING, REGION),
        attribute("created_at", ValueKind.TIMESTAMP),
        Shown("updated_at", ValueKind.TIMESTAMP, _updated_at),
        attribute("public_url", source="url"),
        Shown("proto", ValueKind.STRING, _proto),
        Shown("scheme", ValueKind.STRING, lambda tunnel, view: _url(tunnel).scheme),
        Shown("hostport", ValueKind.STRING, lambda tunnel, view: f"{_url(tunnel).hostname}:{_port(tunnel)}"),
        Shown("host", ValueKind.STRING, lambda tunnel, view: _url(tunnel).hostname or ""),
        Shown("port", ValueKind.INTEGER, lambda tunnel, view: _port(tunnel)),
        constant("type", ValueKind.STRING, "agent"),
        attribute("metadata"),
        attribute("description"),
        attribute("name"),
        constant("domain", ValueKind.REF, None, nullable=True),
        constant("tcp_addr", ValueKind.REF, None, nullable=True),
        reference("tunnel", "/tunnels", "id"),
        constant("edge", ValueKind.REF, None, nullable=True),
        attribute("upstream_url", source="forwards_to"),
        constant("upstream_protocol", ValueKind.STRING, ""),
        attribute("url"),
        constant("principal", ValueKind.REF, None, nullable=True),
        attribute("traffic_policy"),
        Shown("bindings", ValueKind.STRING_LIST, lambda t, view: ["internal" if t.internal else "public"]),
        reference("tunnel_session", "/tunnel_sessions", "session_id"),
        Shown(
            "uri",
            ValueKind.STRING,
            lambda tunnel, view: f"{view.base}/endpoints/{tunnel.endpoint_id}",
            uri=True,
        ),
        attribute("pooling_enabled", ValueKind.BOOLEAN, source="pooled"),
    ),
    operations=frozenset({Operation.LIST, Operation.GET}),
)

STORED = (
    CREDENTIALS,
    SSH_CREDENTIALS,
    API_KEYS,
    BOT_USERS,
    SERVICE_USERS,
    RESERVED_DOMAINS,
    RESERVED_ADDRS,
    TLS_CERTIFICATES,
)
LIVE = (TUNNEL_SESSIONS, TUNNELS, ENDPOINTS)
RECORDS = (AUDIT_EVENTS,)
ALL = STORED + LIVE + RECORDS
