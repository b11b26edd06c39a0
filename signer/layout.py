"""Where an offline repository keeps its files.

::

    REPO/
      policy.json            thresholds and expiries (repo_metadata.policy)
      metadata/root.json     current root, and N.root.json for every version
      metadata/targets.json  top-level targets
      metadata/<role>.json   one file per delegated role (product line, bin)
      metadata/N.<role>.json the newest signed version of a role, kept so a
                             later edit or signature is checked against it
                             (TUF rollback); root keeps every version

Firmware images are not copied into the directory (they may be gigabytes and
the directory travels between signers by git or removable media): ``add``
records their length and hashes; ``publish`` uploads the images. Kept
versions stay here: ``publish`` and ``fwserver import`` read root's chain
and each role's current file only, ``status`` and ``verify`` the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, unquote

METADATA_DIR = "metadata"
POLICY_FILE = "policy.json"


def metadata_dir(repo: Path) -> Path:
    return repo / METADATA_DIR


def role_file(repo: Path, role: str) -> Path:
    """The current file of ``role`` (names are percent-encoded, as in TUF)."""
    return metadata_dir(repo) / f"{quote(role, safe='')}.json"


def root_version_file(repo: Path, version: int) -> Path:
    return versioned_role_file(repo, "root", version)


def versioned_role_file(repo: Path, role: str, version: int) -> Path:
    """Version ``version`` of ``role`` (TUF consistent-snapshot name)."""
    return metadata_dir(repo) / f"{version}.{quote(role, safe='')}.json"


_VERSIONED = re.compile(r"\A([1-9][0-9]{0,17})\.(.+)\.json\Z")


def is_versioned_file(name: str) -> bool:
    """Whether a metadata file name is ``N.<role>.json`` rather than a role's current file."""
    return _VERSIONED.match(name) is not None


def versioned_roles(repo: Path) -> dict[str, list[int]]:
    """Every versioned file in the metadata directory: {role: [versions, sorted]}."""
    found: dict[str, list[int]] = {}
    directory = metadata_dir(repo)
    if not directory.is_dir():
        return found
    for file in directory.iterdir():
        match = _VERSIONED.match(file.name)
        if match:
            found.setdefault(unquote(match[2]), []).append(int(match[1]))
    return {role: sorted(versions) for role, versions in found.items()}


def policy_file(repo: Path) -> Path:
    return repo / POLICY_FILE
