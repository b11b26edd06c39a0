"""Is a device running a withdrawn release, and which release takes it off? (R56, R57; pure)

- WD1 The same decision as the device's own (``client.policy`` rule 7,
  ``running_not_listed``), from the published releases alone: the signed set
  lists, for its hardware model, neither its running version nor a newer
  release it would take (not a pre-release).
- WD2 Withdrawn: the running version was signed for the device's model by
  an earlier publication (``once_signed``, ``signed_releases`` SR2) and no
  release signed now for that model has it (``fwsign revoke-release``
  removed it), whatever newer release is signed. A version never signed
  here (a factory image) is not withdrawn by WD2: a device on it, with a
  newer release signed, is only behind.
- WD3 A device runs a withdrawn release when WD1 or WD2 holds. A version
  that does not parse, or none reported, is unknown (None), never
  "withdrawn".
- WD4 Its successor is the newest release signed now for its model that is
  not a pre-release, has a higher version than it runs, a
  ``security_version`` no lower than the device's reported floor (none
  reported: 0; the device applies its own floor anyway, policy rule 2) and
  a ``min_installed_version`` the running version meets. A signed recovery
  release is one such release. None: the device stays flagged (WD3) and
  alerted until officers sign one.

So the inventory flags the devices the alerts and the operators must move
off, until they leave it; and the poll offers the successor (``poll`` P6),
which the device still checks against the offline signatures (policy rules
1-5 and 8).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from repo_metadata.semver import SemVer
from update_server.authorizations.issuing import Release


def running_withdrawn(
    releases: Iterable[Release],
    *,
    hardware_model: str,
    running_version: str | None,
    once_signed: Collection[SemVer],
) -> bool | None:
    """WD1-WD3. ``releases`` are signed now; ``once_signed`` the model's versions ever signed."""
    running = SemVer.reported(running_version)
    if running is None:
        return None
    listed = False
    newer = False
    for release in releases:
        info = release.info
        if hardware_model not in info.hardware_models:
            continue
        listed = listed or info.semver == running
        newer = newer or (info.semver > running and not info.semver.prerelease)
    if listed:
        return False
    return not newer or running in once_signed


def successor(
    releases: Iterable[Release],
    *,
    hardware_model: str,
    running_version: str | None,
    security_floor: int | None,
) -> Release | None:
    """WD4: the release that takes the device off its withdrawn one, or None."""
    running = SemVer.reported(running_version)
    if running is None:
        return None
    fitting = [
        release
        for release in releases
        if _takes(release, hardware_model=hardware_model, running=running, floor=security_floor)
    ]
    return max(fitting, key=lambda release: (release.info.semver, release.path), default=None)


def _takes(release: Release, *, hardware_model: str, running: SemVer, floor: int | None) -> bool:
    info = release.info
    return (
        hardware_model in info.hardware_models
        and not info.semver.prerelease
        and info.semver > running
        and info.security_version >= (floor or 0)
        and (
            info.min_installed_version is None
            or running >= SemVer.parse(info.min_installed_version)
        )
    )
