"""Who a write made on this machine's command line is recorded as, in the audit trail."""

from __future__ import annotations

import getpass
import os

from burrow.domain.ids import new_operation_id
from burrow.domain.models import Actor


def local_operator() -> Actor:
    """The local user, as ``cli:<name>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Actor(f"cli:{user}"[:64], "", "local", new_operation_id())
