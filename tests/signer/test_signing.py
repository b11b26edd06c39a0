"""``signer.signing.sign_roles``: threshold signing, one person at a time (R9).

A signature is added only by a key the role's delegator names, is verified
the moment it is made, and never changes the signed content; anything else
is refused with nothing written.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer
from tuf.api.metadata import Metadata

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import add_firmware
from signer.errors import KeyNotAuthorizedError, SignerError
from signer.inspect import verify_repository
from signer.keyops import rotate
from signer.repository import OfflineRepository
from signer.signing import SignResult, sign_roles

INFO = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=("pump-x100",))

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


class GarbageSigner(Signer):
    """A misconfigured token: right public key, signature that does not verify."""

    def __init__(self, inner: Signer, signature: str) -> None:
        self._inner = inner
        self._signature = signature

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> Signer:
        raise NotImplementedError

    @property
    def public_key(self) -> Key:
        return self._inner.public_key

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._inner.public_key.keyid, self._signature)


def role_bytes(repo: Path, role: str) -> bytes:
    return (repo / "metadata" / f"{role}.json").read_bytes()


def role_md(repo: Path, role: str) -> Metadata[Any]:
    return Metadata.from_bytes(role_bytes(repo, role))


@pytest.fixture
def release(line: Path, open_repo: Opener, image: Path) -> Path:
    """pump-x100 holds one release; nobody has signed it yet."""
    add_firmware(open_repo(line), image=image, name="pump-fw", info=INFO)
    return line


def test_sign_with_a_key_no_role_authorizes_refused_and_nothing_written(
    release: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """TUF arbitrary software: carol holds no role here and signs nothing."""
    with unchanged(release), pytest.raises(KeyNotAuthorizedError, match="may sign any role"):
        sign_roles(open_repo(release, "carol"))


def test_sign_a_named_role_the_key_does_not_authorize_refused(
    release: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """A product-line engineer cannot sign the top-level targets role (R6)."""
    with unchanged(release), pytest.raises(KeyNotAuthorizedError, match="may sign targets"):
        sign_roles(open_repo(release, "alice"), roles=["targets"])


def test_sign_an_unknown_role_refused(
    release: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """A typo in ``--role`` is an error, not a silent no-op."""
    with unchanged(release), pytest.raises(SignerError, match="no role 'pump-x999'"):
        sign_roles(open_repo(release, "alice"), roles=["pump-x999"])


@pytest.mark.parametrize(
    "garbage", ["00" * 64, "not a signature", ""], ids=["wrong-bytes", "not-hex", "empty"]
)
def test_signer_whose_signature_does_not_verify_refused_and_nothing_written(
    release: Path,
    people: dict[str, Signer],
    now: datetime,
    unchanged: Unchanged,
    garbage: str,
) -> None:
    """tuf-on-ci's habit: each signature is verified with the expected key at once."""
    bad = GarbageSigner(people["alice"], garbage)
    repo = OfflineRepository(release, now=now, signers=[bad])
    with unchanged(release), pytest.raises(SignerError, match="does not verify"):
        sign_roles(repo)


class RefusingSigner(GarbageSigner):
    """A token that refuses to sign (wrong PIN, locked, wrong R47 purpose)."""

    def sign(self, payload: bytes) -> Signature:
        raise PermissionError("token locked after 3 wrong PINs")


def test_token_that_refuses_to_sign_is_reported_and_nothing_written(
    release: Path, people: dict[str, Signer], now: datetime, unchanged: Unchanged
) -> None:
    """The token's own words reach the person, as a SignerError, not a traceback."""
    repo = OfflineRepository(release, now=now, signers=[RefusingSigner(people["alice"], "")])
    with unchanged(release), pytest.raises(SignerError, match="did not sign: token locked"):
        sign_roles(repo)


def test_one_bad_token_among_good_ones_writes_nothing(
    release: Path, people: dict[str, Signer], now: datetime, unchanged: Unchanged
) -> None:
    """alice's good signature is not written alone when bob's token is broken."""
    signers = [people["alice"], GarbageSigner(people["bob"], "00" * 64)]
    with unchanged(release), pytest.raises(SignerError, match="does not verify"):
        sign_roles(OfflineRepository(release, now=now, signers=signers))


def test_signing_adds_a_signature_and_leaves_signed_content_untouched(
    release: Path, open_repo: Opener, people: dict[str, Signer]
) -> None:
    """Two engineers sign the same bytes: no version bump, no new expiry."""
    before = role_md(release, "pump-x100")
    targets_before = role_bytes(release, "targets")
    results = sign_roles(open_repo(release, "alice"))
    after = role_md(release, "pump-x100")
    assert results == [SignResult("pump-x100", 1, signed=1, threshold=2, keys=2)]
    assert after.signed_bytes == before.signed_bytes
    assert list(after.signatures) == [people["alice"].public_key.keyid]
    assert role_bytes(release, "targets") == targets_before


def test_signing_twice_with_one_key_does_not_count_twice(
    release: Path, open_repo: Opener, people: dict[str, Signer], now: datetime
) -> None:
    """R9 four eyes: alice signing again adds nothing; still one signature, 1 of 2."""
    first = sign_roles(open_repo(release, "alice"))
    assert [(r.role, r.signed, r.threshold) for r in first] == [("pump-x100", 1, 2)]
    before = role_md(release, "pump-x100").to_bytes()
    assert sign_roles(open_repo(release, "alice")) == []
    assert role_md(release, "pump-x100").to_bytes() == before
    assert list(role_md(release, "pump-x100").signatures) == [people["alice"].public_key.keyid]
    assert not verify_repository(release, now=now).ok


def test_second_engineer_completes_the_threshold(
    release: Path, open_repo: Opener, people: dict[str, Signer], now: datetime
) -> None:
    """R9 four eyes: bob's signature joins alice's on the same bytes."""
    sign_roles(open_repo(release, "alice"))
    results = sign_roles(open_repo(release, "bob"), roles=["pump-x100"])
    assert [(r.role, r.signed, r.threshold) for r in results] == [("pump-x100", 2, 2)]
    signatures = set(role_md(release, "pump-x100").signatures)
    assert signatures == {people["alice"].public_key.keyid, people["bob"].public_key.keyid}
    assert verify_repository(release, now=now).ok


def test_signing_an_expired_role_refused_it_must_be_edited_first(
    release: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """TUF freeze: a signature never revives metadata past its expiry."""
    later = role_md(release, "pump-x100").signed.expires + timedelta(seconds=1)
    with unchanged(release), pytest.raises(SignerError, match=r"rule: expired"):
        sign_roles(open_repo(release, "alice", at=later))


# --- TUF rollback: a role rewound below the version the repository keeps -----------
# The repositories below are made by the signer alone: what it keeps of what it
# signed (N.<role>.json) is all the check has.


def rewind(repo: Path, role: str, md: Metadata[Any]) -> None:
    (repo / "metadata" / f"{role}.json").write_bytes(md.to_bytes())


@pytest.fixture
def kept_v2(release: Path, open_repo: Opener, image: Path, tmp_path: Path) -> Metadata[Any]:
    """pump-x100 v1 signed by alice only (returned), then v1 and v2 by both; v2 kept."""
    sign_roles(open_repo(release, "alice"))
    alice_only_v1 = role_md(release, "pump-x100")
    sign_roles(open_repo(release, "bob"))
    second = tmp_path / "pump-fw-2.5.0.bin"
    second.write_bytes(image.read_bytes() + b"fix")
    info = FirmwareInfo(version="2.5.0", security_version=4, hardware_models=("pump-x100",))
    add_firmware(open_repo(release, "alice"), image=second, name="pump-fw", info=info)
    sign_roles(open_repo(release, "bob"))
    assert role_md(release, "pump-x100").signed.version == 2
    return alice_only_v1


def test_rollback_attack_sign_refuses_a_role_rewound_below_the_kept_version(
    release: Path, kept_v2: Metadata[Any], open_repo: Opener, unchanged: Unchanged
) -> None:
    """TUF rollback: pump-x100.json is put back to v1 (alice's signature only) while the
    repository keeps the signed v2; bob's key must not sign v1 a second time."""
    rewind(release, "pump-x100", kept_v2)
    with (
        unchanged(release),
        pytest.raises(
            SignerError,
            match=r"refusing to sign pump-x100: pump-x100 v1 is not newer than the trusted v2"
            r" \(rollback refused\) \[rule: version\]; this repository keeps pump-x100 v2"
            r" \(2\.pump-x100\.json\): pump-x100\.json was rewound",
        ),
    ):
        sign_roles(open_repo(release, "bob"))


def test_rollback_attack_sign_refuses_the_kept_version_number_with_other_content(
    release: Path, kept_v2: Metadata[Any], open_repo: Opener, people: dict[str, Signer]
) -> None:
    """TUF rollback: a v2 that is not the kept v2 (the fix release dropped, signed by alice)
    is another role under a number already used: bob must not sign it."""
    other = role_md(release, "pump-x100")
    del other.signed.targets["pump-x100/pump-fw-2.5.0.bin"]
    other.signatures.clear()
    other.sign(people["alice"])
    rewind(release, "pump-x100", other)
    with pytest.raises(SignerError, match=r"pump-x100 v2 is not newer than the trusted v2"):
        sign_roles(open_repo(release, "bob"))
    assert role_md(release, "pump-x100").signatures.keys() == {people["alice"].public_key.keyid}


def test_the_kept_version_itself_is_signed_and_a_later_one_too(
    release: Path, kept_v2: Metadata[Any], open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    """Control: bob co-signs the very version kept (same bytes), and then v3, beyond it."""
    same = role_md(release, "pump-x100")
    same.signatures.clear()
    rewind(release, "pump-x100", same)
    assert [r.signed for r in sign_roles(open_repo(release, "alice", "bob"))] == [2]
    third = tmp_path / "pump-fw-2.6.0.bin"
    third.write_bytes(image.read_bytes() + b"fix2")
    info = FirmwareInfo(version="2.6.0", security_version=5, hardware_models=("pump-x100",))
    add_firmware(open_repo(release, "alice"), image=third, name="pump-fw", info=info)
    results = sign_roles(open_repo(release, "bob"))
    assert [(r.role, r.version, r.signed) for r in results] == [("pump-x100", 3, 2)]


def test_rollback_attack_an_edit_of_a_rewound_role_is_refused_too(
    release: Path, kept_v2: Metadata[Any], open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    """TUF rollback: adding to the rewound v1 would make a v2 other than the kept one."""
    rewind(release, "pump-x100", kept_v2)
    third = tmp_path / "pump-fw-2.6.0.bin"
    third.write_bytes(image.read_bytes() + b"fix2")
    info = FirmwareInfo(version="2.6.0", security_version=5, hardware_models=("pump-x100",))
    with pytest.raises(SignerError, match=r"refusing to write pump-x100: pump-x100 v2 is not"):
        add_firmware(open_repo(release, "alice"), image=third, name="pump-fw", info=info)


def test_rollback_attack_sign_refuses_a_root_rewound_below_its_chain(
    release: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """TUF rollback of root: root.json put back to v1 while 2.root.json is in the chain."""
    first = role_md(release, "root")
    rotate(open_repo(release, "officer1", "officer2"), role="targets", threshold=2)
    assert role_md(release, "root").signed.version == 2
    del first.signatures[next(iter(first.signatures))]
    rewind(release, "root", first)
    with (
        unchanged(release),
        pytest.raises(SignerError, match=r"root v1 must follow the trusted root v2 exactly"),
    ):
        sign_roles(open_repo(release, "officer1", "officer2"), roles=["root"])
