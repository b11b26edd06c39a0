"""``signer.keyops``: key rotation and revocation (R5 return to a secure state, R47).

A rotated or revoked key stops counting at once; a new root must be signed
by the threshold of the old root and of the new one before a device moves
to it; a change that would leave a role unable to meet its threshold is
refused with nothing written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate
from signer.errors import KeyNotAuthorizedError, SignerError
from signer.inspect import status, verify_repository
from signer.keyops import resolve_keyid, revoke_key, rotate
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.tuf_mirror import InMemoryMirror

INFO = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=("pump-x100",))

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


def role_md(repo: Path, role: str) -> Metadata[Any]:
    return Metadata.from_bytes((repo / "metadata" / f"{role}.json").read_bytes())


def keyid(people: dict[str, Signer], name: str) -> str:
    return people[name].public_key.keyid


def problems(repo: OfflineRepository, role: str) -> tuple[str, ...]:
    return next(s.problems for s in status(repo) if s.role == role)


@pytest.fixture
def officer4() -> Signer:
    """A new security officer's key, generated for this test."""
    return CryptoSigner.generate_ed25519()


@pytest.fixture
def signed_release(line: Path, open_repo: Opener, image: Path) -> Path:
    add_firmware(open_repo(line, "alice", "bob"), image=image, name="pump-fw", info=INFO)
    return line


# --- rotate a product line ----------------------------------------------------------


def test_rotate_product_line_add_carol_remove_bob_new_threshold(
    signed_release: Path, open_repo: Opener, people: dict[str, Signer], now: datetime
) -> None:
    """R5: bob leaves; the line needs a new version, signed by alice and carol.

    Its v1 was signed (and may be published) under the old keys: the
    rotation starts v2 (to_resign), which publish will send, not new
    signatures on v1, which it would not.
    """
    repo = signed_release
    session = open_repo(repo, "manager1")
    written = rotate(
        session,
        role="pump-x100",
        add=[people["carol"].public_key],
        remove=[keyid(people, "bob")],
        threshold=2,
    )
    assert written == ["targets", "pump-x100"]
    assert [role for role, _why in session.to_resign] == ["pump-x100"]
    assert role_md(repo, "pump-x100").signed.version == 2
    assert role_md(repo, "pump-x100").signatures == {}
    delegations = role_md(repo, "targets").signed.delegations
    entry = delegations.roles["pump-x100"]
    assert set(entry.keyids) == {keyid(people, "alice"), keyid(people, "carol")}
    assert entry.threshold == 2
    assert keyid(people, "bob") not in delegations.keys
    assert keyid(people, "carol")[:12] in problems(open_repo(repo), "pump-x100")[0]
    failures = verify_repository(repo, now=now).failures
    assert len(failures) == 1
    assert failures[0].startswith("pump-x100: pump-x100 v2 has 0 valid signature(s) of the 2")
    sign_roles(open_repo(repo, "carol"))
    assert not verify_repository(repo, now=now).ok  # alice signed v1, not v2
    sign_roles(open_repo(repo, "alice"))
    assert verify_repository(repo, now=now).ok


def test_rotate_hashed_bin_product_line_updates_the_succinct_roles(
    repo: Path, open_repo: Opener, people: dict[str, Signer], now: datetime, image: Path
) -> None:
    """Every bin is signed by the line's keys, so a rotation reaches them all."""
    keys = RoleKeys([people["alice"].public_key, people["bob"].public_key], 2)
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=keys,
        bin_bits=2,
    )
    add_firmware(open_repo(repo, "alice", "bob"), image=image, name="pump-fw", info=INFO)
    sign_roles(open_repo(repo, "alice", "bob"))

    written = rotate(
        open_repo(repo, "manager1", "alice"),
        role="pump-x100",
        add=[people["carol"].public_key],
        remove=[keyid(people, "bob")],
    )

    bins = [f"pump-x100-bins-{n}" for n in range(4)]
    assert written == ["targets", "pump-x100", *bins]  # bob's signatures no longer count
    assert {role_md(repo, name).signed.version for name in bins} == {2}  # a new version each
    line = role_md(repo, "pump-x100").signed
    bins = line.delegations.succinct_roles
    assert set(bins.keyids) == {keyid(people, "alice"), keyid(people, "carol")}
    assert bins.threshold == 2
    assert set(line.delegations.keys) == set(bins.keyids)
    sign_roles(open_repo(repo, "carol"))
    report = verify_repository(repo, now=now)
    assert report.ok, report.failures
    assert report.targets == 1


def test_rotate_a_hashed_bin_directly_refused(
    repo: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """A bin's keys are its line's: one bin with other keys would split the line (R5)."""
    keys = RoleKeys([people["alice"].public_key], 1)
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=keys,
        bin_bits=1,
    )
    with unchanged(repo), pytest.raises(SignerError, match="rotate its product line instead"):
        rotate(open_repo(repo, "alice"), role="pump-x100-bins-0", add=[people["carol"].public_key])


@pytest.mark.parametrize(
    ("add", "remove", "threshold", "message"),
    [
        ((), (), None, "nothing to change"),
        ((), ("carol",), None, "is not a key of pump-x100"),
        (("alice",), (), None, "is already a key of pump-x100"),
        ((), (), 3, "would have 2 key.s. for a threshold of 3"),
        ((), ("bob",), None, "would have 1 key.s. for a threshold of 2"),
    ],
    ids=["nothing", "remove-unknown", "add-twice", "threshold-above-keys", "under-threshold"],
)
def test_rotate_that_cannot_be_met_or_makes_no_sense_refused(
    line: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    unchanged: Unchanged,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    threshold: int | None,
    message: str,
) -> None:
    """R5: a rotation that leaves a role unsignable, or changes nothing, is refused."""
    with unchanged(line), pytest.raises(SignerError, match=message):
        rotate(
            open_repo(line, "manager1"),
            role="pump-x100",
            add=[people[n].public_key for n in add],
            remove=[keyid(people, n) for n in remove],
            threshold=threshold,
        )


# --- rotate root --------------------------------------------------------------------------


def test_rotate_root_needs_old_and_new_threshold_then_devices_follow(
    repo: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    now: datetime,
    officer4: Signer,
    tmp_path: Path,
) -> None:
    """TUF 5.3.4 / key compromise: root v2 counts only with old AND new thresholds."""
    session = OfflineRepository(repo, now=now, signers=[people["officer1"], officer4])
    rotate(session, role="root", add=[officer4.public_key], remove=[keyid(people, "officer1")])

    root = role_md(repo, "root")
    assert root.signed.version == 2
    assert keyid(people, "officer1") not in root.signed.keys
    found = problems(open_repo(repo), "root")
    assert len(found) == 2
    assert "(threshold 2 of the previous root)" in found[0]
    assert "(threshold 2 of the new root)" in found[1]
    failures = verify_repository(repo, now=now).failures
    assert len(failures) == 1
    assert failures[0].startswith("root: root v2 has 1 valid signature(s) of the 2")

    sign_roles(open_repo(repo, "officer2"))

    assert problems(open_repo(repo), "root") == ()
    assert verify_repository(repo, now=now).ok
    metadata = repo / "metadata"
    assert (metadata / "1.root.json").is_file()
    assert (metadata / "2.root.json").read_bytes() == (metadata / "root.json").read_bytes()
    mirror = InMemoryMirror()
    mirror.publish(
        repo, snapshot_signer=people["snapshot"], timestamp_signer=people["timestamp"], now=now
    )
    device = tmp_path / "device"
    mirror.updater((metadata / "1.root.json").read_bytes(), device).refresh()
    assert Metadata.from_bytes((device / "metadata" / "root.json").read_bytes()).signed.version == 2


def test_rotate_root_to_a_key_another_top_level_role_uses_refused(
    repo: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """R47 one key, one use: the release manager's targets key cannot join root."""
    with unchanged(repo), pytest.raises(SignerError, match=r"rule: key-reuse"):
        rotate(
            open_repo(repo, "officer1", "officer2"),
            role="root",
            add=[people["manager1"].public_key],
        )


@pytest.mark.parametrize(
    ("role", "key"),
    [
        pytest.param("pump-x100", "manager2", id="targets-key-into-product-line"),
        pytest.param("pump-x100", "officer3", id="root-key-into-product-line"),
        pytest.param("root", "alice", id="engineer-key-into-root"),
    ],
)
def test_rotate_mixing_product_line_and_top_level_keys_refused(
    line: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    unchanged: Unchanged,
    role: str,
    key: str,
) -> None:
    """R47 one key, one use: what ``delegate`` refuses, ``rotate`` must refuse too.

    A token cannot tell a product line's payload from top-level targets (both
    are "targets"), so a key root lists never signs for a product line.
    """
    session = open_repo(line, "manager1", "officer1", "officer2")
    with unchanged(line), pytest.raises(SignerError, match="R47"):
        rotate(session, role=role, add=[people[key].public_key])


def test_root_edited_again_before_it_met_its_thresholds_keeps_the_chain_walkable(
    repo: Path, open_repo: Opener, people: dict[str, Signer], now: datetime, officer4: Signer
) -> None:
    """A root version that was never complete is still a draft: amend it, do not skip it."""
    officer5 = CryptoSigner.generate_ed25519()
    session = [people["officer1"], officer4]
    rotate(
        OfflineRepository(repo, now=now, signers=session), role="root", add=[officer4.public_key]
    )
    rotate(
        OfflineRepository(repo, now=now, signers=session), role="root", add=[officer5.public_key]
    )
    sign_roles(OfflineRepository(repo, now=now, signers=[people["officer2"], officer5]))
    assert problems(open_repo(repo), "root") == ()
    report = verify_repository(repo, now=now)
    assert report.ok, report.failures


# --- revoke a key (R5) ------------------------------------------------------------------


def test_revoke_key_removes_a_compromised_root_key(
    repo: Path, open_repo: Opener, people: dict[str, Signer], now: datetime
) -> None:
    """R5: root v2 without officer3, chained from v1 and accepted by verify."""
    written = revoke_key(open_repo(repo, "officer1", "officer2"), keyid=keyid(people, "officer3"))
    assert written == ["root"]
    root = role_md(repo, "root").signed
    assert root.version == 2
    assert keyid(people, "officer3") not in root.keys
    assert keyid(people, "officer3") not in root.roles["root"].keyids
    assert (repo / "metadata" / "2.root.json").is_file()
    assert verify_repository(repo, now=now).ok


def test_revoke_key_removes_a_compromised_engineer_key_from_every_delegation(
    repo: Path, open_repo: Opener, people: dict[str, Signer]
) -> None:
    """carol's key goes from a plain line, a hashed-bin line and its bins at once."""

    def keys(*names: str) -> RoleKeys:
        return RoleKeys([people[n].public_key for n in names], 1)

    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=keys("alice", "carol"),
    )
    delegate(
        open_repo(repo, "manager1"),
        name="monitor-m20",
        path_prefix="monitor-m20/",
        keys=keys("bob", "carol"),
        bin_bits=1,
    )
    carol = keyid(people, "carol")

    written = revoke_key(open_repo(repo, "manager1", "bob"), keyid=carol)

    assert written == ["targets", "monitor-m20"]
    top = role_md(repo, "targets").signed.delegations
    assert carol not in top.keys
    assert all(carol not in role.keyids for role in top.roles.values())
    monitor = role_md(repo, "monitor-m20").signed.delegations
    assert carol not in monitor.keys
    assert monitor.succinct_roles.keyids == [keyid(people, "bob")]
    with pytest.raises(KeyNotAuthorizedError):
        sign_roles(open_repo(repo, "carol"))


def test_revoke_key_refused_when_a_role_would_fall_under_its_threshold(
    line: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """pump-x100 is 2 of 2: without alice nobody could ever sign it again."""
    with unchanged(line), pytest.raises(SignerError, match="pump-x100 would have 1 key"):
        revoke_key(open_repo(line, "manager1"), keyid=keyid(people, "alice"))


def test_revoke_a_key_no_role_lists_refused(
    line: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """R5: a mistyped key id must not look like a successful revocation."""
    with unchanged(line), pytest.raises(SignerError, match="no role lists key"):
        revoke_key(open_repo(line, "manager1"), keyid=keyid(people, "carol"))


def test_a_unique_key_id_prefix_of_six_hex_digits_names_its_key() -> None:
    known = ["5b31f7aa" + "0" * 56, "5b31f8bb" + "0" * 56]
    assert resolve_keyid("5B31F7", known) == known[0]
    assert resolve_keyid(known[1], known) == known[1]


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("5b31f", "at least 6 hex digits"),
        ("5b31zz", "at least 6 hex digits"),
        ("abcdef", "no key listed in this repository has an id starting 'abcdef'"),
        ("5b31f7", "key id '5b31f7' is ambiguous: it starts 2 keys (5b31f7aa00000000, 5b31f7bb"),
    ],
)
def test_a_short_unknown_or_ambiguous_key_id_prefix_is_refused_naming_why(
    prefix: str, message: str
) -> None:
    """An ambiguous prefix lists its candidates: a revocation never picks one at random (R5)."""
    known = ["5b31f7aa" + "0" * 56, "5b31f7bb" + "0" * 56]
    with pytest.raises(SignerError, match=re.escape(message)):
        resolve_keyid(prefix, known)
