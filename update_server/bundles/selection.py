"""What an offline bundle carries: a pure choice over the published metadata (R13, R25).

A bundle is only another way to carry bytes: the device trusts it exactly as
much as TUF says. So it holds every file the device's ngclient asks for during
the update it would run online, named as ngclient asks for it, and nothing
the server does not publish. Rules:

- S1 (TUF 5.3) The root chain: ``metadata/<v>.root.json`` for each version
  after ``root_from`` (the version the device trusts) up to the current one.
  ``root_from`` is at least 1; one above the current version is refused (the
  device would trust a root this server never published).
- S2 (TUF 5.4-5.6) ``metadata/timestamp.json``, the snapshot version it names
  and each targets role at the version that snapshot lists
  (``<V>.<role>.json``, the role name percent-encoded as ngclient asks).
- S3 The targets roles are the device's own walks: discovery (every role that
  may sign a path under ``<model>/``, top-level targets first, hashed bins
  left out: a product line's role lists its current releases, as
  ``client.discovery`` walks), then ngclient's walk for the release's path and
  for its SBOM's path (pre-order, depth first, a terminating delegation ends
  it: TUF 5.6.7, as ``client.walk``). A release the walk for its path does
  not resolve (a role the snapshot does not list) is refused: no device could
  install it.
- S4 The targets: the release's file and, when its signed firmware fields
  name one, its SBOM's, each under the consistent-snapshot name ngclient
  downloads (``targets/<dir>/<first hash>.<name>``).
- S5 The release: the version named (of a release signed for the model),
  else for a device the release a serving deployment assigns it (if the
  published metadata still signs it with that SHA-256), else the newest the
  device takes (its model, not a pre-release, not below its security floor,
  its ``min_installed_version`` met, newer than what it runs: the rules of
  ``client.policy``, as ``authorizations.offers`` O1 reads them), else for a
  model the newest release signed for it that is not a pre-release. Nothing
  to carry is refused, saying what to name.
- S6 (issue 13, deltas) No delta: a bundle carries the full image. A device
  never looks a delta up offline (``client.update``: an offline session
  takes the full image it carries), and removable media has no thin link
  to spare: a delta's file or roles would be bytes nobody reads.
- S7 (R25, R56) The device's policy looks the release it runs up again
  (``client.policy`` rule 7: a withdrawn running release is reported), so the
  roles of ngclient's walk to each release it may run come along: for a
  device, the releases of the version it reports; for a model, every release
  signed for it. With hashed bins that is the bin of each such release (an
  older release lives in its bin only, not in the line's current list); a
  release no longer signed has no path the server knows, and its bin may be
  missing (the device then refuses the bundle, naming the role).

Pure: role loaders and values in, names or a refusal (``bundles.errors``) out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tuf.api.metadata import TargetFile, Targets

from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.semver import SemVer
from update_server.authorizations import offers
from update_server.authorizations.issuing import Release
from update_server.bundles.errors import BadRootError, NothingToCarryError, UnknownError
from update_server.publication.repository import METADATA_DIR, role_file, target_file

#: A published targets role by name (None when the snapshot lists none).
Loader = Callable[[str], Targets | None]
#: A bound on roles walked, as the device's (2**14 bins plus named roles).
MAX_ROLES = 20_000
#: A path under the model's prefix, to match delegation patterns (``client.discovery``).
PROBE = ".fwclient-probe"
TIMESTAMP_MEMBER = f"{METADATA_DIR}/timestamp.json"


@dataclass(frozen=True)
class DeviceFacts:
    """What the server knows of one device, for S5."""

    device_id: str
    hardware_model: str
    running_version: str | None
    security_floor: int | None


def root_chain(root_from: int, current: int) -> list[str]:
    """S1: the root files a device trusting version ``root_from`` fetches, in order."""
    if root_from < 1:
        raise BadRootError("the root version a device trusts is 1 or more")
    if root_from > current:
        raise BadRootError(
            f"this server publishes root versions up to {current}, not {root_from}:"
            " give the root version the device was provisioned with (or updated to)"
        )
    return [role_file("root", version) for version in range(root_from + 1, current + 1)]


def discovery_roles(model: str, load: Loader, *, archive: bool = False) -> list[str]:
    """S3: every role the device's discovery walks for ``model``, top-down.

    With ``archive``, the hashed bins of a product line too (S7: where every
    release of the line is kept), as ``client.discovery`` walks with it.
    """
    sample = f"{model}/{PROBE}"
    found: list[str] = []
    stack = ["targets"]
    while stack and len(found) < MAX_ROLES:
        name = stack.pop()
        signed = None if name in found else load(name)
        if signed is None:
            continue
        found.append(name)
        stack.extend(reversed(_children(signed, sample, archive=archive)))
    return found


def _children(signed: Targets, sample: str, *, archive: bool) -> list[str]:
    delegations = signed.delegations
    if delegations is None:
        return []
    children = [
        child.name
        for child in (delegations.roles or {}).values()
        if child.paths is None or child.is_delegated_path(sample)
    ]
    if archive and delegations.succinct_roles is not None:
        children += list(delegations.succinct_roles.get_roles())
    return children


def running_releases(releases: Iterable[Release], device: DeviceFacts | None) -> list[Release]:
    """S7: the releases a device of the bundle may run (its policy looks them up again).

    For a device, the releases of its running version (none when unreported);
    for a model, every release signed for it: any device of it may run one.
    """
    if device is None:
        return list(releases)
    return [r for r in releases if r.info.version == device.running_version]


def path_roles(path: str, load: Loader) -> tuple[list[str], TargetFile] | None:
    """S3: the roles ngclient's walk visits for ``path`` (the last signs it), or None."""
    visited, target = walk(path, load)
    return None if target is None else (visited, target)


def walk(path: str, load: Loader) -> tuple[list[str], TargetFile | None]:
    """S3: the roles ngclient's walk for ``path`` visits, and the target if one signs it.

    A role the snapshot does not list ends the walk (ngclient would fail there).
    """
    stack = ["targets"]
    visited: list[str] = []
    while stack and len(visited) < MAX_ROLES:
        name = stack.pop()
        if name in visited:
            continue
        signed = load(name)
        if signed is None:
            return visited, None
        visited.append(name)
        target = signed.targets.get(path)
        if target is not None:
            return visited, target
        if signed.delegations is None:
            continue
        children: list[str] = []
        for child, terminating in signed.delegations.get_roles_for_target(path):
            children.append(child)
            if terminating:
                stack = []
                break
        stack.extend(reversed(children))
    return visited, None


def target_member(target: TargetFile) -> str:
    """S4: the consistent-snapshot name ngclient downloads ``target`` by (its first hash)."""
    digest = next(iter(target.hashes.values()))
    return target_file(target.path, digest)


def releases_in(model: str, roles: Iterable[Targets]) -> list[Release]:
    """S5: the firmware releases under ``<model>/`` signed for ``model``, as discovery sees them."""
    found: dict[str, Release] = {}
    for signed in roles:
        for path, target in signed.targets.items():
            release = release_of(path, target)
            if (
                release is not None
                and path.startswith(f"{model}/")
                and model in release.info.hardware_models
            ):
                found.setdefault(path, release)
    return list(found.values())


def choose(
    releases: Sequence[Release],
    *,
    model: str,
    version: str | None,
    device: DeviceFacts | None,
    assigned: Release | None,
) -> Release:
    """S5: the release a bundle carries."""
    if version is not None:
        named = [release for release in releases if release.info.version == version]
        if not named:
            known = ", ".join(sorted({r.info.version for r in releases})) or "none"
            raise UnknownError(
                f"no release {version} is signed for {model} (versions signed: {known})"
            )
        return max(named, key=lambda release: release.path)
    if device is not None and assigned is not None:
        return assigned
    takes = [release for release in releases if _takes(release, device)]
    if not takes:
        raise NothingToCarryError(_nothing(model, device))
    return max(takes, key=lambda release: (release.info.semver, release.path))


def _takes(release: Release, device: DeviceFacts | None) -> bool:
    """S5: what a device takes (``authorizations.offers.takes``); for a model, no pre-release."""
    if device is None:
        return not release.info.semver.prerelease
    installed = SemVer.reported(device.running_version)
    return offers.takes(release, device.hardware_model, installed, device.security_floor or 0)


def _nothing(model: str, device: DeviceFacts | None) -> str:
    if device is None:
        return f"no release is signed for {model}: publish one, or check the model's name"
    return (
        f"device {device.device_id} takes no published release (it runs"
        f" {device.running_version or 'an unreported version'}): name one with --release"
    )


def release_of(path: str, target: TargetFile) -> Release | None:
    """``target`` as a firmware release, or None for any other target (an SBOM, a delta)."""
    sha256 = target.hashes.get("sha256")
    if not target.custom or sha256 is None:
        return None
    try:
        return Release(path, sha256, FirmwareInfo.from_target(target))
    except InvalidFieldError:
        return None
