"""The current releases of a product line: the ones some device may still choose.

A product line with hashed bins keeps every release in its bin (the signed
archive) and, in its own role, a copy of each release that no other release
*supersedes*: its current releases. A device reads the product line's role
to find its update and ngclient finds the chosen target there too (a role's
own targets come before its delegations in the walk, TUF 5.6.7), so no bin
is downloaded: with 100,000 releases a check costs the snapshot and one
small role instead of every bin (issue 4: under 100 KiB).

``new`` supersedes ``old`` when it is newer and every device that the signed
rules (``client/policy.py``) let install ``old`` may install ``new`` too:

- ``new.version`` is newer (semantic-version order);
- ``new`` lists every hardware model ``old`` lists (R15);
- ``new.security_version`` is at least ``old``'s (R25): a floor that admits
  ``old`` admits ``new``;
- ``new`` needs no ``min_installed_version``, or ``old`` needs one at least as
  high (a device that meets ``old``'s meets ``new``'s);
- ``new`` is a pre-release only if ``old`` is one (most devices take none);
- ``new`` requires a technician's authorization only if ``old`` does.

So a device never needs a superseded release, apart from local reasons the
signer cannot know (a release that failed its health check on that device;
the client then reads the whole line). Superseding is a strict partial
order, so the current releases of a line are the releases nothing in it
supersedes, and adding one release needs only the current ones and the new
one; withdrawing a current release needs the whole line.

Two invariants, checked by ``fwsign`` before it writes and by the server on
every upload (rules named as in ``verify``):

``current-release-copy``
    every target the line's role lists is in the bin its path hashes to,
    with the same length, hashes and signed fields.
``current-release-missing``
    every firmware release a bin gains is listed by the line's role or
    superseded by a release it lists: a stale list would hide a newer
    security fix from every device.

Pure: targets in, targets or ``UpdateRejectedError`` out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

from tuf.api.metadata import SuccinctRoles, TargetFile, Targets

from repo_metadata.errors import InvalidFieldError, UpdateRejectedError
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.semver import SemVer


def firmware_info(target: TargetFile) -> FirmwareInfo | None:
    """The firmware fields of ``target``, or None for a non-firmware file (an SBOM)."""
    if not target.custom:
        return None
    try:
        return FirmwareInfo.from_target(target)
    except InvalidFieldError:
        return None


def supersedes(new: FirmwareInfo, old: FirmwareInfo) -> bool:
    """Whether every device allowed ``old`` is allowed the newer ``new`` too."""
    if not new.semver > old.semver:
        return False
    if not set(old.hardware_models) <= set(new.hardware_models):
        return False
    if new.security_version < old.security_version:
        return False
    if new.min_installed_version is not None and (
        old.min_installed_version is None
        or SemVer.parse(new.min_installed_version) > SemVer.parse(old.min_installed_version)
    ):
        return False
    if new.semver.prerelease and not old.semver.prerelease:
        return False
    return old.requires_authorization or not new.requires_authorization


def current_releases(targets: Iterable[TargetFile]) -> dict[str, TargetFile]:
    """The firmware targets that no other one supersedes, by path.

    Quadratic in the size of the answer only: candidates are taken newest
    first, and one is kept unless a kept (newer or equal) one supersedes it.
    """
    firmware = [(info, t) for t in targets if (info := firmware_info(t)) is not None]
    firmware.sort(key=lambda pair: (pair[0].semver, pair[1].path), reverse=True)
    kept: list[tuple[FirmwareInfo, TargetFile]] = []
    for info, target in firmware:
        if not any(supersedes(other, info) for other, _ in kept):
            kept.append((info, target))
    return {target.path: target for _, target in sorted(kept, key=lambda p: p[1].path)}


def with_release(current: Mapping[str, TargetFile], new: TargetFile) -> dict[str, TargetFile]:
    """The current releases once ``new`` is added (the old ones suffice)."""
    return current_releases([*current.values(), new])


def same_release(first: TargetFile, second: TargetFile) -> bool:
    """Same length, hashes and signed fields: the copy says what the bin says."""
    return (
        first.length == second.length
        and first.hashes == second.hashes
        and first.custom == second.custom
    )


def check_copies(
    line: str,
    current: Mapping[str, TargetFile],
    archived: Callable[[str], TargetFile | None],
) -> None:
    """Raise unless each current release is in its bin, identical (``current-release-copy``).

    ``archived(path)`` is the target the bin for ``path`` lists, or None.
    """
    for path, target in sorted(current.items()):
        if firmware_info(target) is None:
            raise UpdateRejectedError(
                "current-release-copy",
                f"{line} lists {path}, which is not a firmware release; a product line with"
                " hashed bins lists only copies of its current releases",
            )
        original = archived(path)
        if original is None or not same_release(original, target):
            problem = "is not in its bin" if original is None else "differs from its bin's entry"
            raise UpdateRejectedError(
                "current-release-copy",
                f"{line} lists {path}, which {problem}; add releases with 'fwsign add',"
                " which keeps both",
            )


def check_covered(
    line: str, current: Mapping[str, TargetFile], added: Iterable[TargetFile]
) -> None:
    """Raise unless each added release is current or superseded (``current-release-missing``)."""
    infos = [info for t in current.values() if (info := firmware_info(t)) is not None]
    for target in added:
        info = firmware_info(target)
        if info is None or target.path in current:
            continue
        if not any(supersedes(other, info) for other in infos):
            raise UpdateRejectedError(
                "current-release-missing",
                f"{target.path} is added to a bin, but {line} neither lists it nor a release"
                " that supersedes it: devices would not find it; sign the product line's"
                " role again with 'fwsign add', which updates both",
            )


def check_line_change(
    line: str,
    bins: SuccinctRoles,
    *,
    current: Mapping[str, TargetFile],
    listed_before: Collection[str],
    changed_bins: Iterable[Targets],
    load_bin: Callable[[str], Targets | None],
) -> None:
    """Both invariants for a change touching ``line`` or its bins.

    ``current`` is the line's list after the change, ``listed_before`` the
    paths it listed before, ``changed_bins`` the bins the change rewrites and
    ``load_bin(name)`` any bin as it will be after the change (None if none).
    A release the list drops must be withdrawn or superseded; a bin's
    releases must be listed or superseded; each copy must match its bin.
    """

    def archived(path: str) -> TargetFile | None:
        held = load_bin(bins.get_role_for_target(path))
        return None if held is None else held.targets.get(path)

    check_copies(line, current, archived)
    dropped = [t for p in listed_before if p not in current and (t := archived(p)) is not None]
    check_covered(line, current, dropped)
    for changed in changed_bins:
        check_covered(line, current, changed.targets.values())


def check_complete(
    line: str, current: Mapping[str, TargetFile], archive: Iterable[TargetFile]
) -> None:
    """Raise unless ``current`` is exactly the current releases of the whole ``archive``.

    The full check (``fwsign verify``): it reads every bin, so uploads check
    only the two cheap invariants above.
    """
    expected = current_releases(archive)
    missing = sorted(set(expected) - set(current))
    extra = sorted(set(current) - set(expected))
    if missing:
        raise UpdateRejectedError(
            "current-release-missing",
            f"{line} does not list {missing[0]}, a current release of its bins",
        )
    if extra:
        raise UpdateRejectedError(
            "current-release-copy",
            f"{line} lists {extra[0]}, which its bins do not hold or another release supersedes",
        )
