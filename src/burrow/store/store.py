"""Queries: everything Burrow reads and writes in its database.

Methods are synchronous. With SQLite the API calls them on the event loop: a point read
takes a few microseconds, less than handing the call to a thread would.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    String,
    Table,
    and_,
    bindparam,
    delete,
    event,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from burrow.domain import certificates, errors, ids, tokens
from burrow.domain.deadline import Deadline
from burrow.domain.fields import ValueKind
from burrow.domain.models import (
    Actor,
    ApiKey,
    AuditEvent,
    BotUser,
    Credential,
    Principal,
    ReservedAddr,
    ReservedDomain,
    SshCredential,
    TlsCertificate,
    User,
)
from burrow.store import database, datadir, identity, schema
from burrow.store.fastpath import PointRead, PointReader
from burrow.store.filter_sql import Column
from burrow.store.notify import CHANGED, RESYNC, ChangeFeed, notify

T = TypeVar(
    "T", ApiKey, Credential, SshCredential, BotUser, AuditEvent, ReservedDomain, ReservedAddr, TlsCertificate
)
V = TypeVar("V")


def utcnow() -> datetime:
    """Now, as stored: naive UTC with whole seconds (the API shows seconds)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


@dataclass(frozen=True)
class Kind(Generic[T]):
    """One resource type: its table, id prefix and how a row becomes a model."""

    name: str
    table: Table
    prefix: str
    from_row: Callable[[Any], T]  # a Mapping of column name to value


def _api_key(row: Mapping[str, Any]) -> ApiKey:
    return ApiKey(
        row["id"],
        row["account_id"],
        row["owner_id"],
        row["description"],
        row["metadata"],
        row["created_at"],
    )


def _credential(row: Mapping[str, Any]) -> Credential:
    acl = row["acl"]
    return Credential(
        row["id"],
        row["account_id"],
        row["owner_id"],
        row["description"],
        row["metadata"],
        tuple(json.loads(acl)) if isinstance(acl, str) else tuple(acl),
        row["created_at"],
    )


def _ssh_credential(row: Mapping[str, Any]) -> SshCredential:
    acl = row["acl"]
    return SshCredential(
        row["id"],
        row["account_id"],
        row["owner_id"],
        row["description"],
        row["metadata"],
        row["public_key"],
        row["fingerprint"],
        tuple(json.loads(acl)) if isinstance(acl, str) else tuple(acl),
        row["created_at"],
    )


def _bot_user(row: Mapping[str, Any]) -> BotUser:
    return BotUser(row["id"], row["account_id"], row["name"], row["active"], row["created_at"])


def _audit_event(row: Mapping[str, Any]) -> AuditEvent:
    return AuditEvent(**row)


def _reserved_domain(row: Mapping[str, Any]) -> ReservedDomain:
    # A row just inserted holds only the columns given (the ACME ones are null until set).
    return ReservedDomain(**{name: row[name] for name in ReservedDomain.__slots__ if name in row})


def _reserved_addr(row: Mapping[str, Any]) -> ReservedAddr:
    return ReservedAddr(**{name: row[name] for name in ReservedAddr.__slots__})


def _tls_certificate(row: Mapping[str, Any]) -> TlsCertificate:
    pem = row["certificate_pem"]
    return TlsCertificate(
        row["id"],
        row["account_id"],
        row["description"],
        row["metadata"],
        pem,
        row["created_at"],
        certificates.read_fields(pem),
    )


API_KEYS = Kind("api_key", schema.api_keys, ids.API_KEY, _api_key)
CREDENTIALS = Kind("credential", schema.credentials, ids.CREDENTIAL, _credential)
SSH_CREDENTIALS = Kind("ssh_credential", schema.ssh_credentials, ids.SSH_CREDENTIAL, _ssh_credential)
BOT_USERS = Kind("bot_user", schema.bot_users, ids.BOT_USER, _bot_user)
# Read like the others; written only by Store.record, never updated or deleted.
AUDIT_EVENTS = Kind("audit_event", schema.audit_events, ids.AUDIT_EVENT, _audit_event)
RESERVED_DOMAINS = Kind("reserved_domain", schema.reserved_domains, ids.RESERVED_DOMAIN, _reserved_domain)
RESERVED_ADDRS = Kind("reserved_addr", schema.reserved_addrs, ids.RESERVED_ADDR, _reserved_addr)
TLS_CERTIFICATES = Kind("tls_certificate", schema.tls_certificates, ids.TLS_CERTIFICATE, _tls_certificate)
_ALL_KINDS = (
    API_KEYS,
    CREDENTIALS,
    SSH_CREDENTIALS,
    BOT_USERS,
    AUDIT_EVENTS,
    RESERVED_DOMAINS,
    RESERVED_ADDRS,
    TLS_CERTIFICATES,
)
# Never read with the rest: a token's digest, a certificate's sealed key.
_SECRET_COLUMNS = {"token_digest", "private_key_sealed"}
KINDS: dict[str, Kind[Any]] = {kind.name: kind for kind in _ALL_KINDS}

_PUBLIC_COLUMNS = {
    kind.name: [c for c in kind.table.c if c.name not in _SECRET_COLUMNS] for kind in _ALL_KINDS
}


def _key_binding(fields: certificates.CertificateFields) -> str:
    # A sealed key opens only beside the certificate it was uploaded with.
    return f"tls_certificate_key {fields.fingerprint}"


class Taken(Exception):
    """A unique value (a reserved domain or address, an SSH key) is already held."""


@dataclass(frozen=True)
class AuthRecord:
    """What authenticating a token needs: its digest and its owner's standing."""

    digest: str
    account_id: str
    owner_id: str
    owner_is_admin: bool
    owner_active: bool


R = TypeVar("R")


def _rows(query: Select[Any], connection: Connection) -> list[Any]:
    return [row._mapping for row in connection.execute(query)]


def _before(connection: Connection, deadline: Deadline, run: Callable[[Connection], R]) -> R:
    """``run(connection)``, its statements interrupted at ``deadline``: by SQLite's progress
    handler (checked every few thousand virtual-machine steps; at once, too, when the
    deadline is abandoned) or PostgreSQL's statement timeout. A query abandoned that way is
    over the filter budget (ERR_NGROK_90250)."""
    left = deadline.left()
    if left <= 0:
        raise errors.FILTER_OVER_BUDGET(rows=FILTER_ROWS, seconds=FILTER_SECONDS)
    raw = connection.connection.dbapi_connection
    sqlite = connection.dialect.name == "sqlite"
    try:
        if sqlite:
            raw.set_progress_handler(lambda: int(deadline.passed()), 10_000)  # type: ignore[union-attr]
        else:
            connection.execute(
                text("SELECT set_config('statement_timeout', :ms, true)"),
                {"ms": str(max(1, int(min(left, 3600.0) * 1000)))},
            )
        return run(connection)
    except (OperationalError, errors.BurrowError) as problem:
        # Interrupted, the driver says so (and database.py calls it unavailable): past the
        # deadline, it was us.
        if not deadline.passed():
            raise
        raise errors.FILTER_OVER_BUDGET(rows=FILTER_ROWS, seconds=FILTER_SECONDS) from problem
    finally:
        if sqlite:
            raw.set_progress_handler(None, 0)  # type: ignore[union-attr]


# Free bytes beside a SQLite database after which a full disk counts as fixed.
FREE_SPACE_NEEDED = 4 * 1024 * 1024
# Elsewhere (PostgreSQL: its disk is not ours to measure), how long readiness says full.
FULL_RETRY_SECONDS = 10.0

# A filtered list's budget: rows examined outside the database, and seconds in all.
FILTER_ROWS = 50_000
FILTER_SECONDS = 1.0

# Tokens remembered by Store.authenticated_before (32 bytes each).
AUTHENTICATED_KEPT = 10_000


class Store:
    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine = engine
        self.secret = secret
        self._cache_key = hashlib.sha256(b"burrow principal cache" + secret).digest()[:32]
        # Keyed hashes of the API key tokens that authenticated, most recent last (bounded):
        # unlike the read cache, kept across writes (see authenticated_before).
        self._authenticated: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._full_since: float | None = None  # when a write last found the disk full
        # PostgreSQL: what other nodes write reaches this one as notifications.
        self.feed = ChangeFeed.for_engine(engine, database.CONNECT_TIMEOUT_SECONDS)
        self._reader = PointReader(engine, self.feed)
        event.listen(engine, "commit", lambda _connection: self._reader.invalidate())
        if self.feed is not None:
            self.feed.subscribe(self._notified)
        owner_joins = {}
        owned_tables = (
            ("api_key", schema.api_keys),
            ("credential", schema.credentials),
            ("ssh_credential", schema.ssh_credentials),
        )
        for name, table in owned_tables:
            users, bots = schema.users, schema.bot_users
            # An SSH credential has no token: its record's digest is the key's fingerprint.
            digest_column = table.c.fingerprint if name == "ssh_credential" else table.c.token_digest
            owner_joins[name] = PointRead(
                engine,
                select(
                    digest_column,
                    table.c.account_id,
                    table.c.owner_id,
                    users.c.role,
                    users.c.active,
                    bots.c.active,
                )
                .select_from(
                    table.outerjoin(users, users.c.id == table.c.owner_id).outerjoin(
                        bots, bots.c.id == table.c.owner_id
                    )
                )
                .where(table.c.id == bindparam("id")),
            )
        self._auth_reads = owner_joins
        self._get_reads = {
            kind.name: PointRead(
                engine,
                select(*_PUBLIC_COLUMNS[kind.name]).where(
                    kind.table.c.id == bindparam("id"),
                    kind.table.c.account_id == bindparam("account_id"),
                ),
            )
            for kind in KINDS.values()
        }

    @classmethod
    def open(cls, data_dir: Path, database_url: str | None = None) -> Store:
        """Open (creating and migrating as needed) the store of a data directory.

        Concurrent openers take turns (see :mod:`burrow.store.datadir`); what they create
        is private to this user. A secret that does not match the cluster's is refused.
        """
        datadir.prepare(data_dir)
        url = database_url or database.sqlite_url(data_dir)
        with datadir.private_files(), datadir.setup_lock(data_dir):
            secret = database.load_secret(data_dir)  # first: a bad secret leaves no database behind
            sqlite_file = database.sqlite_file(url)
            if sqlite_file is not None:
                database.protect_sqlite_file(sqlite_file)
            engine = database.open_engine(url)
            try:
                database.migrate(engine)
                identity.check_secret(engine, secret)
            except BaseException:
                engine.dispose()
                raise
            return cls(engine, secret)

    def is_reachable(self) -> bool:
        """Whether the database answers now (a fresh check, for readiness)."""
        return database.is_reachable(self.engine)

    def _notified(self, payload: str) -> None:
        if payload in (CHANGED, RESYNC):  # not commands and routes: they change nothing cached here
            self._reader.invalidate()

    def listen(self) -> None:
        """Start receiving the cluster's notifications (PostgreSQL): until then nothing is
        cached. A server calls this once; commands that run and exit need not."""
        if self.feed is not None:
            self.feed.start()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction that tells every node, when it commits, that data changed.

        A full disk (at a statement or at the commit) is ERR_NGROK_90507, and readiness says
        so (:meth:`storage_full`) until a write succeeds or, on SQLite, space is free again."""
        try:
            with self.engine.begin() as connection:
                yield connection
                notify(connection, CHANGED)
        except (errors.BurrowError, DBAPIError, OSError) as problem:
            # database.py's handler raises STORAGE_FULL from the driver's error: found either way.
            if not database.storage_full(problem):
                raise
            self._full_since = time.monotonic()
            raise errors.STORAGE_FULL() from None
        self._full_since = None

    def storage_full(self) -> bool:
        """Whether the last write found the disk full, and it still looks so: on SQLite, less
        than :data:`FREE_SPACE_NEEDED` free beside the database; elsewhere for
        :data:`FULL_RETRY_SECONDS`, after which writes may try again."""
        since = self._full_since
        if since is None:
            return False
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if path:
            stats = os.statvfs(Path(path).parent)
            full = stats.f_bavail * stats.f_frsize < FREE_SPACE_NEEDED
        else:
            full = time.monotonic() - since < FULL_RETRY_SECONDS
        if not full:
            self._full_since = None
        return full

    def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        self._reader.close()
        self.engine.dispose()

    # Accounts and users -------------------------------------------------------------

    def create_account(
        self, admin_email: str, name: str = "", actor: Actor | None = None
    ) -> tuple[User, str]:
        """A new account with its admin user and that user's first API key token."""
        account_id = ids.new_id(ids.ACCOUNT)
        with self._writing() as connection:
            connection.execute(
                insert(schema.accounts),
                {"id": account_id, "name": name or admin_email, "created_at": utcnow()},
            )
            self._record(connection, actor, account_id, "create", "account", account_id)
            user, token = self._insert_user_and_key(connection, account_id, admin_email, "admin", actor)
        return user, token

    def create_user(
        self, account_id: str, email: str, role: str, actor: Actor | None = None
    ) -> tuple[User, str]:
        with self._writing() as connection:
            if self._account_exists(connection, account_id) is False:
                raise errors.NOT_FOUND()
            return self._insert_user_and_key(connection, account_id, email, role, actor)

    def _insert_user_and_key(
        self, connection: Connection, account_id: str, email: str, role: str, actor: Actor | None
    ) -> tuple[User, str]:
        user = self._insert_user(connection, account_id, email, role)
        self._record(connection, actor, account_id, "create", "user", user.id)
        values = {"owner_id": user.id, "description": "first API key", "metadata": ""}
        key, token = self._insert(connection, API_KEYS, account_id, values)
        self._record(connection, actor, account_id, "create", API_KEYS.name, key.id)
        assert token is not None
        return user, token

    def _account_exists(self, connection: Connection, account_id: str) -> bool:
        found = connection.execute(
            select(schema.accounts.c.id).where(schema.accounts.c.id == account_id)
        ).first()
        return found is not None

    def _insert_user(self, connection: Connection, account_id: str, email: str, role: str) -> User:
        user = User(ids.new_id(ids.USER), account_id, email, role, True, utcnow())
        connection.execute(
            insert(schema.users),
            {
                "id": user.id,
                "account_id": account_id,
                "email": email,
                "role": role,
                "active": True,
                "created_at": user.created_at,
            },
        )
        return user

    def users(self, account_id: str | None = None) -> list[User]:
        query = select(schema.users).order_by(schema.users.c.id)
        if account_id is not None:
            query = query.where(schema.users.c.account_id == account_id)
        with self.engine.connect() as connection:
            return [User(**row._mapping) for row in connection.execute(query)]

    def accounts(self) -> list[tuple[str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(schema.accounts.c.id, schema.accounts.c.name).order_by(schema.accounts.c.id)
            )
            return [(row.id, row.name) for row in rows]

    def find_user_by_email(self, email: str) -> list[User]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(schema.users).where(schema.users.c.email == email))
            return [User(**row._mapping) for row in rows]

    # Authentication -----------------------------------------------------------------

    def ssh_credential_id(self, fingerprint: str) -> str | None:
        """The SSH credential registered for the key of ``fingerprint`` ("SHA256:..."), by id."""
        table = schema.ssh_credentials
        with self.engine.connect() as connection:
            found = connection.execute(select(table.c.id).where(table.c.fingerprint == fingerprint)).first()
        return None if found is None else str(found.id)

    def auth_record(self, kind_name: str, resource_id: str) -> AuthRecord | None:
        """The digest (an SSH credential's: its fingerprint) and owner standing of an API
        key, credential or SSH credential, by id."""
        row = self._reader.fetch_one(self._auth_reads[kind_name], {"id": resource_id})
        if row is None:
            return None
        digest, account_id, owner_id, role, user_active, bot_active = row
        return AuthRecord(digest, account_id, owner_id, role == "admin", bool(user_active or bot_active))

    def _principal_cache_key(self, token: str) -> tuple[str, bytes]:
        # A keyed hash, so the cache never holds a token itself.
        return ("principal", hashlib.blake2b(token.encode(), key=self._cache_key).digest())

    def cached_principal(self, token: str) -> Principal | None:
        """Who ``token`` is, if it authenticated since the database last changed."""
        cached = self._reader.cached(self._principal_cache_key(token))
        return cached if isinstance(cached, Principal) else None

    def authenticated_before(self, token: str) -> bool:
        """Whether ``token`` authenticated in this process and has not failed since: such a
        token is no guess, so the API checks it without the failed-authentication throttle."""
        return self._principal_cache_key(token)[1] in self._authenticated

    def authenticate_api_key(self, key_id: str, token: str) -> Principal | None:
        """Who ``token``, a well-formed token of the API key ``key_id``, is; None if nobody."""
        if self._reader.caches:
            self._reader.validate_cache()  # first: catching up is no race with this read
        generation = self._reader.generation
        record = self.auth_record("api_key", key_id)
        cache_key = self._principal_cache_key(token)
        if record is None or not tokens.matches(self.secret, token, record.digest) or not record.owner_active:
            self._authenticated.pop(cache_key[1], None)
            return None
        principal = Principal(record.account_id, record.owner_id, record.owner_is_admin, key_id)
        self._reader.remember(cache_key, principal, generation)
        self._authenticated[cache_key[1]] = None
        self._authenticated.move_to_end(cache_key[1])
        if len(self._authenticated) > AUTHENTICATED_KEPT:
            self._authenticated.popitem(last=False)
        return principal

    # Owners -------------------------------------------------------------------------

    def resolve_owner(self, account_id: str, reference: str) -> str:
        """The id of the user (by id or email) or bot user ``reference`` names."""
        with self.engine.connect() as connection:
            if reference.startswith(f"{ids.BOT_USER}_"):
                row = connection.execute(
                    select(schema.bot_users.c.id, schema.bot_users.c.active).where(
                        schema.bot_users.c.id == reference,
                        schema.bot_users.c.account_id == account_id,
                    )
                ).first()
            else:
                column = schema.users.c.id if reference.startswith(f"{ids.USER}_") else schema.users.c.email
                row = connection.execute(
                    select(schema.users.c.id, schema.users.c.active).where(
                        column == reference, schema.users.c.account_id == account_id
                    )
                ).first()
        if row is None:
            raise errors.NO_OWNER(reason=f"no user or bot user {reference!r} in this account")
        if not row.active:
            raise errors.OWNER_INACTIVE()
        return str(row.id)

    # Resources ----------------------------------------------------------------------

    def get(self, kind: Kind[T], account_id: str, resource_id: str) -> T | None:
        reader = self._reader
        cache_key = ("model", kind.name, account_id, resource_id)
        cached = reader.cached(cache_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        generation = reader.generation
        row = reader.fetch_one(self._get_reads[kind.name], {"id": resource_id, "account_id": account_id})
        if row is None:
            return None
        columns = _PUBLIC_COLUMNS[kind.name]
        item = kind.from_row({c.name: v for c, v in zip(columns, row, strict=True)})
        reader.remember(cache_key, item, generation)
        return item

    def get_derived(
        self, kind: Kind[T], account_id: str, resource_id: str, derive: Callable[[T], V], variant: Hashable
    ) -> V | None:
        """``derive(item)`` for the item :meth:`get` returns, cached with it until the data
        changes (``variant`` tells apart what one item is derived into): a GET's encoded
        body is built once, not on every request."""
        reader = self._reader
        cache_key = ("derived", kind.name, account_id, resource_id, variant)
        cached = reader.cached(cache_key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        generation = reader.generation
        item = self.get(kind, account_id, resource_id)
        if item is None:
            return None
        value = derive(item)
        reader.remember(cache_key, value, generation)
        return value

    def filter_columns(self, kind: Kind[Any], uri_prefix: str) -> dict[str, Column]:
        """What a list filter may read from the database: the JSON field each column shows.

        A column shows the field of its name, so the tables name columns only after what
        they hold exactly as served; ``uri`` is ``uri_prefix`` followed by the id.
        """
        table = kind.table
        columns = {"uri": Column(literal(uri_prefix, String()) + table.c.id, ValueKind.STRING)}
        for column in _PUBLIC_COLUMNS[kind.name]:
            if column.name == "account_id" or column.nullable:
                continue  # a NULL would read as "" in a filter, and differently in SQL
            if column.name == "acl":
                value_kind = ValueKind.STRING_LIST  # the JSON text json.dumps writes
            elif isinstance(column.type, DateTime):
                value_kind = ValueKind.TIMESTAMP
            elif isinstance(column.type, Boolean):
                value_kind = ValueKind.BOOLEAN
            else:
                value_kind = ValueKind.STRING
            columns[column.name] = Column(column, value_kind)
        return columns

    def dialect(self) -> str:
        return self.engine.dialect.name

    def iterate(
        self,
        kind: Kind[T],
        account_id: str,
        before_id: str | None,
        batch: int = 100,
        where: ColumnElement[bool] | None = None,
        deadline: Deadline | None = None,
    ) -> Iterator[T]:
        """The account's resources, newest first, older than ``before_id``, lazily; only
        those satisfying ``where`` when it is given. Past ``deadline`` (or once it is
        abandoned) a query still running is interrupted and ERR_NGROK_90250 raised."""
        table = kind.table
        columns = _PUBLIC_COLUMNS[kind.name]
        cursor = before_id
        condition = true() if where is None else where
        while True:
            query = select(*columns).where(table.c.account_id == account_id, condition)
            if cursor is not None:
                query = query.where(table.c.id < cursor)
            query = query.order_by(table.c.id.desc()).limit(batch)
            with self.engine.connect() as connection:
                if deadline is None:
                    rows = [row._mapping for row in connection.execute(query)]
                else:
                    rows = _before(connection, deadline, functools.partial(_rows, query))
            for row in rows:
                yield kind.from_row(row)
            if len(rows) < batch:
                return
            cursor = rows[-1]["id"]

    def create(
        self, kind: Kind[T], account_id: str, values: Mapping[str, Any], actor: Actor | None = None
    ) -> tuple[T, str | None]:
        """A new resource of ``kind`` with ``values`` (its columns); its token if it has one.

        With an ``actor``, the write and its audit event commit together (as for update and delete).
        Raises :class:`Taken` when a unique column (a reserved domain or address) already
        holds the value, whichever account holds it.
        """
        try:
            with self._writing() as connection:
                if kind is RESERVED_DOMAINS:
                    values = self._certificate_choice(connection, account_id, values, None)
                item, token = self._insert(connection, kind, account_id, values)
                self._record(connection, actor, account_id, "create", kind.name, item.id)
                return item, token
        except IntegrityError as problem:
            if kind in (RESERVED_DOMAINS, RESERVED_ADDRS, SSH_CREDENTIALS):
                raise Taken() from problem
            raise

    # TLS certificates --------------------------------------------------------------

    def create_tls_certificate(
        self,
        account_id: str,
        values: Mapping[str, Any],
        upload: certificates.CheckedUpload,
        actor: Actor | None,
    ) -> TlsCertificate:
        """A checked upload stored with its key sealed under the secret, bound to the leaf."""
        sealed = identity.seal(self.secret, _key_binding(upload.fields), upload.private_key_pem)
        row = {
            "description": values.get("description", ""),
            "metadata": values.get("metadata", ""),
            "certificate_pem": upload.certificate_pem,
            "private_key_sealed": sealed,
        }
        item: TlsCertificate = self.create(TLS_CERTIFICATES, account_id, row, actor)[0]
        return item

    def tls_certificate_key(self, account_id: str, certificate_id: str) -> tuple[str, bytes] | None:
        """A stored certificate's chain and its private key (PEM), for serving; None if gone."""
        table = schema.tls_certificates
        with self.engine.connect() as connection:
            row = connection.execute(
                select(table.c.certificate_pem, table.c.private_key_sealed).where(
                    table.c.account_id == account_id, table.c.id == certificate_id
                )
            ).first()
        if row is None:
            return None
        binding = _key_binding(certificates.read_fields(row.certificate_pem))
        return row.certificate_pem, identity.unseal(self.secret, binding, row.private_key_sealed)

    # Reserved names ----------------------------------------------------------------

    def reservation(self, domain: str | None = None, addr: str | None = None) -> tuple[str, str] | None:
        """Who reserved ``domain`` (lowercase) or ``addr`` (host:port): (account id, id), or None."""
        table = schema.reserved_domains if domain is not None else schema.reserved_addrs
        column = table.c.domain if domain is not None else table.c.addr
        with self.engine.connect() as connection:
            row = connection.execute(
                select(table.c.account_id, table.c.id).where(
                    column == (domain if domain is not None else addr)
                )
            ).first()
        return None if row is None else (row.account_id, row.id)

    def reserved_addrs(self) -> set[str]:
        with self.engine.connect() as connection:
            return {row.addr for row in connection.execute(select(schema.reserved_addrs.c.addr))}

    def _insert(
        self, connection: Connection, kind: Kind[T], account_id: str, values: Mapping[str, Any]
    ) -> tuple[T, str | None]:
        row = {**values, "account_id": account_id, "created_at": utcnow()}
        token = None
        if "token_digest" in kind.table.c:
            issued = tokens.issue(kind.prefix)
            row["id"], token = issued.id, issued.token
            stored = {**row, "token_digest": tokens.digest(self.secret, issued.token)}
        else:
            row["id"] = ids.new_id(kind.prefix)
            stored = dict(row)
        if "acl" in stored:
            stored["acl"] = json.dumps(list(stored["acl"]))
        connection.execute(insert(kind.table), stored)
        return kind.from_row(row), token

    def create_api_key(
        self, account_id: str, owner_id: str, description: str, metadata: str
    ) -> tuple[ApiKey, str]:
        values = {"owner_id": owner_id, "description": description, "metadata": metadata}
        key, token = self.create(API_KEYS, account_id, values)
        assert token is not None
        return key, token

    def create_credential(
        self, account_id: str, owner_id: str, description: str, metadata: str, acl: list[str]
    ) -> tuple[Credential, str]:
        values = {"owner_id": owner_id, "description": description, "metadata": metadata, "acl": acl}
        credential, token = self.create(CREDENTIALS, account_id, values)
        assert token is not None
        return credential, token

    def seed(self, account_id: str, owner_id: str, counts: Mapping[str, int]) -> None:
        """Synthetic rows for benchmarks: ``counts`` maps a kind's name to how many, owned
        by ``owner_id``; one transaction, one executemany per kind. Their tokens are
        random and never shown (the digests of tokens nobody holds)."""
        now = utcnow()
        with self._writing() as connection:
            for name, count in counts.items():
                kind = KINDS[name]
                rows = []
                for index in range(count):
                    row: dict[str, Any] = {"account_id": account_id, "created_at": now}
                    if kind is BOT_USERS:
                        row.update(id=ids.new_id(kind.prefix), name=f"seed {index}", active=True)
                    else:
                        issued = tokens.issue(kind.prefix)
                        row.update(
                            id=issued.id,
                            owner_id=owner_id,
                            description=f"seed {index}",
                            metadata="",
                            token_digest=tokens.digest(self.secret, issued.token),
                        )
                        if kind is CREDENTIALS:
                            row["acl"] = "[]"
                    rows.append(row)
                if rows:
                    connection.execute(insert(kind.table), rows)

    def create_bot_user(self, account_id: str, name: str, active: bool) -> BotUser:
        return self.create(BOT_USERS, account_id, {"name": name, "active": active})[0]

    def update(
        self,
        kind: Kind[T],
        account_id: str,
        resource_id: str,
        values: Mapping[str, Any],
        actor: Actor | None = None,
    ) -> T | None:
        stored = dict(values)
        if "acl" in stored:
            stored["acl"] = json.dumps(list(stored["acl"]))
        table = kind.table
        with self._writing() as connection:
            if kind is RESERVED_DOMAINS:
                current = connection.execute(
                    select(*_PUBLIC_COLUMNS[kind.name]).where(
                        table.c.id == resource_id, table.c.account_id == account_id
                    )
                ).first()
                if current is None:
                    return None
                stored = self._certificate_choice(connection, account_id, stored, dict(current._mapping))
            result = connection.execute(
                update(table)
                .where(and_(table.c.id == resource_id, table.c.account_id == account_id))
                .values(**stored)
            )
            if result.rowcount == 0:
                return None
            self._record(connection, actor, account_id, "update", kind.name, resource_id)
            row = connection.execute(
                select(*_PUBLIC_COLUMNS[kind.name]).where(table.c.id == resource_id)
            ).one()
        return kind.from_row(row._mapping)

    def _certificate_choice(
        self,
        connection: Connection,
        account_id: str,
        values: Mapping[str, Any],
        current: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """A reserved domain's write with its ``certificate_id`` checked in the write's own
        transaction (so the certificate cannot be deleted in between): a certificate of the
        same account whose names cover the domain, never beside a management policy. An
        empty id is stored as none."""
        stored = dict(values)
        if "certificate_id" in stored and not stored["certificate_id"]:
            stored["certificate_id"] = None
        chosen = stored.get("certificate_id", current["certificate_id"] if current else None)
        policy_given = "certificate_management_policy" in stored
        policy = stored.get("certificate_management_policy") if policy_given else None
        if not policy_given and current is not None:
            policy = current["certificate_management_policy"]
        if chosen and policy:
            if "certificate_id" in stored and policy_given:
                reason = "both were given"
            elif policy_given:
                reason = 'the domain serves an uploaded certificate: send certificate_id "" with the policy'
            else:
                reason = "the domain has a certificate_management_policy: send {} for it with the id"
            raise errors.CERTIFICATE_ID_WITH_POLICY(reason=reason)
        if stored.get("certificate_id"):
            certificate_id = stored["certificate_id"]
            table = schema.tls_certificates
            # Locked (on PostgreSQL) until the write commits: a delete of it waits, then sees the use.
            row = connection.execute(
                select(table.c.certificate_pem)
                .where(table.c.account_id == account_id, table.c.id == certificate_id)
                .with_for_update()
            ).first()
            if row is None:
                raise errors.CERTIFICATE_UNKNOWN(certificate_id=certificate_id)
            domain = current["domain"] if current is not None else stored["domain"]
            certificates.check_covers(certificates.read_fields(row.certificate_pem), certificate_id, domain)
        return stored

    def certificate_users(self) -> dict[str, tuple[str, str]]:
        """Reserved domains serving an uploaded certificate: domain -> (account id, certificate id)."""
        table = schema.reserved_domains
        query = select(table.c.domain, table.c.account_id, table.c.certificate_id).where(
            table.c.certificate_id.is_not(None)
        )
        with self.engine.connect() as connection:
            return {row.domain: (row.account_id, row.certificate_id) for row in connection.execute(query)}

    def delete(self, kind: Kind[Any], account_id: str, resource_id: str, actor: Actor | None = None) -> bool:
        table = kind.table
        with self._writing() as connection:
            if kind is TLS_CERTIFICATES:
                # The row locked first, as a reserved domain choosing it does: one waits for the other.
                connection.execute(
                    select(table.c.id)
                    .where(table.c.id == resource_id, table.c.account_id == account_id)
                    .with_for_update()
                )
                domains = schema.reserved_domains
                user = connection.execute(
                    select(domains.c.domain)
                    .where(domains.c.account_id == account_id, domains.c.certificate_id == resource_id)
                    .order_by(domains.c.domain)
                    .limit(1)
                ).first()
                if user is not None:
                    raise errors.CERTIFICATE_IN_USE(domain=user.domain)
            result = connection.execute(
                delete(table).where(table.c.id == resource_id, table.c.account_id == account_id)
            )
            if result.rowcount:
                self._record(connection, actor, account_id, "delete", kind.name, resource_id)
            if result.rowcount and kind is BOT_USERS:
                # What a bot owned goes with it, so none of its tokens outlive it; each is
                # recorded as deleted by the same actor, as if deleted one by one.
                for owned in (API_KEYS, CREDENTIALS, SSH_CREDENTIALS, RESERVED_DOMAINS, RESERVED_ADDRS):
                    table = owned.table
                    gone = connection.execute(
                        delete(table)
                        .where(table.c.owner_id == resource_id, table.c.account_id == account_id)
                        .returning(table.c.id)
                    ).scalars()
                    for owned_id in sorted(gone):
                        self._record(connection, actor, account_id, "delete", owned.name, owned_id)
            return bool(result.rowcount)

    # The audit trail ---------------------------------------------------------------

    def audit_events(
        self,
        account_id: str | None = None,
        resource: str | None = None,
        actor: str | None = None,
        limit: int = 50,
    ) -> list[AuditEvent]:
        """Newest first; ``resource`` matches a resource id or type, ``actor`` an actor or owner id."""
        table = schema.audit_events
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        if account_id is not None:
            query = query.where(table.c.account_id == account_id)
        if resource is not None:
            query = query.where((table.c.resource_id == resource) | (table.c.resource == resource))
        if actor is not None:
            query = query.where((table.c.actor_id == actor) | (table.c.actor_owner_id == actor))
        with self.engine.connect() as connection:
            return [_audit_event(dict(row._mapping)) for row in connection.execute(query)]

    def record(self, actor: Actor, account_id: str, operation: str, resource: str, resource_id: str) -> None:
        """An audit event for a write that changed nothing stored (stopping a tunnel session)."""
        with self._writing() as connection:
            self._record(connection, actor, account_id, operation, resource, resource_id)

    def _record(
        self,
        connection: Connection,
        actor: Actor | None,
        account_id: str,
        operation: str,
        resource: str,
        resource_id: str,
    ) -> None:
        if actor is None:
            return
        connection.execute(
            insert(schema.audit_events),
            {
                "id": ids.new_id(ids.AUDIT_EVENT),
                "account_id": account_id,
                "created_at": utcnow(),
                "actor_id": actor.actor_id,
                "actor_owner_id": actor.owner_id,
                "operation": operation,
                "resource": resource,
                "resource_id": resource_id,
                "client_ip": actor.client_ip,
                "operation_id": actor.operation_id,
            },
        )
