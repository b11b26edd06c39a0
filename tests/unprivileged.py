"""The server runs unprivileged in the tests too, when the tests run as root (R6).

``fwserver serve`` refuses root (``cli_serve`` U1), and CI runs the suite
as root on a fresh machine. So whoever starts a real server as root runs it
as ``USER`` (``nobody``, on every Debian) through ``setpriv``, which changes
the user and groups and nothing else (the environment, with the test run's
``PYTHONPATH`` and datefudge's clock, is kept):

- ``hand_over(data_dir)`` makes the data directory that user's, as an
  operator's ``chown -R fwupdate`` would, and lets that user reach it
  (search permission on each directory above it, up to the temporary
  directory: pytest makes its own private).
- ``served(data_dir)`` is ``hand_over`` for the duration of a block, with
  the directory moved out of pytest's private temporary tree meanwhile (a
  symbolic link left in its place, for the tests): every pytest session
  that starts takes the search permission off that tree's root again, and
  the server must reach its files all along.
- ``as_server_user(argv)`` is ``argv`` run as that user.
- ``invoke_fwserver(argv)`` runs an ``fwserver`` command in this process as
  the owner of its ``--data-dir`` (its effective user and group switched for
  the command, then back): the tests run their commands on the server's host
  as the deployment says operators do, as the server's user, so nothing they
  write (the audit head, its lock, an imported repository's files and
  directories) is root's where the server must write next. The command keeps
  root's permission to read and search (CAP_DAC_READ_SEARCH, this thread
  only): it reads the test's own files (an offline repository in root's
  temporary directory, the interpreter's standard library wherever it is
  installed) as the operator reads theirs; it writes as the server's user.
- ``pretend_unprivileged`` is for in-process tests of ``fwserver serve``'s
  other rules: its effective user id reads as ``USER``'s.

Not root: everything runs as the current user, unchanged. The benchmarks
(``benchmarks.server_procs``) start their servers the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from click.testing import CliRunner, Result

from update_server import cli

if TYPE_CHECKING:
    import pytest

USER = "nobody"
REPO_ROOT = Path(__file__).resolve().parents[1]


class UnprivilegedError(RuntimeError):
    """The server cannot be run as ``USER`` here; the message says why."""


def server_user() -> pwd.struct_passwd | None:
    """The user a server started by this process runs as, or None: this process's own."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        raise UnprivilegedError(
            f"running as root, and there is no {USER} user to run the server as"
        ) from None


def as_server_user(argv: list[str], *, read_everywhere: bool = False) -> list[str]:
    """``argv`` as ``server_user()`` runs it (unchanged when not root).

    ``read_everywhere``: it and every program it starts keep one capability,
    reading and searching any directory (CAP_DAC_READ_SEARCH, ambient), and
    nothing else of root's. For a shell that runs the venv's scripts: their
    interpreter may live under root's home (pyenv on the CI machines), which
    a script's ``#!`` line cannot reach as another user.
    """
    user = server_user()
    if user is None:
        return argv
    keep = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        *(keep if read_everywhere else []),
        "--",
        *argv,
    ]


def hand_over(data_dir: Path) -> None:
    """Make ``data_dir`` (and everything in it) the server user's, and reachable by it."""
    user = server_user()
    if user is None:
        return
    _reachable(data_dir)
    _require_reachable(REPO_ROOT)
    for path in (data_dir, *data_dir.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def invoke_fwserver(argv: Sequence[str]) -> Result:
    """``fwserver ARGV`` in this process, as the owner of the ``--data-dir`` it names."""
    data_dir = Path(argv[list(argv).index("--data-dir") + 1])
    with owner_of(data_dir):
        return CliRunner().invoke(cli.main, list(argv))


@contextlib.contextmanager
def owner_of(data_dir: Path) -> Iterator[None]:
    """Act as the owner of ``data_dir`` in the block (root, and it is another user's)."""
    owner = data_dir.stat().st_uid if data_dir.exists() else 0
    if os.geteuid() != 0 or owner == 0:
        yield
        return
    user = pwd.getpwuid(owner)
    gid, groups = os.getegid(), os.getgroups()
    os.setgroups([])
    os.setegid(user.pw_gid)
    os.seteuid(user.pw_uid)  # root's capabilities leave the effective set, stay permitted
    try:
        _raise_capability(CAP_DAC_READ_SEARCH)
        yield
    finally:
        os.seteuid(0)
        os.setegid(gid)
        os.setgroups(groups)


#: linux/capability.h
CAP_DAC_READ_SEARCH = 2
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _raise_capability(capability: int) -> None:
    """Add a permitted ``capability`` to this thread's effective set (capget, capset)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[capability // 32].effective |= 1 << (capability % 32)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


#: served(): original path -> (where it is served from, how many blocks use it)
_SERVED: dict[Path, tuple[Path, int]] = {}
_SERVING = threading.Lock()


@contextlib.contextmanager
def served(data_dir: Path) -> Iterator[Path]:
    """The path the server user reaches ``data_dir`` by, for the block (nested blocks share)."""
    if server_user() is None:
        yield data_dir
        return
    with _SERVING:
        if data_dir in _SERVED:
            target, count = _SERVED[data_dir]
        else:
            home = Path(tempfile.mkdtemp(prefix="fwtest-served-", dir="/tmp"))
            home.chmod(0o711)  # enter, not list
            target, count = home / data_dir.name, 0
            data_dir.rename(target)
            data_dir.symlink_to(target, target_is_directory=True)
            hand_over(target)
        _SERVED[data_dir] = (target, count + 1)
    try:
        yield target
    finally:
        with _SERVING:
            target, count = _SERVED.pop(data_dir)
            if count > 1:
                _SERVED[data_dir] = (target, count - 1)
            else:
                data_dir.unlink()
                target.rename(data_dir)
                target.parent.rmdir()


def pretend_unprivileged(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``fwserver serve`` sees the effective user id of an unprivileged user."""
    monkeypatch.setattr("update_server.cli_serve.effective_uid", lambda: pwd.getpwnam(USER).pw_uid)


def _reachable(path: Path) -> None:
    """Search permission for others on each directory above ``path`` in the temporary tree."""
    base = Path(tempfile.gettempdir()).resolve()
    for directory in path.resolve().parents:
        if directory == base or base not in directory.parents:
            break
        mode = directory.stat().st_mode
        if not mode & 0o001:
            directory.chmod(mode | 0o001)  # search only, no listing
    _require_reachable(path.parent)


def _require_reachable(path: Path) -> None:
    for directory in (path.resolve(), *path.resolve().parents):
        if not directory.stat().st_mode & 0o001:
            raise UnprivilegedError(
                f"the server runs as {USER} (the tests run as root and fwserver serve refuses"
                f" root, R6), and {USER} cannot reach {directory}: run the tests from a"
                " directory others can enter"
            )
