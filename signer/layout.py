"""Where an offline repository keeps its files.

::

    REPO/
      policy.json            thresholds and expiries (repo_metadata.policy)
      metadata/root.json     current root, and N.root.json for every version
      metadata/targets.json  top-level targets
      metadata/<role>.json   one file per delegated role (product line, bin)

Firmware images are not copied into the directory (they may be gigabytes and
the directory travels between signers by git or removable media): ``add``
records their length and hashes; ``publish`` uploads the images.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

METADATA_DIR = "metadata"
POLICY_FILE = "policy.json"


def metadata_dir(repo: Path) -> Path:
    return repo / METADATA_DIR


def role_file(repo: Path, role: str) -> Path:
    """The current file of ``role`` (names are percent-encoded, as in TUF)."""
    return metadata_dir(repo) / f"{quote(role, safe='')}.json"


def root_version_file(repo: Path, version: int) -> Path:
    return metadata_dir(repo) / f"{version}.root.json"


def policy_file(repo: Path) -> Path:
    return repo / POLICY_FILE
