"""The proof, from the provisioned root, that a slot's record is what TUF verified (R39).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): a provisioned root that is no metadata, a root under another version's
name, a signed target whose firmware fields are malformed, and evidence on
disk that is missing or too large.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from client.errors import ClientError
from client.evidence import (
    MAX_EVIDENCE_BYTES,
    read_evidence,
    root_file_name,
    verify_evidence,
)
from client.state import SlotRecord
from tests.client.helpers_state import LINE, MODEL, NOW, SignedLine
from tests.client.tuf_repo import firmware_custom


def failure(trusted_root: bytes, evidence: dict[str, bytes], record: SlotRecord) -> str:
    with pytest.raises(ClientError) as caught:
        verify_evidence(trusted_root, evidence, record, hardware_model=MODEL)
    return str(caught.value)


def test_r39_a_provisioned_root_that_is_not_metadata_proves_nothing(line: SignedLine) -> None:
    release = line.release("1.0.0", 1)
    message = failure(b"{not metadata", release.evidence, release.record)
    assert "the provisioned root is not TUF metadata" in message


def test_r39_a_root_kept_under_the_next_versions_name_is_refused(line: SignedLine) -> None:
    """TUF 5.3: the file named root v2 holds root v1 again (a replay): not the next version."""
    release = line.release("1.0.0", 1)
    release.evidence[root_file_name(2)] = line.first_root
    message = failure(line.first_root, release.evidence, release.record)
    assert f"{root_file_name(2)}: Expected sequential root versions" in message


def test_r39_a_signed_target_with_malformed_firmware_fields_is_refused(line: SignedLine) -> None:
    """Signed, but its custom fields are not a firmware's: the record cannot be proven."""
    image = b"firmware" * 100
    path = f"{MODEL}/fw-9.0.0.bin"
    custom = {**firmware_custom("9.0.0", 1, (MODEL,)), "security_version": "high"}
    line.repo.add_target(LINE, path, image, custom, "alice", "bob")
    record = SlotRecord(
        target_path=path,
        length=len(image),
        sha256=hashlib.sha256(image).hexdigest(),
        version="9.0.0",
        security_version=1,
        role=LINE,
        verified_at=NOW.isoformat(),
    )
    message = failure(line.first_root, line.evidence(LINE), record)
    assert "security_version" in message


def test_r39_no_evidence_directory_is_no_evidence(tmp_path: Path) -> None:
    assert read_evidence(tmp_path / "missing") == {}
    (tmp_path / "a-file").write_bytes(b"x")
    assert read_evidence(tmp_path / "a-file") == {}


def test_r39_evidence_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """Storage filled with a huge file must not be read into memory (a sparse file here)."""
    directory = tmp_path / "evidence"
    directory.mkdir()
    with (directory / "targets.json").open("wb") as handle:
        handle.truncate(MAX_EVIDENCE_BYTES + 1)
    assert (directory / "targets.json").stat().st_blocks < 64  # sparse: nothing was written
    with pytest.raises(ClientError, match="holds more than"):
        read_evidence(directory)
