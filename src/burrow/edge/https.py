"""Certificates of the public HTTPS listener, chosen per TLS server name (SNI).

For a name, in order: an extra certificate whose SAN covers it (``--https-extra-cert``), the
operator's certificate if its SAN covers it (``--https-cert``, typically ``*.<domain>``), or
else, for a name some HTTPS endpoint (or label route) serves, a certificate the local CA
issues on the fly (``<data-dir>/issued/``), so local use works without setup. Names nobody
serves get no certificate: the handshake is refused. An endpoint asking for mutual TLS gets a
context of its own that requires a client certificate chaining to its CA.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burrow.domain.tunnels import Registry

from .certs import ServerCertificate, certificate_names, ensure_name_certificate

_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
MAX_CONTEXTS = 10_000


def _covers(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _context(certificate: ServerCertificate, client_ca: bytes | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate.cert_path, certificate.key_path)
    if client_ca is not None:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpsCertificates:
    def __init__(
        self,
        registry: Registry,
        data_dir: Path,
        fallback: ServerCertificate,
        operator: ServerCertificate | None = None,
        extra: list[ServerCertificate] | None = None,
        served: Callable[[str], bool] | None = None,
    ) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self.fallback = fallback
        # (SAN pattern, certificate): the operator's first choices, then their default.
        self._given: list[tuple[str, ServerCertificate]] = []
        for certificate in [*(extra or []), *([operator] if operator else [])]:
            self._given += [(pattern, certificate) for pattern in certificate_names(certificate.cert_path)]
        self._served = served or (lambda name: False)  # label routes and the like
        self._contexts: dict[tuple[str, bytes | None], ssl.SSLContext] = {}
        self._names: dict[ssl.SSLContext, str] = {}

    def context(self) -> ssl.SSLContext:
        """The listener's context: the fallback certificate, and the SNI callback."""
        base = _context(self.fallback, None)
        base.sni_callback = self._choose
        return base

    def name_of(self, ssl_object: Any) -> str | None:
        """The server name a handshake was completed for (None without SNI)."""
        context = getattr(ssl_object, "context", None)
        return self._names.get(context) if isinstance(context, ssl.SSLContext) else None

    def _choose(self, ssl_object: Any, server_name: str | None, base: ssl.SSLContext) -> int | None:
        if server_name is None:
            return None  # no name: requests will not match a Host (421)
        name = server_name.lower().rstrip(".")
        try:
            context = self._context_for(name)
        except (OSError, ValueError, ssl.SSLError):
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        ssl_object.context = context
        return None

    def _context_for(self, name: str) -> ssl.SSLContext | None:
        tunnel = self.registry.https_tunnel(name)
        client_ca = tunnel.policy.mutual_tls_ca if tunnel is not None else None
        key = (name, client_ca)
        context = self._contexts.get(key)
        if context is not None:
            return context
        certificate = next((c for pattern, c in self._given if _covers(pattern, name)), None)
        if certificate is None:
            if (tunnel is None and not self._served(name)) or len(name) > 253 or not _NAME.fullmatch(name):
                return None
            certificate = ensure_name_certificate(self.data_dir, name)
        context = _context(certificate, client_ca)
        if len(self._contexts) >= MAX_CONTEXTS:
            self._contexts.clear()
            self._names.clear()
        self._contexts[key] = context
        self._names[context] = name
        return context
