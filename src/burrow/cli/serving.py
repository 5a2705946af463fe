"""``burrow serve``: its settings checked, then one node (``node.py``), or ``--workers N``
of them sharing the listeners (``workers.py``)."""

from __future__ import annotations

import base64
import dataclasses
import faulthandler
import ipaddress
import logging
import resource
import signal
import urllib.parse
from pathlib import Path
from typing import IO, Any

from burrow.domain import names, reserved
from burrow.domain.forwarded import TrustedProxies
from burrow.domain.limits import AgentLimits, ApiLimits, PublicLimits, fit_to_descriptors
from burrow.domain.reserved import is_servers, is_under
from burrow.edge.acme import LETS_ENCRYPT, AcmeSettings, DnsUpdate
from burrow.edge.control import EdgeSettings
from burrow.edge.jwt_check import parse_cidrs
from burrow.edge.server import EdgeConfig
from burrow.store import database, datadir
from burrow.store.acme import DNS_01, HTTP_01, TLS_ALPN_01, Managed

from .node import CommandError, listen, rate_texts, run_node, throttle
from .workers import supervise

log = logging.getLogger("burrow.serve")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_WORKERS = 64
ADVERTISED = {"http": 80, "https": 443, "tls": 443}  # each listener's port a URL leaves out


def serve(values: dict[str, Any]) -> None:
    """``burrow serve`` with its settings (``cli/settings.py``) by parameter name."""
    from . import logs

    v = values
    # `kill -USR1 <pid>` writes every thread's stack to stderr: what a stuck server is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
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
    config.settings = advertise(config.settings, v["advertised_ports"])
    agent_port = advertised_agent_port(v["advertised_ports"])
    config.settings = dataclasses.replace(
        config.settings, server_hosts=own_hosts(host, v["public_url"], v["domain"])
    )
    config.trusted_proxies = proxies(v["trusted_proxies"])
    try:
        config.jwks_allow_cidrs = parse_cidrs(v["jwks_allow_cidrs"])
    except ValueError as problem:
        raise CommandError(f"--jwks-allow-cidrs: {problem}") from None
    config.proxy_protocol = proxy_listeners(v["proxy_protocol"], config, v["workers"])
    name_agents(config, v["agent_name"], agent_port)
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
    if v["ssh_addr"]:
        if v["workers"] > 1:
            raise CommandError("--ssh-addr runs with one worker: leave --workers at 1 (docs/ssh.md)")
        config.ssh_addr = split_addr(v["ssh_addr"])
    if v["node_name"]:
        config.node_name = v["node_name"]
    # ACME for the agent listener's name too (DNS-01), unless the operator gave its certificate.
    agent_name = config.agent_name if v["tls_cert"] is None else None
    config.acme = acme_settings(v, config.settings.domain, agent_name)
    check_distinct_listeners((host, port), metrics_addr, config if v["edge"] else None)
    if (v["tls_cert"] is None) != (v["tls_key"] is None):
        raise CommandError("--tls-cert and --tls-key go together")
    if (v["https_cert"] is None) != (v["https_key"] is None):
        raise CommandError("--https-cert and --https-key go together")
    workers = v["workers"]
    if not 1 <= workers <= MAX_WORKERS:
        raise CommandError(f"--workers must be between 1 and {MAX_WORKERS}")
    throttle(*rate_texts(v))  # a bad rate is one error, before any worker starts
    data_dir: Path = v["data_dir"]
    serve_lock = hold_serve_lock(data_dir, v["database_url"])  # a parent holds it for its workers
    try:
        if workers > 1:
            supervise(v, config, api_limits, workers, (host, port), metrics_addr)
            return
        api_socket = listen(host, port, "--api-addr")
        metrics_socket = listen(*metrics_addr, "--metrics-addr") if metrics_addr else None
        run_node(v, config, api_limits, throttle(*rate_texts(v)), api_socket, metrics_socket)
    finally:
        if serve_lock is not None:
            serve_lock.close()


TSIG_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")


def dns_update(v: dict[str, Any], domain: str) -> DnsUpdate | None:
    """``--dns-update-server`` and its TSIG key, checked."""
    server = v["dns_update_server"]
    if not server:
        if v["dns_tsig_key"] or v["dns_update_zone"]:
            raise CommandError("--dns-tsig-key and --dns-update-zone need --dns-update-server")
        return None
    host, port = split_addr(server)
    text = v["dns_tsig_key"]
    if not text:
        raise CommandError("--dns-update-server needs --dns-tsig-key (unsigned updates are refused)")
    if Path(text).is_file():
        text = Path(text).read_text().strip()
    name, _, rest = text.partition(":")
    algorithm, _, secret = rest.partition(":")
    if not name or algorithm.lower() not in TSIG_ALGORITHMS or not secret:
        # The secret is never quoted back.
        raise CommandError(
            f"--dns-tsig-key is not NAME:ALGORITHM:SECRET with ALGORITHM one of {TSIG_ALGORITHMS}"
        )
    try:
        base64.b64decode(secret, validate=True)
    except ValueError:
        raise CommandError("--dns-tsig-key: the secret is not base64") from None
    zone = (v["dns_update_zone"] or domain).strip(".").lower()
    if not (domain == zone or domain.endswith("." + zone)):
        raise CommandError(f"--dns-update-zone {zone!r} does not hold --domain {domain!r}")
    return DnsUpdate(host, port, zone, name, algorithm.lower(), secret)


def acme_settings(v: dict[str, Any], domain: str, agent_name: str | None = None) -> AcmeSettings | None:
    """ACME's settings, checked: on with ``--acme-email`` (docs/certificates.md). With DNS-01
    (``--dns-update-server``), the wildcard of ``domain`` and ``agent_name``, when it is a DNS
    name in the update zone, are ordered by DNS-01 too."""
    email = v["acme_email"]
    dns = dns_update(v, domain)
    if not email:
        if v["acme_directory"] or dns is not None:
            raise CommandError("--acme-directory and --dns-update-server need --acme-email")
        return None
    if "@" not in email or any(c.isspace() for c in email):
        raise CommandError(f"--acme-email {email!r} is not an email address")
    directory = v["acme_directory"] or LETS_ENCRYPT
    if urllib.parse.urlsplit(directory).scheme != "https":
        raise CommandError(f"--acme-directory {directory!r} is not an https:// URL")
    if v["acme_challenge"] not in (HTTP_01, TLS_ALPN_01):
        raise CommandError("--acme-challenge must be http-01 or tls-alpn-01")
    if not v["acme_check_seconds"] > 0 or not v["acme_retry_seconds"] > 0:
        raise CommandError("--acme-check-seconds and --acme-retry-seconds must be positive")
    bundle = v["acme_ca_bundle"]
    if bundle is not None and not Path(bundle).is_file():
        raise CommandError(f"--acme-ca-bundle {bundle}: no such file")
    return AcmeSettings(
        directory=directory,
        email=email,
        challenge=v["acme_challenge"],
        ca_bundle=bundle,
        check_seconds=v["acme_check_seconds"],
        retry_seconds=v["acme_retry_seconds"],
        extra=_dns01_names(dns, domain, agent_name),
        dns=dns,
    )


def _dns01_names(dns: DnsUpdate | None, domain: str, agent_name: str | None) -> tuple[Managed, ...]:
    """The server's own names ordered by DNS-01: the wildcard of --domain, and the agent
    listener's name when the update zone holds it (a name under the wildcard is covered
    by it only on the HTTPS listener: the agent listener gets a certificate of its own)."""
    if dns is None:
        return ()
    wanted = [Managed(f"*.{domain}", "ecdsa", challenge=DNS_01)]
    if (
        agent_name is not None
        and names.hostname(agent_name) == agent_name
        and (agent_name == dns.zone or agent_name.endswith("." + dns.zone))
    ):
        wanted.append(Managed(agent_name, "ecdsa", challenge=DNS_01))
    return tuple(wanted)


_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def own_hosts(api_host: str, public_url: str | None, domain: str) -> frozenset[str]:
    """The names the API and its dashboard answer on, which no tenant may bind (cookies
    ignore ports): ``--public-url``'s host, and ``--api-addr``'s when it is a name (IP
    addresses and ``localhost`` names are refused anyway; a parent of ``--domain`` would
    refuse every tenant name, and a listening address is no choice of tenants' names)."""
    name = names.hostname(api_host)
    ours = name is not None and not is_servers(name, domain) and not is_under(domain, name)
    hosts = {name} if ours and name is not None else set()
    public_host = urllib.parse.urlsplit(public_url).hostname if public_url else None
    if public_host:
        hosts.add(public_host.lower())
    return frozenset(hosts)


def check_distinct_listeners(
    api: tuple[str, int], metrics: tuple[str, int] | None, edge: EdgeConfig | None
) -> None:
    """Refuse two listeners on one port: the kernel may let both bind (SO_REUSEADDR before
    listen) and then splits connections between them, so the API would answer some and a
    tunnel others."""
    named: list[tuple[str, tuple[str, int]]] = [("--api-addr", api)]
    if metrics is not None:
        named.append(("--metrics-addr", metrics))
    if edge is not None:
        for option, addr in (
            ("--agent-addr", edge.agent_addr),
            ("--http-addr", edge.http_addr),
            ("--tls-addr", edge.tls_addr),
            ("--https-addr", edge.https_addr),
            ("--relay-addr", edge.relay_addr),
            ("--ssh-addr", edge.ssh_addr),
        ):
            if addr is not None:
                named.append((option, addr))
        named += [("--tcp-ports", (edge.settings.tcp_host, port)) for port in edge.settings.tcp_ports]
    seen: dict[int, list[tuple[str, str]]] = {}
    for option, (host, port) in named:
        if port == 0:  # any free port: the kernel gives each its own
            continue
        for other, other_host in seen.get(port, []):
            if other != option and (host == other_host or {host, other_host} & _WILDCARDS):
                raise CommandError(f"{other} and {option} both listen on port {port}: give each its own")
        seen.setdefault(port, []).append((option, host))


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
    ports = names.port_range(tcp_ports)
    if ports is None:
        raise CommandError(f"--tcp-ports {tcp_ports!r} is not FIRST-LAST (ports without leading zeros)")
    if len(ports) > 10000:
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


def _advertised(text: str) -> list[tuple[str, int]]:
    pairs = []
    for item in text.split(","):
        name, sep, port = item.strip().partition("=")
        known = name in ADVERTISED or name == "agent"
        if not known or not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise CommandError(f"--advertised-ports {text!r} is not http=PORT,https=PORT,tls=PORT,agent=PORT")
        pairs.append((name, int(port)))
    return pairs


def advertised_agent_port(text: str | None) -> int | None:
    """The port of ``agent=PORT`` in ``--advertised-ports``: the server_addr agents are told."""
    return next((port for name, port in _advertised(text) if name == "agent"), None) if text else None


def advertise(settings: EdgeSettings, text: str | None) -> EdgeSettings:
    """``settings`` with the URL ports of ``--advertised-ports`` (``http=80,https=443,tls=443``)."""
    if not text:
        return settings
    ports: dict[str, int | None] = {}
    for name, port in _advertised(text):
        if name in ADVERTISED:
            ports[f"{name}_url_port"] = None if port == ADVERTISED[name] else port
    return dataclasses.replace(settings, **ports)  # type: ignore[arg-type]


def name_agents(config: EdgeConfig, given: str | None, advertised_port: int | None = None) -> None:
    """The agent listener's name (``--agent-name``, else ``connect.DOMAIN``) and the
    ``server_addr`` agents are told: NAME:PORT (the port of ``--advertised-ports agent=PORT``,
    else the listener's), except for a derived name under ``localhost`` (which not every
    resolver answers), where the listener's own address is what works.

    No tenant binds the name: it is the server's, like the API's host."""
    domain = config.settings.domain
    if given is not None:
        name = names.hostname(given.strip().rstrip(".")) or _ip_text(given.strip())
        if name is None:
            raise CommandError(f"--agent-name {given!r} is not a DNS name (e.g. connect.tunnels.example.com)")
        if reserved.is_under(domain, name):
            raise CommandError(f"--agent-name {name} would take every name under --domain {domain}")
    else:
        name = f"connect.{domain}"
        if len(name) > names.MAX_HOSTNAME:
            name = None
    host, port = config.agent_addr
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if name is not None and (given is not None or not reserved.is_under(name, "localhost")):
        shown = f"{name}:{advertised_port or port}"
    config.agent_name = name
    config.server_addr = shown
    if name is not None and names.hostname(name) is not None and name != "localhost":
        hosts = config.settings.server_hosts | {name}
        config.settings = dataclasses.replace(config.settings, server_hosts=hosts)


PROXY_LISTENERS = ("agent", "http", "https", "tls", "tcp")


def proxy_listeners(text: str | None, config: EdgeConfig, workers: int) -> frozenset[str]:
    """``--proxy-protocol``: the listeners where trusted proxies send a PROXY header first."""
    if not text or text.strip() == "off":
        return frozenset()
    chosen = [item.strip() for item in text.split(",")]
    if not chosen or any(item not in PROXY_LISTENERS for item in chosen):
        raise CommandError(f"--proxy-protocol {text!r} is not a list of {', '.join(PROXY_LISTENERS)}")
    if not config.trusted_proxies:
        raise CommandError("--proxy-protocol needs --trusted-proxies: the proxies whose headers count")
    if workers > 1:
        # A connection handed to a sibling worker carries its socket's own peer, not the header's.
        raise CommandError("--proxy-protocol does not work with --workers yet: run one process per node")
    return frozenset(chosen)


def _ip_text(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text.strip("[]")).compressed
    except ValueError:
        return None


def proxies(trusted: str | None) -> TrustedProxies:
    """``--trusted-proxies``, checked."""
    try:
        return TrustedProxies.parse(trusted)
    except ValueError as problem:
        raise CommandError(f"--trusted-proxies: {problem}") from None


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
    host, sep, port_text = addr.rpartition(":")
    port = names.port(port_text, allow_zero=True)  # 0: the system picks a free port
    if not sep or port is None:
        raise CommandError(f"{addr!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", port
