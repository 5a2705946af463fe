"""Running ``burrow serve``: the API server and the edge in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import uvicorn
from rich.console import Console

from burrow.dashboard import DashboardSettings
from burrow.domain.limits import AgentLimits, ApiLimits, PublicLimits, fit_to_descriptors
from burrow.domain.reserved import NameSpace
from burrow.edge.certs import (
    ServerCertificate,
    ensure_server_certificate,
    relay_contexts,
    server_context,
    share_ca,
)
from burrow.edge.control import EdgeSettings
from burrow.edge.https import HttpsCertificates
from burrow.edge.server import Edge, EdgeConfig
from burrow.store import database, datadir
from burrow.store.ratelimit import Rate, Rates, Throttle
from burrow.store.store import Store

err = Console(stderr=True)


class CommandError(Exception):
    """A bad option, reported to the user by the command."""


class ApiServer(uvicorn.Server):
    """uvicorn's server, minus its signal handling: ``burrow serve`` owns the process's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_until_signalled(server: uvicorn.Server, edge: Edge | None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (a second signal forces it)."""
    loop = asyncio.get_running_loop()
    if edge is not None:
        await edge.start()
        config = edge.config
        err.print(
            f"Agents connect to [cyan]{config.agent_addr[0]}:{config.agent_addr[1]}[/] (trust "
            f"[cyan]{edge.ca_path or 'your certificate'}[/]); public HTTP on "
            f"[cyan]{_show(config.http_addr)}[/], HTTPS on [cyan]{_show(config.https_addr)}[/], "
            f"TLS on [cyan]{_show(config.tls_addr)}[/], TCP ports "
            f"[cyan]{config.settings.tcp_ports.start}-{config.settings.tcp_ports.stop - 1}[/]."
        )

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    try:
        await server.serve()
    finally:
        if edge is not None:
            await edge.stop()


def check_limits(api: ApiLimits, agent: AgentLimits) -> tuple[ApiLimits, AgentLimits]:
    """The limits, if every one is positive (0 would mean "refuse everything", not "none")."""
    for limits, prefix in ((api, "--api-"), (agent, "--agent-")):
        for item in dataclasses.fields(limits):
            if not getattr(limits, item.name) > 0:
                flag = prefix + item.name.replace("_", "-")
                raise CommandError(f"{flag} must be positive")
    return api, agent


def fit_to_file_limit(
    api: ApiLimits, agent: AgentLimits, public: PublicLimits, listening_sockets: int
) -> tuple[ApiLimits, AgentLimits, PublicLimits]:
    """The connection caps, lowered if the process's file limit cannot hold them."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return api, agent, public
    fitted = fit_to_descriptors(api, agent, public, soft, listening_sockets)
    if fitted[:2] != (api, agent):
        err.print(
            f"[yellow]warning:[/] the file limit ({soft}) cannot hold {api.max_connections} API and "
            f"{agent.max_connections} agent connections: capped at {fitted[0].max_connections} and "
            f"{fitted[1].max_connections} (raise 'ulimit -n' to allow more)."
        )
    if fitted[2] != public:
        # The public default (10,000 per listener) is meant to be fitted like this: no warning.
        logging.getLogger("burrow").debug(
            "public connection caps fitted to the file limit",
            extra={"fields": {"file_limit": soft, "per_listener": fitted[2].max_connections}},
        )
    return fitted


def _show(addr: tuple[str, int] | None) -> str:
    return f"{addr[0]}:{addr[1]}" if addr else "(off)"


def edge_config(
    agent_addr: str,
    http_addr: str,
    tls_addr: str,
    tcp_ports: str,
    tcp_host: str,
    domain: str,
    label_routes: list[str],
    https_addr: str = "127.0.0.1:8444",
    limits: PublicLimits | None = None,
    require_reservation: bool = False,
) -> EdgeConfig:
    first, sep, last = tcp_ports.partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise CommandError(f"--tcp-ports {tcp_ports!r} is not FIRST-LAST")
    ports = range(int(first), int(last or first) + 1)
    if not ports or ports.start < 1 or ports.stop > 65536 or len(ports) > 10000:
        raise CommandError(f"--tcp-ports {tcp_ports!r} must be 1 to 10000 ports within 1-65535")
    http, tls, https = split_addr(http_addr), split_addr(tls_addr), split_addr(https_addr)
    routes: dict[str, dict[str, str]] = {}
    for route in label_routes:
        host, _, labels = route.partition("=")
        pairs = [pair.partition("=") for pair in labels.split(",") if pair]
        if not host or not pairs or any(not k or not v for k, _, v in pairs):
            raise CommandError(f"--label-route {route!r} is not HOST=KEY=VALUE[,KEY=VALUE]")
        routes[host.lower()] = {k: v for k, _, v in pairs}
    settings = EdgeSettings(
        domain=domain.lower().strip("."),
        http_url_port=None if http[1] == 80 else http[1],
        tls_url_port=None if tls[1] == 443 else tls[1],
        https_url_port=None if https[1] == 443 else https[1],
        tcp_host=tcp_host,
        tcp_ports=ports,
        require_reservation=require_reservation,
    )
    return EdgeConfig(
        agent_addr=split_addr(agent_addr),
        http_addr=http,
        tls_addr=tls,
        https_addr=https,
        settings=settings,
        label_routes=routes,
        limits=limits or PublicLimits(),
    )


def throttle(api_key: str, api_address: str, auth_failures: str, session_starts: str) -> Throttle:
    """The rate limits of ``burrow serve``'s options, shared by the API and the edge."""
    parsed = {}
    for option, text in (
        ("--api-rate-limit", api_key),
        ("--api-address-rate-limit", api_address),
        ("--auth-failure-limit", auth_failures),
        ("--agent-session-limit", session_starts),
    ):
        try:
            parsed[option] = Rate.parse(text)
        except ValueError as problem:
            raise CommandError(f"{option}: {problem}") from None
    return Throttle(
        Rates(
            api_key=parsed["--api-rate-limit"],
            api_address=parsed["--api-address-rate-limit"],
            auth_failures=parsed["--auth-failure-limit"],
            session_starts=parsed["--agent-session-limit"],
        )
    )


def name_space(config: EdgeConfig) -> NameSpace:
    """The names the edge hands out, as the API needs them for reservations."""
    settings = config.settings
    return NameSpace(settings.domain, settings.tcp_host, settings.tcp_ports)


def make_edge(
    store: Store,
    data_dir: Path,
    config: EdgeConfig,
    tls_cert: Path | None,
    tls_key: Path | None,
    https_cert: Path | None = None,
    https_key: Path | None = None,
    https_extra_certs: list[str] | None = None,
    throttle: Throttle | None = None,
) -> Edge:
    names = [config.agent_addr[0]] if config.agent_addr[0] not in ("0.0.0.0", "::") else []
    if share_ca(store, data_dir):
        err.print(f"[yellow]note:[/] {data_dir / 'ca.pem'} is now the cluster's CA, from the database.")
    local = ensure_server_certificate(data_dir, names)  # the CA's certificate for this node
    if tls_cert is not None and tls_key is not None:
        certificate = ServerCertificate(tls_cert, tls_key, None)
    else:
        certificate = local
    edge = Edge(store, config, server_context(certificate), throttle)
    edge.ca_path = certificate.ca_path
    if config.relay_addr is not None:
        edge.relay_contexts = relay_contexts(data_dir)  # from the CA every node shares
    extra = []
    for pair in https_extra_certs or []:
        cert, sep, key = pair.partition(",")
        if not sep or not cert or not key:
            raise CommandError(f"--https-extra-cert {pair!r} is not CERT,KEY")
        extra.append(ServerCertificate(Path(cert), Path(key), None))
    operator = ServerCertificate(https_cert, https_key, None) if https_cert and https_key else None
    try:
        edge.https = HttpsCertificates(
            edge.registry,
            data_dir,
            local,
            operator,
            extra,
            served=lambda name: name in edge.public.label_routes,
        )
        edge.https.context_for(None)  # fail at start on unreadable certificates
        for given in [*extra, *([operator] if operator else [])]:
            server_context(given)
    except (OSError, ValueError) as error:
        raise CommandError(f"HTTPS certificate: {error}") from None
    return edge


def dashboard_settings(edge: Edge | None, public_url: str | None) -> DashboardSettings:
    """What the dashboard's agent snippets say: where agents connect and which CA they trust."""
    if edge is None:
        return DashboardSettings(public_url=public_url)
    host, port = edge.config.agent_addr
    return DashboardSettings(
        agent_addr=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        ca_path=str(edge.ca_path.resolve()) if edge.ca_path else None,
        domain=edge.config.settings.domain,
        public_url=public_url,
    )


def hold_serve_lock(data_dir: Path, database_url: str | None) -> IO[bytes] | None:
    """On SQLite, the data directory's serve lock (held until closed); exits if it is taken.

    Two servers on one SQLite file would each see only their own tunnels. Servers sharing
    a PostgreSQL database are nodes of one service, so they take no lock.
    """
    if database_url is not None and database.sqlite_file(database_url) is None:
        return None
    try:
        return datadir.hold_serve_lock(data_dir)
    except datadir.AlreadyServing:
        err.print(
            f"[bold red]error:[/] another burrow serve is running on the data directory {data_dir}",
            soft_wrap=True,
        )
        raise SystemExit(1) from None


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CommandError(f"{addr!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
