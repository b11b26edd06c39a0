"""Offline proof that a slot holds signed firmware (R13, R29, R39).

When a firmware is installed, the signed metadata that vouched for it is kept
beside the slot: its *evidence*. It holds ``root/N.root.json`` for every root
version after the provisioned one (none if root never rotated),
``targets.json``, and each delegated role file (``<role>.json``, the name
percent-encoded as in TUF) met on the way down to the role that signs the
target. ``verify_evidence`` checks it again with no network and no cache,
from the provisioned root alone:

- each new root is signed by the threshold of the root before it and by its
  own (TUF 5.3.4), versions one by one from the provisioned one;
- ``targets`` is signed by the threshold the last root sets;
- the delegation walk is ngclient's (pre-order, depth first, terminating
  delegations end it, TUF 5.6.7), each role verified by its delegator, and
  the first role that lists the target must be the record's ``role``;
- that role lists ``record.target_path`` with exactly ``record.length``,
  ``record.sha256``, and the record's version and security version.

Expiry is not checked: a device keeps running verified firmware after its
metadata expires (R52); freshness is the updater's business at install time.

Failures raise ``ClientError`` whose event is ``bad_signature`` (a threshold
not met) or ``integrity_failure`` (anything missing, malformed or not
matching). The module does no I/O apart from ``read_evidence`` and
``write_evidence``, which keep the files in a slot's evidence directory.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from client.errors import ClientError
from client.events import EventType
from client.state import SlotRecord
from client.walk import walk_to_target
from fwcommon.files import fsync_dir
from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo

ROOT_DIR = "root"
#: Bound on what is read back from a slot's evidence directory.
MAX_EVIDENCE_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"^(?:root/[1-9][0-9]{0,9}\.root|[A-Za-z0-9%][A-Za-z0-9._%-]{0,250})\.json\Z")


def role_file_name(role: str) -> str:
    """The evidence name of a delegated role (or ``targets``)."""
    return f"{quote(role, safe='')}.json"


def root_file_name(version: int) -> str:
    return f"{ROOT_DIR}/{version}.root.json"


def _fail(message: str, event: EventType = EventType.INTEGRITY_FAILURE) -> ClientError:
    return ClientError(f"evidence: {message}", event=event)


def check_names(evidence: Mapping[str, bytes]) -> None:
    """Every name is a root version or a role file (no path can escape the directory)."""
    for name in evidence:
        if not _NAME.match(name) or ".." in name:
            raise _fail(f"{name!r} is not a metadata file name")


def _load(evidence: Mapping[str, bytes], name: str, kind: type[Root | Targets]) -> Metadata[Any]:
    data = evidence.get(name)
    if data is None:
        raise _fail(f"{name} is missing")
    try:
        md: Metadata[Any] = Metadata.from_bytes(data)
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise _fail(f"{name} is not TUF metadata ({exc})") from None
    if not isinstance(md.signed, kind):
        raise _fail(f"{name} holds {md.signed.type} metadata, not {kind.type}")
    return md


def trusted_root_chain(trusted_root: bytes, evidence: Mapping[str, bytes]) -> Root:
    """The newest root reached from the provisioned one through the evidence (TUF 5.3)."""
    try:
        trusted: Root = Metadata[Root].from_bytes(trusted_root).signed
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise _fail(f"the provisioned root is not TUF metadata ({exc})") from None
    roots = {name for name in evidence if name.startswith(f"{ROOT_DIR}/")}
    while (name := root_file_name(trusted.version + 1)) in evidence:
        new = _load(evidence, name, Root)
        roots.discard(name)
        try:
            result = new.signed.get_root_verification_result(
                trusted, new.signed_bytes, new.signatures
            )
        except ValueError as exc:  # not the next version
            raise _fail(f"{name}: {exc}") from None
        if not result:
            raise _fail(
                f"{name} is not signed by the threshold of root v{trusted.version} and of itself",
                EventType.BAD_SIGNATURE,
            )
        trusted = new.signed
    if roots:
        raise _fail(f"{sorted(roots)[0]} does not follow root v{trusted.version}")
    return trusted


def _verified(delegator: Root | Targets, role: str, md: Metadata[Any]) -> None:
    try:
        delegator.verify_delegate(role, md.signed_bytes, md.signatures)
    except ValueError as exc:
        raise _fail(f"{role}: {exc}") from None
    except UnsignedMetadataError as exc:
        raise _fail(
            f"{role} is not signed by the threshold its delegator sets ({exc})",
            EventType.BAD_SIGNATURE,
        ) from None


def _signing_role(
    root: Root, evidence: Mapping[str, bytes], target_path: str
) -> tuple[str, TargetFile]:
    """Walk the delegations as ngclient does; return the first role listing the target."""

    def load(name: str, delegator: Root | Targets) -> Targets:
        md = _load(evidence, role_file_name(name), Targets)
        _verified(delegator, name, md)
        signed: Targets = md.signed
        return signed

    found = walk_to_target(target_path, root, load)
    if found is not None:
        names, target = found
        return names[-1], target
    raise _fail(f"no role in the evidence signs {target_path}")


def verify_evidence(
    trusted_root: bytes,
    evidence: Mapping[str, bytes],
    record: SlotRecord,
    *,
    hardware_model: str | None = None,
) -> None:
    """Check that ``evidence`` proves ``record`` from ``trusted_root``; raise if not.

    With ``hardware_model``, the signed target must also name that model (R15).
    """
    check_names(evidence)
    root = trusted_root_chain(trusted_root, evidence)
    role, target = _signing_role(root, evidence, record.target_path)
    if role != record.role:
        raise _fail(f"{record.target_path} is signed by {role}, the record says {record.role}")
    if target.length != record.length or target.hashes.get("sha256") != record.sha256:
        raise _fail(f"{record.target_path}: the signed length and SHA-256 are not the record's")
    try:
        info = FirmwareInfo.from_target(target)
    except InvalidFieldError as exc:
        raise _fail(str(exc)) from None
    if (info.version, info.security_version) != (record.version, record.security_version):
        raise _fail(
            f"{record.target_path}: signed as version {info.version} (security"
            f" {info.security_version}), the record says {record.version}"
            f" (security {record.security_version})"
        )
    if hardware_model is not None and hardware_model not in info.hardware_models:
        raise _fail(
            f"{record.target_path} is not signed for hardware {hardware_model}",
            EventType.HARDWARE_MISMATCH,
        )


# -- keeping evidence on disk ---------------------------------------------------


def write_evidence(directory: Path, evidence: Mapping[str, bytes]) -> None:
    """Replace ``directory`` with ``evidence``, whole or not at all.

    The files are written and synced in a temporary sibling directory that is
    then renamed into place: a power cut leaves the old directory, none, or
    the new one, never a mix.
    """
    check_names(evidence)
    staging = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / ROOT_DIR).mkdir(parents=True)
    for name, data in evidence.items():
        with (staging / name).open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    fsync_dir(staging / ROOT_DIR)
    fsync_dir(staging)
    clear_evidence(directory)
    staging.rename(directory)
    fsync_dir(directory.parent)


def clear_evidence(directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
        fsync_dir(directory.parent)


def read_evidence(directory: Path) -> dict[str, bytes]:
    """The evidence kept in ``directory`` (empty if there is none)."""
    if not directory.is_dir():
        return {}
    evidence: dict[str, bytes] = {}
    total = 0
    for file in sorted(directory.rglob("*")):
        if not file.is_file():
            continue
        total += file.stat().st_size
        if total > MAX_EVIDENCE_BYTES:
            raise _fail(f"{directory} holds more than {MAX_EVIDENCE_BYTES} bytes")
        evidence[file.relative_to(directory).as_posix()] = file.read_bytes()
    return evidence
