"""``fwsign authorization-keys``: who may authorize a technician's install (R9, R47).

The keys are a field of root, so a change is a new root that the officers'
threshold (old and new) must sign before it counts, and devices follow it
through TUF like every root: the server alone can never swap them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata, Root

from repo_metadata.authorization import AuthorizationKeys
from signer.errors import SignerError
from signer.inspect import verify_repository
from signer.keyops import rotate, rotate_authorization_keys
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.tuf_mirror import InMemoryMirror

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


def trusted(repo: Path) -> AuthorizationKeys | None:
    root = Metadata[Root].from_bytes((repo / "metadata" / "root.json").read_bytes())
    return AuthorizationKeys.from_root(root.signed)


@pytest.fixture(scope="module")
def authorizer() -> Signer:
    """The server's authorization key (purpose ``authorization``)."""
    return CryptoSigner.generate_ed25519()


def test_adding_the_authorization_key_is_a_root_the_officers_sign_and_devices_follow(
    repo: Path, open_repo: Opener, people: dict[str, Signer], authorizer: Signer, tmp_path: Path
) -> None:
    """R47: the device learns the key only from a root signed by the officers' threshold."""
    assert trusted(repo) is None
    rotate_authorization_keys(open_repo(repo, "officer1"), add=[authorizer.public_key])
    keys = trusted(repo)
    assert keys is not None and set(keys.keys) == {authorizer.public_key.keyid}
    now = open_repo(repo).now
    assert not verify_repository(repo, now=now).ok  # one officer of two: not yet
    sign_roles(open_repo(repo, "officer2"))
    assert verify_repository(repo, now=now).ok

    mirror = InMemoryMirror()
    mirror.publish(
        repo, snapshot_signer=people["snapshot"], timestamp_signer=people["timestamp"], now=now
    )
    device = tmp_path / "device"
    first = (repo / "metadata" / "1.root.json").read_bytes()
    mirror.updater(first, device).refresh()
    seen = Metadata[Root].from_bytes((device / "metadata" / "root.json").read_bytes())
    assert AuthorizationKeys.from_root(seen.signed) == keys


def test_rotating_the_authorization_key_removes_the_old_one(
    repo: Path, open_repo: Opener, authorizer: Signer
) -> None:
    """A stolen authorization key is rotated out by the officers alone."""
    successor = CryptoSigner.generate_ed25519()
    rotate_authorization_keys(open_repo(repo, "officer1", "officer2"), add=[authorizer.public_key])
    rotate_authorization_keys(
        open_repo(repo, "officer1", "officer2"),
        add=[successor.public_key],
        remove=[authorizer.public_key.keyid],
    )
    keys = trusted(repo)
    assert keys is not None and set(keys.keys) == {successor.public_key.keyid}


@pytest.mark.parametrize("holder", ["officer3", "manager1", "alice", "snapshot"])
def test_a_key_that_signs_metadata_cannot_authorize_installs_r47(
    line: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged, holder: str
) -> None:
    with unchanged(line), pytest.raises(SignerError, match="R47"):
        rotate_authorization_keys(open_repo(line, "officer1"), add=[people[holder].public_key])


def test_an_authorization_key_cannot_then_join_root_r47(
    repo: Path, open_repo: Opener, authorizer: Signer, unchanged: Unchanged
) -> None:
    rotate_authorization_keys(open_repo(repo, "officer1", "officer2"), add=[authorizer.public_key])
    with unchanged(repo), pytest.raises(SignerError, match="authorization"):
        rotate(open_repo(repo, "officer1", "officer2"), role="root", add=[authorizer.public_key])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, "nothing to change"),
        ({"remove": ["ab" * 32]}, "is not an authorization key"),
        ({"threshold": 2}, "threshold of 2"),
    ],
)
def test_a_change_that_makes_no_sense_is_refused_with_nothing_written(
    repo: Path,
    open_repo: Opener,
    authorizer: Signer,
    unchanged: Unchanged,
    change: dict[str, object],
    message: str,
) -> None:
    rotate_authorization_keys(open_repo(repo, "officer1", "officer2"), add=[authorizer.public_key])
    with unchanged(repo), pytest.raises(SignerError, match=message):
        rotate_authorization_keys(open_repo(repo, "officer1", "officer2"), **change)  # type: ignore[arg-type]
