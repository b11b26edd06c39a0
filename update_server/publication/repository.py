"""The server's online repository: python-tuf's ``Repository`` over the published files.

The published state is read the way a device reads it: ``timestamp.json``
names the snapshot version, ``N.snapshot.json`` names every targets role's
version, and ``N.<role>.json`` holds it; ``root.json`` is the current root.
Files a device may have fetched are never rewritten: each new version is a
new file (consistent snapshots), and only ``timestamp.json`` and
``root.json`` are replaced.

An ``OnlineRepository`` is one change in memory: verified offline roles are
``stage``d over the published state, and ``close()``, the only write path of
the two online roles, bumps the version past the published one, sets the
expiry from the ``Policy``, signs with the server's online key and checks
that signature against root at once. Nothing touches the disk here:
``pending_files`` and ``pending_timestamp`` hand the change to ``publish``.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from repo_metadata.errors import RepositoryError
from repo_metadata.policy import Policy
from repo_metadata.validation import load_metadata
from repo_metadata.verify import role_type
from update_server.publication.errors import BrokenRepositoryError, NotInitialisedError
from update_server.storage import disk_refusal

METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
ONLINE_ROLES = frozenset({Snapshot.type, Timestamp.type})
#: Compact JSON: devices download every byte of it (a snapshot listing 2,048
#: bins is ~78 KB compact, ~104 KB indented); signatures cover the canonical
#: form, so the layout of the served file is free.
SERIALIZER = JSONSerializer(compact=True)

#: The server's online signer for a role name (``Services.signer``).
SignerSource = Callable[[str], Signer]


def role_file(role: str, version: int) -> str:
    """Path of a versioned role file, relative to the repository directory."""
    return f"{METADATA_DIR}/{version}.{quote(role, safe='')}.json"


def target_file(path: str, digest: str) -> str:
    """Consistent-snapshot name of a target: ``targets/<dir>/<digest>.<name>``."""
    directory, _, name = path.rpartition("/")
    prefix = f"{directory}/" if directory else ""
    return f"{TARGETS_DIR}/{prefix}{digest}.{name}"


def meta_info(data: bytes, version: int) -> MetaFile:
    """Version, length and SHA-256 of a metadata file (endless-data defence)."""
    return MetaFile(version=version, length=len(data), hashes={"sha256": _sha256(data)})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OnlineRepository(Repository):
    """The published repository plus one pending change."""

    def __init__(
        self,
        directory: Path,
        *,
        now: datetime,
        signers: SignerSource | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.directory = directory
        self.now = now
        self.policy = policy or Policy()
        self._signers = signers
        self._raw: dict[str, bytes | None] = {}
        self._published: dict[str, Metadata[Any] | None] = {}
        self._staged: dict[str, tuple[Metadata[Any], bytes]] = {}

    # -- the published state ------------------------------------------------

    def is_initialised(self) -> bool:
        return (self.directory / METADATA_DIR / "timestamp.json").is_file()

    def require_initialised(self) -> None:
        if not self.is_initialised():
            raise NotInitialisedError(
                "not-initialised",
                "no repository is published yet; import one with 'fwserver import'",
            )

    def published(self, role: str) -> Metadata[Any] | None:
        """The published version of ``role``, or None if it has none."""
        if role not in self._published:
            data = self.published_bytes(role)
            self._published[role] = None if data is None else self._load(role, data)
        return self._published[role]

    def published_bytes(self, role: str) -> bytes | None:
        if role not in self._raw:
            name = self._published_file(role)
            file = None if name is None else self.directory / name
            self._raw[role] = file.read_bytes() if file is not None and file.is_file() else None
            if file is not None and self._raw[role] is None and self.is_initialised():
                raise BrokenRepositoryError(
                    "inconsistent", f"{name} is listed by the published metadata but missing"
                )
        return self._raw[role]

    def published_version(self, role: str) -> int | None:
        """The published version of ``role``, read from snapshot for targets roles."""
        if role in (Root.type, Timestamp.type):
            md = self.published(role)
            return None if md is None else int(md.signed.version)
        if role == Snapshot.type:
            timestamp = self.published(Timestamp.type)
            return None if timestamp is None else int(timestamp.signed.snapshot_meta.version)
        snapshot = self.published(Snapshot.type)
        meta = None if snapshot is None else snapshot.signed.meta.get(f"{role}.json")
        return None if meta is None else int(meta.version)

    def published_roles(self) -> list[str]:
        """Every targets role the published snapshot lists."""
        snapshot = self.published(Snapshot.type)
        if snapshot is None:
            return []
        return [name.removesuffix(".json") for name in snapshot.signed.meta]

    def published_target(self, path: str) -> TargetFile | None:
        """``path`` as the first published targets role that lists it signs it (None: none)."""
        for role in self.published_roles():
            published = self.published(role)
            target = None if published is None else published.signed.targets.get(path)
            if target is not None:
                found: TargetFile = target
                return found
        return None

    def _published_file(self, role: str) -> str | None:
        if role == Root.type:
            return f"{METADATA_DIR}/root.json"
        if role == Timestamp.type:
            return f"{METADATA_DIR}/timestamp.json"
        version = self.published_version(role)
        return None if version is None else role_file(role, version)

    def _load(self, role: str, data: bytes) -> Metadata[Any]:
        try:
            md = load_metadata(data, expected_type=role_type(role))
        except RepositoryError as exc:
            raise BrokenRepositoryError("inconsistent", f"published {role}: {exc}") from None
        expected = None if role in (Root.type, Timestamp.type) else self.published_version(role)
        if expected is not None and md.signed.version != expected:
            raise BrokenRepositoryError(
                "inconsistent", f"published {role} is v{md.signed.version}, listed as v{expected}"
            )
        return md

    # -- the pending change ---------------------------------------------------

    def stage(self, role: str, md: Metadata[Any], data: bytes) -> None:
        """Put a verified offline role (root, targets, delegated) in the change."""
        if role in ONLINE_ROLES:
            raise ValueError(f"{role} is written by the server, through close()")
        self._staged[role] = (md, data)

    def current(self, role: str) -> Metadata[Any] | None:
        """The staged version of ``role`` if any, else the published one."""
        staged = self._staged.get(role)
        return staged[0] if staged is not None else self.published(role)

    def current_targets(self, role: str) -> Targets | None:
        md = self.current(role)
        signed = None if md is None else md.signed
        return signed if isinstance(signed, Targets) else None

    def staged_versions(self) -> dict[str, int]:
        return {role: int(md.signed.version) for role, (md, _data) in self._staged.items()}

    def pending_files(self) -> list[tuple[str, bytes]]:
        """Files of the change except timestamp, in write order.

        Targets roles first, then snapshot, then root (its versioned file,
        then ``root.json``): a new root is visible to devices from the moment
        its ``N.root.json`` exists, so it comes as late as possible.
        """
        files = [
            (role_file(role, md.signed.version), data)
            for role, (md, data) in self._staged.items()
            if role not in ONLINE_ROLES and role != Root.type
        ]
        if Snapshot.type in self._staged:
            md, data = self._staged[Snapshot.type]
            files.append((role_file(Snapshot.type, md.signed.version), data))
        if Root.type in self._staged:
            md, data = self._staged[Root.type]
            files.append((role_file(Root.type, md.signed.version), data))
            files.append((f"{METADATA_DIR}/root.json", data))
        return files

    def pending_timestamp(self) -> bytes:
        staged = self._staged.get(Timestamp.type)
        if staged is None:
            raise ValueError("the change has no new timestamp; call refresh_timestamp()")
        return staged[1]

    # -- python-tuf Repository interface ------------------------------------

    def open(self, role: str) -> Metadata[Any]:
        staged = self._staged.get(role)
        if staged is not None:
            return staged[0]
        md = self.published(role)
        if md is not None:
            return copy.deepcopy(md) if role in ONLINE_ROLES else md
        if role == Snapshot.type:
            return Metadata(Snapshot(version=1, expires=self.now, meta={}))
        if role == Timestamp.type:
            return Metadata(Timestamp(version=1, expires=self.now, snapshot_meta=MetaFile(1)))
        raise BrokenRepositoryError("inconsistent", f"no published {role} metadata")

    def close(self, role: str, md: Metadata[Any]) -> None:
        """Sign a new version of an online role (the only write path)."""
        if role not in ONLINE_ROLES:
            raise ValueError(f"{role} is signed offline; the server only stages it")
        md.signed.version = (self.published_version(role) or 0) + 1
        md.signed.expires = self.now + self.policy.for_role(role).expiry
        md.signatures.clear()
        self._sign_and_check(role, md)
        self._staged[role] = (md, md.to_bytes(SERIALIZER))

    def _sign_and_check(self, role: str, md: Metadata[Any]) -> None:
        if self._signers is None:
            raise BrokenRepositoryError("online-key", f"no online {role} key is configured")
        try:
            md.sign(self._signers(role))
        except UnsignedMetadataError as exc:
            refused = disk_refusal(exc)
            if refused is not None:  # the disk under the key, not the key (storage_refusals)
                raise refused from exc
            cause = exc.__cause__ or exc
            raise BrokenRepositoryError(
                "online-key", f"the online {role} key did not sign: {cause}"
            ) from None
        # tuf-on-ci's habit: check a new signature against root right away,
        # so a server whose key root does not list fails here, not on devices.
        try:
            self.root().verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError:
            raise BrokenRepositoryError(
                "online-key",
                f"the server's online {role} key is not the {role} key root"
                f" v{self.root().version} names; configure the right key",
            ) from None

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        snapshot = self.published(Snapshot.type)
        meta = {} if snapshot is None else snapshot.signed.meta
        infos = {name: MetaFile(version=info.version) for name, info in meta.items()}
        for role, (md, _data) in self._staged.items():
            if isinstance(md.signed, Targets):
                infos[f"{role}.json"] = MetaFile(version=md.signed.version)
        return infos

    @property
    def snapshot_info(self) -> MetaFile:
        staged = self._staged.get(Snapshot.type)
        if staged is not None:
            return meta_info(staged[1], staged[0].signed.version)
        data = self.published_bytes(Snapshot.type)
        version = self.published_version(Snapshot.type)
        if data is None or version is None:
            raise BrokenRepositoryError("inconsistent", "no snapshot to list in timestamp")
        return meta_info(data, version)

    def refresh_timestamp(self) -> None:
        """A new timestamp listing the current snapshot with its length and hash."""
        with self.edit_timestamp() as timestamp:
            timestamp.snapshot_meta = self.snapshot_info

    # -- reading for people --------------------------------------------------

    def walk_named_roles(self) -> Iterator[tuple[str, Targets]]:
        """Every targets role reachable through named delegations (top-down)."""
        queue, seen = [Targets.type], set()
        while queue:
            name = queue.pop(0)
            signed = None if name in seen else self.current_targets(name)
            if signed is None:
                continue
            seen.add(name)
            yield name, signed
            if signed.delegations is not None and signed.delegations.roles:
                queue.extend(signed.delegations.roles)
