"""``burrow api-keys|credentials|bot-users ...`` and ``burrow login``: the API from the shell.

The API key and URL come from ``--api-key``/``--api-url``, else ``BURROW_API_KEY``/
``BURROW_API_URL``, else the config file ``burrow login`` writes (``$BURROW_CONFIG``, or
``$XDG_CONFIG_HOME/burrow/config.json``, mode 0600).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from burrow.client import Client, Error
from burrow.client._calls import DEFAULT_BASE_URL

T = TypeVar("T")
# soft_wrap: long lines (ids, errors) are never cut or hard-wrapped, on a terminal or off it.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
OUTPUTS = ("table", "json", "tsv", "id")

ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", help="API key (default: BURROW_API_KEY, then login).")
]
ApiUrlOption = Annotated[
    str | None, typer.Option("--api-url", help="API URL (default: BURROW_API_URL, then login).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as --output json.")]
OutputOption = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="table, json (the API's document), tsv (tab-separated, no header) or id "
        "(default: table on a terminal, tsv otherwise).",
    ),
]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, max=100, help="Items per page (1-100).")]
BeforeOption = Annotated[str | None, typer.Option("--before-id", help="Only items older than this id.")]
FilterOption = Annotated[str | None, typer.Option("--filter", help="A CEL filter expression.")]
AllOption = Annotated[bool, typer.Option("--all", help="Page through everything.")]
DescriptionOption = Annotated[
    str | None, typer.Option("--description", help="Human-readable description (255 bytes).")
]
MetadataOption = Annotated[
    str | None, typer.Option("--metadata", help="Machine-readable metadata (4096 bytes).")
]
OwnerOption = Annotated[
    str | None, typer.Option("--owner-id", help="Owner: user id, user email or bot user id.")
]


def config_path() -> Path:
    explicit = os.environ.get("BURROW_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "burrow" / "config.json"


def _saved() -> dict[str, str]:
    try:
        data = json.loads(config_path().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def output_format(output: str | None, as_json: bool) -> str:
    """The output asked for: --json, -o, else a table for people and tab-separated rows for pipes."""
    if as_json:
        return "json"
    if output is None:
        return "table" if sys.stdout.isatty() else "tsv"
    if output not in OUTPUTS:
        err.print(f"[bold red]error:[/] --output must be one of {', '.join(OUTPUTS)}, not {output!r}")
        raise typer.Exit(2)
    return output


def client(api_key: str | None, api_url: str | None) -> Client:
    saved = _saved()
    key = api_key or os.environ.get("BURROW_API_KEY") or saved.get("api_key")
    url = api_url or os.environ.get("BURROW_API_URL") or saved.get("api_url") or DEFAULT_BASE_URL
    if not key:
        err.print("[bold red]error:[/] no API key: pass --api-key, set BURROW_API_KEY, or run 'burrow login'")
        raise typer.Exit(2)
    # No retries: a server that is down is reported at once, in one line (see run()).
    return Client(key, base_url=url, max_retries=0)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # The client reference that lets objects update themselves is not data.
        return {
            f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "service"
        }
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _column(row: dict[str, Any], column: str) -> Any:
    """A row's value for a column; ``credential.id`` reads inside a reference."""
    value: Any = row
    for part in column.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def show_one(item: Any, as_json: bool, output: str | None = None) -> None:
    data = _plain(item)
    shown = {key: value for key, value in data.items() if not (key == "token" and value is None)}
    form = output_format(output, as_json)
    if form == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif form == "id":
        sys.stdout.write(f"{data['id']}\n")
    elif form == "tsv":
        sys.stdout.write("".join(f"{key}\t{_text(value)}\n" for key, value in shown.items()))
    else:
        table = Table(show_header=False, box=None)
        table.add_column(no_wrap=True)
        table.add_column(overflow="fold")
        for key, value in shown.items():
            table.add_row(f"[bold]{key}[/]", _text(value))
        out.print(table)
    if data.get("token"):
        err.print("[yellow]Store this token now: it is shown only once.[/]")


def show_rows(rows: list[dict[str, Any]], columns: list[str], form: str, noun: str) -> None:
    """Rows as a table, tab-separated, or ids; ids and emails are never cut."""
    if form == "id":
        sys.stdout.write("".join(f"{row['id']}\n" for row in rows))
        return
    cells = [[_text(_column(row, c)) for c in columns] for row in rows]
    if form == "tsv":
        sys.stdout.write("".join("\t".join(c.replace("\t", " ") for c in line) + "\n" for line in cells))
        return
    if not rows:
        err.print(f"no {noun}s")
        return
    table = Table()
    for index, column in enumerate(columns):
        if column.endswith("id") or column == "email":  # whole, or they cannot be copied
            width = max(len(line[index]) for line in cells)
            table.add_column(column, no_wrap=True, min_width=max(width, len(column)))
        else:
            table.add_column(column, overflow="fold")
    for line in cells:
        table.add_row(*line)
    out.print(table)


def show_listing(listing: Any, all_pages: bool, columns: list[str], form: str, noun: str) -> None:
    """A list: in JSON, the API's page document (with ``next_page_uri``); with ``--all``, every
    page's items in one document whose ``next_page_uri`` is null."""
    items = list(listing) if all_pages else list(listing.items)
    if form == "json":
        document = {
            listing.page.list_key: [_plain(item) for item in items],
            "uri": listing.uri,
            "next_page_uri": None if all_pages else listing.next_page_uri,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    show_rows([_plain(item) for item in items], columns, form, noun)


def run(action: Callable[[], T]) -> T:
    """Run an API call; errors go to stderr with their code, in one line, and exit non-zero."""
    try:
        return action()
    except Error as error:
        where = f" (operation {error.operation_id})" if error.operation_id else ""
        err.print(f"[bold red]error[/] {error.error_code or error.http_status_code}: {error.message}{where}")
        raise typer.Exit(1) from None
    except httpx.ConnectError as error:
        try:
            where = f" at {error.request.url.copy_with(path='/', query=None)}"
        except RuntimeError:  # no request attached
            where = ""
        err.print(
            f"[bold red]error:[/] cannot reach the API{where} ({_reason(error)}): is 'burrow serve' running?"
        )
        raise typer.Exit(1) from None
    except httpx.HTTPError as error:
        err.print(f"[bold red]error:[/] cannot reach the API: {_reason(error)}")
        raise typer.Exit(1) from None


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text.split("] ", 1)[-1].lower() if text.startswith("[Errno") else text


def add_get_and_list(app: typer.Typer, service: str, noun: str, columns: list[str]) -> None:
    @app.command("get", help=f"Show one {noun}.")
    def get(
        id: str,
        api_key: ApiKeyOption = None,
        api_url: ApiUrlOption = None,
        as_json: JsonOption = False,
        output: OutputOption = None,
    ) -> None:
        with client(api_key, api_url) as c:
            show_one(run(lambda: getattr(c, service).get(id)), as_json, output)

    add_list(app, service, noun, columns)


def add_list(app: typer.Typer, service: str, noun: str, columns: list[str]) -> None:
    @app.command("list", help=f"List {noun}s, newest first.")
    def list_(
        limit: LimitOption = None,
        before_id: BeforeOption = None,
        filter: FilterOption = None,
        all_pages: AllOption = False,
        api_key: ApiKeyOption = None,
        api_url: ApiUrlOption = None,
        as_json: JsonOption = False,
        output: OutputOption = None,
    ) -> None:
        form = output_format(output, as_json)
        with client(api_key, api_url) as c:

            def fetch() -> None:
                show_listing(
                    getattr(c, service).list(before_id, limit, filter), all_pages, columns, form, noun
                )

            run(fetch)


def add_read_and_delete(app: typer.Typer, service: str, noun: str, columns: list[str], deleted: str) -> None:
    """``get``, ``list`` and ``delete``: the same for every resource but for names."""

    add_get_and_list(app, service, noun, columns)

    @app.command("delete", help=f"Delete a {noun}: {deleted}.")
    def delete(id: str, api_key: ApiKeyOption = None, api_url: ApiUrlOption = None) -> None:
        with client(api_key, api_url) as c:
            run(lambda: getattr(c, service).delete(id))
        err.print(f"deleted {id}")


# api-keys ---------------------------------------------------------------------------

api_keys_app = typer.Typer(help="API keys: they authenticate to the REST API.", no_args_is_help=True)
add_read_and_delete(
    api_keys_app,
    "api_keys",
    "API key",
    ["id", "description", "owner_id", "created_at"],
    "it stops working at once",
)


@api_keys_app.command("create")
def api_keys_create(
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    owner_id: OwnerOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Create an API key; its token is shown once."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.api_keys.create(description or "", metadata or "", owner_id)), as_json, output)


@api_keys_app.command("update")
def api_keys_update(
    id: str,
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Change an API key's description or metadata."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.api_keys.update(id, description, metadata)), as_json, output)


# credentials ------------------------------------------------------------------------

credentials_app = typer.Typer(
    help="Tunnel credentials: authtokens agents start sessions with.", no_args_is_help=True
)
add_read_and_delete(
    credentials_app,
    "credentials",
    "credential",
    ["id", "description", "acl", "owner_id", "created_at"],
    "its agent sessions end within a second",
)
AclOption = Annotated[
    list[str] | None, typer.Option("--acl", help="A bind rule, e.g. 'bind:*.example.com'; repeat for more.")
]


@credentials_app.command("create")
def credentials_create(
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    acl: AclOption = None,
    owner_id: OwnerOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Create a credential; its authtoken is shown once."""
    with client(api_key, api_url) as c:
        show_one(
            run(lambda: c.credentials.create(description or "", metadata or "", acl or [], owner_id)),
            as_json,
            output,
        )


@credentials_app.command("update")
def credentials_update(
    id: str,
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    acl: AclOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Change a credential's description, metadata or ACL (--acl replaces the whole list)."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.credentials.update(id, description, metadata, acl)), as_json, output)


# bot-users --------------------------------------------------------------------------

bot_users_app = typer.Typer(
    help="Bot users: owners of API keys and credentials for automation.", no_args_is_help=True
)
add_read_and_delete(
    bot_users_app,
    "bot_users",
    "bot user",
    ["id", "name", "active", "created_at"],
    "its API keys and credentials go with it",
)
NameOption = Annotated[str | None, typer.Option("--name", help="The bot user's name.")]
ActiveOption = Annotated[bool | None, typer.Option("--active/--inactive", help="Whether its keys work.")]


@bot_users_app.command("create")
def bot_users_create(
    name: Annotated[str, typer.Option("--name", help="The bot user's name.")],
    active: ActiveOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Create a bot user (admins only)."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.bot_users.create(name, active)), as_json, output)


@bot_users_app.command("update")
def bot_users_update(
    id: str,
    name: NameOption = None,
    active: ActiveOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Rename a bot user, or (de)activate it: an inactive bot's keys stop working at once."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.bot_users.update(id, name, active)), as_json, output)


# tunnel sessions and tunnels: live, read from the edge -------------------------------

tunnel_sessions_app = typer.Typer(help="Agent sessions online: list, inspect, stop.", no_args_is_help=True)
add_get_and_list(
    tunnel_sessions_app,
    "tunnel_sessions",
    "tunnel session",
    ["id", "credential.id", "ip", "agent_version", "os", "started_at"],
)


@tunnel_sessions_app.command("stop")
def tunnel_sessions_stop(id: str, api_key: ApiKeyOption = None, api_url: ApiUrlOption = None) -> None:
    """Stop an agent session: the agent is told to stop and disconnected."""
    with client(api_key, api_url) as c:
        run(lambda: c.tunnel_sessions.stop(id))
    err.print(f"stopped {id}")


tunnels_app = typer.Typer(help="Tunnels online, across your agent sessions.", no_args_is_help=True)
add_list(
    tunnels_app,
    "tunnels",
    "tunnel",
    ["id", "public_url", "proto", "forwards_to", "tunnel_session.id", "started_at"],
)


# login ------------------------------------------------------------------------------


# reserved-domains, reserved-addrs ---------------------------------------------------

reserved_domains_app = typer.Typer(
    help="Reserved domains: hostnames only your account's agents bind.", no_args_is_help=True
)
add_read_and_delete(
    reserved_domains_app,
    "reserved_domains",
    "reserved domain",
    ["id", "domain", "description", "cname_target", "created_at"],
    "other accounts may bind or reserve it again",
)
reserved_addrs_app = typer.Typer(
    help="Reserved TCP addresses: host:port only your account's agents bind.", no_args_is_help=True
)
add_read_and_delete(
    reserved_addrs_app,
    "reserved_addrs",
    "reserved address",
    ["id", "addr", "description", "created_at"],
    "other accounts may bind or reserve it again",
)


@reserved_domains_app.command("create")
def reserved_domains_create(
    domain: Annotated[str, typer.Argument(help="Hostname; a single label is a subdomain of the server's.")],
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reserve a domain for this account."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.reserved_domains.create(domain, description or "", metadata or "")), as_json)


@reserved_addrs_app.command("create")
def reserved_addrs_create(
    addr: Annotated[str | None, typer.Option("--addr", help="host:port (default: a free one).")] = None,
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reserve a TCP address for this account."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.reserved_addrs.create(description or "", metadata or "", addr)), as_json)


def _add_update(app: typer.Typer, service: str, noun: str) -> None:
    @app.command("update", help=f"Change a {noun}'s description or metadata.")
    def update(
        id: str,
        description: DescriptionOption = None,
        metadata: MetadataOption = None,
        api_key: ApiKeyOption = None,
        api_url: ApiUrlOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with client(api_key, api_url) as c:
            show_one(run(lambda: getattr(c, service).update(id, description, metadata)), as_json)


_add_update(reserved_domains_app, "reserved_domains", "reserved domain")
_add_update(reserved_addrs_app, "reserved_addrs", "reserved address")


def login(
    api_key: Annotated[str, typer.Option("--api-key", prompt=True, hide_input=True, help="Your API key.")],
    api_url: Annotated[str, typer.Option("--api-url", help="The API's URL.")] = DEFAULT_BASE_URL,
) -> None:
    """Check an API key against the API, then save it (0600) for later commands."""
    with Client(api_key, base_url=api_url) as c:
        run(lambda: c.api_keys.list(limit=1))
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"api_key": api_key, "api_url": api_url.rstrip("/")}, handle)
    os.chmod(path, 0o600)
    err.print(f"saved to {path}")
