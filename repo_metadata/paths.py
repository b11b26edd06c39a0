"""Target paths and role names that can never reach outside a directory.

A target path ends up as a file name on the server, a URL on a mirror and a
file in a device's slot directory, so it is checked once here, strictly:
relative, forward slashes only, no ``.``/``..`` segment, no empty segment, no
NUL or control character, bounded length.
"""

from __future__ import annotations

import re
from pathlib import Path

from repo_metadata.errors import InvalidFieldError

MAX_TARGET_PATH = 255
MAX_SEGMENT = 128
ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")  # \Z: "$" accepts a final newline
_SEGMENT = re.compile(r"^[A-Za-z0-9._+-]+\Z")
TOP_LEVEL_ROLES = frozenset({"root", "targets", "snapshot", "timestamp"})


def check_target_path(path: str) -> str:
    """Return ``path`` if it is a safe relative target path, else raise."""
    if not isinstance(path, str) or not path:
        raise InvalidFieldError("path", "must be a non-empty string")
    if len(path) > MAX_TARGET_PATH:
        raise InvalidFieldError("path", f"longer than {MAX_TARGET_PATH} characters")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        raise InvalidFieldError("path", f"{path!r} contains NUL or a control character")
    if "\\" in path:
        raise InvalidFieldError("path", f"{path!r} contains a backslash; use '/'")
    if path.startswith("/"):
        raise InvalidFieldError("path", f"{path!r} is absolute; target paths are relative")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidFieldError(
                "path", f"{path!r} has an empty, '.' or '..' segment and could escape"
            )
        if len(segment) > MAX_SEGMENT or not _SEGMENT.match(segment):
            raise InvalidFieldError(
                "path", f"{path!r}: segment {segment!r} may use only letters, digits and . _ + -"
            )
    return path


def check_role_name(name: str) -> str:
    """Return ``name`` if it is a valid delegated role name, else raise."""
    if not isinstance(name, str) or not ROLE_NAME.match(name):
        raise InvalidFieldError(
            "role", f"{name!r} is not a role name (lowercase letters, digits, '.', '_', '-')"
        )
    if name in TOP_LEVEL_ROLES:
        raise InvalidFieldError("role", f"{name!r} is a top-level role name")
    return name


def local_target_file(targets_dir: Path, target_path: str) -> Path | None:
    """The file of ``target_path`` under a build's ``targets_dir``, or None.

    First ``targets_dir/<target path>`` (the layout ``fwsign add --targets-dir``
    makes), then ``targets_dir/<the target path's file name>`` (a flat build
    directory). The one look-up rule of ``fwsign verify``/``publish`` and
    ``fwserver import``; whatever it finds is still checked against the signed
    length and hashes by its caller.
    """
    for candidate in (targets_dir / target_path, targets_dir / target_path.rpartition("/")[2]):
        if candidate.is_file():
            return candidate
    return None
