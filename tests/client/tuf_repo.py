"""A signed repository for the client's tests, built with python-tuf's Metadata API only.

The client's tests must not build what the device reads with the code that
the signer and the client share (``repo_metadata``) nor with the signer: a
bug in both would then pass unseen. So this builder states the repository
in python-tuf's objects (``Root``, ``Targets``, ``DelegatedRole``,
``SuccinctRoles``, ``TargetFile``), signs with ``CryptoSigner`` keys made in
the test, and writes the firmware fields of ``TargetFile.custom`` as the
literal JSON object the format documents (``firmware_custom``), not through
``FirmwareInfo``. ``tests/test_test_helpers.py`` checks its imports.

The files are laid out as an offline repository keeps them (``metadata/
N.root.json`` for each root version, ``metadata/<role>.json`` for every
other role), so ``tests.tuf_mirror.publication`` serves them as the update
server would. Every change is one new version, signed by the names given
(fewer than the threshold makes an under-signed role, as an attack wants).

A product line in hashed bins keeps each release in its bin and lists, in
its own role, the releases no other supersedes (its current releases, see
``repo_metadata/frontier.py``); this double's rule is the plain one its
tests need: ``new`` supersedes ``old`` when its version is higher, its
security version at least as high and it lists every model ``old`` lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from securesystemslib.signer import Signer
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    SuccinctRoles,
    TargetFile,
    Targets,
)
from tuf.api.serialization.json import JSONSerializer

ROOT_EXPIRY = timedelta(days=365)
TARGETS_EXPIRY = timedelta(days=90)


def firmware_custom(
    version: str, security_version: int, models: Sequence[str], **fields: Any
) -> dict[str, Any]:
    """``TargetFile.custom`` of a firmware release, written out field by field."""
    return {
        "version": version,
        "security_version": security_version,
        "hardware_models": list(models),
        "requires_authorization": False,
        **fields,
    }


def _version_key(custom: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(part) for part in str(custom["version"]).split("-")[0].split("."))


def _supersedes(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return (
        _version_key(new) > _version_key(old)
        and new["security_version"] >= old["security_version"]
        and set(old["hardware_models"]) <= set(new["hardware_models"])
    )


class TufRepo:
    """A repository on disk under ``path``, signed with ``keys`` (name to signer)."""

    def __init__(
        self, path: Path, keys: Mapping[str, Signer], *, now: Callable[[], datetime]
    ) -> None:
        self.path = path
        self.keys = keys
        self.now = now

    # -- files -------------------------------------------------------------------

    def role_file(self, role: str) -> Path:
        return self.path / "metadata" / f"{quote(role, safe='')}.json"

    def read(self, role: str) -> Metadata[Any]:
        return Metadata.from_bytes(self.role_file(role).read_bytes())

    def root_bytes(self, version: int) -> bytes:
        return (self.path / "metadata" / f"{version}.root.json").read_bytes()

    def _write(self, md: Metadata[Any], role: str, signers: Sequence[str]) -> None:
        md.signatures.clear()
        for name in signers:
            md.sign(self.keys[name], append=True)
        data = md.to_bytes(JSONSerializer())
        self.role_file(role).parent.mkdir(parents=True, exist_ok=True)
        self.role_file(role).write_bytes(data)
        if role == "root":
            (self.path / "metadata" / f"{md.signed.version}.root.json").write_bytes(data)

    def role_files(self) -> dict[str, bytes]:
        """Each role's last file (``root.json``, ``<quoted role>.json``), as a client keeps it."""
        return {
            file.name: file.read_bytes()
            for file in sorted((self.path / "metadata").glob("*.json"))
            if not file.name.split(".", 1)[0].isdigit()
        }

    @contextmanager
    def edit(
        self,
        role: str,
        *signers: str,
        now: datetime | None = None,
        expires: datetime | None = None,
    ) -> Iterator[Any]:
        """Edit ``role``'s signed part; it is written as the next version, signed by ``signers``.

        It expires its role's period after ``now`` (the repository's clock by
        default), or at ``expires`` when given (an expired role, as an attack wants).
        """
        md = self.read(role)
        yield md.signed
        md.signed.version += 1
        if expires is None:
            expiry = ROOT_EXPIRY if role == "root" else TARGETS_EXPIRY
            expires = (now or self.now()).replace(microsecond=0) + expiry
        md.signed.expires = expires
        self._write(md, role, signers)

    # -- making a repository ---------------------------------------------------------

    def create_one_key_per_role(self) -> None:
        """``create`` with the keys named after the top-level roles, one each, threshold 1."""
        self.create(
            root=("root",),
            root_threshold=1,
            targets=("targets",),
            snapshot="snapshot",
            timestamp="timestamp",
            signers=("root", "targets"),
        )

    def create(
        self,
        *,
        root: Sequence[str],
        root_threshold: int,
        targets: Sequence[str],
        snapshot: str,
        timestamp: str,
        signers: Sequence[str],
    ) -> None:
        """Root v1 (consistent snapshots) and an empty targets v1, signed by ``signers``."""
        now = self.now().replace(microsecond=0)
        signed_root = Root(expires=now + ROOT_EXPIRY, consistent_snapshot=True)
        for role, names in (
            ("root", root),
            ("targets", targets),
            ("snapshot", [snapshot]),
            ("timestamp", [timestamp]),
        ):
            for name in names:
                signed_root.add_key(self.keys[name].public_key, role)
        signed_root.roles["root"].threshold = root_threshold
        self._write(Metadata(signed_root), "root", [n for n in signers if n in root])
        top = Metadata(Targets(expires=now + TARGETS_EXPIRY))
        self._write(top, "targets", [n for n in signers if n in targets])

    def delegate_line(
        self,
        name: str,
        *,
        prefix: str,
        keys: Sequence[str],
        threshold: int,
        bin_bits: int | None,
        signers: Sequence[str],
        terminating: bool = True,
    ) -> None:
        """Delegate ``prefix*`` from targets to ``name``, optionally in bins."""
        with self.edit("targets", *signers) as top:
            top.delegations = top.delegations or Delegations({}, roles={})
            top.delegations.roles[name] = DelegatedRole(
                name, [], threshold, terminating, [f"{prefix}*"]
            )
            for key in keys:
                top.add_key(self.keys[key].public_key, name)
        line = Targets(expires=self.now().replace(microsecond=0) + TARGETS_EXPIRY)
        public = [self.keys[key].public_key for key in keys]
        if bin_bits is not None:
            succinct = SuccinctRoles([k.keyid for k in public], threshold, bin_bits, f"{name}-bins")
            line.delegations = Delegations({k.keyid: k for k in public}, succinct_roles=succinct)
            for bin_name in succinct.get_roles():
                self._write(Metadata(Targets(expires=line.expires)), bin_name, keys)
        self._write(Metadata(line), name, keys)

    # -- releases ---------------------------------------------------------------------

    def bins(self, line: str) -> SuccinctRoles | None:
        delegations = self.read(line).signed.delegations
        return None if delegations is None else delegations.succinct_roles

    def leaf_role(self, line: str, path: str) -> str:
        """The role that signs ``path``: the line, or the bin ``path`` hashes to."""
        bins = self.bins(line)
        return line if bins is None else bins.get_role_for_target(path)

    def add_target(
        self, line: str, path: str, data: bytes, custom: dict[str, Any] | None, *signers: str
    ) -> None:
        """Sign ``path`` (``data``'s length and SHA-256, ``custom``) in ``line`` or its bin.

        ``line`` is any targets role; a target without ``custom`` is a plain file.
        """
        target = TargetFile.from_data(path, data, ["sha256"])
        if custom is not None:
            target.unrecognized_fields = {"custom": custom}
        leaf = self.leaf_role(line, path)
        with self.edit(leaf, *signers) as role:
            role.targets[path] = target
        if leaf != line and custom is not None and "security_version" in custom:
            self._list_current(line, signers)

    def remove_target(self, line: str, path: str, *signers: str) -> None:
        """Withdraw ``path`` from ``line`` (and its bin, if it has bins)."""
        leaf = self.leaf_role(line, path)
        with self.edit(leaf, *signers) as role:
            del role.targets[path]
        if leaf != line:
            self._list_current(line, signers)

    def _list_current(self, line: str, signers: Sequence[str]) -> None:
        bins = self.bins(line)
        assert bins is not None
        releases = [
            target
            for bin_name in bins.get_roles()
            for target in self.read(bin_name).signed.targets.values()
            if "security_version" in (target.custom or {})
        ]
        current = {
            t.path: t
            for t in releases
            if not any(_supersedes(o.custom, t.custom) for o in releases)
        }
        if current != self.read(line).signed.targets:
            with self.edit(line, *signers) as role:
                role.targets = current

    # -- keys -----------------------------------------------------------------------

    def rotate(
        self, role: str, *, add: Sequence[str], remove: Sequence[str], signers: Sequence[str]
    ) -> None:
        """Change ``role``'s keys where they are listed (root, or the delegating targets)."""
        listed_in = "root" if role in ("root", "targets", "snapshot", "timestamp") else "targets"
        with self.edit(listed_in, *signers) as delegator:
            for name in add:
                delegator.add_key(self.keys[name].public_key, role)
            for name in remove:
                delegator.revoke_key(self.keys[name].public_key.keyid, role)
