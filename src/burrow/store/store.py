"""Queries: everything Burrow reads and writes in its database.

Methods are synchronous. With SQLite the API calls them on the event loop: a point read
takes a few microseconds, less than handing the call to a thread would.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, Table, and_, bindparam, delete, event, insert, select, update
from sqlalchemy.engine import Connection

from burrow.domain import errors, ids, tokens
from burrow.domain.models import ApiKey, BotUser, Credential, Principal, User
from burrow.store import database, identity, schema
from burrow.store.fastpath import PointRead, PointReader

T = TypeVar("T", ApiKey, Credential, BotUser)


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


def _bot_user(row: Mapping[str, Any]) -> BotUser:
    return BotUser(row["id"], row["account_id"], row["name"], row["active"], row["created_at"])


API_KEYS = Kind("api_key", schema.api_keys, ids.API_KEY, _api_key)
CREDENTIALS = Kind("credential", schema.credentials, ids.CREDENTIAL, _credential)
BOT_USERS = Kind("bot_user", schema.bot_users, ids.BOT_USER, _bot_user)
KINDS: dict[str, Kind[Any]] = {kind.name: kind for kind in (API_KEYS, CREDENTIALS, BOT_USERS)}

_PUBLIC_COLUMNS = {
    kind.name: [c for c in kind.table.c if c.name != "token_digest"]
    for kind in (API_KEYS, CREDENTIALS, BOT_USERS)
}


@dataclass(frozen=True)
class AuthRecord:
    """What authenticating a token needs: its digest and its owner's standing."""

    digest: str
    account_id: str
    owner_id: str
    owner_is_admin: bool
    owner_active: bool


class Store:
    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine = engine
        self.secret = secret
        self._cache_key = hashlib.sha256(b"burrow principal cache" + secret).digest()[:32]
        self._reader = PointReader(engine)
        event.listen(engine, "commit", lambda _connection: self._reader.invalidate())
        owner_joins = {}
        for name, table in (("api_key", schema.api_keys), ("credential", schema.credentials)):
            users, bots = schema.users, schema.bot_users
            owner_joins[name] = PointRead(
                engine,
                select(
                    table.c.token_digest,
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
            for kind in (API_KEYS, CREDENTIALS, BOT_USERS)
        }

    @classmethod
    def open(cls, data_dir: Path, database_url: str | None = None) -> Store:
        """Open (creating and migrating as needed) the store of a data directory."""
        data_dir.mkdir(parents=True, exist_ok=True)
        engine = database.open_engine(database_url or database.sqlite_url(data_dir))
        try:
            secret = database.load_secret(data_dir)
            database.migrate(engine)
            identity.check_secret(engine, secret)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, secret)

    def is_reachable(self) -> bool:
        """Whether the database answers now (a fresh check, for readiness)."""
        return database.is_reachable(self.engine)

    def close(self) -> None:
        self._reader.close()
        self.engine.dispose()

    # Accounts and users -------------------------------------------------------------

    def create_account(self, admin_email: str, name: str = "") -> tuple[User, str]:
        """A new account with its admin user and that user's first API key token."""
        account_id = ids.new_id(ids.ACCOUNT)
        with self.engine.begin() as connection:
            connection.execute(
                insert(schema.accounts),
                {"id": account_id, "name": name or admin_email, "created_at": utcnow()},
            )
            user = self._insert_user(connection, account_id, admin_email, "admin")
            values = {"owner_id": user.id, "description": "first API key", "metadata": ""}
            token = self._insert(connection, API_KEYS, account_id, values)[1]
        assert token is not None
        return user, token

    def create_user(self, account_id: str, email: str, role: str) -> tuple[User, str]:
        with self.engine.begin() as connection:
            if self._account_exists(connection, account_id) is False:
                raise errors.NOT_FOUND()
            user = self._insert_user(connection, account_id, email, role)
            values = {"owner_id": user.id, "description": "first API key", "metadata": ""}
            token = self._insert(connection, API_KEYS, account_id, values)[1]
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

    def auth_record(self, kind_name: str, resource_id: str) -> AuthRecord | None:
        """The digest and owner standing of an API key or credential, by id."""
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
        if not self._reader.caches:
            return None
        self._reader.validate_cache()
        cached = self._reader.cache.get(self._principal_cache_key(token))
        return cached if isinstance(cached, Principal) else None

    def authenticate_api_key(self, key_id: str, token: str) -> Principal | None:
        """Who ``token``, a well-formed token of the API key ``key_id``, is; None if nobody."""
        record = self.auth_record("api_key", key_id)
        if record is None or not tokens.matches(self.secret, token, record.digest):
            return None
        if not record.owner_active:
            return None
        principal = Principal(record.account_id, record.owner_id, record.owner_is_admin, key_id)
        if self._reader.caches:
            self._reader.cache[self._principal_cache_key(token)] = principal
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
        if reader.caches:
            reader.validate_cache()
            cache_key = ("model", kind.name, account_id, resource_id)
            cached = reader.cache.get(cache_key)
            if cached is not None:
                return cached  # type: ignore[no-any-return]
        row = reader.fetch_one(self._get_reads[kind.name], {"id": resource_id, "account_id": account_id})
        if row is None:
            return None
        columns = _PUBLIC_COLUMNS[kind.name]
        item = kind.from_row({c.name: v for c, v in zip(columns, row, strict=True)})
        if reader.caches:
            reader.cache[cache_key] = item
        return item

    def iterate(self, kind: Kind[T], account_id: str, before_id: str | None, batch: int = 100) -> Iterator[T]:
        """The account's resources, newest first, older than ``before_id``, lazily."""
        table = kind.table
        columns = _PUBLIC_COLUMNS[kind.name]
        cursor = before_id
        while True:
            query = select(*columns).where(table.c.account_id == account_id)
            if cursor is not None:
                query = query.where(table.c.id < cursor)
            query = query.order_by(table.c.id.desc()).limit(batch)
            with self.engine.connect() as connection:
                rows = [row._mapping for row in connection.execute(query)]
            for row in rows:
                yield kind.from_row(row)
            if len(rows) < batch:
                return
            cursor = rows[-1]["id"]

    def create(self, kind: Kind[T], account_id: str, values: Mapping[str, Any]) -> tuple[T, str | None]:
        """A new resource of ``kind`` with ``values`` (its columns); its token if it has one."""
        with self.engine.begin() as connection:
            return self._insert(connection, kind, account_id, values)

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

    def create_bot_user(self, account_id: str, name: str, active: bool) -> BotUser:
        return self.create(BOT_USERS, account_id, {"name": name, "active": active})[0]

    def update(self, kind: Kind[T], account_id: str, resource_id: str, values: Mapping[str, Any]) -> T | None:
        stored = dict(values)
        if "acl" in stored:
            stored["acl"] = json.dumps(list(stored["acl"]))
        table = kind.table
        with self.engine.begin() as connection:
            result = connection.execute(
                update(table)
                .where(and_(table.c.id == resource_id, table.c.account_id == account_id))
                .values(**stored)
            )
            if result.rowcount == 0:
                return None
            row = connection.execute(
                select(*_PUBLIC_COLUMNS[kind.name]).where(table.c.id == resource_id)
            ).one()
        return kind.from_row(row._mapping)

    def delete(self, kind: Kind[Any], account_id: str, resource_id: str) -> bool:
        table = kind.table
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(table).where(table.c.id == resource_id, table.c.account_id == account_id)
            )
            if result.rowcount and kind is BOT_USERS:
                # What a bot owned goes with it, so none of its tokens outlive it.
                for owned in (schema.api_keys, schema.credentials):
                    connection.execute(delete(owned).where(owned.c.owner_id == resource_id))
            return bool(result.rowcount)
