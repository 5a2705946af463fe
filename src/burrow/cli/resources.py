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
from urllib.parse import parse_qs, urlsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

from burrow.client import Client, Error
from burrow.client._calls import DEFAULT_BASE_URL

T = TypeVar("T")
# soft_wrap: long lines (ids, errors) are never cut or hard-wrapped, on a terminal or off it.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)
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


def _cell(value: Any) -> str:
    """A value as a table shows it: lists (ACL rules) comma-separated, on one line."""
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return " ".join(_text(value).split())


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


@dataclasses.dataclass(frozen=True)
class Column:
    """A list column: ``key`` (``credential.id`` reads inside a reference); ``whole`` ones (ids,
    URLs, times, emails) are never cut, others are cut short with "…" (a row is one line); at
    narrow widths the columns of highest ``drop`` go first (0: never)."""

    key: str
    whole: bool = False
    drop: int = 1


ID = Column("id", whole=True, drop=0)
CUT_MIN = 12  # the narrowest a cut column is made before a column is dropped instead
GAP = 2  # spaces between columns


def _layout(columns: list[Column], cells: list[list[str]], width: int) -> dict[int, int]:
    """The columns a table ``width`` wide shows, by index, and their widths: whole columns as
    wide as their widest cell, the others sharing what is left; the columns of highest
    ``drop`` go while even the narrowest widths do not fit."""
    natural = [max([len(c.key), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    least = [n if c.whole else min(n, CUT_MIN) for n, c in zip(natural, columns, strict=True)]
    shown = list(range(len(columns)))
    for index in sorted(shown, key=lambda i: -columns[i].drop):
        if sum(least[i] for i in shown) + GAP * (len(shown) - 1) <= width or columns[index].drop == 0:
            break
        shown.remove(index)
    widths = {i: least[i] for i in shown}
    room = width - sum(widths.values()) - GAP * (len(shown) - 1)
    growing = [i for i in shown if not columns[i].whole]
    while room > 0 and (growing := [i for i in growing if widths[i] < natural[i]]):
        share = max(1, room // len(growing))
        for i in growing:
            extra = min(share, natural[i] - widths[i], room)
            widths[i] += extra
            room -= extra
    return widths


def show_rows(rows: list[dict[str, Any]], columns: list[Column], form: str, noun: str) -> None:
    """Rows as a table, tab-separated, or ids. A table fits the terminal, a line a row: whole
    columns are never cut, others are cut short, and the least useful go when even that is
    too wide."""
    if not rows:
        err.print(f"No {noun}s found.")
        return
    if form == "id":
        sys.stdout.write("".join(f"{row['id']}\n" for row in rows))
        return
    if form == "tsv":
        cells = [[_text(_column(row, c.key)).replace("\t", " ") for c in columns] for row in rows]
        sys.stdout.write("".join("\t".join(line) + "\n" for line in cells))
        return
    cells = [[_cell(_column(row, c.key)) for c in columns] for row in rows]
    shown = _layout(columns, cells, out.width)
    table = Table(box=None, pad_edge=False, padding=(0, GAP // 2), header_style="bold")
    for index, width in shown.items():
        table.add_column(columns[index].key, no_wrap=True, overflow="ellipsis", width=width)
    for line in cells:
        table.add_row(*(line[index] for index in shown))
    # Never narrower than its whole columns: an id too wide for the terminal overflows it, whole.
    needed = sum(shown.values()) + GAP * (len(shown) - 1)
    wide = out if needed <= out.width else Console(soft_wrap=True, width=needed)
    wide.print(table)
    hidden = [c.key for i, c in enumerate(columns) if i not in shown]
    if hidden:
        err.print(f"[dim]Not shown at {out.width} columns: {', '.join(hidden)} (-o json shows all).[/]")


def show_listing(listing: Any, all_pages: bool, columns: list[Column], form: str, noun: str) -> None:
    """A list: in JSON, the API's page document (with ``next_page_uri``); with ``--all``, every
    page's items in one document whose ``next_page_uri`` is null. Otherwise rows, and on
    stderr how to get the next page when there is one."""
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
    following = None if all_pages else listing.next_page_uri
    if following:
        before = parse_qs(urlsplit(following).query).get("before_id", [items[-1].id])[0]
        err.print(f"More {noun}s: add --before-id {before} for the next page, or --all for every page.")


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


def add_get_and_list(app: typer.Typer, service: str, noun: str, columns: list[Column]) -> None:
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


def add_list(app: typer.Typer, service: str, noun: str, columns: list[Column]) -> None:
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


def add_read_and_delete(
    app: typer.Typer, service: str, noun: str, columns: list[Column], deleted: str
) -> None:
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
    [ID, Column("description"), Column("owner_id", True, 2), Column("created_at", True, 3)],
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
    [
        ID,
        Column("description"),
        Column("acl", drop=2),
        Column("owner_id", True, 4),
        Column("created_at", True, 3),
    ],
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


# ssh-credentials ----------------------------------------------------------------------

ssh_credentials_app = typer.Typer(
    help="SSH credentials: public keys that start tunnels through the SSH gateway (docs/ssh.md).",
    no_args_is_help=True,
)
add_read_and_delete(
    ssh_credentials_app,
    "ssh_credentials",
    "SSH credential",
    [
        ID,
        Column("description"),
        Column("public_key", drop=5),
        Column("acl", drop=2),
        Column("owner_id", True, 4),
        Column("created_at", True, 3),
    ],
    "its SSH sessions end within a second",
)


@ssh_credentials_app.command("create")
def ssh_credentials_create(
    public_key: Annotated[
        str,
        typer.Option("--public-key", help='An authorized_keys line, e.g. "$(cat ~/.ssh/id_ed25519.pub)".'),
    ],
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    acl: AclOption = None,
    owner_id: OwnerOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Register an SSH public key: ssh -R ... v2@HOST http then authenticates with it."""
    with client(api_key, api_url) as c:
        show_one(
            run(
                lambda: c.ssh_credentials.create(
                    public_key, description or "", metadata or "", acl or [], owner_id
                )
            ),
            as_json,
            output,
        )


@ssh_credentials_app.command("update")
def ssh_credentials_update(
    id: str,
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    acl: AclOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Change an SSH credential's description, metadata or ACL (the key is permanent)."""
    with client(api_key, api_url) as c:
        show_one(run(lambda: c.ssh_credentials.update(id, description, metadata, acl)), as_json, output)


# bot-users --------------------------------------------------------------------------

bot_users_app = typer.Typer(
    help="Bot users: owners of API keys and credentials for automation.", no_args_is_help=True
)
add_read_and_delete(
    bot_users_app,
    "bot_users",
    "bot user",
    [ID, Column("name"), Column("active", True), Column("created_at", True, 2)],
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
    [
        ID,
        Column("credential.id", True, 4),
        Column("ip", True),
        Column("agent_version", drop=3),
        Column("os", drop=2),
        Column("started_at", True, 5),
    ],
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
    [
        ID,
        Column("public_url", True),
        Column("proto", True, 3),
        Column("forwards_to", drop=2),
        Column("tunnel_session.id", True, 4),
        Column("started_at", True, 5),
    ],
)


endpoints_app = typer.Typer(help="Endpoints online: the URLs your agents serve.", no_args_is_help=True)
add_get_and_list(
    endpoints_app,
    "endpoints",
    "endpoint",
    [
        ID,
        Column("url", True),
        Column("proto", True, 3),
        Column("name", drop=2),
        Column("tunnel_session.id", True, 4),
        Column("created_at", True, 5),
    ],
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
    [
        ID,
        Column("domain", True),
        Column("description", drop=3),
        Column("cname_target", True, 2),
        Column("created_at", True, 4),
    ],
    "other accounts may bind or reserve it again",
)
reserved_addrs_app = typer.Typer(
    help="Reserved TCP addresses: host:port only your account's agents bind.", no_args_is_help=True
)
add_read_and_delete(
    reserved_addrs_app,
    "reserved_addrs",
    "reserved address",
    [ID, Column("addr", True), Column("description", drop=2), Column("created_at", True, 3)],
    "other accounts may bind or reserve it again",
)


@reserved_domains_app.command("create")
def reserved_domains_create(
    domain: Annotated[str, typer.Argument(help="Hostname; a single label is a subdomain of the server's.")],
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    managed_certificate: Annotated[
        str | None,
        typer.Option(
            help="ecdsa or rsa: the server orders the domain's certificate by ACME (docs/certificates.md)."
        ),
    ] = None,
    certificate_id: Annotated[
        str | None,
        typer.Option(help="An uploaded certificate (tls-certificates create) served for the domain."),
    ] = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reserve a domain for this account."""
    policy = None
    if managed_certificate is not None:
        policy = {"authority": "letsencrypt", "private_key_type": managed_certificate}
    with client(api_key, api_url) as c:
        show_one(
            run(
                lambda: c.reserved_domains.create(
                    domain, description or "", metadata or "", policy, certificate_id
                )
            ),
            as_json,
        )


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

# tls-certificates ------------------------------------------------------------------

tls_certificates_app = typer.Typer(
    help="TLS certificates: uploaded certificate chains and their keys (the key is never shown).",
    no_args_is_help=True,
)
add_read_and_delete(
    tls_certificates_app,
    "tls_certificates",
    "TLS certificate",
    [
        ID,
        Column("subject_common_name"),
        Column("not_after", True, 2),
        Column("description", drop=3),
        Column("created_at", True, 4),
    ],
    "it is no longer available to serve",
)
_add_update(tls_certificates_app, "tls_certificates", "TLS certificate")


@tls_certificates_app.command("create")
def tls_certificates_create(
    certificate: Annotated[Path, typer.Argument(help="PEM file of the chain, leaf first.")],
    key: Annotated[Path, typer.Argument(help="PEM file of the leaf's private key (unencrypted).")],
    description: DescriptionOption = None,
    metadata: MetadataOption = None,
    api_key: ApiKeyOption = None,
    api_url: ApiUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a certificate and its private key."""
    chain, private = certificate.read_text(), key.read_text()
    with client(api_key, api_url) as c:
        show_one(
            run(lambda: c.tls_certificates.create(chain, private, description or "", metadata or "")), as_json
        )


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
