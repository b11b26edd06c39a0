"""Is a device running a withdrawn release? (R56, R57; pure: no I/O)

- WD1 The same decision as the device's own (``client.policy`` rule 7,
  ``running_not_listed``), from the published releases alone: a device runs
  a withdrawn release when the signed set lists, for its hardware model,
  neither its running version nor a newer release it would take (not a
  pre-release). A version that does not parse, or none reported, is
  unknown (None), never "withdrawn".

So the inventory flags the devices the alerts and the operators must move
off, until they leave it; a device on an older release with a newer one
signed is only behind, not on a withdrawn release.
"""

from __future__ import annotations

from collections.abc import Iterable

from repo_metadata.semver import SemVer
from update_server.authorizations.issuing import Release


def running_withdrawn(
    releases: Iterable[Release], *, hardware_model: str, running_version: str | None
) -> bool | None:
    """WD1."""
    if running_version is None:
        return None
    try:
        running = SemVer.parse(running_version)
    except ValueError:
        return None
    for release in releases:
        info = release.info
        if hardware_model not in info.hardware_models:
            continue
        if info.semver == running or (info.semver > running and not info.semver.prerelease):
            return False
    return True
