"""The state file's neighbours on disk, kept private: the state database, its WAL and
shared-memory files, its lock, and the quarantine file all hold people's activity, so
they are created readable by their owner only (0600). SQLite gives the WAL and -shm files
the mode of the database file, so creating the database 0600 covers them.

`open_private` is for any other file of that kind (the quarantine): `open()` with the
mode bits set at creation, not after.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)
PRIVATE = 0o600


def _opener(path: str, flags: int) -> int:
    return os.open(path, flags, PRIVATE)


def open_private(path: str | Path, mode: str = "a", **options: Any) -> IO[Any]:
    """`open(path, mode)`, a file it creates being 0600 (the umask can only remove bits);
    an existing file readable by others is narrowed to 0600."""
    file = open(path, mode, opener=_opener, **options)  # noqa: SIM115 - the caller closes it
    restrict(path)
    return file


def create_private(path: str | Path) -> None:
    """Create `path` empty and 0600 when it does not exist; narrow it when it does."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE))
    except FileExistsError:
        restrict(path)


def restrict(path: str | Path) -> None:
    """Take group and other permissions off an existing file of ours (one created 0644
    by an earlier version); a file we cannot change is left as it is."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            os.chmod(path, stat.S_IMODE(mode) & ~0o077)
            log.info("%s was readable by others: narrowed to owner-only", path)
    except OSError:
        pass
