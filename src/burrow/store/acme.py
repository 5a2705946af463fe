"""ACME's rows: the names to manage, each name's certificate and order state, the order lock,
and the challenges any node answers (docs/certificates.md, migration 0010).

Private keys (issued certificates', TLS-ALPN-01 challenge certificates') are sealed under the
server secret and bound to their name, as the cluster CA's key is; the ACME account key is
kept in ``cluster_identity``, sealed the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from burrow.domain import certificates, ids
from burrow.store import identity, schema
from burrow.store.store import _key_binding, utcnow

ACCOUNT_KEY = "acme_account_key_sealed"  # in cluster_identity
HTTP_01 = "http-01"
DNS_01 = "dns-01"
TLS_ALPN_01 = "tls-alpn-01"
CHALLENGE_TTL = timedelta(minutes=10)  # older challenges are never answered


@dataclass(frozen=True)
class Managed:
    """A name to hold a certificate for: a reserved domain's, or the server's own (``domain_id``
    None: the wildcard of --domain)."""

    name: str
    key_type: str  # "ecdsa" or "rsa"
    domain_id: str | None = None
    account_id: str | None = None
    challenge: str | None = None  # None: the server's --acme-challenge; "dns-01" for the wildcard


@dataclass(frozen=True)
class State:
    name: str
    key_type: str
    certificate_pem: str | None
    not_after: datetime | None
    renews_at: datetime | None
    failures: int
    job_started_at: datetime | None
    job_error_code: str | None
    job_msg: str | None
    job_retries_at: datetime | None


def _binding(kind: str, name: str) -> str:
    return f"acme {kind} {name}"


class AcmeRows:
    def __init__(self, engine: Engine, secret: bytes) -> None:
        self.engine = engine
        self.secret = secret

    # What to manage --------------------------------------------------------------------

    def managed_domains(self) -> list[Managed]:
        table = schema.reserved_domains
        query = select(
            table.c.id, table.c.account_id, table.c.domain, table.c.certificate_management_policy
        ).where(table.c.certificate_management_policy.is_not(None))
        found = []
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                policy = row.certificate_management_policy
                if isinstance(policy, str):
                    policy = json.loads(policy)
                if not policy:
                    continue
                key_type = policy.get("private_key_type", "ecdsa")
                found.append(Managed(row.domain, key_type, row.id, row.account_id))
        return found

    def state(self, name: str) -> State | None:
        table = schema.acme_certificates
        columns = [c for c in table.c if c.name not in ("private_key_sealed", "locked_by", "locked_until")]
        with self.engine.connect() as connection:
            row = connection.execute(select(*columns).where(table.c.name == name)).first()
        if row is None:
            return None
        return State(
            row.name,
            row.key_type,
            row.certificate_pem,
            row.not_after,
            row.renews_at,
            row.failures,
            row.job_started_at,
            row.job_error_code,
            row.job_msg,
            row.job_retries_at,
        )

    # The order lock ------------------------------------------------------------------

    def lock(self, name: str, key_type: str, node: str, seconds: float) -> bool:
        """Take ``name``'s order lock for ``seconds`` (the row made if new); False if another
        node holds it and its time has not run out."""
        table = schema.acme_certificates
        now = utcnow()
        until = now + timedelta(seconds=seconds)
        with self.engine.begin() as connection:
            try:
                connection.execute(
                    insert(table).values(
                        name=name, key_type=key_type, failures=0, locked_by=node, locked_until=until
                    )
                )
                return True
            except IntegrityError:
                pass
        with self.engine.begin() as connection:
            taken = connection.execute(
                update(table)
                .where(
                    table.c.name == name,
                    or_(
                        table.c.locked_until.is_(None), table.c.locked_until < now, table.c.locked_by == node
                    ),
                )
                .values(locked_by=node, locked_until=until)
            )
            return bool(taken.rowcount)

    def unlock(self, name: str, node: str) -> None:
        table = schema.acme_certificates
        with self.engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.name == name, table.c.locked_by == node)
                .values(locked_by=None, locked_until=None)
            )

    # Outcomes --------------------------------------------------------------------------

    def started(self, managed: Managed, at: datetime) -> None:
        """A provisioning job began (shown in the status until it ends)."""
        table = schema.acme_certificates
        with self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.name == managed.name).values(job_started_at=at))
        self._show(managed)

    def failed(self, managed: Managed, error_code: str, msg: str, retries_at: datetime) -> None:
        table = schema.acme_certificates
        with self.engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.name == managed.name)
                .values(
                    failures=table.c.failures + 1,
                    job_error_code=error_code,
                    job_msg=msg[:2000],
                    job_retries_at=retries_at,
                )
            )
        self._show(managed)

    def issued(
        self, managed: Managed, chain_pem: str, key_pem: bytes, not_after: datetime, renews_at: datetime
    ) -> None:
        """Store a new certificate (every node serves it from here); for a reserved domain,
        also as a /tls_certificates row of its account, replacing the one issued before."""
        table = schema.acme_certificates
        sealed = identity.seal(self.secret, _binding("certificate", managed.name), key_pem)
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.name == managed.name)
                .values(
                    key_type=managed.key_type,
                    certificate_pem=chain_pem,
                    private_key_sealed=sealed,
                    not_after=not_after,
                    renews_at=renews_at,
                    issued_at=now,
                    failures=0,
                    job_started_at=None,
                    job_error_code=None,
                    job_msg=None,
                    job_retries_at=None,
                )
            )
            if managed.domain_id is not None and managed.account_id is not None:
                domains = schema.reserved_domains
                certificate_id = ids.new_id(ids.TLS_CERTIFICATE)
                fields = certificates.read_fields(chain_pem)
                connection.execute(
                    insert(schema.tls_certificates).values(
                        id=certificate_id,
                        account_id=managed.account_id,
                        description=f"ACME certificate for {managed.name}",
                        metadata="",
                        certificate_pem=chain_pem,
                        # Sealed as an upload's key is, so Store.tls_certificate_key opens it.
                        private_key_sealed=identity.seal(self.secret, _key_binding(fields), key_pem),
                        created_at=now,
                    )
                )
                previous = connection.execute(
                    select(domains.c.managed_certificate_id).where(domains.c.id == managed.domain_id)
                ).scalar()
                connection.execute(
                    update(domains)
                    .where(domains.c.id == managed.domain_id)
                    .values(managed_certificate_id=certificate_id)
                )
                if previous:
                    connection.execute(
                        delete(schema.tls_certificates).where(schema.tls_certificates.c.id == previous)
                    )
        self._show(managed)

    def _show(self, managed: Managed) -> None:
        """The reserved domain's certificate_management_status, from the name's row."""
        if managed.domain_id is None:
            return
        state = self.state(managed.name)
        if state is None:
            return
        job: dict[str, Any] | None = None
        if state.job_started_at is not None:
            job = {
                "error_code": state.job_error_code,
                "msg": state.job_msg,
                "started_at": _stamp(state.job_started_at),
                "retries_at": _stamp(state.job_retries_at),
            }
        status = {"renews_at": _stamp(state.renews_at), "provisioning_job": job}
        domains = schema.reserved_domains
        with self.engine.begin() as connection:
            connection.execute(
                update(domains)
                .where(domains.c.id == managed.domain_id)
                .values(certificate_management_status=status)
            )

    def forget_except(self, names: set[str]) -> None:
        """Drop the rows (and so stop serving the certificates) of names no longer managed:
        a reserved domain deleted or its policy turned off."""
        table = schema.acme_certificates
        with self.engine.begin() as connection:
            held = [row.name for row in connection.execute(select(table.c.name))]
            gone = [name for name in held if name not in names]
            if gone:  # not while a node orders: the name may be newer than the caller's list
                free = or_(table.c.locked_until.is_(None), table.c.locked_until < utcnow())
                connection.execute(delete(table).where(table.c.name.in_(gone), free))

    # Serving -------------------------------------------------------------------------

    def issued_at(self) -> dict[str, datetime]:
        """When each issued certificate was stored: whether anything changed, cheaply."""
        table = schema.acme_certificates
        query = select(table.c.name, table.c.issued_at).where(table.c.certificate_pem.is_not(None))
        with self.engine.connect() as connection:
            return {row.name: row.issued_at for row in connection.execute(query)}

    def certificates(self) -> dict[str, tuple[str, bytes, datetime]]:
        """Every issued certificate: name -> (chain PEM, private key PEM, issued at)."""
        table = schema.acme_certificates
        query = select(table.c.name, table.c.certificate_pem, table.c.private_key_sealed, table.c.issued_at)
        found = {}
        with self.engine.connect() as connection:
            rows = list(connection.execute(query.where(table.c.certificate_pem.is_not(None))))
        for row in rows:
            key = identity.unseal(self.secret, _binding("certificate", row.name), row.private_key_sealed)
            found[row.name] = (row.certificate_pem, key, row.issued_at)
        return found

    # Challenges ----------------------------------------------------------------------

    def put_challenge(self, kind: str, name: str, token: str, content: str) -> None:
        table = schema.acme_challenges
        with self.engine.begin() as connection:
            connection.execute(
                delete(table).where(table.c.kind == kind, table.c.name == name, table.c.token == token)
            )
            connection.execute(
                insert(table).values(kind=kind, name=name, token=token, content=content, created_at=utcnow())
            )

    def put_alpn_challenge(self, name: str, cert_pem: str, key_pem: bytes) -> None:
        sealed = identity.seal(self.secret, _binding("tls-alpn-01", name), key_pem)
        self.put_challenge(TLS_ALPN_01, name, "", json.dumps({"cert": cert_pem, "key": sealed}))

    def drop_challenges(self, name: str) -> None:
        table = schema.acme_challenges
        with self.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.name == name))

    def _challenge(self, kind: str, name: str, token: str) -> str | None:
        table = schema.acme_challenges
        with self.engine.connect() as connection:
            return connection.execute(
                select(table.c.content).where(
                    and_(
                        table.c.kind == kind,
                        table.c.name == name,
                        table.c.token == token,
                        table.c.created_at > utcnow() - CHALLENGE_TTL,
                    )
                )
            ).scalar()

    def http_challenge(self, name: str, token: str) -> str | None:
        """The key authorization to answer at /.well-known/acme-challenge/TOKEN for ``name``."""
        return self._challenge(HTTP_01, name, token)

    def alpn_challenge(self, name: str) -> tuple[str, bytes] | None:
        """The TLS-ALPN-01 certificate and key (PEM) to present for ``name``, if one is pending."""
        content = self._challenge(TLS_ALPN_01, name, "")
        if content is None:
            return None
        held = json.loads(content)
        return held["cert"], identity.unseal(self.secret, _binding("tls-alpn-01", name), held["key"])

    # The account key -----------------------------------------------------------------

    def account_key(self, make: Any) -> bytes:
        """The cluster's ACME account key (PEM), ``make()`` giving one the first time."""
        held = identity.get(self.engine, ACCOUNT_KEY)
        if held is None:
            mine = identity.seal(self.secret, ACCOUNT_KEY, make())
            held = identity.put_once(self.engine, {ACCOUNT_KEY: mine})[ACCOUNT_KEY]
        return identity.unseal(self.secret, ACCOUNT_KEY, held)


def _stamp(value: datetime | None) -> str | None:
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"
