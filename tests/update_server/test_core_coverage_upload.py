"""A firmware upload is checked against its signed target before it is staged (R13).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): ``update_server.publication.upload`` tested directly. Every refusal
leaves nothing in the staging directory; only the signed bytes are staged.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from update_server.publication.errors import PublicationError
from update_server.publication.release import ExpectedTarget
from update_server.publication.upload import CHUNK_BYTES, receive, staged_file

DATA = bytes(range(256)) * 4096 + b"tail"  # more than one chunk
LIMIT = 16 * 1024 * 1024


def signed(data: bytes = DATA, **hashes: str) -> ExpectedTarget:
    digests = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
    }
    return ExpectedTarget("pump-x100/fw-2.0.0.bin", len(data), {**digests, **hashes})


def refused(
    tmp_path: Path,
    sent: bytes,
    target: ExpectedTarget,
    *,
    limit: int = LIMIT,
    declared: int | None = None,
) -> str:
    """The refusal's class, rule and message; the staging directory is left empty."""
    staging = tmp_path / "staging"
    with pytest.raises(PublicationError) as caught:
        receive(io.BytesIO(sent), target, directory=staging, limit=limit, declared=declared)
    assert not staging.exists() or list(staging.iterdir()) == []
    return f"{type(caught.value).__name__} {caught.value.rule}: {caught.value}"


def test_r13_the_signed_bytes_are_staged_under_their_sha256_counted_per_chunk(
    tmp_path: Path,
) -> None:
    target = signed()
    chunks: list[int] = []
    received = receive(
        io.BytesIO(DATA),
        target,
        directory=tmp_path,
        limit=LIMIT,
        declared=len(DATA),
        on_chunk=chunks.append,
    )
    assert (received.path, received.length, received.sha256) == (
        target.path,
        len(DATA),
        target.sha256,
    )
    assert staged_file(tmp_path, target).read_bytes() == DATA
    assert sum(chunks) == len(DATA) and max(chunks) <= CHUNK_BYTES
    assert staged_file(tmp_path, target).stat().st_mode & 0o777 == 0o644


def test_r13_a_file_named_by_anything_but_a_hex_sha256_is_never_staged(tmp_path: Path) -> None:
    """The file name comes from signed metadata, but never leaves the staging directory."""
    for digest in ("../" + "a" * 61, "A" * 64, "a" * 63):
        with pytest.raises(ValueError, match="hex SHA-256"):
            staged_file(tmp_path, ExpectedTarget("p/fw.bin", 1, {"sha256": digest}))


def test_r13_a_target_signed_above_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    said = refused(tmp_path, DATA, signed(), limit=len(DATA) - 1)
    assert said.startswith("TooLargeError upload-too-large") and "above the limit" in said


def test_r13_a_declared_size_above_the_signed_length_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    said = refused(tmp_path, DATA, signed(), declared=len(DATA) + 1)
    assert said.startswith("TooLargeError length-exceeded") and "which is signed as" in said


def test_r13_more_bytes_than_signed_stop_the_upload(tmp_path: Path) -> None:
    said = refused(tmp_path, DATA + b"x", signed())
    assert said.startswith("TooLargeError length-exceeded") and "upload stopped" in said


def test_r13_fewer_bytes_than_signed_are_refused(tmp_path: Path) -> None:
    said = refused(tmp_path, DATA[:-1], signed())
    assert said.startswith("RejectedError wrong-length") and "upload the complete file" in said


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_r13_bytes_of_the_signed_length_with_another_hash_are_refused(
    tmp_path: Path, algorithm: str
) -> None:
    """Every signed hash is checked, not only the one the file is named by."""
    target = signed(**{algorithm: "0" * len(signed().hashes[algorithm])})
    said = refused(tmp_path, DATA, target)
    assert said.startswith("RejectedError wrong-hash") and f"the {algorithm} of the bytes" in said
