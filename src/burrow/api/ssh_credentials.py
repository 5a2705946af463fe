"""What creating an SSH credential adds to the generic create: the public key parsed
strictly (domain/ssh_keys.py), stored in one form with its fingerprint, and refused when
another SSH credential, in any account, holds the same key."""

from __future__ import annotations

from typing import Any

from burrow.domain import errors, ssh_keys
from burrow.domain.models import Actor, Principal, SshCredential
from burrow.store.store import SSH_CREDENTIALS, Store, Taken


class SshCredentials:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, principal: Principal, values: dict[str, Any], actor: Actor | None) -> SshCredential:
        key = ssh_keys.parse(values["public_key"])
        row = {**values, "public_key": key.text, "fingerprint": key.fingerprint}
        try:
            item: SshCredential = self.store.create(SSH_CREDENTIALS, principal.account_id, row, actor)[0]
        except Taken:
            raise errors.SSH_PUBLIC_KEY_TAKEN() from None
        return item
