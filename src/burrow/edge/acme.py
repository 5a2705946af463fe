"""ACME (RFC 8555): certificates for reserved domains with a ``certificate_management_policy``
(HTTP-01 on the HTTP listener or TLS-ALPN-01 on the HTTPS listener), ordered from
``--acme-directory`` with certbot's ``acme`` library (docs/certificates.md).

The library is synchronous: the worker runs in a thread of its own, never on the edge's
event loop. Every node runs one; a name is ordered by the node holding its lock in the
database, and every node serves what the database holds. Challenges are stored in the
database, so whichever node the CA reaches answers them.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy.b64 import b64encode
from josepy.jwk import JWK, JWKRSA

from burrow.store.acme import DNS_01, HTTP_01, TLS_ALPN_01, AcmeRows, Managed

from .certs import ServerCertificate

log = logging.getLogger("burrow.acme")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # id-pe-acmeIdentifier, RFC 8737
ORDER_ERROR = "ERR_NGROK_90480"  # the CA refused or failed the order: msg says why
LOCK_SECONDS = 300.0  # an order holds its name's lock this long at most
MAX_BACKOFF = datetime.timedelta(days=1)
REFRESH_SECONDS = 2.0  # how often a node loads the certificates the database holds
STALE_FILE_SECONDS = 3600.0
ACME_DIR = "acme"  # <data-dir>/acme/: the issued certificates as files, for ssl to load


@dataclass(frozen=True)
class DnsUpdate:
    """Where DNS-01's TXT records go: RFC 2136 updates to ``server``, signed with TSIG."""

    host: str
    port: int
    zone: str
    key_name: str
    algorithm: str  # e.g. hmac-sha256
    secret: str  # base64
    ttl: int = 60

    def _send(self, record: str, value: str, add: bool) -> None:
        import dns.name
        import dns.query
        import dns.rcode
        import dns.tsigkeyring
        import dns.update

        keyring = dns.tsigkeyring.from_text({self.key_name: (self.algorithm, self.secret)})
        zone = dns.name.from_text(self.zone)
        relative = dns.name.from_text(record).relativize(zone)
        update = dns.update.Update(zone, keyring=keyring, keyname=dns.name.from_text(self.key_name))
        if add:
            update.add(relative, self.ttl, "TXT", f'"{value}"')
        else:
            update.delete(relative, "TXT", f'"{value}"')
        answer = dns.query.tcp(update, self.host, port=self.port, timeout=10)
        if answer.rcode() != dns.rcode.NOERROR:
            code = dns.rcode.to_text(answer.rcode())
            raise OrderFailed(
                f"the DNS server {self.host}:{self.port} refused the update of {record}: {code}"
            )

    def add(self, record: str, value: str) -> None:
        self._send(record, value, True)

    def remove(self, record: str, value: str) -> None:
        self._send(record, value, False)


@dataclass(frozen=True)
class AcmeSettings:
    directory: str
    email: str
    challenge: str = HTTP_01  # or TLS_ALPN_01
    ca_bundle: Path | None = None  # to trust the directory's TLS certificate (pebble in tests)
    check_seconds: float = 30.0  # how often names are looked at
    retry_seconds: float = 60.0  # the first backoff; doubled at each failure, up to a day
    extra: tuple[Managed, ...] = field(default=())  # names besides the reserved domains'
    dns: DnsUpdate | None = None  # for DNS-01 (the wildcard of --domain)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_whole(path: Path, data: bytes) -> None:
    """``path`` holding ``data`` (mode 0600), replaced at once."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def new_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def renews_at(certificate: x509.Certificate) -> datetime.datetime:
    """Two thirds into the certificate's lifetime."""
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return (start + (end - start) * 2 / 3).replace(tzinfo=None, microsecond=0)


def alpn_certificate(name: str, key_authorization: str) -> tuple[str, bytes]:
    """The self-signed TLS-ALPN-01 certificate for ``name`` (RFC 8737): its critical
    acmeIdentifier extension holds the SHA-256 of the key authorization."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # DER: an OCTET STRING of the 32-byte digest.
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


class _AlpnResponse(challenges.KeyAuthorizationChallengeResponse):
    """The (empty) answer to a tls-alpn-01 challenge, which the library does not model."""

    typ = TLS_ALPN_01


class OrderFailed(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class AcmeWorker:
    """Orders, renews and publishes certificates, in a thread of its own."""

    def __init__(
        self,
        rows: AcmeRows,
        settings: AcmeSettings,
        node_id: str,
        data_dir: Path,
        publish: Callable[[dict[str, ServerCertificate]], None],
    ) -> None:
        self.rows = rows
        self.settings = settings
        self.node_id = node_id
        self.directory = data_dir / ACME_DIR
        self.publish = publish  # called from the worker's thread with every issued certificate
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: client.ClientV2 | None = None
        self._published: dict[str, datetime.datetime] = {}
        self._records: list[tuple[str, str]] = []  # DNS-01 TXT records to remove after the order

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="burrow-acme", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        """Look at the names now (a reserved domain changed)."""
        self._wake.set()

    def _run(self) -> None:
        last_round = -float("inf")
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_round >= self.settings.check_seconds or self._wake.is_set():
                    self._wake.clear()
                    last_round = time.monotonic()
                    self.round()
                else:  # what other nodes issued is served within REFRESH_SECONDS
                    self.refresh()
            except Exception:  # the database away, say: try again next round
                log.warning("ACME round failed", exc_info=True)
            self._wake.wait(min(self.settings.check_seconds, REFRESH_SECONDS))

    def round(self) -> None:
        """Publish what the database holds, then order for the names that are due."""
        wanted = [*self.settings.extra, *self.rows.managed_domains()]
        self.rows.forget_except({managed.name for managed in wanted})
        self.refresh()
        for managed in wanted:
            if self._stop.is_set():
                return
            if self._due(managed) and self.rows.lock(
                managed.name, managed.key_type, self.node_id, LOCK_SECONDS
            ):
                try:
                    if self._due(managed):  # another node may have ordered it meanwhile
                        self._provision(managed)
                finally:
                    self.rows.unlock(managed.name, self.node_id)
                self.refresh()

    def refresh(self) -> None:
        """Write the issued certificates as files and hand them to the HTTPS listener."""
        if self.rows.issued_at() == self._published:
            return
        held = self.rows.certificates()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        served = {}
        for name, (chain, key, issued) in held.items():
            # One pair of files per issue, each written whole then renamed: workers sharing the
            # data directory never load a half-written file or a certificate with another's key.
            stem = f"{name}-{issued:%Y%m%dT%H%M%S}"
            cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem"
            _write_whole(key_path, key)
            _write_whole(cert_path, chain.encode())
            served[name] = ServerCertificate(cert_path, key_path, None)
        self._published = {name: issued for name, (_, _, issued) in held.items()}
        self.publish(served)
        self._tidy({path for pair in served.values() for path in (pair.cert_path, pair.key_path)})

    def _tidy(self, current: set[Path]) -> None:
        """Remove the files of certificates replaced over an hour ago (another worker sharing
        the data directory may still load the ones replaced just now)."""
        cutoff = time.time() - STALE_FILE_SECONDS
        for path in self.directory.iterdir():
            try:
                if path not in current and path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass  # another worker removed it first

    def _due(self, managed: Managed) -> bool:
        state = self.rows.state(managed.name)
        if state is None:
            return True
        now = _now()
        if state.job_retries_at is not None and state.job_retries_at > now:
            return False
        if state.certificate_pem is None or state.key_type != managed.key_type:
            return True
        return state.renews_at is None or state.renews_at <= now

    # Ordering ------------------------------------------------------------------------

    def _acme(self) -> client.ClientV2:
        if self._client is not None:
            return self._client

        def make() -> bytes:
            return _key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))

        key = serialization.load_pem_private_key(self.rows.account_key(make), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        verify: Any = str(self.settings.ca_bundle) if self.settings.ca_bundle else True
        net = client.ClientNetwork(JWKRSA(key=key), user_agent="burrow", verify_ssl=verify)
        directory = client.ClientV2.get_directory(self.settings.directory, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(
            email=self.settings.email, terms_of_service_agreed=True
        )
        try:
            acme.new_account(registration)
        except errors.ConflictError as existing:  # this key's account, made before
            net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        self._client = acme
        return acme

    def _provision(self, managed: Managed) -> None:
        started = _now()
        self.rows.started(managed, started)
        log.info(
            "ordering a certificate", extra={"fields": {"name": managed.name, "by": self.settings.challenge}}
        )
        try:
            chain, key_pem = self._order(managed)
        except Exception as problem:
            msg = problem.msg if isinstance(problem, OrderFailed) else f"{type(problem).__name__}: {problem}"
            state = self.rows.state(managed.name)
            failures = state.failures if state is not None else 0
            delay = datetime.timedelta(seconds=self.settings.retry_seconds * 2 ** min(failures, 20))
            retries_at = _now() + min(delay, MAX_BACKOFF)
            self.rows.failed(managed, ORDER_ERROR, msg, retries_at)
            self._client = None  # a fresh directory and nonce next time
            log.warning(
                "certificate order failed",
                extra={"fields": {"name": managed.name, "msg": msg, "retries_at": retries_at.isoformat()}},
            )
            return
        finally:
            self.rows.drop_challenges(managed.name)
            self._remove_records()
        leaf = x509.load_pem_x509_certificate(chain.encode())
        not_after = leaf.not_valid_after_utc.replace(tzinfo=None)
        self.rows.issued(managed, chain, key_pem, not_after, renews_at(leaf))
        log.info(
            "certificate issued", extra={"fields": {"name": managed.name, "not_after": not_after.isoformat()}}
        )

    def _remove_records(self) -> None:
        dns = self.settings.dns
        records, self._records = self._records, []
        for record, value in records:
            try:
                if dns is not None:
                    dns.remove(record, value)
            except Exception:  # left behind: harmless, the next order adds its own
                log.warning("could not remove a DNS-01 record", extra={"fields": {"record": record}})

    def _order(self, managed: Managed) -> tuple[str, bytes]:
        acme = self._acme()
        key_pem = _key_pem(new_key(managed.key_type))
        csr = crypto_util.make_csr(key_pem, [managed.name])  # a wildcard's too: "*.DOMAIN"
        order = acme.new_order(csr)
        account_key = acme.net.key
        assert account_key is not None
        for authorization in order.authorizations:
            if authorization.body.status == messages.STATUS_VALID:
                continue
            self._answer(acme, account_key, authorization, managed.challenge or self.settings.challenge)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=90)
        try:
            order = acme.poll_and_finalize(order, deadline)
        except errors.ValidationError as failed:
            raise OrderFailed(_validation_message(failed)) from None
        except messages.Error as problem:
            raise OrderFailed(f"{problem.typ}: {problem.detail}") from None
        return order.fullchain_pem, key_pem

    def _answer(
        self,
        acme: client.ClientV2,
        account_key: JWK,
        authorization: messages.AuthorizationResource,
        wanted: str,
    ) -> None:
        name = authorization.body.identifier.value
        for body in authorization.body.challenges:
            chall = body.chall
            if wanted == DNS_01 and isinstance(chall, challenges.DNS01) and self.settings.dns is not None:
                response, validation = chall.response_and_validation(account_key)
                record = chall.validation_domain_name(name)
                self.settings.dns.add(record, validation)
                self._records.append((record, validation))
                acme.answer_challenge(body, response)
                return
            if wanted == HTTP_01 and isinstance(chall, challenges.HTTP01):
                response, validation = chall.response_and_validation(account_key)
                self.rows.put_challenge(HTTP_01, name, chall.encode("token"), validation)
                acme.answer_challenge(body, response)
                return
            if wanted == TLS_ALPN_01 and isinstance(chall, challenges.UnrecognizedChallenge):
                if chall.jobj.get("type") != TLS_ALPN_01:
                    continue
                thumbprint = b64encode(account_key.thumbprint(hash_function=hashes.SHA256)).decode()
                key_authorization = f"{chall.jobj['token']}.{thumbprint}"
                cert_pem, alpn_key = alpn_certificate(name, key_authorization)
                self.rows.put_alpn_challenge(name, cert_pem, alpn_key)
                acme.answer_challenge(body, _AlpnResponse(key_authorization=key_authorization))
                return
        raise OrderFailed(f"the CA offered no {wanted} challenge for {name}")


def _validation_message(failed: errors.ValidationError) -> str:
    for authorization in failed.failed_authzrs:
        for body in authorization.body.challenges:
            if body.error is not None:
                return f"{authorization.body.identifier.value}: {body.error.typ}: {body.error.detail}"
    return "the CA did not validate the challenge"
