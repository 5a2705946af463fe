"""What the edge decides for an agent, independent of how bytes move.

Given the JSON of an Auth, Bind, StartTunnelWithLabel or Unbind request, these functions
answer the response JSON and change the registry. Authentication checks the authtoken
exactly as API keys are checked (format and checksum first, without a database read;
then the keyed hash in constant time; then the owner's standing). Binding checks the
credential's ACL for every name, including the ones Burrow assigns.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from burrow.domain import acl, errors, ids, tokens
from burrow.domain.endpoint import EndpointPolicy, redacted_opts
from burrow.domain.reserved import ReservationPolicy
from burrow.domain.tunnels import AgentSession, BindConflict, Proto, Registry, RegistryUnavailable, Tunnel
from burrow.store.ratelimit import Throttle
from burrow.store.store import CREDENTIALS, AuthRecord, Store

T = TypeVar("T")
SUPPORTED_VERSIONS = ("3", "2")
_TUNNEL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DOMAIN = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


class AgentError(Exception):
    """An error for the agent: goes into the response's ``Error`` field."""

    def __init__(self, error: errors.BurrowError) -> None:
        super().__init__(error.message)
        self.wire = f"{error.message}\n\n{error.code}\n"


def get(message: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A message field, whatever the case of its key (Go agents differ from the SDK)."""
    if key in message:
        return message[key]
    lowered = key.lower()
    for name, value in message.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return default


@dataclass(frozen=True)
class EdgeSettings:
    domain: str = "burrow.localhost"
    http_url_port: int | None = 8080  # the public HTTP port, for URLs (None for 80)
    https_url_port: int | None = 8444  # the public HTTPS port, for URLs (None for 443)
    tls_url_port: int | None = 8443
    tcp_host: str = "127.0.0.1"
    tcp_ports: range = field(default_factory=lambda: range(20000, 20100))
    region: str = "local"
    # Hostnames under `domain` and fixed TCP addresses must be reserved by the binding account.
    require_reservation: bool = False


def negotiate_version(offered: object) -> str:
    versions = [str(v) for v in offered] if isinstance(offered, list) else []
    for version in SUPPORTED_VERSIONS:
        if version in versions:
            return version
    raise AgentError(errors.NO_COMMON_VERSION(requested=versions))


@dataclass
class Authenticated:
    session: AgentSession
    version: str
    reconnecting_from: str | None


class AgentControl:
    """Answers an agent's control requests (Auth, Bind, StartTunnelWithLabel, Unbind) and
    keeps the registry in step; :class:`~burrow.edge.agent.AgentConnection` moves the bytes."""

    def __init__(
        self, store: Store, registry: Registry, settings: EdgeSettings, throttle: Throttle | None = None
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.throttle = throttle or Throttle()
        self.reservations = ReservationPolicy(
            lookup_domain=lambda name: _holder(store.reservation(domain=name)),
            lookup_addr=lambda addr: _holder(store.reservation(addr=addr)),
            base_domain=settings.domain,
            require_reservation=settings.require_reservation,
        )
        # Set while revocations cannot be checked: no new session or bind until they can.
        self.refusal: errors.BurrowError | None = None
        self.auth_failures = 0  # agents refused at Auth; read by the metrics
        self.sessions_started = 0

    def _stored(self, read: Callable[[], T]) -> T:
        """What the database says, unless the edge is failing closed; its errors go to the agent."""
        if self.refusal is not None:
            raise AgentError(self.refusal)
        try:
            return read()
        except errors.BurrowError as error:  # the database is unavailable (ERR_NGROK_90504)
            raise AgentError(error) from None

    # Auth -------------------------------------------------------------------------

    def authenticate(self, request: Mapping[str, Any], client_addr: str) -> Authenticated:
        version = negotiate_version(get(request, "Version"))
        extra = get(request, "Extra") or {}
        if not isinstance(extra, Mapping):
            raise AgentError(errors.AGENT_TOKEN_MALFORMED())
        address = client_addr.rpartition(":")[0].strip("[]")
        try:
            self.throttle.before_check(address)
            credential_id, record = self._check_token(get(extra, "AuthToken") or "", address)
            self.throttle.session_start(credential_id)
        except errors.BurrowError as error:
            raise AgentError(error) from None
        previous = get(request, "ClientId") or None
        session = AgentSession(
            id=ids.new_id(ids.TUNNEL_SESSION),
            account_id=record.account_id,
            credential_id=credential_id,
            owner_id=record.owner_id,
            agent_version=str(get(extra, "Version") or ""),
            os=str(get(extra, "OS") or ""),
            user_agent=str(get(extra, "UserAgent") or ""),
            client_addr=client_addr,
            metadata=str(get(extra, "Metadata") or ""),
            started_at=datetime.now(UTC),
        )
        reconnecting_from = None
        if isinstance(previous, str) and previous:
            old = self.registry.sessions.get(previous)
            # Only the same credential may take over a session's names.
            if old is None or old.credential_id == credential_id:
                reconnecting_from = previous
        try:
            self.registry.add_session(session)
        except RegistryUnavailable:
            raise AgentError(errors.REGISTRY_UNAVAILABLE()) from None
        self.sessions_started += 1
        return Authenticated(session, version, reconnecting_from)

    def _check_token(self, token: object, address: str) -> tuple[str, AuthRecord]:
        """The credential ``token`` belongs to; a failure counts against ``address``."""
        try:
            return self._credential(token)
        except errors.BurrowError:
            self.throttle.failed(address)
            raise

    def _credential(self, token: object) -> tuple[str, AuthRecord]:
        credential_id = tokens.resource_id(token, ids.CREDENTIAL) if isinstance(token, str) else None
        if not isinstance(token, str) or not isinstance(credential_id, str):
            raise errors.AGENT_TOKEN_MALFORMED()
        # A database outage (or failing closed) is the edge's trouble, not a failed attempt.
        record = self._stored(lambda: self.store.auth_record("credential", credential_id))
        if record is None or not tokens.matches(self.store.secret, token, record.digest):
            raise errors.AGENT_TOKEN_INVALID()
        if not record.owner_active:
            raise errors.AGENT_OWNER_INACTIVE()
        return credential_id, record

    def auth_response(self, authenticated: Authenticated) -> dict[str, Any]:
        return {
            "Version": authenticated.version,
            "ClientId": authenticated.session.id,
            "Error": "",
            "Extra": {
                "Version": "burrow",
                "Region": self.settings.region,
                "Cookie": "",
                "AccountName": authenticated.session.account_id,
                "SessionDuration": 0,
                "PlanName": "self-hosted",
                "Banner": "",
            },
        }

    # Binding ----------------------------------------------------------------------

    def _policy(self, session: AgentSession) -> acl.BindPolicy:
        credential = self._stored(
            lambda: self.store.get(CREDENTIALS, session.account_id, session.credential_id)
        )
        if credential is None:
            raise AgentError(errors.CREDENTIAL_REVOKED(id=session.credential_id))
        return acl.BindPolicy.from_rules(credential.acl)

    def _tunnel_id(self, requested: object) -> str:
        if isinstance(requested, str) and requested:
            if not _TUNNEL_ID.fullmatch(requested):
                raise AgentError(
                    errors.BIND_INVALID(reason="a tunnel Id has 1-64 letters, digits, '_', '.', '-'")
                )
            return requested
        return ids.new_id(ids.TUNNEL)

    def _http_url(self, scheme: str, hostname: str, port: int | None) -> str:
        return f"{scheme}://{hostname}" + (f":{port}" if port else "")

    def _hostname(
        self, opts: Mapping[str, Any], proto: Proto, policy: acl.BindPolicy, session: AgentSession
    ) -> str:
        hostname = str(get(opts, "Hostname") or get(opts, "Domain") or "").lower().rstrip(".")
        subdomain = str(get(opts, "Subdomain") or "").lower()
        if not hostname and subdomain:
            hostname = f"{subdomain}.{self.settings.domain}"
        if hostname:
            if not _DOMAIN.fullmatch(hostname) or len(hostname) > 253:
                raise AgentError(errors.INVALID_DOMAIN(name=hostname))
            if not policy.allows_hostname(hostname):
                raise AgentError(errors.HOSTNAME_DENIED(name=hostname, id=session.credential_id))
            try:
                self.reservations.check_hostname(hostname, session.account_id)
            except errors.BurrowError as error:
                raise AgentError(error) from None
            return hostname
        for _ in range(20):
            candidate = f"{secrets.token_hex(4)}.{self.settings.domain}"
            if self.registry.is_free(proto, candidate) and self.store.reservation(domain=candidate) is None:
                if not policy.allows_hostname(candidate):
                    raise AgentError(errors.HOSTNAME_DENIED(name=candidate, id=session.credential_id))
                return candidate
        raise AgentError(errors.BIND_INVALID(reason="no free hostname could be assigned"))

    def _port(self, opts: Mapping[str, Any], policy: acl.BindPolicy, session: AgentSession) -> int:
        settings = self.settings
        ports = f"{settings.tcp_ports.start}-{settings.tcp_ports.stop - 1}"
        addr = str(get(opts, "Addr") or "")
        if not addr:
            if not policy.allows_random_address():
                raise AgentError(errors.RANDOM_TCP_DENIED(id=session.credential_id))
            reserved = self.store.reserved_addrs()  # kept for the accounts that reserved them
            free = [
                p
                for p in settings.tcp_ports
                if self.registry.is_free("tcp", p) and f"{settings.tcp_host}:{p}" not in reserved
            ]
            if not free:
                raise AgentError(
                    errors.ADDRESS_UNAVAILABLE(addr="(any)", host=settings.tcp_host, ports=ports)
                )
            return secrets.choice(free)
        host, _, port_text = addr.rpartition(":")
        if not port_text.isdigit() or int(port_text) not in settings.tcp_ports:
            raise AgentError(errors.ADDRESS_UNAVAILABLE(addr=addr, host=settings.tcp_host, ports=ports))
        port = int(port_text)
        if host and host.lower() != settings.tcp_host.lower():
            raise AgentError(errors.ADDRESS_UNAVAILABLE(addr=addr, host=settings.tcp_host, ports=ports))
        if not policy.allows_address(settings.tcp_host, port):
            raise AgentError(
                errors.TCP_ADDRESS_DENIED(addr=f"{settings.tcp_host}:{port}", id=session.credential_id)
            )
        try:
            self.reservations.check_addr(f"{settings.tcp_host}:{port}", session.account_id)
        except errors.BurrowError as error:
            raise AgentError(error) from None
        return port

    def bind(self, authenticated: Authenticated, request: Mapping[str, Any]) -> dict[str, Any]:
        session = authenticated.session
        proto = str(get(request, "Proto") or "")
        if proto not in ("http", "https", "tcp", "tls"):
            raise AgentError(errors.UNSUPPORTED_PROTO(proto=proto))
        opts = get(request, "Opts") or {}
        if not isinstance(opts, Mapping):
            raise AgentError(errors.BIND_INVALID(reason="Opts must be an object"))
        policy = self._policy(session)
        forwards_to = str(get(request, "ForwardsTo") or "")
        try:
            endpoint = EndpointPolicy.from_opts(proto, opts, forwards_to=forwards_to)
        except errors.BurrowError as error:
            raise AgentError(error) from None
        tunnel_id = self._tunnel_id(get(request, "Id"))
        extra = get(request, "Extra") or {}
        metadata = str(get(extra, "Metadata") or "") if isinstance(extra, Mapping) else ""
        echoed = redacted_opts(opts)
        previous = authenticated.reconnecting_from
        now = datetime.now(UTC)
        if proto == "tcp":
            port = self._port(opts, policy, session)
            url = f"tcp://{self.settings.tcp_host}:{port}"
            tunnel = Tunnel(
                tunnel_id, session.id, "tcp", url, forwards_to, metadata, now, port=port, policy=endpoint
            )
            echoed[_key(opts, "Addr")] = f"{self.settings.tcp_host}:{port}"
        else:
            typed: Proto = "tls" if proto == "tls" else ("https" if proto == "https" else "http")
            hostname = self._hostname(opts, typed, policy, session)
            if typed == "tls":
                url = self._http_url("tls", hostname, self.settings.tls_url_port)
            elif typed == "https":
                url = self._http_url("https", hostname, self.settings.https_url_port)
            else:
                url = self._http_url("http", hostname, self.settings.http_url_port)
            tunnel = Tunnel(
                tunnel_id,
                session.id,
                typed,
                url,
                forwards_to,
                metadata,
                now,
                hostname=hostname,
                policy=endpoint,
            )
            echoed[_key(opts, "Hostname")] = hostname
        try:
            self.registry.add_tunnel(tunnel, reconnecting_from=previous)
        except BindConflict:
            raise AgentError(errors.ENDPOINT_ONLINE(url=url)) from None
        except RegistryUnavailable:
            raise AgentError(errors.REGISTRY_UNAVAILABLE()) from None
        return {
            "Id": tunnel.id,
            "URL": url,
            "Proto": proto,
            "Opts": echoed,
            "Extra": {"Token": ""},
            "Error": "",
        }

    def start_labeled(self, authenticated: Authenticated, request: Mapping[str, Any]) -> dict[str, Any]:
        session = authenticated.session
        labels = get(request, "Labels") or {}
        if (
            not isinstance(labels, Mapping)
            or not labels
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            raise AgentError(errors.BIND_INVALID(reason="Labels must be a non-empty object of strings"))
        policy = self._policy(session)
        if not policy.allows_labels(dict(labels)):
            shown = ", ".join(f"{k}={v}" for k, v in labels.items())
            raise AgentError(errors.LABEL_DENIED(labels=shown, id=session.credential_id))
        tunnel = Tunnel(
            ids.new_id(ids.TUNNEL),
            session.id,
            "labeled",
            "",
            str(get(request, "ForwardsTo") or ""),
            str(get(request, "Metadata") or ""),
            datetime.now(UTC),
            labels=dict(labels),
        )
        try:
            self.registry.add_tunnel(tunnel)
        except RegistryUnavailable:
            raise AgentError(errors.REGISTRY_UNAVAILABLE()) from None
        return {"Id": tunnel.id, "Error": ""}

    def unbind(self, authenticated: Authenticated, request: Mapping[str, Any]) -> dict[str, Any]:
        tunnel_id = get(request, "Id")
        if isinstance(tunnel_id, str):
            self.registry.remove_tunnel(authenticated.session.id, tunnel_id)
        return {"Error": ""}

    def srv_info(self) -> dict[str, Any]:
        return {"Region": self.settings.region}

    def end(self, authenticated: Authenticated) -> None:
        self.registry.remove_session(authenticated.session.id)


def _holder(reservation: tuple[str, str] | None) -> str | None:
    """The account that holds a reservation, if any."""
    return None if reservation is None else reservation[0]


def _key(opts: Mapping[str, Any], name: str) -> str:
    """The key ``name`` as the agent spelled it, so the echoed Opts parse back."""
    for key in opts:
        if isinstance(key, str) and key.lower() == name.lower():
            return key
    return name
