"""The data directory: private modes, and the locks that keep concurrent processes apart.

The directory holds the SQLite database, the server secret and the CA's key, so it is
0700 and its database files 0600. Setting up (migrating, writing the secret) happens
under an exclusive ``fcntl.flock`` on ``setup.lock``, so concurrent ``burrow init`` and
``burrow serve`` on one new directory take turns. ``burrow serve`` on SQLite holds
``serve.lock`` for its life: a second server on the same directory would see only its
own tunnels, so it is refused (many servers share one PostgreSQL database instead; the
workers of ``burrow serve --workers`` share their parent's lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SETUP_LOCK = "setup.lock"
SERVE_LOCK = "serve.lock"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class AlreadyServing(Exception):
    """Another ``burrow serve`` holds the data directory."""


def prepare(data_dir: Path) -> None:
    """Create ``data_dir`` 0700, or tighten it to 0700 if it exists and is ours."""
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tighten(data_dir, PRIVATE_DIR)


def tighten(path: Path, mode: int) -> None:
    """Take group and other permissions away from ``path`` if it is ours (else leave it)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    if status.st_uid == os.getuid() and stat.S_IMODE(status.st_mode) & 0o077:
        path.chmod(stat.S_IMODE(status.st_mode) & mode)


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files created meanwhile get no group or other permissions (umask 077)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _open_lock(path: Path) -> IO[bytes]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    return os.fdopen(descriptor, "r+b")


@contextlib.contextmanager
def setup_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's setup lock (waiting for it) while the block runs."""
    with _open_lock(data_dir / SETUP_LOCK) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def hold_serve_lock(data_dir: Path) -> IO[bytes]:
    """The serve lock, held until the returned file is closed or the process ends.

    Raises :class:`AlreadyServing` at once if another process holds it.
    """
    prepare(data_dir)
    handle = _open_lock(data_dir / SERVE_LOCK)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise AlreadyServing(str(data_dir)) from None
    return handle


SSH_HOST_KEY = "ssh_host_ed25519_key"


def ssh_host_key(data_dir: Path) -> bytes:
    """The SSH gateway's host key (OpenSSH private key format), made on first use and kept
    in the data directory (0600), so that clients' known_hosts entries stay valid across
    restarts. Made under the setup lock: concurrent servers on one directory share one key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = data_dir / SSH_HOST_KEY
    prepare(data_dir)
    with private_files(), setup_lock(data_dir):
        if not path.exists():
            key = ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            partial = path.with_suffix(".partial")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
            with os.fdopen(descriptor, "wb") as file:
                file.write(key)
                file.flush()
                os.fsync(file.fileno())
            partial.replace(path)
        tighten(path, PRIVATE_FILE)
        return path.read_bytes()
