"""A release's SBOM, fetched and verified like any target (R41, R56).

``fwsign add --sbom`` signs a release's SBOM as a target of its own
(``<model>/<name>-<version>.sbom.json``) and names it, with its SHA-256, in
the release's signed firmware fields; the server publishes it as it
publishes the image. A device, or a technician beside it, can thus learn
what a release is made of from the same signed metadata it trusts for the
firmware, and hold it against the advisories that concern it. Rules:

- B1 The release is the one named, or else the one the running slot was
  verified as (its slot record); with neither, nothing is fetched.
- B2 The session is one TUF refresh, as an update's
  (``update.refresh_metadata``: the provisioned root alone, every expiry at
  the device's trusted time), so frozen, rolled back or mixed metadata is
  refused before any SBOM is asked for.
- B3 ngclient resolves the release through the delegations
  (``get_targetinfo``): it must be signed now, and its firmware fields must
  name an SBOM. A release no longer signed (withdrawn, R56) or signed
  without an SBOM has none this device can trust.
- B4 ngclient resolves the SBOM's path the same way, to a target whose
  SHA-256 is the one the release names. An SBOM the metadata does not sign,
  or signs with other bytes, is refused before a byte is downloaded.
- B5 The bytes come through ngclient's ``download_target``: reading stops
  at the signed length (``too_long``) and every signed hash is checked
  (``bad_hash``); bytes that do not verify are never handed out.
- B6 A refusal is raised as a ``ClientError`` carrying its event. One
  that names an attack or a network failure (B2, B5, B4's other bytes) is
  also logged in the device's event log, as an update's would be, so the
  status and the server's alerts see it; a plain answer (no such release,
  no SBOM: event ``error``) is a reply to whoever asked, not a fact about
  the device, and is not logged.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater

from client.errors import ClientError
from client.events import EventType
from client.state import StateDir
from client.update import Remote, classify, explain, refresh_metadata, session_time
from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo

#: Failures B6 logs and reports (as ``update`` does for a check).
_EXPECTED = (
    ClientError,
    tuf_errors.RepositoryError,
    tuf_errors.DownloadError,
    InvalidFieldError,
    OSError,
)


@dataclass(frozen=True)
class ReleaseSbom:
    """A verified SBOM (B5) and the release it belongs to."""

    release: str
    version: str
    path: str
    sha256: str
    data: bytes


def running_release(state: StateDir) -> str:
    """B1: the target path the running slot was verified as."""
    record = state.slot_record(state.bootenv().active)
    if record is None:
        raise ClientError(
            "the running slot has no record of a signed release (a factory image?):"
            " name the release with --release <target path>"
        )
    return record.target_path


def fetch_sbom(
    state: StateDir, remote: Remote, *, release: str | None, clock: datetime
) -> ReleaseSbom:
    """B1-B6: the SBOM of ``release`` (None: the running one), verified against the metadata."""
    state.require_provisioned()
    path = release or running_release(state)
    at = session_time(state, clock=clock)
    try:
        updater, _expiries = refresh_metadata(
            remote,
            cache=state.metadata_dir,
            root=state.trusted_root.read_bytes(),
            at=at,
            state=state,
        )
        return _download(updater, path)
    except _EXPECTED as exc:
        event = classify(exc)
        detail = str(exc) or type(exc).__name__
        if event is EventType.ERROR:
            raise ClientError(detail) from None
        message = explain(event, detail)
        state.events.append(event, message, now=at, target=path, sbom=True)
        raise ClientError(message, event=event) from None


def _download(updater: Updater, path: str) -> ReleaseSbom:
    release = updater.get_targetinfo(path)
    if release is None:
        raise ClientError(f"{path} is not a release the repository signs now")
    info = FirmwareInfo.from_target(release)  # B3: a firmware target, read as the update does
    if info.sbom is None:
        raise ClientError(f"{path} (version {info.version}) is signed without an SBOM")
    sbom = updater.get_targetinfo(info.sbom.path)
    if sbom is None:
        raise ClientError(f"{path} names the SBOM {info.sbom.path}, which no role signs")
    if sbom.hashes.get("sha256") != info.sbom.sha256:
        raise ClientError(
            f"{info.sbom.path} is signed with other bytes than {path} names",
            event=EventType.BAD_HASH,
        )
    with tempfile.TemporaryDirectory(prefix="fwclient-sbom-") as scratch:
        file = Path(scratch) / "sbom.json"
        try:
            updater.download_target(sbom, filepath=str(file))
        except tuf_errors.LengthOrHashMismatchError as exc:
            raise ClientError(f"{info.sbom.path}: {exc}", event=EventType.BAD_HASH) from None
        data = file.read_bytes()
    return ReleaseSbom(path, info.version, info.sbom.path, info.sbom.sha256, data)
