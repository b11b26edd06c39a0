"""Slot evidence: the signed metadata that proves what a slot holds (R13, R29, R39).

Each test forges, strips or swaps one part of the evidence a device keeps
beside a slot and checks that ``verify_evidence`` names the failure with the
right event, from the provisioned root alone and with no network.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import JSONSerializer

from client.errors import ClientError
from client.events import EventType
from client.evidence import read_evidence, verify_evidence, write_evidence
from tests.client.helpers_state import MODEL, NOW, Release, SignedLine


@pytest.fixture
def release(line: SignedLine) -> Release:
    return line.release("1.0.0", 1)


def refused(line: SignedLine, evidence: dict[str, bytes], release: Release) -> EventType:
    with pytest.raises(ClientError) as caught:
        verify_evidence(line.first_root, evidence, release.record, hardware_model=MODEL)
    return caught.value.event


def resigned(data: bytes, signer: Signer, **changes: object) -> bytes:
    """``data`` with its signed part changed and signed by ``signer`` alone."""
    md = Metadata.from_bytes(data)
    for name, value in changes.items():
        setattr(md.signed, name, value)
    md.sign(signer)
    return md.to_bytes(JSONSerializer())


def test_evidence_of_a_signed_release_verifies(line: SignedLine, release: Release) -> None:
    verify_evidence(line.first_root, release.evidence, release.record, hardware_model=MODEL)


def test_evidence_through_hashed_bins_verifies(tmp_path: Path) -> None:
    """A current release is signed in the line's own list; a superseded one only in its bin."""
    line = SignedLine(tmp_path / "repo", bin_bits=3)
    release = line.release("1.0.0", 1)
    assert release.record.role == "pump-x100"
    verify_evidence(line.first_root, release.evidence, release.record, hardware_model=MODEL)
    older = line.release("0.9.0", 1)
    assert older.record.role.startswith("pump-x100-bins-")
    verify_evidence(line.first_root, older.evidence, older.record, hardware_model=MODEL)


def test_evidence_across_a_root_rotation_verifies(line: SignedLine) -> None:
    line.rotate_root()
    release = line.release("1.0.0", 1)
    assert "root/2.root.json" in release.evidence
    verify_evidence(line.first_root, release.evidence, release.record, hardware_model=MODEL)


def test_missing_root_version_breaks_the_chain(line: SignedLine) -> None:
    """Targets signed by a key that only root v2 names cannot verify from v1."""
    line.rotate_targets_key()
    release = line.release("1.0.0", 1)
    del release.evidence["root/2.root.json"]
    assert refused(line, release.evidence, release) is EventType.BAD_SIGNATURE


def test_root_version_that_skips_one_is_refused(line: SignedLine) -> None:
    line.rotate_root()
    release = line.release("1.0.0", 1)
    release.evidence["root/3.root.json"] = release.evidence.pop("root/2.root.json")
    assert refused(line, release.evidence, release) is EventType.INTEGRITY_FAILURE


def test_root_signed_only_by_the_new_key_is_refused(line: SignedLine) -> None:
    """A rotated root must carry the old root's threshold too (TUF 5.3.4)."""
    line.rotate_root()
    release = line.release("1.0.0", 1)
    forged = resigned(release.evidence["root/2.root.json"], line.keys["root"])  # new key only
    release.evidence["root/2.root.json"] = forged
    assert refused(line, release.evidence, release) is EventType.BAD_SIGNATURE


def test_evidence_against_another_devices_root_is_refused(tmp_path: Path, release: Release) -> None:
    other = SignedLine(tmp_path / "other")
    with pytest.raises(ClientError) as caught:
        verify_evidence(other.first_root, release.evidence, release.record)
    assert caught.value.event is EventType.BAD_SIGNATURE


def test_unsigned_targets_is_refused(line: SignedLine, release: Release) -> None:
    md = Metadata.from_bytes(release.evidence["targets.json"])
    md.signatures.clear()
    release.evidence["targets.json"] = md.to_bytes(JSONSerializer())
    assert refused(line, release.evidence, release) is EventType.BAD_SIGNATURE


def test_product_line_below_its_threshold_is_refused(line: SignedLine, release: Release) -> None:
    """2 of 2 (alice and bob): alice's signature alone is not enough."""
    md = Metadata.from_bytes(release.evidence["pump-x100.json"])
    md.signatures.pop(line.keys["bob"].public_key.keyid)
    release.evidence["pump-x100.json"] = md.to_bytes(JSONSerializer())
    assert refused(line, release.evidence, release) is EventType.BAD_SIGNATURE


def test_product_line_forged_by_an_unknown_key_is_refused(
    line: SignedLine, release: Release
) -> None:
    mallory = CryptoSigner.generate_ed25519()
    forged = resigned(release.evidence["pump-x100.json"], mallory, version=9)
    release.evidence["pump-x100.json"] = forged
    assert refused(line, release.evidence, release) is EventType.BAD_SIGNATURE


def test_edited_signed_content_is_refused(line: SignedLine, release: Release) -> None:
    """A byte changed inside the signed part (a bigger security version)."""
    tree = json.loads(release.evidence["pump-x100.json"])
    tree["signed"]["targets"][release.record.target_path]["custom"]["security_version"] = 99
    release.evidence["pump-x100.json"] = json.dumps(tree).encode()
    forged_record = replace(release.record, security_version=99)
    with pytest.raises(ClientError) as caught:
        verify_evidence(line.first_root, release.evidence, forged_record)
    assert caught.value.event is EventType.BAD_SIGNATURE


def test_record_that_claims_a_higher_security_version_is_refused(
    line: SignedLine, release: Release
) -> None:
    """A record edited at rest to lift the floor (a denial of every update)."""
    forged = replace(release.record, security_version=99)
    with pytest.raises(ClientError, match="security") as caught:
        verify_evidence(line.first_root, release.evidence, forged)
    assert caught.value.event is EventType.INTEGRITY_FAILURE


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "0" * 64},
        {"length": 1},
        {"version": "9.9.9"},
        {"role": "targets"},
        {"target_path": "pump-x100/fw-9.9.9.bin"},
    ],
)
def test_record_that_the_evidence_does_not_sign_is_refused(
    line: SignedLine, release: Release, change: dict[str, object]
) -> None:
    forged = replace(release.record, **change)  # type: ignore[arg-type]
    with pytest.raises(ClientError) as caught:
        verify_evidence(line.first_root, release.evidence, forged)
    assert caught.value.event is EventType.INTEGRITY_FAILURE


def test_firmware_for_another_model_is_refused(line: SignedLine, release: Release) -> None:
    with pytest.raises(ClientError) as caught:
        verify_evidence(line.first_root, release.evidence, release.record, hardware_model="x")
    assert caught.value.event is EventType.HARDWARE_MISMATCH


@pytest.mark.parametrize("name", ["targets.json", "pump-x100.json"])
def test_missing_role_file_is_refused(line: SignedLine, release: Release, name: str) -> None:
    del release.evidence[name]
    assert refused(line, release.evidence, release) is EventType.INTEGRITY_FAILURE


def test_garbage_role_file_is_refused(line: SignedLine, release: Release) -> None:
    release.evidence["targets.json"] = b"\x00not json"
    assert refused(line, release.evidence, release) is EventType.INTEGRITY_FAILURE


def test_role_file_of_the_wrong_type_is_refused(line: SignedLine, release: Release) -> None:
    release.evidence["targets.json"] = line.first_root
    assert refused(line, release.evidence, release) is EventType.INTEGRITY_FAILURE


@pytest.mark.parametrize("name", ["../escape.json", "root/../../x.json", "/abs.json", "a b"])
def test_evidence_names_cannot_leave_the_directory(
    line: SignedLine, release: Release, tmp_path: Path, name: str
) -> None:
    release.evidence[name] = b"{}"
    assert refused(line, release.evidence, release) is EventType.INTEGRITY_FAILURE
    with pytest.raises(ClientError):
        write_evidence(tmp_path / "slot.evidence", release.evidence)
    assert not (tmp_path / "escape.json").exists()


def test_expired_metadata_still_proves_the_firmware(tmp_path: Path) -> None:
    """R52: a device keeps running verified firmware after its metadata expires."""
    line = SignedLine(tmp_path / "repo", now=NOW - timedelta(days=3 * 365))
    release = line.release("1.0.0", 1)
    targets = Metadata.from_bytes(release.evidence["targets.json"])
    assert targets.signed.is_expired(NOW)
    verify_evidence(line.first_root, release.evidence, release.record, hardware_model=MODEL)


def test_evidence_is_kept_and_read_back_whole(tmp_path: Path, release: Release) -> None:
    directory = tmp_path / "slot_b.evidence"
    write_evidence(directory, {"targets.json": b"old", "stale.json": b"old"})
    write_evidence(directory, release.evidence)
    assert read_evidence(directory) == release.evidence
    assert not list(tmp_path.glob(".*.tmp"))
