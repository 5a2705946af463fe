"""Uploaded certificates served for reserved domains (a reserved domain's ``certificate_id``).

Every node looks every :data:`REFRESH_SECONDS` which reserved domains chose an uploaded
``/tls_certificates`` row, writes each chosen certificate and its key (unsealed with the
server secret) under ``<data-dir>/uploaded/`` (keys mode 0600, each file written whole then
renamed) and hands the pairs to the HTTPS listener, which serves them by SNI for their
domain from then on; new connections get the change, open ones keep theirs. A certificate's
PEM is permanent (ERR_NGROK_90447), so the domain -> certificate id map says what changed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from burrow.store.store import Store

from .certs import ServerCertificate

log = logging.getLogger("burrow.edge.uploaded")

REFRESH_SECONDS = 2.0
UPLOADED_DIR = "uploaded"


def _write_whole(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


class UploadedCertificates:
    """Keeps the HTTPS listener's uploaded certificates in step with the database."""

    def __init__(
        self, store: Store, data_dir: Path, publish: Callable[[dict[str, ServerCertificate]], None]
    ) -> None:
        self.store = store
        self.directory = data_dir / UPLOADED_DIR
        self.publish = publish  # called on the event loop's thread
        self._chosen: dict[str, tuple[str, str]] | None = None
        self._pairs: dict[str, ServerCertificate] = {}  # certificate id -> its files

    def load(self) -> dict[str, ServerCertificate] | None:
        """What to serve now (domain -> files), or None if nothing changed. Blocking."""
        chosen = self.store.certificate_users()
        if chosen == self._chosen:
            return None
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        served: dict[str, ServerCertificate] = {}
        pairs: dict[str, ServerCertificate] = {}
        for domain, (account_id, certificate_id) in chosen.items():
            pair = pairs.get(certificate_id) or self._pairs.get(certificate_id)
            if pair is None:
                held = self.store.tls_certificate_key(account_id, certificate_id)
                if held is None:  # deleted meanwhile: the next look sees the domain without it
                    continue
                chain, key = held
                cert_path = self.directory / f"{certificate_id}.pem"
                pair = ServerCertificate(cert_path, self.directory / f"{certificate_id}-key.pem", None)
                _write_whole(pair.key_path, key)
                _write_whole(pair.cert_path, chain.encode())
            pairs[certificate_id] = pair
            served[domain] = pair
        for certificate_id, pair in self._pairs.items():
            if certificate_id not in pairs:
                for path in (pair.cert_path, pair.key_path):
                    path.unlink(missing_ok=True)
        self._chosen, self._pairs = chosen, pairs
        return served

    async def run(self) -> None:
        while True:
            try:
                served = await asyncio.to_thread(self.load)
                if served is not None:
                    self.publish(served)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away, say: try again
                log.warning("loading uploaded certificates failed", exc_info=True)
            await asyncio.sleep(REFRESH_SECONDS)
