"""The embedded default's SECRET_KEY file (`var/secret_key`, identity.config.secret_key): made whole
or not at all when several processes start at once, and read only when it is the service's own
private file."""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import time
from pathlib import Path

SECRET_KEY_FILE_WAIT_SECONDS = 2.0  # how long an empty var/secret_key may be another process's write in progress


def make(path: Path) -> None:
    """Write a new key to a temporary file beside `path`, then link it in place.

    The key file appears whole or not at all: workers started together (`gunicorn -w 4 wsgi:app`)
    each race to link theirs, the first wins and every other reads the winner's, never a file
    created but not yet written (which would sign tokens and cookies under an empty key)."""
    fd, temporary = tempfile.mkstemp(prefix=".secret_key.", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:  # another process linked its key first: that one is the key
            pass
    finally:
        os.unlink(temporary)


def read(path: Path) -> str:
    """Read the key file; an empty one is never a key.

    This release never leaves it empty, but an older one made it in two steps (create, then
    write): wait a moment for that write, then refuse rather than run with an empty key."""
    deadline = time.monotonic() + SECRET_KEY_FILE_WAIT_SECONDS
    while not (key := _read_private_file(path).strip()):
        if time.monotonic() >= deadline:
            raise ValueError(f"{path} is empty: delete it (a new key is made) or set SECRET_KEY")
        time.sleep(0.05)
    return key


def _read_private_file(path: Path) -> str:
    """Read `path` only if it is the service's own private file: a regular file (not a symlink, never
    followed), owned by the service's user, readable by nobody else; else a ValueError naming it.

    The data folder may be shared (/tmp: config.make_private_dir leaves an existing folder as it is), so a
    file another user planted there before the first start, or a symlink to one, would be a key
    its planter knows: they could forge every org's SCIM access tokens. The checks are made on the
    open file (fstat), so the file cannot be swapped between the check and the read."""
    refused = (f"{path} is refused as SECRET_KEY: it must be a regular file (not a symlink) of the service's "
               "user, readable by nobody else (chmod 600), as the service makes it; or set SECRET_KEY")
    try:  # O_NONBLOCK: a planted FIFO must not hang the start (no effect on a regular file)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:  # ELOOP: a symlink
        raise ValueError(f"{refused} ({error.strerror})") from error
    with os.fdopen(fd) as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid() or status.st_mode & 0o077:
            raise ValueError(refused)
        return handle.read()
