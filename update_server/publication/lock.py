"""One writer of the published repository at a time, across gunicorn workers.

Publication, renewal and import all rewrite snapshot and timestamp, so they
take an exclusive ``flock`` on ``<data-dir>/publication.lock``. ``flock``
locks belong to an open file description, so two threads of one process
(a request and the renewal thread) exclude each other too, and the kernel
drops the lock when a holder dies: a crashed worker never leaves it held.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from update_server.publication.errors import BusyError

LOCK_FILE = "publication.lock"
POLL_SECONDS = 0.05


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_FILE


@contextmanager
def publication_lock(data_dir: Path, *, timeout: float = 60.0) -> Iterator[None]:
    """Hold the lock for the block; wait up to ``timeout`` seconds (0: do not wait).

    Raises ``BusyError`` if another writer keeps it longer.
    """
    fd = os.open(lock_path(data_dir), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, timeout)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BusyError(
                    "busy", "another publication or renewal is in progress; try again shortly"
                ) from None
            time.sleep(POLL_SECONDS)
        else:
            return
