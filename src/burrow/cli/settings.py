"""``burrow serve``'s settings, described once.

Each :class:`Setting` gives a name, type, default and help; from the table come the
command's options (``--NAME``), their environment variables (``BURROW_NAME``), the keys of
a ``--config`` TOML file (``NAME`` with dashes), and the README's configuration table.
A value given as an option or in the environment wins over the file, which wins over the
default. Adding a setting is one entry in ``SETTINGS`` (then read it in ``serve``).
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from burrow.domain.limits import AgentLimits, ApiLimits, PublicLimits

LIMITS_PANEL = "Limits (see docs/limits.md)"


class ConfigError(Exception):
    """A --config file that cannot be used; reported like any bad option."""


@dataclass(frozen=True)
class Setting:
    name: str  # the option without its dashes: "api-addr"
    kind: type  # str, int, float, bool, Path or list (of str, a repeatable option)
    default: Any
    help: str
    shown_default: str | None = None  # in the README when the default is not a plain value
    panel: str | None = None

    @property
    def param(self) -> str:
        return self.name.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}/--no-{self.name}" if self.kind is bool else f"--{self.name}"

    @property
    def envvar(self) -> str:
        return "BURROW_" + self.param.upper()

    def check(self, value: Any, where: str) -> Any:
        """A value from the config file, if it has this setting's type."""
        expected: Any = {str: str, Path: str, int: int, float: (int, float), bool: bool, list: list}[
            self.kind
        ]
        wrong = not isinstance(value, expected) or (self.kind in (int, float) and isinstance(value, bool))
        if self.kind is list and not wrong:
            wrong = not all(isinstance(item, str) for item in value)
        if wrong:
            kinds: dict[Any, str] = {list: "a list of strings", Path: "a path"}
            kind = kinds.get(self.kind, self.kind.__name__)
            raise ConfigError(f"{where}: {self.name} must be {kind}")
        return Path(value) if self.kind is Path else value


def _limit(name: str, limits: Any, field: str, help: str) -> Setting:
    default = getattr(limits, field)
    return Setting(name, type(default), default, help, panel=LIMITS_PANEL)


SETTINGS: list[Setting] = [
    Setting("data-dir", Path, Path(".burrow"), "SQLite database (burrow.db) and server secret (secret.key)."),
    Setting("api-addr", str, "127.0.0.1:4080", "HOST:PORT of the REST API (and the dashboard)."),
    Setting(
        "database-url", str, None, "A SQLAlchemy URL (postgresql+psycopg://...).", "SQLite in the data dir"
    ),
    Setting(
        "public-url",
        str,
        None,
        "Base URL of the API's uri fields, e.g. behind a proxy.",
        "each request's Host",
    ),
    Setting(
        "trusted-proxies",
        str,
        None,
        "CIDR,CIDR: proxies whose X-Forwarded-For headers the API believes.",
        "none",
    ),
    Setting(
        "proxy-protocol",
        str,
        None,
        "agent,http,https,tls,tcp: listeners where --trusted-proxies send a PROXY v1/v2 header first.",
        "off",
    ),
    Setting(
        "advertised-ports",
        str,
        None,
        "http=80,https=443,tls=443,agent=443: the ports URLs and server_addr show behind other ports.",
        "the listeners' ports",
    ),
    Setting("log-level", str, "info", "debug, info, warning or error."),
    Setting(
        "access-log",
        bool,
        True,
        "One JSON line per API request (no headers, queries or tokens), written in batches within 0.2 s.",
    ),
    Setting("metrics-addr", str, None, "HOST:PORT of the Prometheus /metrics listener.", "off"),
    Setting("shutdown-grace", float, 10.0, "Seconds requests in flight get to finish on SIGTERM."),
    Setting("edge", bool, True, "Run the agent edge and the public listeners."),
    Setting("agent-addr", str, "127.0.0.1:4443", "HOST:PORT where agents connect (TLS)."),
    Setting(
        "agent-name",
        str,
        None,
        "The name agents dial (their server_addr NAME:PORT): on the agent listener's certificate.",
        "connect.DOMAIN",
    ),
    Setting(
        "ssh-addr",
        str,
        None,
        "HOST:PORT of the SSH tunnel gateway (ssh -R ... v2@HOST http; docs/ssh.md).",
        "off",
    ),
    Setting("http-addr", str, "127.0.0.1:8080", "HOST:PORT of the public HTTP listener (by Host)."),
    Setting("https-addr", str, "127.0.0.1:8444", "HOST:PORT of the public HTTPS listener (https endpoints)."),
    Setting(
        "tls-addr", str, "127.0.0.1:8443", "HOST:PORT of the public TLS listener (by SNI, not decrypted)."
    ),
    Setting("https-cert", Path, None, "PEM certificate for public HTTPS names, e.g. *.DOMAIN.", "local CA"),
    Setting("https-key", Path, None, "PEM private key for --https-cert.", "local CA"),
    Setting(
        "https-extra-cert", list, None, "CERT,KEY (repeatable): served for the names its SAN covers.", "none"
    ),
    Setting("tls-cert", Path, None, "PEM certificate of the agent listener.", "local CA"),
    Setting("tls-key", Path, None, "PEM private key for --tls-cert.", "local CA"),
    Setting(
        "acme-email",
        str,
        None,
        "ACME account contact: turns ACME on for reserved domains with a certificate_management_policy.",
        "off",
    ),
    Setting(
        "acme-directory",
        str,
        None,
        "The ACME CA's directory URL (docs/certificates.md).",
        "Let's Encrypt's, with --acme-email",
    ),
    Setting("acme-ca-bundle", Path, None, "PEM CAs to trust for the ACME directory's HTTPS.", "the system's"),
    Setting("acme-challenge", str, "http-01", "http-01 (on --http-addr) or tls-alpn-01 (on --https-addr)."),
    Setting("acme-check-seconds", float, 30.0, "How often ACME looks for names to order or renew."),
    Setting("acme-retry-seconds", float, 60.0, "The first backoff after a failed order; doubled each time."),
    Setting(
        "dns-update-server",
        str,
        None,
        "HOST:PORT taking RFC 2136 updates: with ACME, *.DOMAIN's and the agent name's "
        "certificates by DNS-01.",
        "off",
    ),
    Setting("dns-update-zone", str, None, "The zone those updates change.", "--domain"),
    Setting(
        "dns-tsig-key",
        str,
        None,
        "NAME:ALGORITHM:SECRET (base64) signing the updates, or a file holding that text.",
        "none",
    ),
    Setting("tcp-ports", str, "20000-20099", "FIRST-LAST: the ports of TCP tunnels."),
    Setting("tcp-host", str, "127.0.0.1", "Address the TCP tunnel ports listen on."),
    Setting("domain", str, "burrow.localhost", "Base domain of assigned hostnames."),
    Setting(
        "label-route",
        list,
        None,
        "HOST=KEY=VALUE[,KEY=VALUE] (repeatable): HOST goes to labeled tunnels.",
        "none",
    ),
    Setting("traffic-log", bool, True, "One JSON line per public request or TCP/TLS connection."),
    Setting(
        "require-reservation",
        bool,
        False,
        "Hostnames under --domain and fixed TCP addresses must be reserved by the binding account.",
    ),
    Setting(
        "revocation-fail-closed-after",
        float,
        10.0,
        "Seconds revocations may go unchecked (database down) before new sessions and binds are refused.",
    ),
    Setting(
        "jwks-allow-cidrs",
        str,
        None,
        "CIDRs (comma-separated) of non-public addresses jwt-validation may fetch keys from.",
        "none",
    ),
    Setting("node-name", str, None, "This node's name in 'burrow cluster status'.", "the host name"),
    Setting("relay-addr", str, None, "HOST:PORT where other nodes relay public traffic to this one.", "off"),
    Setting("lease-seconds", float, 9.0, "How long a node's bindings outlive its last renewal."),
    Setting(
        "workers",
        int,
        1,
        "Processes sharing these listeners, each a node (NAME-wN) with a relay (docs/cluster.md).",
    ),
    Setting(
        "reconcile-seconds",
        float,
        2.0,
        "With PostgreSQL notifications, how often sessions are rechecked and commands looked for anyway.",
    ),
    Setting("api-rate-limit", str, "6000/minute", "API requests per API key (N/second|minute|hour), or off."),
    Setting("api-address-rate-limit", str, "12000/minute", "API requests per client address, or off."),
    Setting(
        "auth-failure-limit",
        str,
        "60/minute",
        "Failed authentications per client address before its tokens are checked once a second, or off.",
    ),
    Setting("agent-session-limit", str, "60/minute", "Agent session starts per credential, or off."),
    _limit(
        "max-head-bytes", PublicLimits, "max_head_bytes", "Public request line plus headers (431 beyond)."
    ),
    _limit("max-headers", PublicLimits, "max_headers", "Header fields in one public request (431 beyond)."),
    _limit(
        "tls-handshake-timeout", PublicLimits, "tls_handshake_timeout", "Seconds for a public TLS handshake."
    ),
    _limit("head-timeout", PublicLimits, "head_timeout", "Seconds to receive a whole public request head."),
    _limit("body-timeout", PublicLimits, "body_timeout", "Longest silence within a public request body (s)."),
    _limit("idle-timeout", PublicLimits, "idle_timeout", "Keep-alive idle seconds between public requests."),
    _limit("max-connections", PublicLimits, "max_connections", "Open connections per public listener."),
    _limit(
        "max-connections-per-client",
        PublicLimits,
        "max_connections_per_client",
        "Open public connections per client address.",
    ),
    _limit("api-max-head-bytes", ApiLimits, "max_head_bytes", "API request line plus headers (431 beyond)."),
    _limit("api-max-headers", ApiLimits, "max_headers", "Header fields in one API request (431 beyond)."),
    _limit("api-head-timeout", ApiLimits, "head_timeout", "Seconds an API request's headers may take."),
    _limit("api-body-timeout", ApiLimits, "body_timeout", "Seconds an API request body may stall."),
    _limit(
        "api-keepalive-timeout", ApiLimits, "keepalive_timeout", "Seconds an idle API connection stays open."
    ),
    _limit("api-max-connections", ApiLimits, "max_connections", "Open API connections at most (503 beyond)."),
    _limit(
        "api-max-connections-per-client",
        ApiLimits,
        "max_connections_per_client",
        "Open API connections per client address.",
    ),
    _limit(
        "agent-tls-handshake-timeout",
        AgentLimits,
        "tls_handshake_timeout",
        "Seconds for an agent's handshake.",
    ),
    _limit(
        "agent-auth-timeout", AgentLimits, "auth_timeout", "Seconds from an agent's connection to its Auth."
    ),
    _limit(
        "agent-max-message-bytes", AgentLimits, "max_message_bytes", "Largest JSON message from an agent."
    ),
    _limit(
        "agent-max-message-depth", AgentLimits, "max_message_depth", "Deepest nesting in an agent message."
    ),
    _limit("agent-max-connections", AgentLimits, "max_connections", "Open agent connections at most."),
    _limit(
        "agent-max-connections-per-client",
        AgentLimits,
        "max_connections_per_client",
        "Open agent connections per client address.",
    ),
]
BY_PARAM = {setting.param: setting for setting in SETTINGS}


def _annotation(setting: Setting) -> Any:
    optional: dict[Any, Any] = {list: list[str] | None, Path: Path | None, str: str | None}
    kind = optional.get(setting.kind, setting.kind)
    option = typer.Option(
        setting.flag,
        envvar=setting.envvar,
        help=setting.help,
        rich_help_panel=setting.panel,
        show_default=True,
    )
    return Annotated[kind, option]


def command(run: Callable[[dict[str, Any]], None], failed: Callable[[str], None]) -> Callable[..., None]:
    """A typer command with every setting as an option plus ``--config``; it calls ``run`` with
    the settings' values by parameter name, the config file filling what was not given
    (``failed`` with the reason when the file cannot be used)."""
    context = inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    config = inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config",
                envvar="BURROW_CONFIG_FILE",
                help="A TOML file of these settings (keys as the options, without '--').",
            ),
        ],
    )
    parameters = [context, config] + [
        inspect.Parameter(
            s.param, inspect.Parameter.KEYWORD_ONLY, default=s.default, annotation=_annotation(s)
        )
        for s in SETTINGS
    ]

    def serve(**values: Any) -> None:
        ctx: typer.Context = values.pop("context")
        path = values.pop("config")
        if path is not None:
            try:
                from_file = load(path)
            except ConfigError as error:
                failed(str(error))
                return
            for param, value in from_file.items():
                source = ctx.get_parameter_source(param)
                if source is None or source.name == "DEFAULT":
                    values[param] = value
        run(values)

    serve.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    serve.__annotations__ = {p.name: p.annotation for p in parameters}
    return serve


def load(path: Path) -> dict[str, Any]:
    """The settings in a TOML file, by parameter name; unknown keys and wrong types are refused."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"--config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"--config {path}: not TOML: {error}") from None
    values = {}
    for key, value in data.items():
        setting = BY_PARAM.get(key.replace("-", "_"))
        if setting is None or "_" in key:
            raise ConfigError(f"--config {path}: unknown setting {key!r} (see 'burrow serve --help')")
        values[setting.param] = setting.check(value, f"--config {path}")
    return values


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| option | env | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        if s.shown_default is not None:
            default = s.shown_default
        elif s.kind is bool:
            default = "on" if s.default else "off"
        else:
            default = f"`{s.default}`"
        lines.append(f"| `{s.flag}` | `{s.envvar}` | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m burrow.cli.settings: the table to paste into README.md
    print(markdown_table(), end="")
