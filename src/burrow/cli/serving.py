"""Running ``burrow serve``: the API server and the edge in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from rich.console import Console

from burrow.edge.certs import ServerCertificate, ensure_server_certificate, server_context
from burrow.edge.control import EdgeSettings
from burrow.edge.server import Edge, EdgeConfig
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
            f"[cyan]{_show(config.http_addr)}[/], TLS on [cyan]{_show(config.tls_addr)}[/], TCP ports "
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
) -> EdgeConfig:
    first, sep, last = tcp_ports.partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise CommandError(f"--tcp-ports {tcp_ports!r} is not FIRST-LAST")
    ports = range(int(first), int(last or first) + 1)
    if not ports or ports.start < 1 or ports.stop > 65536 or len(ports) > 10000:
        raise CommandError(f"--tcp-ports {tcp_ports!r} must be 1 to 10000 ports within 1-65535")
    http, tls = split_addr(http_addr), split_addr(tls_addr)
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
        tcp_host=tcp_host,
        tcp_ports=ports,
    )
    return EdgeConfig(split_addr(agent_addr), http, tls, settings, routes)


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


def make_edge(
    store: Store,
    data_dir: Path,
    config: EdgeConfig,
    tls_cert: Path | None,
    tls_key: Path | None,
    throttle: Throttle | None = None,
) -> Edge:
    if tls_cert is not None and tls_key is not None:
        certificate = ServerCertificate(tls_cert, tls_key, None)
    else:
        names = [config.agent_addr[0]] if config.agent_addr[0] not in ("0.0.0.0", "::") else []
        certificate = ensure_server_certificate(data_dir, names)
    edge = Edge(store, config, server_context(certificate), throttle)
    edge.ca_path = certificate.ca_path
    return edge


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CommandError(f"{addr!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
