"""The agent listener's TLS: an operator's certificate, or a local CA Burrow makes itself.

On first start without ``--tls-cert``/``--tls-key``, Burrow creates a CA (``ca.pem``,
``ca-key.pem``) in the data directory and a server certificate it signs (``server.pem``,
``server-key.pem``) for localhost, 127.0.0.1, ::1 and the configured names. Agents must
trust ``ca.pem`` (the SDK's ``ca_cert``/``root_cas``, the agent's ``root_cas``). The
server certificate is made again when the names it must carry change. Private keys are
written with mode 0600.

Nodes on one database share one CA (:func:`share_ca`): the first node's, kept in the
database with its private key encrypted under the cluster's secret; each node issues its
own server certificate from it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from burrow.store import identity
from burrow.store.store import Store

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
SERVER_FILE = "server.pem"
SERVER_KEY_FILE = "server-key.pem"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
ISSUED_DIR = "issued"  # certificates for public HTTPS names, one pair per name


@dataclass(frozen=True)
class ServerCertificate:
    cert_path: Path
    key_path: Path
    ca_path: Path | None  # None when the operator gave their own certificate


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _subject_names(names: Iterable[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _load_or_make_ca(data_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_path, key_path = data_dir / CA_FILE, data_dir / CA_KEY_FILE
    if ca_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(ca_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Burrow local CA")])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, _key_pem(key))
    ca_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return certificate, key


def share_ca(store: Store, data_dir: Path) -> bool:
    """Make the data directory's CA the cluster's; whether it was replaced by the cluster's.

    The first node stores its CA (made now if it has none) in the database; every other
    node installs that one, dropping certificates its own CA had signed.
    """
    secret = store.secret
    held = {
        name: value
        for name in (identity.CA_CERT, identity.CA_KEY_SEALED)
        if (value := identity.get(store.engine, name)) is not None
    }
    if not held:
        certificate, key = _load_or_make_ca(data_dir)
        mine = {
            identity.CA_CERT: certificate.public_bytes(serialization.Encoding.PEM).decode(),
            identity.CA_KEY_SEALED: identity.seal(secret, identity.CA_KEY_SEALED, _key_pem(key)),
        }
        held = identity.put_once(store.engine, mine)
        if held == mine:
            return False
    if set(held) != {identity.CA_CERT, identity.CA_KEY_SEALED}:
        raise identity.IdentityError("the database holds an incomplete cluster CA")
    cert_pem = held[identity.CA_CERT].encode()
    ca_path = data_dir / CA_FILE
    if ca_path.exists() and ca_path.read_bytes() == cert_pem and (data_dir / CA_KEY_FILE).exists():
        return False
    key_pem = identity.unseal(secret, identity.CA_KEY_SEALED, held[identity.CA_KEY_SEALED])
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_private(data_dir / CA_KEY_FILE, key_pem)
    ca_path.write_bytes(cert_pem)
    # Whatever this node's former CA signed would not verify against the cluster's.
    for path in (data_dir / SERVER_FILE, data_dir / SERVER_KEY_FILE):
        path.unlink(missing_ok=True)
    issued = data_dir / ISSUED_DIR
    if issued.is_dir():
        for path in issued.iterdir():
            path.unlink()
    return True


def _current_names(path: Path) -> set[str] | None:
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
        return None
    if certificate.not_valid_after_utc < _now() + datetime.timedelta(days=30):
        return None
    return {str(n.value) for n in names}


def ensure_server_certificate(data_dir: Path, names: Iterable[str] = ()) -> ServerCertificate:
    """The local CA and a server certificate for ``names`` (plus the defaults), made if needed."""
    wanted = list(dict.fromkeys([*DEFAULT_NAMES, *names]))
    cert_path, key_path = data_dir / SERVER_FILE, data_dir / SERVER_KEY_FILE
    ca_certificate, ca_key = _load_or_make_ca(data_dir)
    wanted_values = {str(n.value) for n in _subject_names(wanted)}
    if _current_names(cert_path) == wanted_values and key_path.exists():
        return ServerCertificate(cert_path, key_path, data_dir / CA_FILE)
    _issue(wanted, ca_certificate, ca_key, cert_path, key_path)
    return ServerCertificate(cert_path, key_path, data_dir / CA_FILE)


def ensure_name_certificate(data_dir: Path, name: str) -> ServerCertificate:
    """A certificate for one public HTTPS name, signed by the local CA (made once, then reused)."""
    directory = data_dir / ISSUED_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    if _current_names(cert_path) == {name} and key_path.exists():
        return ServerCertificate(cert_path, key_path, data_dir / CA_FILE)
    ca_certificate, ca_key = _load_or_make_ca(data_dir)
    _issue([name], ca_certificate, ca_key, cert_path, key_path)
    return ServerCertificate(cert_path, key_path, data_dir / CA_FILE)


def certificate_names(cert_path: Path) -> list[str]:
    """The DNS names a PEM certificate's SAN covers (wildcards as written, e.g. ``*.example.com``)."""
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in names.get_values_for_type(x509.DNSName)]


def _issue(
    wanted: list[str],
    ca_certificate: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    cert_path: Path,
    key_path: Path,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wanted[0])]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_subject_names(wanted)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def server_context(certificate: ServerCertificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert_path, certificate.key_path)
    return context


RELAY_FILE = "relay.pem"
RELAY_KEY_FILE = "relay-key.pem"
RELAY_IDENTITY = "urn:burrow:relay-node"  # no hostname: no public name certificate can carry it


def ensure_relay_certificate(data_dir: Path) -> ServerCertificate:
    """The certificate nodes present to each other on the relay (both ends), from the CA.

    Its only name is :data:`RELAY_IDENTITY`, a URI, which the relay requires of its peer,
    so a certificate the CA issued for a public HTTPS name cannot pass for a node's.
    """
    cert_path, key_path = data_dir / RELAY_FILE, data_dir / RELAY_KEY_FILE
    ca_certificate, ca_key = _load_or_make_ca(data_dir)
    if key_path.exists() and cert_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if (
            current.issuer == ca_certificate.subject
            and current.not_valid_after_utc > _now() + datetime.timedelta(days=30)
        ):
            return ServerCertificate(cert_path, key_path, data_dir / CA_FILE)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Burrow relay node")]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(RELAY_IDENTITY)]), critical=False
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return ServerCertificate(cert_path, key_path, data_dir / CA_FILE)


def relay_contexts(data_dir: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for the relay: mutual TLS, each end trusting only the CA."""
    certificate = ensure_relay_certificate(data_dir)
    assert certificate.ca_path is not None
    contexts = []
    for purpose in (ssl.Purpose.CLIENT_AUTH, ssl.Purpose.SERVER_AUTH):
        context = ssl.SSLContext(
            ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # the peer's name is a URI, checked by relay_peer_ok
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certificate.ca_path)
        context.load_cert_chain(certificate.cert_path, certificate.key_path)
        contexts.append(context)
    return contexts[0], contexts[1]


def relay_peer_ok(peer: object) -> bool:
    """Whether a verified peer certificate (``getpeercert()``) is a relay node's."""
    if not isinstance(peer, dict):
        return False
    return ("URI", RELAY_IDENTITY) in peer.get("subjectAltName", ())
