"""The offline side of the end-to-end tests: a repository signed with fwsign's library, imported.

Officers (root 2 of 3), a release manager (targets) and two engineers (the
``pump-x100`` line, 2 of 2) sign one firmware ``info`` describes; the
server's online keys are its public keys, and with ``authorization`` the
officers also list the server's authorization key in root (R47).
``fwserver import`` then verifies and publishes it, with the firmware's bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer

from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from tests.unprivileged import invoke_fwserver
from update_server.config import ServerConfig

LINE = "pump-x100"
PEOPLE = ("officer1", "officer2", "officer3", "manager", "alice", "bob")


def make_repository(
    path: Path, config: ServerConfig, image: Path, info: FirmwareInfo, *, authorization: bool
) -> dict[str, Signer]:
    """Root, targets, the line, and ``image`` signed by both engineers as ``pump-fw``;
    returns the keys by person (``PEOPLE``), for tests that sign more."""
    keys: dict[str, Signer] = {name: CryptoSigner.generate_ed25519() for name in PEOPLE}
    now = datetime.now(UTC)
    roles = ("snapshot", "timestamp", "authorization")
    online = {role: public_key_from_uri(config.online_keys[role]) for role in roles}
    officers = [keys[n] for n in ("officer1", "officer2", "officer3")]
    init_repository(
        OfflineRepository(path, now=now, signers=[*officers[:2], keys["manager"]], create=True),
        root=RoleKeys([k.public_key for k in officers], 2),
        targets=RoleKeys([keys["manager"].public_key], 1),
        snapshot=online["snapshot"],
        timestamp=online["timestamp"],
        authorization=[online["authorization"]] if authorization else [],
    )
    delegate(
        OfflineRepository(path, now=now, signers=[keys["manager"], keys["alice"], keys["bob"]]),
        name=LINE,
        path_prefix=f"{LINE}/",
        keys=RoleKeys([keys["alice"].public_key, keys["bob"].public_key], 2),
    )
    add_firmware(
        OfflineRepository(path, now=now, signers=[keys["alice"], keys["bob"]]),
        image=image,
        name="pump-fw",
        info=info,
    )
    return keys


def import_repository(data_dir: Path, offline: Path, *, targets_dir: Path) -> None:
    """``fwserver import``, as the operator runs it; the firmware's bytes from ``targets_dir``."""
    imported = invoke_fwserver(
        ["import", "--data-dir", str(data_dir), "--targets-dir", str(targets_dir), str(offline)]
    )
    assert imported.exit_code == 0, imported.output
