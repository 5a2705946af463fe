"""What the edge decides for an agent, independent of how bytes move.

Given an Auth, Bind, StartTunnelWithLabel or Unbind request (a :mod:`~burrow.edge.wire`
message), these functions answer the response message and change the registry.
Authentication checks the authtoken exactly as API keys are checked (format and checksum
first, without a database read; then the keyed hash in constant time; then the owner's
standing). Binding checks the credential's ACL for every name, including the ones Burrow assigns.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from burrow.domain import acl, errors, ids, names, tokens
from burrow.domain.endpoint import EndpointPolicy, redacted_opts
from burrow.domain.reserved import ReservationPolicy
from burrow.domain.traffic_policy.document import redacted
from burrow.domain.tunnels import AgentSession, BindConflict, Proto, Registry, Tunnel
from burrow.store.ratelimit import Throttle
from burrow.store.store import CREDENTIALS, SSH_CREDENTIALS, AuthRecord, Kind, Store

from . import wire
from .cluster_writes import ClusterWrites, read

T = TypeVar("T")
SUPPORTED_VERSIONS = ("3", "2")
_TUNNEL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_INTERNAL_NAMES = (
    'an endpoint is internal (Extra.Bindings ["internal"]) if and only if its URL names a host '
    "under .internal"
)


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
    server_hosts: frozenset[str] = frozenset()  # the API's own hosts (--public-url): no tenant binds them


def negotiate_version(offered: tuple[str, ...]) -> str:
    for version in SUPPORTED_VERSIONS:
        if version in offered:
            return version
    raise errors.NO_COMMON_VERSION(requested=list(offered))


@dataclass
class Authenticated:
    session: AgentSession
    version: str
    reconnecting_from: str | None


class AgentControl:
    """Answers an agent's control requests (Auth, Bind, StartTunnelWithLabel, Unbind) and
    keeps the registry in step; :class:`~burrow.edge.agent.AgentConnection` moves the bytes.

    Requests and answers are :mod:`burrow.edge.wire` messages; a refusal is raised as the
    :class:`~burrow.domain.errors.BurrowError` the agent is to see. Nothing here waits for
    the database on the event loop: reads run on worker threads, the registry's claims
    through ``writes`` (its mirror), so a slow database delays binds, never traffic."""

    def __init__(
        self,
        store: Store,
        writes: ClusterWrites,
        settings: EdgeSettings,
        throttle: Throttle | None = None,
    ) -> None:
        self.store = store
        self.writes = writes
        self.registry = Registry(writes)
        self.settings = settings
        self.throttle = throttle or Throttle()
        self.reservations = ReservationPolicy(
            base_domain=settings.domain,
            require_reservation=settings.require_reservation,
            server_hosts=settings.server_hosts,
        )
        # Set while revocations cannot be checked: no new session or bind until they can.
        self.refusal: errors.BurrowError | None = None
        self.auth_failures = 0  # agents refused at Auth; read by the metrics
        self.sessions_started = 0

    async def _stored(self, query: Callable[[], T]) -> T:
        """What the database says, unless the edge is failing closed."""
        if self.refusal is not None:
            raise errors.BurrowError(self.refusal.code, self.refusal.status, self.refusal.message)
        return await read(query)  # an unavailable database raises ERR_NGROK_90504, for the agent

    # Auth -------------------------------------------------------------------------

    async def authenticate(self, request: wire.Auth, client_addr: str) -> Authenticated:
        version = negotiate_version(request.versions)
        extra = request.extra
        address = client_addr.rpartition(":")[0].strip("[]")
        self.throttle.before_check(address)
        credential_id, record = await self._check_token(extra.auth_token, address)
        self.throttle.session_start(credential_id)
        session = AgentSession(
            id=ids.new_id(ids.TUNNEL_SESSION),
            account_id=record.account_id,
            credential_id=credential_id,
            owner_id=record.owner_id,
            agent_version=extra.version,
            os=extra.os,
            user_agent=extra.user_agent,
            client_addr=client_addr,
            metadata=extra.metadata,
            started_at=datetime.now(UTC),
        )
        reconnecting_from = None
        previous = request.client_id
        if previous:
            old = self.registry.sessions.get(previous)
            # Only the same credential may take over a session's names.
            if old is None or old.credential_id == credential_id:
                reconnecting_from = previous
        await self.writes.claim_session(session)
        self.registry.attach_session(session)
        self.sessions_started += 1
        return Authenticated(session, version, reconnecting_from)

    async def check_ssh_key(self, fingerprint: str, address: str) -> tuple[str, AuthRecord]:
        """The SSH credential of the key with ``fingerprint``; an unknown key (or one whose
        owner is inactive) counts against ``address``, as a wrong authtoken does."""
        self.throttle.before_check(address)
        try:
            return await self._ssh_credential(fingerprint)
        except errors.BurrowError as error:
            if error.code not in _EDGE_TROUBLE:
                self.throttle.failed(address)
            raise

    async def _ssh_credential(self, fingerprint: str) -> tuple[str, AuthRecord]:
        credential_id = await self._stored(lambda: self.store.ssh_credential_id(fingerprint))
        record = None
        if credential_id is not None:
            record = await self._stored(lambda: self.store.auth_record("ssh_credential", credential_id))
        if credential_id is None or record is None or record.digest != fingerprint:
            raise errors.SSH_KEY_UNKNOWN()
        if not record.owner_active:
            raise errors.AGENT_OWNER_INACTIVE()
        return credential_id, record

    async def authenticate_ssh(
        self, credential_id: str, record: AuthRecord, client_addr: str, client_version: str
    ) -> Authenticated:
        """A session for an SSH client whose key authenticated (edge/ssh.py): recorded and
        listed as an agent's is, under its SSH credential."""
        self.throttle.session_start(credential_id)
        if self.refusal is not None:
            raise errors.BurrowError(self.refusal.code, self.refusal.status, self.refusal.message)
        session = AgentSession(
            id=ids.new_id(ids.TUNNEL_SESSION),
            account_id=record.account_id,
            credential_id=credential_id,
            owner_id=record.owner_id,
            agent_version=client_version[:255],
            os="",
            user_agent="ssh",
            client_addr=client_addr,
            metadata="",
            started_at=datetime.now(UTC),
        )
        await self.writes.claim_session(session)
        self.registry.attach_session(session)
        self.sessions_started += 1
        return Authenticated(session, "3", None)

    async def _check_token(self, token: str, address: str) -> tuple[str, AuthRecord]:
        """The credential ``token`` belongs to; a failure counts against ``address``."""
        try:
            return await self._credential(token)
        except errors.BurrowError as error:
            # A database outage (or failing closed) is the edge's trouble, not a failed attempt.
            if error.code not in _EDGE_TROUBLE:
                self.throttle.failed(address)
            raise

    async def _credential(self, token: str) -> tuple[str, AuthRecord]:
        credential_id = tokens.resource_id(token, ids.CREDENTIAL)
        if not isinstance(credential_id, str):
            raise errors.AGENT_TOKEN_MALFORMED()
        record = await self._stored(lambda: self.store.auth_record("credential", credential_id))
        if record is None or not tokens.matches(self.store.secret, token, record.digest):
            raise errors.AGENT_TOKEN_INVALID()
        if not record.owner_active:
            raise errors.AGENT_OWNER_INACTIVE()
        return credential_id, record

    def auth_response(self, authenticated: Authenticated) -> wire.AuthResp:
        return wire.AuthResp(
            version=authenticated.version,
            client_id=authenticated.session.id,
            extra=wire.AuthRespExtra(
                version="burrow",
                region=self.settings.region,
                account_name=authenticated.session.account_id,
                plan_name="self-hosted",
            ),
        )

    # Binding ----------------------------------------------------------------------

    async def _policy(self, session: AgentSession) -> acl.BindPolicy:
        kind = credential_kind(session.credential_id)
        credential = await self._stored(
            lambda: self.store.get(kind, session.account_id, session.credential_id)
        )
        if credential is None:
            raise errors.CREDENTIAL_REVOKED(id=session.credential_id)
        return acl.BindPolicy.from_rules(credential.acl)

    def _tunnel_id(self, requested: str) -> str:
        if requested:
            if not _TUNNEL_ID.fullmatch(requested):
                raise errors.BIND_INVALID(reason="a tunnel Id has 1-64 letters, digits, '_', '.', '-'")
            return requested
        return ids.new_id(ids.TUNNEL)

    def _http_url(self, scheme: str, hostname: str, port: int | None) -> str:
        return f"{scheme}://{hostname}" + (f":{port}" if port else "")

    async def _hostname(
        self,
        opts: wire.BindOpts,
        proto: Proto,
        policy: acl.BindPolicy,
        session: AgentSession,
        internal: bool = False,
    ) -> str:
        requested = (opts.hostname or opts.domain).rstrip(".")
        if not requested and opts.subdomain:
            requested = f"{opts.subdomain}.{self.settings.domain}"
        if requested:
            # Checked before lower-casing: str.lower() would turn "\u212a" (Kelvin) into "k".
            hostname = names.hostname(requested)
            if hostname is None:
                refusal = errors.SERVERS_NAME if names.is_ip_literal(requested) else errors.INVALID_DOMAIN
                raise refusal(name=requested)
            if not policy.allows_hostname(hostname):
                raise errors.HOSTNAME_DENIED(name=hostname, id=session.credential_id)
            if internal:
                return hostname  # the account's own namespace: no reservation applies
            if hostname.endswith(".internal"):
                raise errors.BIND_INVALID(
                    reason='a .internal name is an internal endpoint\'s (Bindings ["internal"])'
                )
            owner = _holder(await self._stored(lambda: self.store.reservation(domain=hostname)))
            self.reservations.check_hostname(hostname, session.account_id, owner)
            return hostname
        for _ in range(20):
            candidate = f"{secrets.token_hex(4)}.{self.settings.domain}"
            if self.registry.is_free(proto, candidate) and (
                await self._stored(functools.partial(self.store.reservation, domain=candidate)) is None
            ):
                if not policy.allows_hostname(candidate):
                    raise errors.HOSTNAME_DENIED(name=candidate, id=session.credential_id)
                return candidate
        raise errors.BIND_INVALID(reason="no free hostname could be assigned")

    async def _port(self, opts: wire.BindOpts, policy: acl.BindPolicy, session: AgentSession) -> int:
        settings = self.settings
        ports = f"{settings.tcp_ports.start}-{settings.tcp_ports.stop - 1}"
        addr = opts.addr
        if not addr:
            if not policy.allows_random_address():
                raise errors.RANDOM_TCP_DENIED(id=session.credential_id)
            reserved = await self._stored(self.store.reserved_addrs)  # kept for those accounts
            free = [
                p
                for p in settings.tcp_ports
                if self.registry.is_free("tcp", p) and f"{settings.tcp_host}:{p}" not in reserved
            ]
            if not free:
                raise errors.ADDRESS_UNAVAILABLE(addr="(any)", host=settings.tcp_host, ports=ports)
            return secrets.choice(free)
        host, _, port_text = addr.rpartition(":")  # "host:port", ":port" or "port"
        port = names.port(port_text)
        if port is None or port not in settings.tcp_ports:
            raise errors.ADDRESS_UNAVAILABLE(addr=addr, host=settings.tcp_host, ports=ports)
        if host and host.lower() != settings.tcp_host.lower():
            raise errors.ADDRESS_UNAVAILABLE(addr=addr, host=settings.tcp_host, ports=ports)
        if not policy.allows_address(settings.tcp_host, port):
            raise errors.TCP_ADDRESS_DENIED(addr=f"{settings.tcp_host}:{port}", id=session.credential_id)
        addr = f"{settings.tcp_host}:{port}"
        held = await self._stored(lambda: self.store.reservation(addr=addr))
        self.reservations.check_addr(addr, session.account_id, _holder(held))
        return port

    def _named_by_url(self, request: wire.Bind) -> tuple[wire.BindOpts, bool]:
        """The Opts with the endpoint's URL (today's agents: ``Opts.URL``) read into the
        Hostname or Addr it names, so both generations of Bind are checked by one path; and
        whether the endpoint is internal (``Bindings: ["internal"]``, a ``*.internal`` URL)."""
        proto, opts, extra = request.proto, request.opts, request.extra
        internal = extra.bindings == ("internal",)
        if extra.bindings not in (None, (), ("public",), ("internal",)):
            raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=f"Bindings {list(extra.bindings or ())}")
        if internal and proto not in ("http", "https"):
            raise errors.ENDPOINT_OPTION_UNSUPPORTED(option=f"internal endpoints (on {proto} endpoints)")
        if not opts.url:
            if internal:
                raise errors.BIND_INVALID(
                    reason="an internal endpoint is named by a URL such as https://api.internal"
                )
            return opts, False
        if opts.hostname or opts.subdomain or opts.domain or opts.addr:
            raise errors.BIND_INVALID(reason="name the endpoint by URL or by Hostname/Domain/Addr, not both")
        url = names.endpoint_url(opts.url)
        if url is None:
            raise errors.BIND_INVALID(reason=f"{opts.url!r} is not an endpoint URL (scheme://host[:port])")
        if url.scheme != proto:
            raise errors.BIND_INVALID(reason=f"the URL {opts.url!r} is not a {proto} URL, as Proto says")
        if internal != url.host.endswith(".internal"):
            raise errors.BIND_INVALID(reason=_INTERNAL_NAMES)
        if internal:
            if url.port is not None:
                raise errors.BIND_INVALID(reason="an internal endpoint's URL has no port")
            return dataclasses.replace(opts, hostname=url.host), True
        settings = self.settings
        if proto == "tcp":
            if url.host and url.host != settings.tcp_host.lower():
                ports = f"{settings.tcp_ports.start}-{settings.tcp_ports.stop - 1}"
                raise errors.ADDRESS_UNAVAILABLE(addr=opts.url, host=settings.tcp_host, ports=ports)
            return dataclasses.replace(opts, addr="" if url.port is None else f":{url.port}"), False
        served = {"http": settings.http_url_port, "https": settings.https_url_port}
        served["tls"] = settings.tls_url_port
        port = served[proto] or (80 if proto == "http" else 443)
        if url.port is not None and url.port != port:
            raise errors.BIND_INVALID(reason=f"{proto} endpoints are served on port {port}, not {url.port}")
        return dataclasses.replace(opts, hostname=url.host), False

    async def bind(self, authenticated: Authenticated, request: wire.Bind) -> wire.BindResp:
        session = authenticated.session
        proto = request.proto
        opts, internal = self._named_by_url(request)
        policy = await self._policy(session)
        forwards_to = request.forwards_to
        endpoint = EndpointPolicy.from_opts(proto, opts.raw, forwards_to=forwards_to)
        tunnel_id = self._tunnel_id(request.id)
        metadata = request.extra.metadata
        echoed = redacted_opts(opts.raw)
        previous = authenticated.reconnecting_from
        now = datetime.now(UTC)
        if proto == "tcp":
            port = await self._port(opts, policy, session)
            url = f"tcp://{self.settings.tcp_host}:{port}"
            tunnel = Tunnel(
                tunnel_id, session.id, "tcp", url, forwards_to, metadata, now, port=port, policy=endpoint
            )
            if not opts.url:
                echoed[opts.key("Addr")] = f"{self.settings.tcp_host}:{port}"
        else:
            typed: Proto = "tls" if proto == "tls" else ("https" if proto == "https" else "http")
            hostname = await self._hostname(opts, typed, policy, session, internal)
            if internal:
                url = f"{typed}://{hostname}"  # reached by forward-internal only, on no port
            elif typed == "tls":
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
                internal=internal,
            )
            if not opts.url:
                echoed[opts.key("Hostname")] = hostname
        if opts.url:
            echoed[opts.key("URL")] = url
        tunnel.endpoint_id, tunnel.account_id = ids.new_id(ids.ENDPOINT), session.account_id
        tunnel.pooled = request.extra.pooling_enabled
        tunnel.name, tunnel.description = request.extra.name, request.extra.description
        document = opts.traffic_policy or (json.dumps(dict(opts.policy)) if opts.policy else "")
        tunnel.traffic_policy = redacted(document) if document else ""
        try:
            await self._add_tunnel(tunnel, previous)
        except BindConflict:
            raise errors.ENDPOINT_ONLINE(url=url) from None
        return wire.BindResp(id=tunnel.id, url=url, proto=proto, opts=echoed)

    async def start_labeled(
        self, authenticated: Authenticated, request: wire.StartTunnelWithLabel
    ) -> wire.StartTunnelWithLabelResp:
        session = authenticated.session
        labels = dict(request.labels)
        if not labels:
            raise errors.BIND_INVALID(reason="Labels must be a non-empty object of strings")
        policy = await self._policy(session)
        if not policy.allows_labels(labels):
            shown = ", ".join(f"{k}={v}" for k, v in labels.items())
            raise errors.LABEL_DENIED(labels=shown, id=session.credential_id)
        tunnel = Tunnel(
            ids.new_id(ids.TUNNEL),
            session.id,
            "labeled",
            "",
            request.forwards_to,
            request.metadata,
            datetime.now(UTC),
            labels=labels,
        )
        await self._add_tunnel(tunnel, None)
        return wire.StartTunnelWithLabelResp(id=tunnel.id)

    async def _add_tunnel(self, tunnel: Tunnel, reconnecting_from: str | None) -> None:
        """The registry's two-step bind around the cluster's claim, which the loop awaits."""
        registry = self.registry
        pending = registry.begin_bind(tunnel, reconnecting_from)
        try:
            account_id = registry.sessions[tunnel.session_id].account_id
            shares = registry.shares_binding(tunnel)
            await self.writes.claim_name(tunnel, account_id, reconnecting_from, pending.replacing, shares)
        except BaseException:
            registry.abandon_bind(pending)
            raise
        # If the session ended meanwhile, its removal (queued after the claim) drops the rows.
        registry.finish_bind(pending)

    async def patch(self, authenticated: Authenticated, request: wire.PatchTunnelState) -> wire.ErrorResp:
        """A bound endpoint updated in place: its Traffic Policy (the next request runs the
        new one) and metadata. Checked whole before anything changes."""
        tunnel = authenticated.session.tunnels.get(request.tunnel_id)
        if tunnel is None:
            raise errors.BIND_INVALID(reason=f"this session has no tunnel {request.tunnel_id!r}")
        if request.pooling_enabled is not None and request.pooling_enabled != tunnel.pooled:
            # Joining or leaving a pool is a new bind (the name's holder may change): unbind first.
            raise errors.ENDPOINT_OPTION_UNSUPPORTED(option="PoolingEnabled (changed on a bound endpoint)")
        patched = dataclasses.replace(tunnel, updated_at=datetime.now(UTC))
        if request.traffic_policy is not None:
            patched.policy = tunnel.policy.with_traffic_policy(tunnel.proto, request.traffic_policy)
            patched.traffic_policy = redacted(request.traffic_policy) if request.traffic_policy else ""
        for name in ("metadata", "name", "description"):
            value = getattr(request, name)
            if value is not None:
                setattr(patched, name, value)
        await self.writes.update_endpoint(tunnel, patched)
        # The live tunnel object stays (the routing tables and streams hold it): changed in place.
        for name in ("policy", "traffic_policy", "metadata", "name", "description", "updated_at"):
            setattr(tunnel, name, getattr(patched, name))
        return wire.ErrorResp()

    def unbind(self, authenticated: Authenticated, request: wire.Unbind) -> wire.UnbindResp:
        if request.id:
            self.registry.remove_tunnel(authenticated.session.id, request.id)
        return wire.UnbindResp()

    def srv_info(self) -> wire.SrvInfoResp:
        return wire.SrvInfoResp(region=self.settings.region)

    def end(self, authenticated: Authenticated) -> None:
        self.registry.remove_session(authenticated.session.id)


# Refusals that are the edge's trouble, not the agent's: they do not count as failed attempts.
_EDGE_TROUBLE = frozenset(
    {errors.DATABASE_UNAVAILABLE.code, errors.REVOCATION_UNCHECKED.code, errors.REGISTRY_UNAVAILABLE.code}
)


def credential_kind(credential_id: str) -> Kind[Any]:
    """Which credentials a session's credential id names: an authtoken's or an SSH key's."""
    return SSH_CREDENTIALS if credential_id.startswith(f"{ids.SSH_CREDENTIAL}_") else CREDENTIALS


def _holder(reservation: tuple[str, str] | None) -> str | None:
    """The account that holds a reservation, if any."""
    return None if reservation is None else reservation[0]
