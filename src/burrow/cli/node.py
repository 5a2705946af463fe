"""One node of ``burrow serve``: the API server, the edge and the metrics listener in one
event loop, as a single process runs it and as each worker of ``--workers`` does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from burrow.dashboard import DashboardSettings, Identity
from burrow.domain.limits import ApiLimits
from burrow.domain.reserved import NameSpace
from burrow.edge.certs import (
    ServerCertificate,
    certificate_names,
    ensure_server_certificate,
    relay_contexts,
    server_context,
    share_ca,
)
from burrow.edge.server import Edge, EdgeConfig, EdgeTls, HttpsFiles
from burrow.store import datadir
from burrow.store.ratelimit import Rate, Rates, Throttle
from burrow.store.store import Store

from .operator import local_operator

log = logging.getLogger("burrow.serve")
FIRST_RUN_EMAIL = "admin@localhost"


class CommandError(Exception):
    """A bad option, reported to the user by the command."""


class ApiServer(uvicorn.Server):
    """uvicorn's server, minus its signal handling: ``burrow serve`` owns the process's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def rate_texts(v: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        v["api_rate_limit"],
        v["api_address_rate_limit"],
        v["auth_failure_limit"],
        v["agent_session_limit"],
    )


def open_store(v: dict[str, Any]) -> Store:
    from burrow.store.database import DamagedSecret, SchemaTooNew
    from burrow.store.identity import IdentityError

    try:
        return Store.open(v["data_dir"], v["database_url"])
    except (DamagedSecret, IdentityError, SchemaTooNew) as problem:
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
                api_with_dashboard(
                    store,
                    dashboard_settings(edge, public_url),
                    public_url=public_url,
                    edge=edge,
                    # Counting costs every request a few microseconds: only when someone can read it.
                    metrics=metrics.api if metrics_socket is not None else None,
                    throttle=limiter,
                    names=name_space(config),
                    trusted_proxies=config.trusted_proxies,
                ),
                log_config=None,
                access_log=False,
                proxy_headers=False,  # X-Forwarded-For only from --trusted-proxies (api/forwarded.py)
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=v["shutdown_grace"],  # a float serves
                http=protocol_class(api_limits, config.trusted_proxies),
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
                proxy_headers=False,
                lifespan="off",
                server_header=False,
                http=protocol_class(ApiLimits(max_connections=16, max_connections_per_client=16)),
                ws="none",
            )
            servers.append((ApiServer(metrics_config), metrics_socket))
        if first_token is not None:
            show_first_key(first_token, v, config.server_addr)
        # uvicorn's loop factory picks uvloop when it is installed.
        with asyncio.Runner(loop_factory=api.config.get_loop_factory()) as runner:
            runner.run(run_until_signalled(servers, edge, v["shutdown_grace"], on_ready, signals))
    finally:
        store.close()


def listen(host: str, port: int, option: str) -> socket.socket:
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


def show_first_key(token: str, v: dict[str, Any], server_addr: str | None = None) -> None:
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
    agent = (server_addr or v["agent_addr"]) if v["edge"] else None
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
            "  3. point an agent (PyPI ngrok, npm @ngrok/ngrok, or the ngrok v2 binary) at\n"
            f"     server_addr {agent}, trusting {ca}, with that credential's token:\n"
            "     see README.md, 'Connecting ngrok agents'\n"
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
                    "server_addr": config.server_addr or _show(config.agent_addr),
                    "ca": str(edge.ca_path) if edge.ca_path else None,
                    "http": _show(config.http_addr),
                    "https": _show(config.https_addr),
                    "tls": _show(config.tls_addr),
                    "ssh": _show(edge.ssh.address) if edge.ssh is not None else None,
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


def _show(addr: tuple[str, int] | None) -> str:
    return f"{addr[0]}:{addr[1]}" if addr else "(off)"


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
    return NameSpace(settings.domain, settings.tcp_host, settings.tcp_ports, settings.server_hosts)


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
    if config.agent_name is not None:
        names.append(config.agent_name)
    if share_ca(store, data_dir):
        ca = str(data_dir / "ca.pem")
        log.info("the cluster's CA, from the database, is now in use", extra={"fields": {"ca": ca}})
    local = ensure_server_certificate(data_dir, names)  # the CA's certificate for this node
    if tls_cert is not None and tls_key is not None:
        certificate = ServerCertificate(tls_cert, tls_key, None)
        told = config.server_addr.rpartition(":")[0] if config.server_addr else None
        _check_covers(tls_cert, told if told == config.agent_name else None)
    else:
        certificate = local
    relay = relay_contexts(data_dir) if config.relay_addr is not None else None  # the cluster's CA
    extra = []
    for pair in https_extra_certs or []:
        cert, sep, key = pair.partition(",")
        if not sep or not cert or not key:
            raise CommandError(f"--https-extra-cert {pair!r} is not CERT,KEY")
        extra.append(ServerCertificate(Path(cert), Path(key), None))
    operator = ServerCertificate(https_cert, https_key, None) if https_cert and https_key else None
    https = HttpsFiles(data_dir, local, operator, tuple(extra))
    if config.ssh_addr is not None and config.ssh_host_key is None:
        config.ssh_host_key = datadir.ssh_host_key(data_dir)
    try:
        edge = Edge(
            store, config, EdgeTls(server_context(certificate), certificate.ca_path, https, relay), throttle
        )
        assert edge.https is not None
        edge.https.context_for(None)  # fail at start on unreadable certificates
        for given in [*extra, *([operator] if operator else [])]:
            server_context(given)
    except (OSError, ValueError) as error:
        raise CommandError(f"HTTPS certificate: {error}") from None
    return edge


def _check_covers(cert_path: Path, name: str | None) -> None:
    """Warn when the operator's agent certificate does not carry the name agents are told."""
    if name is None:
        return
    try:
        covered = certificate_names(cert_path)
    except (OSError, ValueError) as error:
        raise CommandError(f"--tls-cert {cert_path}: {error}") from None
    wildcard = "*." + name.partition(".")[2]
    if name not in covered and wildcard not in covered:
        log.warning(
            f"--tls-cert {cert_path} does not cover the agent name {name} (it covers "
            f"{', '.join(covered) or 'no DNS names'}): agents dialling that name will refuse it; "
            "give --agent-name the name the certificate carries"
        )


def api_with_dashboard(store: Store, settings: DashboardSettings, **options: Any) -> ASGIApp:
    """The API app (``options``: create_app's) with the dashboard mounted at /dashboard: a
    client of the API in process, it sees what the API shows each key, no more."""
    from burrow.api.app import create_app
    from burrow.dashboard import create_dashboard

    return create_app(
        store,
        mounts=lambda api: {"/dashboard": create_dashboard(api, store.secret, identify(store), settings)},
        **options,
    )


def identify(store: Store) -> Callable[[str], Identity | None]:
    """Who an API key acts for, which the API does not tell: the dashboard hides what they may not do."""
    from burrow.domain import ids, tokens

    def identified(token: str) -> Identity | None:
        principal = store.cached_principal(token)
        if principal is None:
            key_id = tokens.resource_id(token, ids.API_KEY)
            principal = store.authenticate_api_key(key_id, token) if isinstance(key_id, str) else None
        if principal is None:
            return None
        emails = {user.id: user.email for user in store.users(principal.account_id)}
        return Identity(principal.owner_id, principal.is_admin, emails)

    return identified


def dashboard_settings(edge: Edge | None, public_url: str | None) -> DashboardSettings:
    """What the dashboard's agent snippets say: where agents connect and which CA they trust."""
    if edge is None:
        return DashboardSettings(public_url=public_url)
    host, port = edge.config.agent_addr
    return DashboardSettings(
        agent_addr=edge.config.server_addr or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"),
        ca_path=str(edge.ca_path.resolve()) if edge.ca_path else None,
        domain=edge.config.settings.domain,
        public_url=public_url,
    )
