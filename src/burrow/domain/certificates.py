"""Uploaded TLS certificates: a PEM chain and its private key, checked, and the fields
ngrok's ``/tls_certificates`` shows, read from the leaf certificate.

Pure parsing (``cryptography``), no I/O: the API seals the key before the store sees it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from burrow.domain import errors

MAX_PEM_BYTES = 64 * 1024  # a chain of a few certificates; anything bigger is not one
MAX_CHAIN = 8

_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
_EXTENDED_KEY_USAGES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "server_auth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "client_auth",
    ExtendedKeyUsageOID.CODE_SIGNING: "code_signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "email_protection",
    ExtendedKeyUsageOID.TIME_STAMPING: "time_stamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "ocsp_signing",
}


@dataclass(frozen=True, slots=True)
class CertificateFields:
    """What ngrok shows of a certificate (the leaf of the chain)."""

    subject_common_name: str
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]
    not_before: datetime  # naive UTC, as the store keeps times
    not_after: datetime
    key_usages: tuple[str, ...]
    extended_key_usages: tuple[str, ...]
    private_key_type: str  # "rsa", "ecdsa", "ed25519"
    issuer_common_name: str
    serial_number: str  # hex, as ngrok shows it
    subject_organization: str
    subject_organizational_unit: str
    subject_locality: str
    subject_province: str
    subject_country: str
    fingerprint: str  # SHA-256 of the leaf's DER: what the sealed key is bound to


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _key_type(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "ecdsa"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise errors.CERTIFICATE_KEY_UNSUPPORTED()


def _chain(certificate_pem: str) -> list[x509.Certificate]:
    if len(certificate_pem.encode()) > MAX_PEM_BYTES:
        raise errors.CERTIFICATE_PEM_INVALID(reason=f"longer than {MAX_PEM_BYTES} bytes")
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.encode())
    except ValueError:
        raise errors.CERTIFICATE_PEM_INVALID(
            reason="no PEM-encoded X.509 certificate could be read"
        ) from None
    if len(chain) > MAX_CHAIN:
        raise errors.CERTIFICATE_PEM_INVALID(reason=f"more than {MAX_CHAIN} certificates in the chain")
    return chain


def read_fields(certificate_pem: str) -> CertificateFields:
    """The shown fields of a stored (already checked) chain's leaf."""
    leaf = _chain(certificate_pem)[0]
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(sans.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names, ips = (), ()
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        key_usages = tuple(name for name in _KEY_USAGES if getattr(usage, name))
        if usage.key_agreement:
            key_usages += tuple(name for name in ("encipher_only", "decipher_only") if getattr(usage, name))
    except x509.ExtensionNotFound:
        key_usages = ()
    try:
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        extended_key_usages = tuple(_EXTENDED_KEY_USAGES.get(oid, oid.dotted_string) for oid in extended)
    except x509.ExtensionNotFound:
        extended_key_usages = ()
    subject = leaf.subject
    return CertificateFields(
        subject_common_name=_attribute(subject, NameOID.COMMON_NAME),
        dns_names=dns_names,
        ips=ips,
        not_before=leaf.not_valid_before_utc.replace(tzinfo=None),
        not_after=leaf.not_valid_after_utc.replace(tzinfo=None),
        key_usages=key_usages,
        extended_key_usages=extended_key_usages,
        private_key_type=_key_type(leaf.public_key()),
        issuer_common_name=_attribute(leaf.issuer, NameOID.COMMON_NAME),
        serial_number=format(leaf.serial_number, "x"),
        subject_organization=_attribute(subject, NameOID.ORGANIZATION_NAME),
        subject_organizational_unit=_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        subject_locality=_attribute(subject, NameOID.LOCALITY_NAME),
        subject_province=_attribute(subject, NameOID.STATE_OR_PROVINCE_NAME),
        subject_country=_attribute(subject, NameOID.COUNTRY_NAME),
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


@dataclass(frozen=True, slots=True)
class CheckedUpload:
    """An upload that passed: the chain re-serialised, the key as PKCS#8 PEM, the fields."""

    certificate_pem: str
    private_key_pem: bytes
    fields: CertificateFields


def check_upload(certificate_pem: str, private_key_pem: str, now: datetime | None = None) -> CheckedUpload:
    """Refuse what could not be served: unreadable PEM, a key that is not the leaf's, a
    certificate outside its validity period. Messages never quote the key."""
    chain = _chain(certificate_pem)
    if len(private_key_pem.encode()) > MAX_PEM_BYTES:
        raise errors.PRIVATE_KEY_PEM_INVALID()
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise errors.PRIVATE_KEY_PEM_INVALID() from None
    _key_type(key)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    leaf = chain[0]
    mine = key.public_key().public_bytes(serialization.Encoding.DER, public)
    if mine != leaf.public_key().public_bytes(serialization.Encoding.DER, public):
        raise errors.CERTIFICATE_KEY_MISMATCH()
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    if leaf.not_valid_after_utc <= moment:
        raise errors.CERTIFICATE_EXPIRED(not_after=leaf.not_valid_after_utc.isoformat())
    if leaf.not_valid_before_utc > moment:
        raise errors.CERTIFICATE_NOT_YET_VALID(not_before=leaf.not_valid_before_utc.isoformat())
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CheckedUpload(pem, key_pem, read_fields(pem))


def name_covered(pattern: str, name: str) -> bool:
    """Whether a SAN DNS name (``*.example.com`` covering one label) covers ``name`` (lowercase)."""
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def check_covers(fields: CertificateFields, certificate_id: str, domain: str) -> None:
    """Raise ngrok's 400 unless the certificate's SAN DNS names cover ``domain``."""
    if not any(name_covered(pattern, domain) for pattern in fields.dns_names):
        names = ", ".join(fields.dns_names) or "none"
        raise errors.CERTIFICATE_NOT_COVERING(certificate_id=certificate_id, domain=domain, names=names)
