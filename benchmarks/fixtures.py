"""Repositories and images for the benchmarks, built fast but valid.

A repository is made the way ``fwsign`` makes one (``init_repository``,
``delegate``). A product line holding many releases is then filled in bulk
with python-tuf's own objects: one ``TargetFile`` per release, carrying valid
``FirmwareInfo`` fields, written into the line's role (flat) or into each
hashed bin, every role signed once by both engineers (threshold 2, R9).
Calling ``add_firmware`` 100,000 times would measure the setup, not the add.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from repo_metadata.firmware import FirmwareInfo
from repo_metadata.frontier import current_releases
from repo_metadata.policy import Policy
from signer import layout
from signer.authoring import RoleKeys, delegate, init_repository
from signer.repository import OfflineRepository

LINE = "pump-x100"
MODEL = "pump-x100"
IMAGE_NAME = "pump-fw"
_SERIALIZER = JSONSerializer(compact=False)  # the format OfflineRepository writes
_PEOPLE = ("officer1", "officer2", "officer3", "manager", "alice", "bob", "snapshot", "timestamp")


@dataclass(frozen=True)
class People:
    """One ed25519 key per person and online role, generated for this run."""

    signers: dict[str, Signer]

    @classmethod
    def generate(cls) -> People:
        return cls({name: CryptoSigner.generate_ed25519() for name in _PEOPLE})

    def __getitem__(self, name: str) -> Signer:
        return self.signers[name]

    @property
    def engineers(self) -> list[Signer]:
        return [self["alice"], self["bob"]]


def release_path(version: str) -> str:
    return f"{MODEL}/{IMAGE_NAME}-{version}.bin"


def release_info(version: str) -> FirmwareInfo:
    return FirmwareInfo(version=version, security_version=1, hardware_models=(MODEL,))


def bulk_version(index: int) -> str:
    """The version of the ``index``-th bulk release: 1.0.0, 1.0.1, ... 1.99.999."""
    return f"1.{index // 1000}.{index % 1000}"


def make_repository(path: Path, people: People, *, now: datetime, bin_bits: int | None) -> None:
    """A repository with root, targets and the product line (empty), all signed."""
    officers = [people[n] for n in ("officer1", "officer2", "officer3")]
    init_repository(
        OfflineRepository(path, now=now, signers=[*officers[:2], people["manager"]], create=True),
        root=RoleKeys([s.public_key for s in officers], 2),
        targets=RoleKeys([people["manager"].public_key], 1),
        snapshot=people["snapshot"].public_key,
        timestamp=people["timestamp"].public_key,
    )
    delegate(
        OfflineRepository(path, now=now, signers=[people["manager"], *people.engineers]),
        name=LINE,
        path_prefix=f"{MODEL}/",
        keys=RoleKeys([s.public_key for s in people.engineers], 2),
        bin_bits=bin_bits,
    )


def fill_product_line(path: Path, people: People, *, now: datetime, releases: int) -> int:
    """Put ``releases`` signed releases in the product line; return roles written.

    Each role written gets version 2 (``delegate`` wrote version 1), the
    policy's expiry, and both engineers' signatures.
    """
    line = Metadata.from_file(str(layout.role_file(path, LINE))).signed
    if not isinstance(line, Targets):
        raise TypeError(f"{LINE} is not a targets role")
    succinct = line.delegations.succinct_roles if line.delegations else None
    by_role: dict[str, dict[str, TargetFile]] = defaultdict(dict)
    for index in range(releases):
        version = bulk_version(index)
        target_path = release_path(version)
        role = succinct.get_role_for_target(target_path) if succinct else LINE
        by_role[role][target_path] = _target(target_path, release_info(version))
    expires = now + Policy().for_role(LINE).expiry
    roles = {role: Targets(version=2, expires=expires, targets=t) for role, t in by_role.items()}
    if succinct is not None:  # the line lists its current releases (repo_metadata.frontier)
        every = [target for targets in by_role.values() for target in targets.values()]
        roles[LINE] = Targets(
            version=2,
            expires=expires,
            targets=current_releases(every),
            delegations=line.delegations,
        )
    for role, signed in roles.items():
        metadata = Metadata(signed)
        for signer in people.engineers:
            metadata.sign(signer, append=True)
        layout.role_file(path, role).write_bytes(metadata.to_bytes(_SERIALIZER))
    return len(roles)


def _target(path: str, info: FirmwareInfo) -> TargetFile:
    # Images are never read back; a stable digest of the path stands in for one.
    digest = hashlib.sha256(path.encode()).hexdigest()
    return TargetFile(4 * 1024 * 1024, {"sha256": digest}, path, {"custom": info.to_custom()})


def write_image(path: Path, *, size: int, block: int = 1024 * 1024) -> None:
    """A file of ``size`` bytes: one random block repeated, synced to disk.

    Random content so that no layer can compress or skip it; synced so that
    writeback does not run during the measurements that follow.
    """
    chunk = os.urandom(min(block, size))
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            count = min(len(chunk), remaining)
            handle.write(chunk[:count])
            remaining -= count
        handle.flush()
        os.fsync(handle.fileno())
