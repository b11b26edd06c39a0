"""Binary deltas: made, checked and applied within bounds (issue 13, fwcommon/delta.py D1-D7).

A delta is untrusted bytes until the caller verifies its output against the
full image's signed fileinfo; these tests hold apply_delta to its rules: only
DeltaError for a bad patch, nothing allocated for a huge declared output,
nothing written to ``out`` when it refuses.
"""

from __future__ import annotations

import bz2
import io
import random
from pathlib import Path
from typing import Any, BinaryIO, cast

import bsdiff4
import pytest
from bsdiff4 import core as bsdiff_core

from fwcommon import delta as delta_module
from fwcommon.delta import (
    HEADER_SIZE,
    MAGIC,
    DeltaError,
    apply_delta,
    make_delta,
    max_patch_bytes,
)


def _image(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - reproducible test data


def _changed(data: bytes, every: int) -> bytes:
    out = bytearray(data)
    for i in range(0, len(out), every):
        out[i] ^= 0x5A
    return bytes(out)


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path, bytes]:
    base = _image(1, 64 * 1024)
    new = _changed(base, 997) + b"appended release bytes"
    (tmp_path / "base.bin").write_bytes(base)
    (tmp_path / "image.bin").write_bytes(new)
    return tmp_path / "base.bin", tmp_path / "image.bin", new


def _patch(base: bytes, new: bytes) -> bytes:
    return cast(bytes, bsdiff4.diff(base, new))


def _header(control: int, diff: int, new_size: int, magic: bytes = MAGIC) -> bytes:
    encode = bsdiff_core.encode_int64
    return magic + encode(control) + encode(diff) + encode(new_size)


def _build(control: bytes, diff: bytes, extra: bytes, new_size: int) -> bytes:
    blocks = [bz2.compress(control), bz2.compress(diff), bz2.compress(extra)]
    return _header(len(blocks[0]), len(blocks[1]), new_size) + b"".join(blocks)


def _apply_bytes(base: Path, patch: bytes, *, max_output: int) -> bytes:
    out = io.BytesIO()
    assert apply_delta(base, io.BytesIO(patch), out, max_output=max_output) == len(out.getvalue())
    return out.getvalue()


def test_a_delta_rebuilds_the_image_exactly_and_is_small(
    images: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    """D7: make_delta's delta rebuilds the image byte for byte and is small."""
    base, image, new = images
    size = make_delta(base, image, tmp_path / "d.bsdiff")
    assert size == (tmp_path / "d.bsdiff").stat().st_size
    assert size < len(new) // 5
    out = io.BytesIO()
    assert apply_delta(base, tmp_path / "d.bsdiff", out, max_output=len(new)) == len(new)
    assert out.getvalue() == new


def test_a_delta_made_by_bsdiff4_itself_applies(images: tuple[Path, Path, bytes]) -> None:
    """D1: a patch bsdiff4's own writer makes is read (the standard BSDIFF40 format)."""
    base, _, new = images
    assert _apply_bytes(base, _patch(base.read_bytes(), new), max_output=len(new)) == new


def test_an_empty_image_and_an_empty_base_round_trip(tmp_path: Path) -> None:
    """D2, D5: an empty image from an empty base rebuilds exactly."""
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "one").write_bytes(b"x")
    make_delta(tmp_path / "empty", tmp_path / "one", tmp_path / "up")
    make_delta(tmp_path / "one", tmp_path / "empty", tmp_path / "down")
    assert _apply_bytes(tmp_path / "empty", (tmp_path / "up").read_bytes(), max_output=1) == b"x"
    assert _apply_bytes(tmp_path / "one", (tmp_path / "down").read_bytes(), max_output=0) == b""


def test_make_delta_writes_atomically_and_refuses_an_unreadable_input(tmp_path: Path) -> None:
    """D7: make_delta writes its file atomically; an unreadable input is a DeltaError."""
    (tmp_path / "image").write_bytes(b"new")
    with pytest.raises(DeltaError, match="cannot read"):
        make_delta(tmp_path / "absent", tmp_path / "image", tmp_path / "d")
    assert list(tmp_path.iterdir()) == [tmp_path / "image"]


def test_d7_make_delta_refuses_a_patch_a_device_would_refuse(
    images: tuple[Path, Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D7: a delta every device would refuse is never made, so never signed."""
    base, image, _ = images
    wrong = b"BSDIFF40" + b"\xff" * 24  # negative lengths: a device refuses it (D1)
    monkeypatch.setattr(delta_module.bsdiff4, "diff", lambda old, new: wrong)
    with pytest.raises(DeltaError, match=r"D7.*refuse"):
        make_delta(base, image, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_d7_make_delta_refuses_a_patch_that_rebuilds_other_bytes(
    images: tuple[Path, Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D7: a delta that rebuilds other bytes than the image is never made (R13)."""
    base, image, new = images
    other = _patch(base.read_bytes(), bytes(len(new)))
    monkeypatch.setattr(delta_module.bsdiff4, "diff", lambda old, _new: other)
    with pytest.raises(DeltaError, match=r"D7.*does not rebuild"):
        make_delta(base, image, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_d1_a_patch_without_the_exact_magic_is_refused(images: tuple[Path, Path, bytes]) -> None:
    """D1: only an exact BSDIFF40 magic is a patch; nothing else is applied (R13)."""
    base, _, new = images
    patch = _patch(base.read_bytes(), new)
    for magic in (b"BSDIFF41", b"XXXXXXXX"):  # bsdiff4's own reader checks only 7 bytes
        with pytest.raises(DeltaError, match="D1"):
            _apply_bytes(base, magic + patch[8:], max_output=len(new))


def test_d1_a_negative_length_in_the_header_is_refused(images: tuple[Path, Path, bytes]) -> None:
    """D1: a header length below zero is refused, never used (R13)."""
    base, _, _ = images
    for header in (_header(-1, 0, 0), _header(0, -1, 0), _header(0, 0, -1)):
        with pytest.raises(DeltaError, match=r"negative.*D1"):
            _apply_bytes(base, header, max_output=100)


def test_d2_a_patch_declaring_a_huge_output_is_refused_before_anything_is_read(
    tmp_path: Path,
) -> None:
    """D2: a huge declared output allocates nothing (R42: memory-exhaustion attack)."""

    class HeaderOnly(io.BytesIO):
        reads = 0

        def read(self, size: int | None = -1) -> bytes:
            HeaderOnly.reads += 1
            return super().read(size)

    stream = HeaderOnly(_header(10, 10, 2**62) + b"never read")
    out = io.BytesIO()
    # the base does not even exist: the header is refused before the base is read
    with pytest.raises(DeltaError, match="D2"):
        apply_delta(tmp_path / "absent", cast(BinaryIO, stream), out, max_output=64 * 1024**2)
    assert stream.tell() == HEADER_SIZE
    assert out.getvalue() == b""


def test_d2_an_output_one_byte_over_max_output_is_refused(
    images: tuple[Path, Path, bytes],
) -> None:
    """D2: the output is bounded by the full image's signed length, exactly (R13)."""
    base, _, new = images
    with pytest.raises(DeltaError, match="D2"):
        _apply_bytes(base, _patch(base.read_bytes(), new), max_output=len(new) - 1)


def test_d3_a_truncated_patch_is_refused(images: tuple[Path, Path, bytes]) -> None:
    """D3: a patch cut short is refused, not applied in part (R13)."""
    base, _, new = images
    patch = _patch(base.read_bytes(), new)
    for cut in (0, 7, HEADER_SIZE - 1, HEADER_SIZE + 5, len(patch) // 2, len(patch) - 1):
        with pytest.raises(DeltaError):
            _apply_bytes(base, patch[:cut], max_output=len(new))


def test_d3_blocks_declared_larger_than_a_patch_may_be_are_refused(tmp_path: Path) -> None:
    """D3: blocks declared past the patch's bound are refused unread (R42)."""
    (tmp_path / "base").write_bytes(b"")
    with pytest.raises(DeltaError, match=r"control block.*D3"):
        _apply_bytes(tmp_path / "base", _header(2**40, 0, 10), max_output=10)
    with pytest.raises(DeltaError, match=r"diff block.*D3"):
        control = bz2.compress(b"")
        patch = _header(len(control), 2**40, 10) + control
        _apply_bytes(tmp_path / "base", patch, max_output=10)


def test_d3_a_patch_longer_than_its_bound_is_refused(tmp_path: Path) -> None:
    """D3: nothing is read beyond the patch's bound (R42: hostile patch)."""
    (tmp_path / "base").write_bytes(b"")
    patch = _build(b"", b"", b"", 0) + b"\0" * (max_patch_bytes(0) + 1)
    with pytest.raises(DeltaError, match=r"extra block.*D3"):
        _apply_bytes(tmp_path / "base", patch, max_output=0)


def test_d4_a_bz2_bomb_in_a_block_is_refused(tmp_path: Path) -> None:
    """D4: a bz2 bomb stops at its block's bound (R42: decompression-bomb attack)."""
    (tmp_path / "base").write_bytes(b"")
    bomb = b"\0" * (1024 * 1024)
    for control, diff, extra, block in (
        (bomb, b"", b"", "control block"),
        (b"", bomb, b"", "diff block"),
        (b"", b"", bomb, "extra block"),
    ):
        with pytest.raises(DeltaError, match=rf"{block} expands.*D4"):
            _apply_bytes(tmp_path / "base", _build(control, diff, extra, 100), max_output=100)


def test_d4_a_block_that_is_not_bz2_or_is_cut_or_followed_by_data_is_refused(
    tmp_path: Path,
) -> None:
    """D4: each block is one complete bz2 stream, nothing after the last (R13)."""
    (tmp_path / "base").write_bytes(b"")
    good = bz2.compress(b"")
    cases: list[tuple[bytes, str]] = [
        (_header(5, len(good), 0) + b"notbz" + good + good, "not valid bz2"),
        (_header(len(good) - 1, len(good), 0) + good[:-1] + good + good, "truncated"),
        (_header(len(good), len(good), 0) + good * 3 + b"tail", "data after"),
        (_header(len(good) * 2, len(good), 0) + good * 4, "data after"),
    ]
    for patch, message in cases:
        with pytest.raises(DeltaError, match=rf"{message}.*D4"):
            _apply_bytes(tmp_path / "base", patch, max_output=0)


def test_d4_a_control_block_of_partial_entries_is_refused(tmp_path: Path) -> None:
    """D4: a control block holds whole 24-byte entries only (R13)."""
    (tmp_path / "base").write_bytes(b"")
    with pytest.raises(DeltaError, match=r"24-byte.*D4"):
        _apply_bytes(tmp_path / "base", _build(b"\0" * 25, b"", b"", 10), max_output=10)


def test_d5_control_entries_reaching_outside_the_blocks_are_refused(tmp_path: Path) -> None:
    """D5: control entries never reach outside base, blocks or output (R42)."""
    (tmp_path / "base").write_bytes(b"base")
    encode = bsdiff_core.encode_int64
    entry = encode(8) + encode(0) + encode(0)  # 8 diff bytes, but the diff block has 4
    with pytest.raises(DeltaError, match=r"does not apply.*D5"):
        _apply_bytes(tmp_path / "base", _build(entry, b"\0" * 4, b"", 8), max_output=8)


def test_d5_a_patch_that_does_not_fill_the_declared_output_is_refused(tmp_path: Path) -> None:
    """D5: a patch must rebuild the whole declared output (R13)."""
    (tmp_path / "base").write_bytes(b"base")
    with pytest.raises(DeltaError, match="D5"):
        _apply_bytes(tmp_path / "base", _build(b"", b"", b"", 8), max_output=8)


def test_d6_corrupted_patches_raise_only_delta_error_and_write_nothing(
    images: tuple[Path, Path, bytes],
) -> None:
    """D6 (fuzz): a corrupted patch is only a DeltaError and writes nothing (R42, R13)."""
    base, _, new = images
    patch = _patch(base.read_bytes(), new)
    rng = random.Random(13)  # noqa: S311 - reproducible test data
    for _ in range(200):
        corrupt = bytearray(patch)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        out = io.BytesIO()
        try:
            apply_delta(base, io.BytesIO(bytes(corrupt)), out, max_output=len(new))
        except DeltaError:
            assert out.getvalue() == b""
        # a flip that still parses yields some bytes: the caller's hash check refuses them


def test_d6_random_garbage_raises_only_delta_error(tmp_path: Path) -> None:
    """D6 (fuzz): random bytes are only ever a DeltaError (R42)."""
    (tmp_path / "base").write_bytes(b"base")
    rng = random.Random(6)  # noqa: S311 - reproducible test data
    for size in (0, 1, 31, 32, 33, 100, 4096):
        for garbage in (rng.randbytes(size), MAGIC + rng.randbytes(size)):
            with pytest.raises(DeltaError):
                _apply_bytes(tmp_path / "base", garbage, max_output=4096)


def test_d6_a_delta_against_the_wrong_base_is_refused_or_rebuilds_other_bytes(
    images: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    """D6: a delta applied to the wrong base never gives the image (R13)."""
    base, _, new = images
    patch = _patch(base.read_bytes(), new)
    (tmp_path / "other").write_bytes(b"short")
    out = _apply_bytes(tmp_path / "other", patch, max_output=len(new))
    assert out != new  # bsdiff cannot tell: the caller's signed hash check does


def test_d6_an_unreadable_base_or_delta_is_a_delta_error(tmp_path: Path) -> None:
    """D6: an unreadable base or delta is a DeltaError, nothing else."""
    (tmp_path / "base").write_bytes(b"base")
    patch = _build(b"", b"", b"", 0)
    with pytest.raises(DeltaError, match="base image"):
        _apply_bytes(tmp_path / "absent", patch, max_output=0)
    with pytest.raises(DeltaError, match="cannot read the delta"):
        apply_delta(tmp_path / "base", tmp_path / "absent", io.BytesIO(), max_output=0)

    class Failing(io.RawIOBase):
        def readinto(self, buffer: Any) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises(DeltaError, match="cannot read the delta"):
        apply_delta(tmp_path / "base", cast(BinaryIO, Failing()), io.BytesIO(), max_output=0)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "10"])
def test_max_output_must_be_a_count(tmp_path: Path, bad: Any) -> None:
    """D2: max_output is a count of bytes, never a permissive default."""
    with pytest.raises(DeltaError, match="max_output"):
        apply_delta(tmp_path / "base", io.BytesIO(), io.BytesIO(), max_output=bad)


class _CoreWithoutMemory:
    """bsdiff4's C core on a device with too little free memory for the image."""

    decode_int64 = staticmethod(bsdiff_core.decode_int64)

    @staticmethod
    def patch(*_args: object) -> bytes:
        raise MemoryError


def test_d6_too_little_memory_to_rebuild_is_a_delta_error_and_writes_nothing(
    images: tuple[Path, Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """D6: a MemoryError while rebuilding is a DeltaError, so the device takes the full image.

    ADR 0008: a device with less than about three times the image free fails
    the delta and streams the full image; a MemoryError escaping would end
    the update session instead, at every poll (never the full image).
    """
    base, _, new = images
    patch = _patch(base.read_bytes(), new)
    monkeypatch.setattr(delta_module, "_bsdiff_core", _CoreWithoutMemory)
    out = io.BytesIO()
    with pytest.raises(DeltaError, match=r"not enough memory.*full image"):
        apply_delta(base, io.BytesIO(patch), out, max_output=len(new))
    assert out.getvalue() == b""


def test_make_delta_with_too_little_memory_is_a_delta_error_and_writes_nothing(
    images: tuple[Path, Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D7: the signer is told to publish without the delta; no delta file appears."""
    base, image, _ = images

    def no_memory(_old: bytes, _new: bytes) -> bytes:
        raise MemoryError

    monkeypatch.setattr(delta_module.bsdiff4, "diff", no_memory)
    with pytest.raises(DeltaError, match=r"not enough memory.*without it"):
        make_delta(base, image, tmp_path / "delta")
    assert not (tmp_path / "delta").exists()
