"""The ``burrow`` command line."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from burrow.domain.limits import AgentLimits, ApiLimits, PublicLimits
from burrow.domain.models import ROLES

from . import logs

if TYPE_CHECKING:
    from burrow.domain.models import Actor
    from burrow.store.store import Store
from .resources import (
    api_keys_app,
    bot_users_app,
    credentials_app,
    login,
    reserved_addrs_app,
    reserved_domains_app,
)

app = typer.Typer(
    help="Burrow: a self-hosted tunnel service that speaks ngrok's protocols.",
    no_args_is_help=True,
    add_completion=True,
)
admin_app = typer.Typer(
    help="Operator commands that work on the data directory directly.", no_args_is_help=True
)
users_app = typer.Typer(help="Users of an account (they have no REST endpoint).", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts in this data directory.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="The edge nodes sharing this database (docs/cluster.md).", no_args_is_help=True
)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(credentials_app, name="credentials")
app.add_typer(bot_users_app, name="bot-users")
app.add_typer(reserved_domains_app, name="reserved-domains")
app.add_typer(reserved_addrs_app, name="reserved-addrs")
app.command("login")(login)
app.add_typer(admin_app, name="admin")
admin_app.add_typer(users_app, name="users")
admin_app.add_typer(accounts_app, name="accounts")
app.add_typer(cluster_app, name="cluster")

err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="BURROW_DATA_DIR",
        help="Where Burrow keeps its SQLite database and server secret.",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="BURROW_DATABASE_URL",
        help="A SQLAlchemy database URL (postgresql+psycopg://...); default: SQLite in the data dir.",
    ),
]


def _limit(flag: str, help: str) -> Any:
    """A ``burrow serve`` limit option, also read from BURROW_<FLAG> (docs/limits.md)."""
    envvar = "BURROW_" + flag.lstrip("-").upper().replace("-", "_")
    return typer.Option(flag, envvar=envvar, help=help, rich_help_panel="Limits (see docs/limits.md)")


DEFAULT_DATA_DIR = Path(".burrow")
DEFAULT_API_ADDR = "127.0.0.1:4080"
FIRST_RUN_EMAIL = "admin@localhost"


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def _check_email(email: str) -> str:
    local, at, domain = email.partition("@")
    if not at or not local or not domain or any(c.isspace() for c in email) or len(email) > 320:
        raise _fail(f"{email!r} is not an email address")
    return email


def _operator() -> Actor:
    """The audit trail's actor for a write made on the command line: the local user."""
    from burrow.domain.ids import new_operation_id
    from burrow.domain.models import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Actor(f"cli:{user}"[:64], "", "local", new_operation_id())


def _open(data_dir: Path, database_url: str | None) -> Store:
    # Imported here: client commands need no database.
    from burrow.store.database import DamagedSecret
    from burrow.store.identity import IdentityError
    from burrow.store.store import Store

    try:
        return Store.open(data_dir, database_url)
    except (DamagedSecret, IdentityError) as problem:
        raise _fail(str(problem)) from None


@app.command()
def init(
    admin_email: Annotated[str, typer.Option("--admin-email", help="Email of the new account's admin user.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Create the database if needed, then a new account with an admin and its first API key.

    The API key's token is printed alone on stdout, once: store it now.
    Run it again with another email to create another, isolated account.
    """
    store = _open(data_dir, database_url)
    try:
        _user, token = store.create_account(_check_email(admin_email), actor=_operator())
    finally:
        store.close()
    sys.stdout.write(token + "\n")


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api_addr: Annotated[
        str, typer.Option("--api-addr", envvar="BURROW_API_ADDR", help="HOST:PORT for the REST API.")
    ] = DEFAULT_API_ADDR,
    database_url: DatabaseUrl = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            envvar="BURROW_PUBLIC_URL",
            help="Base URL for the API's uri fields (default: from each request's Host).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log one line per API request.")
    ] = True,
    agent_addr: Annotated[
        str,
        typer.Option(
            "--agent-addr", envvar="BURROW_AGENT_ADDR", help="HOST:PORT where agents connect (TLS)."
        ),
    ] = "127.0.0.1:4443",
    http_addr: Annotated[
        str,
        typer.Option("--http-addr", envvar="BURROW_HTTP_ADDR", help="HOST:PORT of the public HTTP listener."),
    ] = "127.0.0.1:8080",
    tls_addr: Annotated[
        str,
        typer.Option(
            "--tls-addr", envvar="BURROW_TLS_ADDR", help="HOST:PORT of the public TLS (SNI) listener."
        ),
    ] = "127.0.0.1:8443",
    https_addr: Annotated[
        str,
        typer.Option(
            "--https-addr",
            envvar="BURROW_HTTPS_ADDR",
            help="HOST:PORT of the public HTTPS listener (TLS terminated here, for https endpoints).",
        ),
    ] = "127.0.0.1:8444",
    https_cert: Annotated[
        Path | None,
        typer.Option(
            "--https-cert",
            envvar="BURROW_HTTPS_CERT",
            help="PEM certificate (chain) for public HTTPS names, e.g. *.<domain> (default: local CA).",
        ),
    ] = None,
    https_key: Annotated[
        Path | None,
        typer.Option("--https-key", envvar="BURROW_HTTPS_KEY", help="PEM private key for --https-cert."),
    ] = None,
    https_extra_certs: Annotated[
        list[str] | None,
        typer.Option(
            "--https-extra-cert",
            help="CERT,KEY: a certificate served for the names its SAN covers (repeatable; custom domains).",
        ),
    ] = None,
    traffic_log: Annotated[
        bool,
        typer.Option(
            "--traffic-log/--no-traffic-log",
            envvar="BURROW_TRAFFIC_LOG",
            help="Log one JSON line per public request or connection (logger burrow.traffic).",
        ),
    ] = True,
    max_head_bytes: Annotated[
        int, typer.Option("--max-head-bytes", envvar="BURROW_MAX_HEAD_BYTES", help="Public request head cap.")
    ] = PublicLimits.max_head_bytes,
    max_headers: Annotated[
        int, typer.Option("--max-headers", envvar="BURROW_MAX_HEADERS", help="Header fields per request.")
    ] = PublicLimits.max_headers,
    tls_handshake_timeout: Annotated[
        float,
        typer.Option("--tls-handshake-timeout", envvar="BURROW_TLS_HANDSHAKE_TIMEOUT", help="Seconds."),
    ] = PublicLimits.tls_handshake_timeout,
    head_timeout: Annotated[
        float,
        typer.Option(
            "--head-timeout", envvar="BURROW_HEAD_TIMEOUT", help="Seconds to receive a whole request head."
        ),
    ] = PublicLimits.head_timeout,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout", envvar="BURROW_BODY_TIMEOUT", help="Longest silence within a request body (s)."
        ),
    ] = PublicLimits.body_timeout,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout", envvar="BURROW_IDLE_TIMEOUT", help="Keep-alive idle time between requests (s)."
        ),
    ] = PublicLimits.idle_timeout,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections", envvar="BURROW_MAX_CONNECTIONS", help="Open connections per public listener."
        ),
    ] = PublicLimits.max_connections,
    max_connections_per_client: Annotated[
        int,
        typer.Option(
            "--max-connections-per-client",
            envvar="BURROW_MAX_CONNECTIONS_PER_CLIENT",
            help="Open public connections per client address.",
        ),
    ] = PublicLimits.max_connections_per_client,
    tcp_ports: Annotated[
        str,
        typer.Option(
            "--tcp-ports", envvar="BURROW_TCP_PORTS", help="Port range for TCP tunnels, FIRST-LAST."
        ),
    ] = "20000-20099",
    tcp_host: Annotated[
        str,
        typer.Option("--tcp-host", envvar="BURROW_TCP_HOST", help="Address the TCP tunnel ports listen on."),
    ] = "127.0.0.1",
    domain: Annotated[
        str, typer.Option("--domain", envvar="BURROW_DOMAIN", help="Base domain for assigned hostnames.")
    ] = "burrow.localhost",
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="PEM certificate for the agent listener (default: local CA)."),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key for --tls-cert.")] = None,
    label_routes: Annotated[
        list[str] | None,
        typer.Option(
            "--label-route",
            help="HOST=KEY=VALUE[,KEY=VALUE]: public HTTP for HOST goes to labeled tunnels with those labels",
        ),
    ] = None,
    edge: Annotated[
        bool, typer.Option("--edge/--no-edge", help="Run the agent edge and public listeners.")
    ] = True,
    node_name: Annotated[
        str | None,
        typer.Option(
            "--node-name",
            envvar="BURROW_NODE_NAME",
            help="This node's name in the cluster (default: host name).",
        ),
    ] = None,
    relay_addr: Annotated[
        str | None,
        typer.Option(
            "--relay-addr",
            envvar="BURROW_RELAY_ADDR",
            help="HOST:PORT where other nodes relay public traffic for this node's tunnels (mutual TLS); "
            "other nodes must reach it at this address.",
        ),
    ] = None,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            envvar="BURROW_LEASE_SECONDS",
            help="Seconds after its last renewal (every third of it) a silent node's tunnels are dropped.",
        ),
    ] = 9.0,
    api_max_head_bytes: Annotated[
        int, _limit("--api-max-head-bytes", "Largest API request line plus headers (431 beyond).")
    ] = ApiLimits.max_head_bytes,
    api_max_headers: Annotated[
        int, _limit("--api-max-headers", "Most header fields in one API request (431 beyond).")
    ] = ApiLimits.max_headers,
    api_head_timeout: Annotated[
        float, _limit("--api-head-timeout", "Seconds an API request's headers may take to arrive.")
    ] = ApiLimits.head_timeout,
    api_body_timeout: Annotated[
        float, _limit("--api-body-timeout", "Seconds an API request body may stall.")
    ] = ApiLimits.body_timeout,
    api_keepalive_timeout: Annotated[
        float, _limit("--api-keepalive-timeout", "Seconds an idle API connection stays open.")
    ] = ApiLimits.keepalive_timeout,
    api_max_connections: Annotated[
        int, _limit("--api-max-connections", "Open API connections at most (503 beyond).")
    ] = ApiLimits.max_connections,
    api_max_connections_per_client: Annotated[
        int, _limit("--api-max-connections-per-client", "Open API connections per client address.")
    ] = ApiLimits.max_connections_per_client,
    agent_tls_handshake_timeout: Annotated[
        float, _limit("--agent-tls-handshake-timeout", "Seconds an agent's TLS handshake may take.")
    ] = AgentLimits.tls_handshake_timeout,
    agent_auth_timeout: Annotated[
        float, _limit("--agent-auth-timeout", "Seconds from an agent's connection to its completed Auth.")
    ] = AgentLimits.auth_timeout,
    agent_max_message_bytes: Annotated[
        int, _limit("--agent-max-message-bytes", "Largest JSON message an agent may send.")
    ] = AgentLimits.max_message_bytes,
    agent_max_message_depth: Annotated[
        int, _limit("--agent-max-message-depth", "Deepest nesting in an agent's JSON message.")
    ] = AgentLimits.max_message_depth,
    agent_max_connections: Annotated[
        int, _limit("--agent-max-connections", "Open agent connections at most.")
    ] = AgentLimits.max_connections,
    agent_max_connections_per_client: Annotated[
        int, _limit("--agent-max-connections-per-client", "Open agent connections per client address.")
    ] = AgentLimits.max_connections_per_client,
    api_rate_limit: Annotated[
        str,
        typer.Option(
            "--api-rate-limit", envvar="BURROW_API_RATE_LIMIT", help="API requests per API key, or off."
        ),
    ] = "6000/minute",
    api_address_rate_limit: Annotated[
        str,
        typer.Option(
            "--api-address-rate-limit",
            envvar="BURROW_API_ADDRESS_RATE_LIMIT",
            help="API requests per client address, or off.",
        ),
    ] = "12000/minute",
    auth_failure_limit: Annotated[
        str,
        typer.Option(
            "--auth-failure-limit",
            envvar="BURROW_AUTH_FAILURE_LIMIT",
            help="Failed authentications (API keys and authtokens) per client address before "
            "its tokens are checked only once a second, or off.",
        ),
    ] = "60/minute",
    agent_session_limit: Annotated[
        str,
        typer.Option(
            "--agent-session-limit",
            envvar="BURROW_AGENT_SESSION_LIMIT",
            help="Agent session starts per credential, or off.",
        ),
    ] = "60/minute",
    require_reservation: Annotated[
        bool,
        typer.Option(
            "--require-reservation/--no-require-reservation",
            envvar="BURROW_REQUIRE_RESERVATION",
            help="Agents bind hostnames under --domain and fixed TCP addresses only when their "
            "account reserved them (assigned random names still work).",
        ),
    ] = False,
    revocation_fail_closed_after: Annotated[
        float,
        typer.Option(
            "--revocation-fail-closed-after",
            envvar="BURROW_REVOCATION_FAIL_CLOSED_AFTER",
            help="Seconds revocations may go unchecked (database unreachable) before the edge "
            "refuses new agent sessions and binds.",
        ),
    ] = 10.0,
) -> None:
    """Run Burrow: the REST API and the agent edge (on an empty data directory, create the first account)."""
    import uvicorn

    from burrow.api.app import create_app
    from burrow.api.connection import protocol_class
    from burrow.store.identity import IdentityError

    from . import serving

    logs.configure(log_level, access_log, traffic_log)
    limits = PublicLimits(
        max_head_bytes=max_head_bytes,
        max_headers=max_headers,
        tls_handshake_timeout=tls_handshake_timeout,
        head_timeout=head_timeout,
        body_timeout=body_timeout,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
    )
    try:
        host, port = serving.split_addr(api_addr)
        api_limits, agent_limits = serving.check_limits(
            ApiLimits(
                max_head_bytes=api_max_head_bytes,
                max_headers=api_max_headers,
                head_timeout=api_head_timeout,
                body_timeout=api_body_timeout,
                keepalive_timeout=api_keepalive_timeout,
                max_connections=api_max_connections,
                max_connections_per_client=api_max_connections_per_client,
            ),
            AgentLimits(
                tls_handshake_timeout=agent_tls_handshake_timeout,
                auth_timeout=agent_auth_timeout,
                max_message_bytes=agent_max_message_bytes,
                max_message_depth=agent_max_message_depth,
                max_connections=agent_max_connections,
                max_connections_per_client=agent_max_connections_per_client,
            ),
        )
        # Computed with --no-edge too: the API shapes reserved names by the same settings.
        edge_config = serving.edge_config(
            agent_addr,
            http_addr,
            tls_addr,
            tcp_ports,
            tcp_host,
            domain,
            label_routes or [],
            https_addr,
            limits,
            require_reservation=require_reservation,
        )
        listening = 3 + (len(edge_config.settings.tcp_ports) if edge else 0)
        api_limits, agent_limits, limits = serving.fit_to_file_limit(
            api_limits, agent_limits, limits, listening
        )
        edge_config.agent_limits = agent_limits
        edge_config.limits = limits
        if not revocation_fail_closed_after > 0:
            raise serving.CommandError("--revocation-fail-closed-after must be positive")
        edge_config.revocation_fail_closed_after = revocation_fail_closed_after
        if not 1 <= lease_seconds <= 300:
            raise serving.CommandError("--lease-seconds must be between 1 and 300")
        edge_config.lease_seconds = lease_seconds
        if relay_addr:
            edge_config.relay_addr = serving.split_addr(relay_addr)
        if node_name:
            edge_config.node_name = node_name
    except serving.CommandError as problem:
        raise _fail(str(problem)) from None
    if (tls_cert is None) != (tls_key is None):
        raise _fail("--tls-cert and --tls-key go together")
    if (https_cert is None) != (https_key is None):
        raise _fail("--https-cert and --https-key go together")
    try:
        throttle = serving.throttle(
            api_rate_limit, api_address_rate_limit, auth_failure_limit, agent_session_limit
        )
    except serving.CommandError as problem:
        raise _fail(str(problem)) from None
    serve_lock = serving.hold_serve_lock(data_dir, database_url)
    store = _open(data_dir, database_url)
    try:
        if not store.accounts():
            _user, token = store.create_account(FIRST_RUN_EMAIL, actor=_operator())
            # The key goes to stdout alone; stderr is the log stream, which is kept and shipped.
            err.print(
                f"[bold]First run:[/] created an account with admin [cyan]{FIRST_RUN_EMAIL}[/]; "
                "its API key is on standard output, shown once: store it now."
            )
            sys.stdout.write(token + "\n")
            sys.stdout.flush()
        try:
            edge_server = (
                serving.make_edge(
                    store,
                    data_dir,
                    edge_config,
                    tls_cert,
                    tls_key,
                    https_cert,
                    https_key,
                    https_extra_certs,
                    throttle,
                )
                if edge
                else None
            )
        except (serving.CommandError, IdentityError) as problem:
            raise _fail(str(problem)) from None
        config = uvicorn.Config(
            create_app(
                store,
                public_url=public_url.rstrip("/") if public_url else None,
                edge=edge_server,
                dashboard=serving.dashboard_settings(edge_server, public_url),
                throttle=throttle,
                names=serving.name_space(edge_config),
            ),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=10,
            http=protocol_class(api_limits),
            ws="none",  # the API has no WebSocket routes: an Upgrade request is a plain request
            timeout_keep_alive=api_limits.keepalive_timeout,  # type: ignore[arg-type]  # a float serves
        )
        # uvicorn's loop factory picks uvloop when it is installed.
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serving.run_until_signalled(serving.ApiServer(config), edge_server))
    finally:
        store.close()
        if serve_lock is not None:
            serve_lock.close()


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option("--email", help="The new user's email.")],
    role: Annotated[str, typer.Option("--role", help="admin or member.")] = "member",
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="The account: its id, or the email of a user in it (needed when there are several).",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a user to an account; prints the user's first API key token alone on stdout."""
    if role not in ROLES:
        raise _fail(f"--role must be one of {', '.join(ROLES)}")
    store = _open(data_dir, database_url)
    try:
        account_id = _find_account(store, account) if account else _only_account(store)
        if any(u.email == email for u in store.users(account_id)):
            raise _fail(f"{email} is already a user of {account_id}")
        _user, token = store.create_user(account_id, _check_email(email), role, actor=_operator())
    finally:
        store.close()
    sys.stdout.write(token + "\n")


def _find_account(store: Store, reference: str) -> str:
    if reference in {account_id for account_id, _ in store.accounts()}:
        return reference
    accounts = {user.account_id for user in store.find_user_by_email(reference)}
    if len(accounts) == 1:
        return accounts.pop()
    if accounts:
        raise _fail(f"{reference} is a user of several accounts; give the account id")
    raise _fail(f"no account {reference!r}; see 'burrow admin accounts list'")


def _only_account(store: Store) -> str:
    accounts = store.accounts()
    if len(accounts) == 1:
        return accounts[0][0]
    if not accounts:
        raise _fail("no accounts yet; run 'burrow init --admin-email EMAIL' first")
    raise _fail("several accounts exist; choose one with --account (see 'burrow admin accounts list')")


@admin_app.command("seed")
def seed(
    account: Annotated[
        str, typer.Option("--account", help="The account: its id, or the email of its admin.")
    ],
    credentials: Annotated[int, typer.Option("--credentials", min=0, help="Credentials to add.")] = 0,
    api_keys: Annotated[int, typer.Option("--api-keys", min=0, help="API keys to add.")] = 0,
    bot_users: Annotated[int, typer.Option("--bot-users", min=0, help="Bot users to add.")] = 0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Fill an account with synthetic rows for benchmarks (one transaction; their tokens are never shown)."""
    store = _open(data_dir, database_url)
    try:
        account_id = _find_account(store, account)
        admins = [user for user in store.users(account_id) if user.role == "admin" and user.active]
        if not admins:
            raise _fail(f"{account_id} has no active admin to own the rows")
        owner = next((user for user in admins if user.email == account), admins[0])
        counts = {"credential": credentials, "api_key": api_keys, "bot_user": bot_users}
        store.seed(account_id, owner.id, counts)
    finally:
        store.close()
    err.print(
        f"added {credentials} credentials, {api_keys} API keys and {bot_users} bot users to {account_id}"
    )


JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")]


@users_app.command("list")
def users_list(
    account_id: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """List users."""
    store = _open(data_dir, database_url)
    try:
        users = store.users(account_id)
    finally:
        store.close()
    rows = [
        {
            "id": user.id,
            "account_id": user.account_id,
            "email": user.email,
            "role": user.role,
            "active": user.active,
            "created_at": user.created_at.isoformat() + "Z",
        }
        for user in users
    ]
    _print_rows(rows, as_json)


def _print_rows(rows: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(*(rows[0] if rows else ["id"]))
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    Console().print(table)


@accounts_app.command("list")
def accounts_list(
    data_dir: DataDir = DEFAULT_DATA_DIR, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """List accounts."""
    store = _open(data_dir, database_url)
    try:
        accounts = store.accounts()
    finally:
        store.close()
    _print_rows([{"id": account_id, "name": name} for account_id, name in accounts], as_json)


@admin_app.command("audit")
def audit(
    account: Annotated[
        str | None,
        typer.Option("--account", help="Only this account: its id, or the email of a user in it."),
    ] = None,
    resource: Annotated[
        str | None,
        typer.Option("--resource", help="Only events of this resource id (cr_...) or type (credential)."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="Only events by this API key id, its owner's id, or cli:<user>."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
    as_json: JsonFlag = False,
) -> None:
    """The audit trail: every write through the API or these commands, newest first."""
    store = _open(data_dir, database_url)
    try:
        account_id = _find_account(store, account) if account else None
        events = store.audit_events(account_id, resource=resource, actor=actor, limit=limit)
    finally:
        store.close()
    rows: list[dict[str, object]] = [
        {
            "id": event.id,
            "created_at": event.created_at.isoformat() + "Z",
            "account_id": event.account_id,
            "actor_id": event.actor_id,
            "actor_owner_id": event.actor_owner_id,
            "operation": event.operation,
            "resource": event.resource,
            "resource_id": event.resource_id,
            "client_ip": event.client_ip,
            "operation_id": event.operation_id,
        }
        for event in events
    ]
    _print_rows(rows, as_json)


@cluster_app.command("status")
def cluster_status(
    data_dir: DataDir = DEFAULT_DATA_DIR, database_url: DatabaseUrl = None, as_json: JsonFlag = False
) -> None:
    """The edge nodes, their leases and the agent sessions each holds."""
    from datetime import UTC, datetime

    from burrow.store.cluster import ClusterRegistry

    store = _open(data_dir, database_url)
    try:
        nodes = ClusterRegistry(store.engine, "", "", 0).nodes()
    finally:
        store.close()
    now = datetime.now(UTC).replace(tzinfo=None)
    rows: list[dict[str, object]] = [
        {
            "id": node.id,
            "name": node.name,
            "relay_addr": node.relay_addr,
            "started_at": node.started_at.isoformat() + "Z",
            "lease_expires_at": node.lease_expires_at.isoformat() + "Z",
            "lease_seconds_left": round((node.lease_expires_at - now).total_seconds(), 1),
            "live": node.lease_expires_at > now,
            "sessions": list(node.sessions),
        }
        for node in nodes
    ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    _print_rows([{**row, "sessions": len(row["sessions"])} for row in rows], False)  # type: ignore[arg-type]


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
