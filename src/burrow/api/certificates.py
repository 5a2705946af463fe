"""What creating a TLS certificate adds to the generic create: the upload checked (PEM,
key matching the leaf, validity) and the key sealed by the store; it is never shown."""

from __future__ import annotations

from typing import Any

from burrow.domain.certificates import check_upload
from burrow.domain.models import Actor, Principal, TlsCertificate
from burrow.store.store import Store


class Certificates:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, principal: Principal, values: dict[str, Any], actor: Actor | None) -> TlsCertificate:
        upload = check_upload(values["certificate_pem"], values["private_key_pem"])
        return self.store.create_tls_certificate(principal.account_id, values, upload, actor)
