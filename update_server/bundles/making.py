"""Making a bundle from the published repository: ``selection`` read from disk, then written.

- M1 The published files are read under the publication lock (a short
  wait, then 503), so root, timestamp, snapshot and targets roles are of one
  publication: a change replaces ``root.json`` before ``timestamp.json``,
  and read apart a bundle could pair a new root with an old timestamp.
  Metadata is small and read into memory; a target file is never rewritten
  (consistent snapshots), so it is only checked there (a regular file of
  its signed length) and read by the writer after.
- M2 The release comes from the device's own walks (``selection`` S3, S5-S7):
  the release a deployment assigns, or a named version, is taken only as
  the walk for its path finds it signed, with the same SHA-256.
- M3 ``write`` goes through ``fwcommon.bundle.write_bundle``: names checked,
  bounded by ``max_bytes`` (over it: ``BundleError``, nothing left), the
  file appearing whole or not at all. An authorization, when given, is
  the document exactly as the server issued it (``authorization.json``).
- M4 Each bundle made is one audit entry (``bundle.create``): the model,
  the device, the release and its SHA-256, the root the chain starts after,
  the bundle's SHA-256 and size, the authorization's nonce prefix, who and
  from where. A refused request on a page is one entry too (``refused``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Targets

from fwcommon.bundle import AUTHORIZATION, Manifest, write_bundle
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.authorizations.issuing import Release
from update_server.bundles import selection
from update_server.bundles.errors import UnknownError, UnusableError
from update_server.bundles.selection import DeviceFacts
from update_server.config import ServerConfig
from update_server.deployments.models import Deployment, DeploymentDevice
from update_server.deployments.rollout import SERVING
from update_server.devices.models import Device, DeviceState
from update_server.errors import ConflictError, ServiceUnavailableError
from update_server.publication.errors import BusyError, PublicationError
from update_server.publication.lock import publication_lock
from update_server.publication.repository import OnlineRepository, role_file

#: M1: how long a page waits for a publication in progress (the CLI waits longer).
PAGE_LOCK_WAIT = 5.0


@dataclass(frozen=True)
class Request:
    """What to bundle: a model, or one device of it, from a root version, a release."""

    hardware_model: str
    root_from: int = 1
    version: str | None = None
    device: DeviceFacts | None = None
    #: M2: (target path, SHA-256) a serving deployment assigns the device.
    assigned: tuple[str, str] | None = None


@dataclass(frozen=True)
class Contents:
    """M1: the published files a bundle carries, read at one moment."""

    request: Request
    release: Release
    metadata: tuple[tuple[str, bytes], ...]
    targets: tuple[tuple[str, Path], ...]

    def members(self, authorization: bytes | None) -> list[tuple[str, Path | bytes]]:
        members: list[tuple[str, Path | bytes]] = [*self.metadata, *self.targets]
        if authorization is not None:
            members.append((AUTHORIZATION, authorization))
        return members


@dataclass(frozen=True)
class Made:
    """What ``write`` wrote, for the answer and the audit (M4)."""

    path: Path
    size: int
    sha256: str
    manifest: Manifest
    names: tuple[str, ...]
    release: Release


def device_request(
    db: Session, device_id: str, *, root_from: int | None, version: str | None
) -> Request:
    """A request for one accepted device: its model, facts and assignment (S5)."""
    device = db.get(Device, device_id)
    if device is None:
        raise UnknownError(f"no device {device_id[:64]!r} is registered on this server")
    if device.state != DeviceState.ACCEPTED:
        raise ConflictError(
            f"device {device.id} is {device.state}: only an accepted device gets a bundle"
        )
    facts = DeviceFacts(
        device.id, device.hardware_model, device.running_version, device.security_floor
    )
    # The server records no device's trusted root version: a device provisioned
    # with root 1 needs the whole chain (S1), which any later one accepts too.
    return Request(
        hardware_model=device.hardware_model,
        root_from=1 if root_from is None else root_from,
        version=version,
        device=facts,
        assigned=None if version is not None else assignment(db, device.id),
    )


def assignment(db: Session, device_id: str) -> tuple[str, str] | None:
    """M2: (path, SHA-256) of the newest serving deployment whose started waves hold it.

    Read only: the poll's own evaluation (``deployments.poll``) is not run here.
    """
    rows = db.execute(
        select(DeploymentDevice, Deployment)
        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
        .where(DeploymentDevice.device_id == device_id)
        .where(Deployment.state.in_(list(SERVING)))
        .order_by(Deployment.id.desc())
    ).all()
    for row, deployment in rows:
        if row.wave < deployment.waves_started:
            return deployment.target_path, deployment.sha256
    return None


def collect(config: ServerConfig, request: Request, *, now: datetime, wait: float) -> Contents:
    """M1, M2: the files of the bundle ``request`` asks for, from the published repository."""
    try:
        with publication_lock(config.data_dir, timeout=wait):
            return _collect(OnlineRepository(config.repository_dir, now=now), request)
    except BusyError as exc:
        raise ServiceUnavailableError(exc.message, retry_after=5) from None
    except PublicationError as exc:
        raise UnusableError(f"the published repository cannot be read: {exc.message}") from None


def write(
    contents: Contents,
    output: Path,
    *,
    now: datetime,
    max_bytes: int,
    authorization: bytes | None = None,
) -> Made:
    """M3: the bundle file at ``output`` (atomic, bounded); ``BundleError`` over the bound."""
    request = contents.request
    manifest = Manifest(
        hardware_model=request.hardware_model,
        device=None if request.device is None else request.device.device_id,
        created=now,
        root_from=request.root_from,
        release=contents.release.path,
        authorization=AUTHORIZATION if authorization is not None else None,
    )
    members = contents.members(authorization)
    size = write_bundle(output, manifest, members, max_bytes=max_bytes)
    with output.open("rb") as written:
        digest = hashlib.file_digest(written, "sha256").hexdigest()
    names = tuple(name for name, _ in members)
    return Made(output, size, digest, manifest, names, contents.release)


def audit_made(
    db: Session, made: Made, *, actor: Actor, now: datetime, nonce: str | None = None
) -> None:
    """M4: one ``bundle.create`` entry for a bundle written."""
    manifest = made.manifest
    detail: dict[str, Any] = {
        "model": manifest.hardware_model,
        "device": manifest.device,
        "release": made.release.path,
        "release_sha256": made.release.sha256,
        "root_from": manifest.root_from,
        "sha256": made.sha256,
        "size": made.size,
        "file": made.path.name[:200],
        "authorization": None if nonce is None else nonce[:16],
    }
    object_ = _object(manifest.hardware_model, manifest.device)
    _append(db, object_, "success", actor=actor, now=now, detail=detail)


def audit_refused(
    db: Session,
    *,
    actor: Actor,
    model: str,
    device: str | None,
    reason: str,
    now: datetime,
) -> None:
    """M4: one ``bundle.create`` entry for a request refused on a page."""
    detail = {"model": model[:64], "device": device and device[:64], "reason": reason[:300]}
    _append(db, _object(model, device), "refused", actor=actor, now=now, detail=detail)


def _append(
    db: Session,
    object_: str,
    outcome: str,
    *,
    actor: Actor,
    now: datetime,
    detail: dict[str, Any],
) -> None:
    event = audit_event(
        Action.BUNDLE_CREATE, actor=actor, object=object_, outcome=outcome, time=now, detail=detail
    )
    append(db, event)


def _object(model: str, device: str | None) -> str:
    return f"device:{device[:64]}" if device else f"model:{model[:64]}"


# -- M1, M2: reading ------------------------------------------------------------------


def _collect(repository: OnlineRepository, request: Request) -> Contents:
    repository.require_initialised()
    model = request.hardware_model
    load = repository.current_targets
    discovered = selection.discovery_roles(model, load)
    archive = selection.discovery_roles(model, load, archive=True)
    every = selection.releases_in(model, [_loaded(load, name) for name in archive])
    if not every and request.device is None:
        raise UnknownError(f"no release is signed for a model {model[:64]!r}: check its name")
    current = selection.releases_in(model, [_loaded(load, name) for name in discovered])
    chosen = selection.choose(
        every if request.version is not None else current,  # a named one may be in a bin
        model=model,
        version=request.version,
        device=request.device,
        assigned=_assigned(request, load),
    )
    roles, targets = _walked(chosen, load)
    running = selection.running_releases(every, request.device)
    running_roles = [role for r in running for role in selection.walk(r.path, load)[0]]
    names = list(dict.fromkeys([*discovered, *roles, *running_roles]))  # no delta (S6)
    root_version = repository.published_version("root") or 0
    metadata = [
        *_root_chain(repository, selection.root_chain(request.root_from, root_version)),
        (selection.TIMESTAMP_MEMBER, _bytes(repository, "timestamp")),
        *(_role(repository, role) for role in ["snapshot", *names]),
    ]
    directory = repository.directory
    files = tuple(_target_file(directory, name, length) for name, length in targets)
    return Contents(request, chosen, tuple(metadata), files)


def _walked(release: Release, load: selection.Loader) -> tuple[list[str], list[tuple[str, int]]]:
    """S3, S4: roles on the path to the release (and its SBOM), and the target files."""
    found = selection.path_roles(release.path, load)
    if found is None or found[1].hashes.get("sha256") != release.sha256:
        raise UnusableError(f"the delegation walk does not resolve {release.path} to this release")
    roles, target = found
    files = [(selection.target_member(target), target.length)]
    sbom = release.info.sbom
    if sbom is not None:
        walked = selection.path_roles(sbom.path, load)
        if walked is None or walked[1].hashes.get("sha256") != sbom.sha256:
            raise UnusableError(
                f"{release.path} names the SBOM {sbom.path}, which the published metadata does"
                " not sign with that SHA-256: a device would refuse it"
            )
        roles += [role for role in walked[0] if role not in roles]
        files.append((selection.target_member(walked[1]), walked[1].length))
    return roles, files


def _assigned(request: Request, load: selection.Loader) -> Release | None:
    """M2: the assigned release as the walk finds it signed, else None."""
    if request.assigned is None:
        return None
    path, sha256 = request.assigned
    found = selection.path_roles(path, load)
    release = None if found is None else selection.release_of(path, found[1])
    return release if release is not None and release.sha256 == sha256 else None


def _loaded(load: selection.Loader, name: str) -> Targets:
    signed = load(name)
    if signed is None:
        raise UnusableError(f"the published snapshot lists no role {name}")
    return signed


def _root_chain(repository: OnlineRepository, names: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(name, _file_bytes(repository.directory, name)) for name in names]


def _role(repository: OnlineRepository, role: str) -> tuple[str, bytes]:
    version = repository.published_version(role)
    if version is None:
        raise UnusableError(f"the published snapshot lists no role {role}")
    return role_file(role, version), _bytes(repository, role)


def _bytes(repository: OnlineRepository, role: str) -> bytes:
    data = repository.published_bytes(role)
    if data is None:
        raise UnusableError(f"no published {role} metadata")
    return data


def _file_bytes(directory: Path, name: str) -> bytes:
    file = directory / name
    try:
        if stat.S_ISREG(os.lstat(file).st_mode):
            return file.read_bytes()
    except FileNotFoundError:
        pass
    raise UnusableError(f"{name} is not a file of the published repository")


def _present(directory: Path, name: str, length: int) -> bool:
    """Whether a target's published file is there: a regular file of its signed length."""
    try:
        info = os.lstat(directory / name)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == length


def _target_file(directory: Path, name: str, length: int) -> tuple[str, Path]:
    """M1: a target's published file, which must be there."""
    if not _present(directory, name, length):
        raise UnusableError(
            f"the server holds no file of {length} bytes for {name}: upload the signed file"
            " (PUT /api/v1/targets/<path>), then make the bundle again"
        )
    return name, directory / name
