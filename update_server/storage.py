"""The server's disk failing under a write: full, or read-only.

A write that fails because the disk, a quota or the process's file-size
limit is full, or because a directory is read-only, says something about the
server's state, not about a bug: the client is told (507 or 503) and the
operation is undone by its writer (staged bytes removed, the published
repository switched back). One classification for every writer: uploads,
publication, and the boundary of the app.
"""

from __future__ import annotations

import errno
from typing import Literal

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def storage_failure(exc: BaseException) -> Literal["full", "read-only"] | None:
    """``full`` or ``read-only`` if ``exc`` is a write refused by the disk, else None."""
    if isinstance(exc, OSError):
        if exc.errno in FULL_ERRNOS:
            return "full"
        if exc.errno in READ_ONLY_ERRNOS:
            return "read-only"
    return None


def disk_refusal(exc: BaseException) -> OSError | None:
    """The write the disk refused behind ``exc`` (its causes followed), if there is one.

    A signer whose usage log cannot be written, say, fails with its own
    error: what it means for the client is the full disk underneath.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and storage_failure(current) is not None:
            return current
        current = current.__cause__ or current.__context__
    return None
