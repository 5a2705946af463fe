"""Running ``burrow serve``: the API server and the edge in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import uvicorn

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

from .operator import local_operator

log = logging.getLogger("burrow.serve")
FIRST_RUN_EMAIL = "admin@localhost"
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_WORKERS = 64


class CommandError(Exception):
    """A bad option, reported to the user by the command."""


class ApiServer(uvicorn.Server):
    """uvicorn's server, minus its signal handling: ``burrow serve`` owns the process's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(values: dict[str, Any]) -> None:
    """``burrow serve`` with its settings (``cli/settings.py``) by parameter name."""
    from . import logs

    v = values
    if v["log_level"].lower() not in LOG_LEVELS:
        raise CommandError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    logs.configure(v["log_level"], v["access_log"], v["traffic_log"])
    if v["shutdown_grace"] < 0:
        raise CommandError("--shutdown-grace must not be negative")
    limits = PublicLimits(
        **{f.name: v[f.name] for f in dataclasses.fields(PublicLimits)},
    )
    api_limits, agent_limits = check_limits(
        ApiLimits(**{f.name: v["api_" + f.name] for f in dataclasses.fields(ApiLimits)}),
        AgentLimits(**{f.name: v["agent_" + f.name] for f in dataclasses.fields(AgentLimits)}),
    )
    host, port = split_addr(v["api_addr"])
    metrics_addr = split_addr(v["metrics_addr"]) if v["metrics_addr"] else None
    # Computed with --no-edge too: the API shapes reserved names by the same settings.
    config = edge_config(
        v["agent_addr"],
        v["http_addr"],
        v["tls_addr"],
        v["tcp_ports"],
        v["tcp_host"],
        v["domain"],
        v["label_route"] or [],
        v["https_addr"],
        limits,
        require_reservation=v["require_reservation"],
    )
    listening = 3 + (len(config.settings.tcp_ports) if v["edge"] else 0)
    api_limits, agent_limits, limits = fit_to_file_limit(api_limits, agent_limits, limits, listening)
    config.agent_limits = agent_limits
    config.limits = limits
    if not v["revocation_fail_closed_after"] > 0:
        raise CommandError("--revocation-fail-closed-after must be positive")
    config.revocation_fail_closed_after = v["revocation_fail_closed_after"]
    if not 1 <= v["lease_seconds"] <= 300:
        raise CommandError("--lease-seconds must be between 1 and 300")
    config.lease_seconds = v["lease_seconds"]
    if not 0.25 <= v["reconcile_seconds"] <= 300:
        raise CommandError("--reconcile-seconds must be between 0.25 and 300")
    config.reconcile_seconds = v["reconcile_seconds"]
    if v["relay_addr"]:
        config.relay_addr = split_addr(v["relay_addr"])
    if v["node_name"]:
        config.node_name = v["node_name"]
    if (v["tls_cert"] is None) != (v["tls_key"] is None):
        raise CommandError("--tls-cert and --tls-key go together")
    if (v["https_cert"] is None) != (v["https_key"] is None):
        raise CommandError("--https-cert and --https-key go together")
    workers = v["workers"]
    if not 1 <= workers <= MAX_WORKERS:
        raise CommandError(f"--workers must be between 1 and {MAX_WORKERS}")
    throttle(*_rate_texts(v))  # a bad rate is one error, before any worker starts
    data_dir: Path = v["data_dir"]
    serve_lock = hold_serve_lock(data_dir, v["database_url"])  # a parent holds it for its workers
    try:
        if workers > 1:
            from .workers import supervise

            supervise(v, config, api_limits, workers, (host, port), metrics_addr)
            return
        api_socket = _listen(host, port, "--api-addr")
        metrics_socket = _listen(*metrics_addr, "--metrics-addr") if metrics_addr else None
        run_node(v, config, api_limits, throttle(*_rate_texts(v)), api_socket, metrics_socket)
    finally:
        if serve_lock is not None:
            serve_lock.close()


def _rate_texts(v: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        v["api_rate_limit"],
        v["api_address_rate_limit"],
        v["auth_failure_limit"],
        v["agent_session_limit"],
    )


def open_store(v: dict[str, Any]) -> Store:
    from burrow.store.database import DamagedSecret
    from burrow.store.identity import IdentityError

    try:
        return Store.open(v["data_dir"], v["database_url"])
    except (DamagedSecret, IdentityError) as problem:
        raise CommandError(str(problem)) from None


def first_run(store: Store, v: dict[str, Any]) -> str | None:
    """On a database without accounts, the first account's API key (to show once)."""
    if store.accounts():
        return None
    _user, token = store.create_account(FIRST_RUN_EMAIL, actor=local_operator())
    return token


def edge_for(store: Store, v: dict[str, Any], config: EdgeConfig, limiter: Throttle | None) -> Edge:
    from burrow.store.identity import IdentityError

    try:
        return make_edge(
            store,
            v["data_dir"],
            config,
            v["tls_cert"],
            v["tls_key"],
            v["https_cert"],
            v["https_key"],
            v["https_extra_cert"],
            limiter,
        )
    except IdentityError as problem:
        raise CommandError(str(problem)) from None


def run_node(
    v: dict[str, Any],
    config: EdgeConfig,
    api_limits: ApiLimits,
    limiter: Throttle,
    api_socket: socket.socket,
    metrics_socket: socket.socket | None,
    show_first_run: bool = True,
    on_ready: Callable[[], None] | None = None,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """One node: the API, the edge and the metrics listener, until one of ``signals``."""
    from burrow.api.app import create_app
    from burrow.api.connection import protocol_class
    from burrow.metrics import Metrics

    store = open_store(v)
    try:
        first_token = first_run(store, v) if show_first_run else None
        edge = edge_for(store, v, config, limiter) if v["edge"] else None
        public_url = v["public_url"].rstrip("/") if v["public_url"] else None
        metrics = Metrics(edge)
        api = ApiServer(
            uvicorn.Config(
                create_app(
                    store,
                    public_url=public_url,
                    edge=edge,
                    dashboard=dashboard_settings(edge, public_url),
                    # Counting costs every request a few microseconds: only when someone can read it.
                    metrics=metrics.api if metrics_socket is not None else None,
                    throttle=limiter,
                    names=name_space(config),
                ),
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=v["shutdown_grace"],  # a float serves
                http=protocol_class(api_limits),
                ws="none",  # the API has no WebSocket routes: an Upgrade request is a plain request
                timeout_keep_alive=api_limits.keepalive_timeout,  # type: ignore[arg-type]  # a float serves
            )
        )
        servers = [(api, api_socket)]
        if metrics_socket is not None:
            metrics_config = uvicorn.Config(
                metrics.asgi_app(),
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
                http=protocol_class(ApiLimits(max_connections=16, max_connections_per_client=16)),
                ws="none",
            )
            servers.append((ApiServer(metrics_config), metrics_socket))
        if first_token is not None:
            _first_run(first_token, v)
        # uvicorn's loop factory picks uvloop when it is installed.
        with asyncio.Runner(loop_factory=api.config.get_loop_factory()) as runner:
            runner.run(run_until_signalled(servers, edge, v["shutdown_grace"], on_ready, signals))
    finally:
        store.close()


def _listen(host: str, port: int, option: str) -> socket.socket:
    """The listening socket, bound now so that a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise CommandError(f"{option} {host}:{port}: cannot listen: {error.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _first_run(token: str, v: dict[str, Any]) -> None:
    """The first API key goes to stdout, once; on a terminal with the next steps."""
    log.info(
        "first run: created an account",
        extra={"fields": {"admin": FIRST_RUN_EMAIL, "api_key": "on stdout, shown once"}},
    )
    if not sys.stdout.isatty():
        sys.stdout.write(token + "\n")
        sys.stdout.flush()
        return
    found = shutil.which("burrow")
    executable = Path(sys.argv[0])
    if found and Path(found).resolve() == executable.resolve():
        command = "burrow"
    else:
        try:
            command = str(executable.resolve().relative_to(Path.cwd()))
        except ValueError:
            command = str(executable)
    api_url = f"http://{v['api_addr']}"
    agent = v["agent_addr"] if v["edge"] else None
    ca = Path(v["data_dir"]) / "ca.pem"
    sys.stdout.write(
        f"First run: created an account with admin {FIRST_RUN_EMAIL}.\n"
        f"Its API key (shown once, store it now):\n\n  {token}\n\n"
        "Next steps, in another shell:\n"
        f"  1. export BURROW_API_KEY={token} BURROW_API_URL={api_url}\n"
        f"  2. {command} credentials create --acl 'bind:*.{v['domain']}'\n"
        f"     (the command line: '{command} -h' lists its commands"
        + (
            f"; after 'source {Path(command).parent}/activate' it is 'burrow')\n"
            if command != "burrow"
            else ")\n"
        )
        + (
            f"  3. point an agent (PyPI ngrok, npm @ngrok/ngrok, or the ngrok v2 binary) at {agent},\n"
            f"     trusting {ca}, with that credential's token: see README.md, 'Connecting ngrok agents'\n"
            if agent
            else ""
        )
        + f"The dashboard: {api_url}/dashboard/\n"
    )
    sys.stdout.flush()


async def run_until_signalled(
    servers: Sequence[tuple[uvicorn.Server, socket.socket]],
    edge: Edge | None,
    grace: float,
    on_ready: Callable[[], None] | None = None,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully (a second signal forces it).

    On the signal every listener stops accepting at once; requests in flight, through tunnels
    too, get ``grace`` seconds to finish; then agents are told to stop and everything closes.
    """
    loop = asyncio.get_running_loop()
    if edge is not None:
        try:
            await edge.start()
        except OSError as error:
            await edge.stop(0)
            raise CommandError(f"the edge cannot listen: {error}") from None
        config = edge.config
        log.info(
            "edge listening",
            extra={
                "fields": {
                    "agents": _show(config.agent_addr),
                    "ca": str(edge.ca_path) if edge.ca_path else None,
                    "http": _show(config.http_addr),
                    "https": _show(config.https_addr),
                    "tls": _show(config.tls_addr),
                    "tcp_ports": f"{config.settings.tcp_ports.start}-{config.settings.tcp_ports.stop - 1}",
                }
            },
        )
    edge_stopping: asyncio.Task[None] | None = None

    def stop() -> None:
        nonlocal edge_stopping
        for server, _sock in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True
        if edge is not None and edge_stopping is None:
            edge_stopping = asyncio.create_task(edge.stop(grace))

    async def report_ready(ready: Callable[[], None]) -> None:
        while not all(server.started for server, _sock in servers):
            await asyncio.sleep(0.01)
        ready()

    for signum in signals:
        loop.add_signal_handler(signum, stop)
    reporting = asyncio.create_task(report_ready(on_ready)) if on_ready is not None else None
    try:
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))
    finally:
        if reporting is not None:
            reporting.cancel()
        if edge is not None:
            await (edge_stopping or edge.stop(0))


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
        log.warning(
            f"the file limit ({soft}) cannot hold {api.max_connections} API and "
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


def throttle(
    api_key: str, api_address: str, auth_failures: str, session_starts: str, processes: int = 1
) -> Throttle:
    """The rate limits of ``burrow serve``'s options, shared by the API and the edge; each of
    ``processes`` workers (counting apart) gets its share of every rate."""
    parsed = {}
    for option, text in (
        ("--api-rate-limit", api_key),
        ("--api-address-rate-limit", api_address),
        ("--auth-failure-limit", auth_failures),
        ("--agent-session-limit", session_starts),
    ):
        try:
            rate = Rate.parse(text)
            parsed[option] = rate.shared_by(processes) if rate is not None else None
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
        ca = str(data_dir / "ca.pem")
        log.info("the cluster's CA, from the database, is now in use", extra={"fields": {"ca": ca}})
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
        log.error(f"another burrow serve is running on the data directory {data_dir}")
        raise SystemExit(1) from None


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CommandError(f"{addr!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
