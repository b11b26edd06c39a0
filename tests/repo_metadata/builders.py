"""Builders for the repo_metadata tests: real tuf objects and freshly generated keys."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Key, SSlibKey
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    SuccinctRoles,
    TargetFile,
    Targets,
)

from repo_metadata.firmware import FirmwareInfo

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)
FIRMWARE_PATH = "pump-x100/infusion-1.2.0.bin"


def new_key() -> Key:
    """A fresh Ed25519 public key with its default keyid."""
    return CryptoSigner.generate_ed25519().public_key


def default_keyid(keytype: str, scheme: str, keyval: dict[str, Any]) -> str:
    """The keyid securesystemslib gives a key: SHA-256 of its canonical JSON."""
    canonical = encode_canonical({"keytype": keytype, "scheme": scheme, "keyval": keyval})
    return hashlib.sha256(str(canonical).encode()).hexdigest()


def relisted(key: Key, keyid: str | None = None, **changes: Any) -> SSlibKey:
    """``key`` with some fields changed, under ``keyid`` (default: its own default keyid)."""
    fields: dict[str, Any] = {
        "keytype": key.keytype,
        "scheme": key.scheme,
        "keyval": {**key.keyval},
    }
    fields.update(changes)
    keyid = keyid or default_keyid(fields["keytype"], fields["scheme"], fields["keyval"])
    return SSlibKey(keyid, fields["keytype"], fields["scheme"], fields["keyval"])


def firmware_custom(**overrides: Any) -> dict[str, Any]:
    info = FirmwareInfo(version="1.2.0", security_version=3, hardware_models=("pump-x100",))
    return {**info.to_custom(), **overrides}


def target(path: str = FIRMWARE_PATH, custom: dict[str, Any] | None = None) -> TargetFile:
    fields = {} if custom is None else {"custom": custom}
    return TargetFile(length=4, hashes={"sha256": "0" * 64}, path=path, unrecognized_fields=fields)


def firmware_target(path: str = FIRMWARE_PATH) -> TargetFile:
    return target(path, firmware_custom())


def root_metadata() -> Metadata[Root]:
    """A valid root: one key per top-level role, threshold 1."""
    root = Root(expires=EXPIRES)
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.add_key(new_key(), role)
    return Metadata(root)


def delegated_role(
    name: str,
    keys: list[Key],
    *,
    threshold: int = 1,
    paths: list[str] | None = None,
    path_hash_prefixes: list[str] | None = None,
) -> DelegatedRole:
    if paths is None and path_hash_prefixes is None:
        paths = ["pump-x100/*"]
    keyids = [key.keyid for key in keys]
    return DelegatedRole(name, keyids, threshold, False, paths, path_hash_prefixes)


def delegations(*roles: tuple[DelegatedRole, list[Key]]) -> Delegations:
    keys = {key.keyid: key for _, role_keys in roles for key in role_keys}
    return Delegations(keys, roles={role.name: role for role, _ in roles})


def succinct_delegations(
    *, bit_length: int = 4, prefix: str = "bin", threshold: int = 1, key: Key | None = None
) -> Delegations:
    key = key or new_key()
    succinct = SuccinctRoles([key.keyid], threshold, bit_length, prefix)
    return Delegations({key.keyid: key}, succinct_roles=succinct)


def targets_metadata(
    targets: list[TargetFile] | None = None, delegations: Delegations | None = None
) -> Metadata[Targets]:
    by_path = {t.path: t for t in (targets or [])}
    return Metadata(Targets(expires=EXPIRES, targets=by_path, delegations=delegations))


def to_doc(metadata: Metadata[Any]) -> dict[str, Any]:
    """The JSON document of ``metadata`` as a dict, to tamper with."""
    doc: dict[str, Any] = json.loads(metadata.to_bytes())
    return doc


def to_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()
