"""Which release a device is offered to authorize: a pure choice over the published releases.

A technician's page shows, for each device, the release a technician would
authorize for it. The choice mirrors the device's own (``client.policy``),
so the page never offers what the device would not take, nor hides what it
waits for. Rules:

- O1: only releases signed for the device's hardware model, newer than the
  version it last reported (an unknown version: any), not pre-releases
  (the device ignores them unless asked), not below its security floor
  (R25: the device refuses a downgrade) and whose ``min_installed_version``
  its running version meets (else it waits for an intermediate release).
- O2: of those, the newest (semantic-version order) is what the device
  takes next. It is offered only if it requires an authorization; one that
  needs none the device installs by itself, so nothing is offered.
- O3: the release offered is the one ``issuing.published_release`` binds
  (the SHA-256 the published metadata signs), read through it: the page
  and the issuing never disagree on what a path means.
"""

from __future__ import annotations

from collections.abc import Iterable

from repo_metadata.semver import SemVer
from update_server.authorizations.issuing import Release, published_release
from update_server.errors import NotFoundError
from update_server.publication.repository import OnlineRepository


def published_releases(repository: OnlineRepository) -> list[Release]:
    """O3: every firmware target the published metadata signs, as ``published_release`` reads it.

    A target whose firmware fields do not read is no release: left out.
    """
    paths: dict[str, None] = {}
    for role in repository.published_roles():
        published = repository.published(role)
        if published is not None:
            paths.update(dict.fromkeys(published.signed.targets))
    releases = []
    for path in paths:
        try:
            releases.append(published_release(repository, path))
        except NotFoundError:
            continue
    return releases


def offered(
    releases: Iterable[Release],
    *,
    hardware_model: str,
    running_version: str | None,
    security_floor: int | None,
) -> Release | None:
    """O1, O2: the release to authorize for a device, or None when there is none."""
    installed = SemVer.reported(running_version)
    fitting = [
        release
        for release in releases
        if takes(release, hardware_model, installed, security_floor or 0)
    ]
    if not fitting:
        return None
    newest = max(fitting, key=lambda release: (release.info.semver, release.path))
    return newest if newest.info.requires_authorization else None


def takes(release: Release, hardware_model: str, installed: SemVer | None, floor: int) -> bool:
    """O1: a device of ``hardware_model`` running ``installed`` (None: unknown) above
    security floor ``floor`` would take ``release`` (``client.policy``'s rules, as read here)."""
    info = release.info
    if hardware_model not in info.hardware_models or info.semver.prerelease:
        return False
    if info.security_version < floor:
        return False
    if installed is None:
        return info.min_installed_version is None
    needs = info.min_installed_version
    if needs is not None and installed < SemVer.parse(needs):
        return False
    return info.semver > installed
