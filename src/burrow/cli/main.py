"""The ``burrow`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from burrow.domain.models import ROLES

from . import logs, settings

if TYPE_CHECKING:
    from burrow.domain.models import Actor
    from burrow.store.store import Store
from .resources import (
    ID,
    Column,
    JsonOption,
    OutputOption,
    api_keys_app,
    bot_users_app,
    credentials_app,
    endpoints_app,
    login,
    output_format,
    reserved_addrs_app,
    reserved_domains_app,
    show_rows,
    ssh_credentials_app,
    tls_certificates_app,
    tunnel_sessions_app,
    tunnels_app,
)

app = typer.Typer(
    help="Burrow: a self-hosted tunnel service that speaks ngrok's protocols.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        import burrow

        sys.stdout.write(f"burrow {burrow.__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Burrow: a self-hosted tunnel service that speaks ngrok's protocols."""


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
app.add_typer(ssh_credentials_app, name="ssh-credentials")
app.add_typer(bot_users_app, name="bot-users")
app.add_typer(reserved_domains_app, name="reserved-domains")
app.add_typer(reserved_addrs_app, name="reserved-addrs")
app.add_typer(tls_certificates_app, name="tls-certificates")
app.add_typer(tunnel_sessions_app, name="tunnel-sessions")
app.add_typer(tunnels_app, name="tunnels")
app.add_typer(endpoints_app, name="endpoints")
app.command("login")(login)
app.add_typer(admin_app, name="admin")
admin_app.add_typer(users_app, name="users")
admin_app.add_typer(accounts_app, name="accounts")
app.add_typer(cluster_app, name="cluster")

err = Console(stderr=True, soft_wrap=True)

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


DEFAULT_DATA_DIR = Path(".burrow")


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def _check_email(email: str) -> str:
    local, at, domain = email.partition("@")
    if not at or not local or not domain or any(c.isspace() for c in email) or len(email) > 320:
        raise _fail(f"{email!r} is not an email address")
    return email


def _operator() -> Actor:
    from .operator import local_operator

    return local_operator()


def _open(data_dir: Path, database_url: str | None) -> Store:
    # Imported here: client commands need no database.
    from burrow.store.database import DamagedSecret, SchemaTooNew
    from burrow.store.identity import IdentityError
    from burrow.store.store import Store

    try:
        return Store.open(data_dir, database_url)
    except (DamagedSecret, IdentityError, SchemaTooNew) as problem:
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


def _serve(values: dict[str, Any]) -> None:
    from . import node, serving

    try:
        serving.serve(values)
    except node.CommandError as problem:
        _serve_failed(str(problem))


def _serve_failed(message: str) -> None:
    from . import serving

    logs.configure("info", True)  # every line serve writes on stderr is JSON
    serving.log.error(message)
    raise typer.Exit(2)


app.command(
    "serve",
    help="Run Burrow: the REST API and the agent edge (on an empty data directory, create the first "
    "account). Every option is also read from its BURROW_ environment variable and from --config.",
)(settings.command(_serve, _serve_failed))


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
    as_json: JsonOption = False,
    output: OutputOption = None,
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
    columns = [
        ID,
        Column("email", True, 0),
        Column("role", True, 2),
        Column("active", True, 3),
        Column("account_id", True, 5),
        Column("created_at", True, 4),
    ]
    _print_rows(rows, columns, "user", as_json, output)


def _print_rows(
    rows: list[dict[str, object]], columns: list[Column], noun: str, as_json: bool, output: str | None
) -> None:
    form = output_format(output, as_json)
    if form == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        show_rows(rows, columns, form, noun)


@accounts_app.command("list")
def accounts_list(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """List accounts."""
    store = _open(data_dir, database_url)
    try:
        accounts = store.accounts()
    finally:
        store.close()
    rows: list[dict[str, object]] = [{"id": account_id, "name": name} for account_id, name in accounts]
    _print_rows(rows, [ID, Column("name")], "account", as_json, output)


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
    columns = [
        ID,
        Column("created_at", True, 3),
        Column("account_id", True, 6),
        Column("actor_id", True, 4),
        Column("operation", True),
        Column("resource", True, 2),
        Column("resource_id", True, 5),
    ]
    _print_rows(rows, columns, "audit event", as_json, None)


@admin_app.command("backup")
def backup(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The archive to write (a new file, made 0600).")
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Back up the database, the server secret and the agent CA into one archive (docs/deploy.md).

    The archive holds the secret: keep it like secret.key itself. Servers may keep running.
    """
    import burrow
    from burrow.store import backup as backups
    from burrow.store.identity import IdentityError

    try:
        counts = backups.backup(data_dir, database_url, output, burrow.__version__)
    except (backups.BackupError, IdentityError) as problem:
        raise _fail(str(problem)) from None
    err.print(f"backed up {sum(counts.values())} rows of {len(counts)} tables to {output}")


@admin_app.command("restore")
def restore(
    source: Annotated[Path, typer.Option("--input", "-i", help="An archive of 'burrow admin backup'.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database_url: DatabaseUrl = None,
) -> None:
    """Restore a backup into a new data directory (and a new, empty database), then upgrade its schema.

    Every API key, credential and authtoken of the backup works again. Refused if the data
    directory already has a secret, a CA or a database, or the backup is from a newer Burrow.
    """
    from burrow.store import backup as backups
    from burrow.store.database import SchemaTooNew
    from burrow.store.identity import IdentityError

    try:
        counts = backups.restore(data_dir, database_url, source)
    except (backups.BackupError, IdentityError, SchemaTooNew) as problem:
        raise _fail(str(problem)) from None
    err.print(f"restored {sum(counts.values())} rows of {len(counts)} tables into {data_dir}")


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
    shown = [{**row, "sessions": len(row["sessions"])} for row in rows]  # type: ignore[arg-type]
    columns = [
        ID,
        Column("name"),
        Column("relay_addr", True),
        Column("lease_seconds_left", True, 2),
        Column("live", True),
        Column("sessions", True),
    ]
    _print_rows(shown, columns, "node", False, None)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
