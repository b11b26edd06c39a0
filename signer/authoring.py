"""Creating and changing repository content: init, delegate, add, revoke.

Each function is one ``fwsign`` command's whole job, on an
``OfflineRepository`` opened with the session's signers: it edits roles
through ``edit_*`` (so versions, expiries and signatures follow the one rule
in ``OfflineRepository.close``), then commits. Any error leaves the directory
as it was.
"""

from __future__ import annotations

import filecmp
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from securesystemslib.signer import Key
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Root,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from fwcommon.delta import DeltaError, make_delta
from repo_metadata.authorization import AuthorizationKeys
from repo_metadata.delta import FIELD as DELTA
from repo_metadata.delta import DeltaInfo, delta_path, is_delta
from repo_metadata.errors import InvalidFieldError, InvalidMetadataError
from repo_metadata.firmware import FirmwareInfo, SbomRef
from repo_metadata.frontier import current_releases, firmware_info, with_release
from repo_metadata.paths import check_role_name, check_target_path, local_target_file
from repo_metadata.semver import SemVer
from repo_metadata.validation import check_product_line_patterns
from signer import layout
from signer.errors import SignerError
from signer.hashing import hash_file
from signer.repository import OfflineRepository

#: Bit lengths of hashed bins we allow: up to 2**14 bins per product line.
MAX_BIN_BITS = 14
#: ``bins_for(N)`` puts about this many times log2(N) releases in a bin.
RELEASES_PER_BIN_PER_LOG2 = 3


@dataclass(frozen=True)
class RoleKeys:
    """The keys and threshold given for one role."""

    keys: Sequence[Key]
    threshold: int

    def check(self, role: str) -> None:
        keyids = [key.keyid for key in self.keys]
        if len(set(keyids)) != len(keyids):
            raise SignerError(f"{role}: the same key is given twice")
        if not 1 <= self.threshold <= len(keyids):
            raise SignerError(
                f"{role}: threshold {self.threshold} needs between 1 and {len(keyids)} keys;"
                " give more keys or a lower threshold"
            )


def init_repository(
    repo: OfflineRepository,
    *,
    root: RoleKeys,
    targets: RoleKeys,
    snapshot: Key,
    timestamp: Key,
    authorization: Sequence[Key] = (),
) -> list[str]:
    """Create root v1 and an empty targets v1 in an empty directory.

    ``authorization``: the keys whose signatures authorize a technician's
    install (``repo_metadata.authorization``), one needed; none, and no
    release that requires an authorization can be installed until the
    officers add one (``keyops.rotate_authorization_keys``).
    """
    if layout.metadata_dir(repo.path).exists() and any(layout.metadata_dir(repo.path).iterdir()):
        raise SignerError(f"{repo.path} already holds a repository; refusing to overwrite it")
    root.check("root")
    targets.check("targets")
    with repo.edit_root() as signed:
        _set_role_keys(signed, "root", root)
        _set_role_keys(signed, "targets", targets)
        _set_role_keys(signed, "snapshot", RoleKeys([snapshot], 1))
        _set_role_keys(signed, "timestamp", RoleKeys([timestamp], 1))
        if authorization:
            trusted = {key.keyid: key for key in authorization}
            try:
                AuthorizationKeys(trusted, 1).write_to(signed)
            except InvalidFieldError as exc:
                raise SignerError(f"--authorization-key: {exc}") from None
    with repo.edit_targets():
        pass
    return repo.commit()


def _set_role_keys(root: Root, role: str, keys: RoleKeys) -> None:
    for key in keys.keys:
        root.add_key(key, role)
    root.roles[role].threshold = keys.threshold


def bins_for(expected_releases: int) -> int:
    """Bin bit length for a line expecting ``expected_releases`` releases.

    A trade-off between the two costs that grow with a line: an add re-signs
    one bin (~300 bytes per release it holds), and a device downloads the
    snapshot, which lists every bin (~40 bytes each), though no bin (it reads
    the line's current releases, ``repo_metadata.frontier``). A bin of about
    3 * log2(N) releases makes an add grow as log N and the snapshot as
    N / log N: at 100,000 releases, 2,048 bins of ~49, an add re-signs ~20 KB
    and a device's check stays under 100 KiB (``make bench``).
    """
    if expected_releases < 1:
        raise SignerError("--expected-releases must be at least 1")
    per_bin = RELEASES_PER_BIN_PER_LOG2 * max(1.0, math.log2(expected_releases))
    bits = math.ceil(math.log2(max(1.0, expected_releases / per_bin)))
    return max(1, min(MAX_BIN_BITS, bits))


def delegate(
    repo: OfflineRepository,
    *,
    name: str,
    path_prefix: str,
    keys: RoleKeys,
    bin_bits: int | None = None,
) -> list[str]:
    """Delegate a product line (``path_prefix``) to its engineers' keys.

    With ``bin_bits``, the line's releases are spread over ``2**bin_bits``
    hashed bins (TAP 15 succinct roles) signed by the same keys, so adding a
    release re-signs one small bin instead of a role listing every release.
    """
    try:
        check_role_name(name)
        check_target_path(path_prefix.rstrip("/"))
        check_product_line_patterns([f"{path_prefix.rstrip('/')}/*"])
    except (InvalidFieldError, InvalidMetadataError) as exc:
        raise SignerError(str(exc)) from None
    if layout.is_versioned_file(layout.role_file(repo.path, name).name):
        raise SignerError(
            f"role name {name!r} reads as a kept version (N.<role>.json) of another role;"
            " choose a name that does not start with a number and a dot"
        )
    keys.check(name)
    repo.check_key_separation(keys.keys, role=name)
    if repo.exists(name):
        raise SignerError(f"role {name!r} already exists; change its keys with 'fwsign rotate'")
    if bin_bits is not None and not 1 <= bin_bits <= MAX_BIN_BITS:
        raise SignerError(f"--bin-bits must be between 1 and {MAX_BIN_BITS}")
    pattern = f"{path_prefix.rstrip('/')}/*"
    with repo.edit_targets() as targets:
        roles = _named_roles(targets)
        for existing in roles.values():
            if _overlaps(existing.paths or [], pattern):
                raise SignerError(
                    f"path prefix {path_prefix!r} overlaps product line {existing.name!r}"
                )
        roles[name] = DelegatedRole(name, [], keys.threshold, True, paths=[pattern])
        for key in keys.keys:
            targets.add_key(key, name)
    bin_names: list[str] = []
    with repo.edit_targets(name) as line:
        if bin_bits is not None:
            keyids = [k.keyid for k in keys.keys]
            succinct = SuccinctRoles(keyids, keys.threshold, bin_bits, f"{name}-bins")
            line.delegations = Delegations({k.keyid: k for k in keys.keys}, succinct_roles=succinct)
            bin_names = list(succinct.get_roles())
    for bin_name in bin_names:
        with repo.edit_targets(bin_name):
            pass
    return repo.commit()


def _named_roles(targets: Targets) -> dict[str, DelegatedRole]:
    if targets.delegations is None:
        targets.delegations = Delegations({}, roles={})
    if targets.delegations.roles is None:
        raise SignerError("top-level targets uses hashed bins; product lines cannot be added")
    return targets.delegations.roles


def _overlaps(patterns: Sequence[str], pattern: str) -> bool:
    prefix = pattern[:-1]
    return any(p[:-1].startswith(prefix) or prefix.startswith(p[:-1]) for p in patterns)


@dataclass(frozen=True)
class DeltaSources:
    """Where ``add_firmware`` finds base releases and writes the deltas it makes.

    ``versions``: the earlier releases to diff from; ``base_dir``: the build
    directory holding their files (found as ``local_target_file`` finds
    them); ``work_dir``: an empty directory for the delta files, which the
    caller copies to its targets directory once the release is added.
    """

    versions: Sequence[str]
    base_dir: Path
    work_dir: Path


def add_firmware(
    repo: OfflineRepository,
    *,
    image: Path,
    name: str,
    info: FirmwareInfo,
    target_path: str | None = None,
    sbom: Path | None = None,
    progress: Callable[[int], object] | None = None,
    deltas: DeltaSources | None = None,
) -> list[str]:
    """Add a firmware image (its SBOM, its deltas) to the role that signs its path.

    With ``deltas``, a delta target from each base release is signed beside
    the release (``repo_metadata.delta``); each base is checked before
    anything is made (``make_release_deltas``).
    """
    path = release_target_path(name, info, target_path)
    if not image.is_file():
        raise SignerError(f"{image}: no such firmware file")
    made = [] if deltas is None else make_release_deltas(repo, path, image, info, deltas)
    if sbom is not None:
        sbom_path = sbom_target_path(path)
        sbom_digest = _add_target(repo, sbom_path, sbom, {}, None)
        info = replace(info, sbom=SbomRef(path=sbom_path, sha256=sbom_digest))
    _add_target(repo, path, image, info.to_custom(), progress)
    for delta in made:
        _add_target(repo, delta.path, delta.file, delta.info.to_custom(), None)
    return repo.commit()


@dataclass(frozen=True)
class MadeDelta:
    """A delta file made for a release, with the signed field it gets."""

    path: str
    file: Path
    info: DeltaInfo


def make_release_deltas(
    repo: OfflineRepository, path: str, image: Path, info: FirmwareInfo, sources: DeltaSources
) -> list[MadeDelta]:
    """Make the delta from each base release to ``image``; refuse before making any.

    Each base is a signed release of the same product line for one of the
    release's models, older than it, whose file in ``sources.base_dir`` has
    the signed length and SHA-256: a delta made from other bytes would never
    apply on a device.
    """
    if len(set(sources.versions)) != len(sources.versions):
        raise SignerError("--delta-from names a release twice")
    bases = [_base_release(repo, path, info, version) for version in sources.versions]
    files = [_base_file(base, sources.base_dir) for base in bases]
    made = []
    for base, file in zip(bases, files, strict=True):
        version = FirmwareInfo.from_target(base).version
        target = delta_path(path, version)
        out = sources.work_dir / target
        try:
            make_delta(file, image, out)
        except DeltaError as exc:
            raise SignerError(f"delta from {version}: {exc}") from None
        delta = DeltaInfo(
            image=path, base=base.path, base_sha256=base.hashes["sha256"], base_length=base.length
        )
        made.append(MadeDelta(target, out, delta))
    return made


def _base_release(
    repo: OfflineRepository, path: str, info: FirmwareInfo, version: str
) -> TargetFile:
    try:
        if not SemVer.parse(version) < info.semver:
            raise SignerError(
                f"--delta-from {version}: a delta starts from a release earlier than {info.version}"
            )
    except ValueError as exc:
        raise SignerError(f"--delta-from {version}: {exc}") from None
    _check_path(path)
    role = repo.leaf_role_for(path)
    line = repo.line_of_bin(role) or role
    signed = [*repo.targets(line).targets.values(), *repo.archived_releases(line)]
    found = {
        target.path: target
        for target in signed
        if (known := firmware_info(target)) is not None
        and known.version == version
        and set(known.hardware_models) & set(info.hardware_models)
    }
    if len(found) != 1:
        which = "no release" if not found else f"{len(found)} releases ({', '.join(sorted(found))})"
        raise SignerError(
            f"--delta-from {version}: {which} of version {version} for"
            f" {', '.join(info.hardware_models)} in {line}; name one signed release"
            " ('fwsign status' lists them)"
        )
    return next(iter(found.values()))


def _base_file(base: TargetFile, base_dir: Path) -> Path:
    file = local_target_file(base_dir, base.path)
    if file is None:
        raise SignerError(
            f"the file of base release {base.path} is not in {base_dir} (looked for"
            f" {base_dir / base.path} and {base_dir / base.path.rpartition('/')[2]});"
            " give the build directory that holds it with --delta-base-dir"
        )
    digest = hash_file(file)
    if digest.length != base.length or digest.sha256 != base.hashes.get("sha256"):
        raise SignerError(
            f"{file} is not the signed base release {base.path} (its length or SHA-256"
            " differs from the signed ones): a delta from it would never apply on a device;"
            " give the signed build"
        )
    return file


def release_target_path(name: str, info: FirmwareInfo, target_path: str | None) -> str:
    """The target path a release is signed at: ``<first model>/<name>-<version>.bin``."""
    return target_path or f"{info.hardware_models[0]}/{name}-{info.version}.bin"


def sbom_target_path(path: str) -> str:
    """The target path of the SBOM signed beside the release at ``path``."""
    return f"{path.rsplit('.', 1)[0]}.sbom.json"


@dataclass(frozen=True)
class HigherFloor:
    """A release already signed whose security version is above a new one's."""

    path: str
    info: FirmwareInfo


def higher_floors(repo: OfflineRepository, *, path: str, info: FirmwareInfo) -> list[HigherFloor]:
    """Current releases of ``path``'s product line for ``info``'s models with a higher floor.

    A device that installed one of them keeps its security version as a
    floor (R25 anti-rollback) and never installs ``info``: such a release
    reaches only devices still below that floor. The line's current releases
    suffice: a superseded release's floor is met or passed by one that
    supersedes it (``repo_metadata.frontier``).
    """
    _check_path(path)
    role = repo.leaf_role_for(path)
    line = repo.line_of_bin(role) or role
    found = []
    for other, target in repo.targets(line).targets.items():
        known = firmware_info(target)
        if (
            known is not None
            and other != path
            and known.security_version > info.security_version
            and set(known.hardware_models) & set(info.hardware_models)
        ):
            found.append(HigherFloor(other, known))
    return sorted(found, key=lambda f: (-f.info.security_version, f.path))


def withdrawn_paths(repo: OfflineRepository, *, path: str) -> list[str]:
    """The target paths ``revoke_release(path)`` removes: the release, its SBOM, its deltas.

    Its deltas: those that rebuild it and those that start from it, so no
    delta names a release that is no longer signed (``delta-release``).
    """
    role = repo.leaf_role_for(path)
    target = repo.targets(role).targets.get(path)
    if target is None:
        raise SignerError(f"{path} is not a signed target of {role}; see 'fwsign status'")
    sbom = target.custom.get("sbom") if isinstance(target.custom, dict) else None
    paths = [path]
    if isinstance(sbom, dict) and isinstance(sbom.get("path"), str):
        sbom_role = repo.leaf_role_for(sbom["path"])
        if sbom["path"] in repo.targets(sbom_role).targets:
            paths.append(sbom["path"])
    return paths + _deltas_naming(repo, path)


def _deltas_naming(repo: OfflineRepository, path: str) -> list[str]:
    role = repo.leaf_role_for(path)
    line = repo.line_of_bin(role) or role
    held = [*repo.targets(line).targets.values(), *repo.archived_releases(line)]
    named = []
    for target in held:
        fields = target.custom.get(DELTA) if is_delta(target) else None
        if isinstance(fields, dict) and path in (fields.get("image"), fields.get("base")):
            named.append(target.path)
    return sorted(named)


def _add_target(
    repo: OfflineRepository,
    path: str,
    file: Path,
    custom: dict[str, object],
    progress: Callable[[int], object] | None,
) -> str:
    _check_path(path)
    if not file.is_file():
        raise SignerError(f"{file}: no such file")
    role = repo.leaf_role_for(path)
    if path in repo.targets(role).targets:
        raise SignerError(
            f"{path} is already signed in {role}; a release never changes: give it a new version"
        )
    digest = hash_file(file, progress=progress)
    target = TargetFile(
        digest.length, {"sha256": digest.sha256}, path, unrecognized_fields={"custom": custom}
    )
    with repo.edit_targets(role) as signed:
        signed.targets[path] = target
    line = repo.line_of_bin(role)
    if line is not None and firmware_info(target) is not None:
        _set_current(repo, line, with_release(repo.targets(line).targets, target))
    return digest.sha256


def _check_path(path: str) -> None:
    try:
        check_target_path(path)
    except InvalidFieldError as exc:
        raise SignerError(str(exc)) from None


def _set_current(repo: OfflineRepository, line: str, current: dict[str, TargetFile]) -> None:
    """Make ``current`` the releases the product line's own role lists (if it changed)."""
    if current != repo.targets(line).targets:
        with repo.edit_targets(line) as signed:
            signed.targets = current


def revoke_release(repo: OfflineRepository, *, path: str) -> list[str]:
    """Withdraw a release (R56/R57): remove it, its SBOM and its deltas from their roles."""
    release, *others = withdrawn_paths(repo, path=path)
    role = repo.leaf_role_for(release)
    with repo.edit_targets(role) as signed:
        del signed.targets[release]
    line = repo.line_of_bin(role)
    if line is not None and release in repo.targets(line).targets:
        # A current release withdrawn: the releases it superseded may be current again.
        _set_current(repo, line, current_releases(repo.archived_releases(line)))
    for other in others:
        with repo.edit_targets(repo.leaf_role_for(other)) as signed:
            del signed.targets[other]
    return repo.commit()


def copy_to_targets_dir(file: Path, dest: Path, *, sha256: str) -> bool:
    """Copy ``file`` to ``dest`` (atomically) if it is not there yet; True if copied.

    The copy is hashed and must be the signed bytes (``sha256``): a file
    changed after it was hashed is not left where publish would send it.
    """
    if dest.is_file() and hash_file(dest).sha256 == sha256:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(f".{dest.name}.tmp")
    try:
        shutil.copyfile(file, staged)
        if hash_file(staged).sha256 != sha256:
            raise SignerError(
                f"{file} changed after it was hashed; it was added, but not copied to {dest}:"
                " copy the signed build there by hand"
            )
        staged.replace(dest)
    finally:
        staged.unlink(missing_ok=True)
    return True


def check_copy_destination(dest: Path, file: Path) -> None:
    """Refuse (before anything is written) to replace another file at ``dest``."""
    if dest.exists() and not (dest.is_file() and filecmp.cmp(dest, file, shallow=False)):
        raise SignerError(
            f"{dest} already exists with other content; move it away or give another"
            " --targets-dir (nothing was added)"
        )
