"""The published releases, their verified SBOMs, and the devices that run them (R41, R56).

The only part of ``update_server.sbom`` that reads the server's files and
database. Rules:

- I1 The releases are the firmware targets of every targets role the
  published snapshot lists, at the version it lists, each path once (a
  product line's list of current releases and its bin sign the same target).
  A withdrawn release is no longer one of them.
- I2 A release's SBOM is the target its signed firmware fields name (path
  and SHA-256). That target must be published with that SHA-256; its file
  is read under its consistent-snapshot name, never past its signed length,
  and must have the signed length and every signed hash before a byte of it
  is parsed. The server's copy is thus trusted no more than a device trusts
  what it downloads.
- I3 A release without an SBOM, or whose SBOM fails I2 or cannot be read
  (``documents`` D4), is "not checked", with the reason: never clean.
- I4 A device runs a release when its reported running version, as a
  semantic version, is the release's version and the release is signed for
  its hardware model. Decommissioned devices are out of service (R62) and
  not counted; any other state is (a rejected device still runs in the
  field). A device that reported no version, or one that does not parse,
  runs no listed release.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import Targets

from repo_metadata.firmware import FirmwareInfo, SbomRef
from repo_metadata.frontier import firmware_info
from repo_metadata.semver import SemVer
from update_server.devices.models import Device, DeviceState
from update_server.publication.repository import OnlineRepository, target_file
from update_server.sbom.documents import Component, read_components
from update_server.sbom.errors import DocumentError, UncheckedError


@dataclass(frozen=True)
class PublishedRelease:
    path: str
    info: FirmwareInfo
    #: The SBOM's components (I2), or None when not checked (``problem`` says why, I3).
    components: tuple[Component, ...] | None
    problem: str | None = None


def published_releases(repository: OnlineRepository) -> tuple[PublishedRelease, ...]:
    """I1-I3 for the published state of ``repository``."""
    repository.require_initialised()
    found: dict[str, PublishedRelease] = {}
    for path, info in _firmware(repository):
        if path in found:
            continue
        try:
            found[path] = PublishedRelease(path, info, _components(repository, info.sbom))
        except UncheckedError as exc:
            found[path] = PublishedRelease(path, info, None, str(exc))
    return tuple(sorted(found.values(), key=lambda r: r.path))


def _firmware(repository: OnlineRepository) -> Iterator[tuple[str, FirmwareInfo]]:
    for role in repository.published_roles():
        published = repository.published(role)
        if published is None:
            continue
        signed: Targets = published.signed
        for path, target in signed.targets.items():
            info = firmware_info(target)
            if info is not None:
                yield path, info


def _components(repository: OnlineRepository, sbom: SbomRef | None) -> tuple[Component, ...]:
    data = verified_sbom(repository, sbom)
    try:
        return read_components(data)
    except DocumentError as exc:
        raise UncheckedError(
            f"its SBOM {sbom.path if sbom else ''} cannot be read: {exc}"
        ) from None


def verified_sbom(repository: OnlineRepository, sbom: SbomRef | None) -> bytes:
    """I2: the SBOM's bytes, checked against the signed targets metadata, or ``UncheckedError``."""
    if sbom is None:
        raise UncheckedError("no SBOM is signed with it (fwsign add --sbom)")
    target = repository.published_target(sbom.path)
    if target is None:
        raise UncheckedError(f"its SBOM {sbom.path} is not a published target")
    if target.hashes.get("sha256") != sbom.sha256:
        raise UncheckedError(
            f"its SBOM {sbom.path} is signed with other bytes than the release names"
        )
    file = repository.directory / target_file(target.path, sbom.sha256)
    try:
        with file.open("rb") as stream:
            data = stream.read(target.length + 1)
        target.verify_length_and_hashes(data)
    except FileNotFoundError:
        raise UncheckedError(
            f"the server has no file for its SBOM {sbom.path} (fwserver import"
            " --allow-missing-files; upload it with fwsign publish)"
        ) from None
    except LengthOrHashMismatchError as exc:
        raise UncheckedError(
            f"the server's file of its SBOM {sbom.path} is not the signed one: {exc}"
        ) from None
    return data


def devices_running(
    db: Session, releases: Iterable[PublishedRelease]
) -> dict[str, tuple[str, ...]]:
    """I4: for each release path, the ids of the devices that run it (sorted)."""
    by_version: dict[tuple[str, SemVer], list[str]] = {}
    for release in releases:
        for model in release.info.hardware_models:
            by_version.setdefault((model, release.info.semver), []).append(release.path)
    running: dict[str, list[str]] = {}
    rows = db.scalars(
        select(Device)
        .where(Device.state != DeviceState.DECOMMISSIONED.value)
        .where(Device.running_version.is_not(None))
        .order_by(Device.id)
    )
    for device in rows:
        version = SemVer.reported(device.running_version)
        for path in by_version.get((device.hardware_model, version), []) if version else []:
            running.setdefault(path, []).append(device.id)
    return {path: tuple(ids) for path, ids in running.items()}
